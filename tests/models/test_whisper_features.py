"""LogMel (features on the model's device) against WhisperFeatureExtractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from pipeline.models.whisper.features import LogMel

RATE = 16_000


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.mark.parametrize("mels", [80, 128])
def test_short_form_windows_equal_the_extractor(mels):
    extractor = WhisperFeatureExtractor(feature_size=mels)
    # Shorter than, exactly and longer than 30 s (cut), and one that is all silence.
    audio = [noise(2.3, 1), noise(30.0, 2), noise(31.7, 3), np.zeros(9000, np.float32)]
    expected = extractor(audio, sampling_rate=RATE, return_tensors="pt").input_features
    got = LogMel(extractor, "cpu").windows(audio)
    assert got.shape == expected.shape == (4, mels, 3000)
    assert torch.equal(got, expected)  # the same arithmetic: bit for bit on CPU
    one = LogMel(extractor, "cpu").windows(audio[:1])  # batch size does not matter
    assert torch.equal(one[0], got[0])


def test_long_form_features_equal_the_extractor_without_truncation():
    extractor = WhisperFeatureExtractor()
    audio = noise(47.31, 4)
    expected = extractor(
        audio, sampling_rate=RATE, return_tensors="pt", truncation=False, padding="longest"
    ).input_features[0]
    got = LogMel(extractor, "cpu").full(audio)
    assert got.shape == expected.shape == (80, len(audio) // 160)
    assert torch.equal(got, expected)


def test_features_stay_on_the_requested_device():
    extractor = WhisperFeatureExtractor()
    mel = LogMel(extractor, "cpu")
    assert mel.windows([noise(1.0, 5)]).device.type == "cpu"
    assert mel.frames(16_000) == 100


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_features_equal_cpu_features():
    extractor = WhisperFeatureExtractor(feature_size=128)
    audio = [noise(4.0, 6), noise(12.5, 7)]
    gpu = LogMel(extractor, "cuda").windows(audio)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), LogMel(extractor, "cpu").windows(audio), atol=1e-4)


def test_rows_already_on_the_device_give_the_same_features():
    extractor = WhisperFeatureExtractor()
    mel = LogMel(extractor, "cpu")
    audio = [noise(2.0, 8), noise(33.0, 9)]
    views = [torch.from_numpy(a) for a in audio]
    assert torch.equal(mel.windows(views), mel.windows(audio))
    assert torch.equal(mel.full(views[1]), mel.full(audio[1]))
