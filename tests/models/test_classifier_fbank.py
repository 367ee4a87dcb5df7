"""The torch fbank (AST features on the model's device) against transformers' ASTFeatureExtractor.

The extractor computes in float64 with numpy here (no torchaudio installed) or in float32
with torchaudio; ours runs in float64 by default on any device. Measured on these inputs,
in normalised units (log-mel / 9.14): max difference 1.2e-7 in float64; in float32 2.3e-3
(mel bins far below a loud chirp's peak, lost to rounding in the power spectrum), which is
also what separates the extractor's own torchaudio and numpy paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ASTFeatureExtractor

from pipeline.models.fbank import Fbank, FbankConfig

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
RATE = 16_000


def inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(12 * RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    lengths = [400, 401, 1600, 3 * RATE + 17, 164_080, 164_081, 12 * RATE]
    items = [tone[:n] for n in lengths]
    items += [
        np.zeros(RATE),  # silence: every bin at the log floor
        0.9 * np.sin(2 * np.pi * (50 + 3000 * t[: 5 * RATE]) * t[: 5 * RATE]),  # loud chirp
        0.5 * rng.standard_normal(2 * RATE),  # noise
    ]
    return [x.astype(np.float32) for x in items]


@pytest.mark.parametrize("max_length", [1024, 256])
def test_batched_fbank_equals_the_extractor_one_item_at_a_time(max_length):
    extractor = ASTFeatureExtractor(max_length=max_length)
    audio = inputs()
    expected = np.stack(
        [extractor(a, sampling_rate=RATE, return_tensors="np")["input_values"][0] for a in audio]
    )
    ours = Fbank(FbankConfig.from_extractor(extractor), "cpu")(audio).numpy()
    assert ours.shape == expected.shape == (len(audio), max_length, 128)
    diff = np.abs(ours - expected)
    assert diff.max() < 1e-5
    assert diff.mean() < 1e-7
    float32 = Fbank(FbankConfig.from_extractor(extractor), "cpu", torch.float32)(audio).numpy()
    assert np.abs(float32 - expected).max() < 5e-3


def test_fbank_without_normalisation_and_with_other_statistics():
    extractor = ASTFeatureExtractor(do_normalize=False, max_length=128)
    audio = inputs()[2:5]
    expected = np.stack(
        [extractor(a, sampling_rate=RATE, return_tensors="np")["input_values"][0] for a in audio]
    )
    ours = Fbank(FbankConfig.from_extractor(extractor), "cpu")(audio).numpy()
    assert np.abs(ours - expected).max() < 1e-4  # raw log-mel: 9.14x the normalised units
    assert (ours[0, 8:] == 0).all()  # 1,600 samples make 8 frames; the rest is padding


def test_frame_arithmetic_matches_kaldi_snip_edges():
    cfg = FbankConfig()
    assert (cfg.frame_length, cfg.hop_length, cfg.fft_length) == (400, 160, 512)
    assert cfg.window_samples == 164_080  # 10.255 s: the fewest samples filling 1024 frames
    assert [cfg.frames(n) for n in (0, 399, 400, 559, 560, 164_080, 10**7)] == [
        0,
        0,
        1,
        1,
        2,
        1024,
        1024,
    ]
