"""Tiny random-init audio classifiers of the real architecture classes, saved like a hub checkpoint.

Each builder writes `config.json` (with `id2label`), `model.safetensors` and
`preprocessor_config.json` to a folder, which loads through the same `from_pretrained`
path a hub id takes:
- `build_tiny_ast`: ASTForAudioClassification with its ASTFeatureExtractor, at the real
  input size (1024 frames x 128 mel bins, patch 16, stride 10) and tiny widths;
- `build_tiny_sequence_classifier`: Wav2Vec2ForSequenceClassification (or the HuBERT,
  WavLM, UniSpeech-SAT ones), layer-norm or group-norm feature encoder (the real 7-layer
  conv stack, tiny widths);
- `build_tiny_frame_classifier`: Wav2Vec2ForAudioFrameClassification (or WavLM's,
  UniSpeech-SAT's), optionally with no transformer layer and no input normalisation (a
  model whose outputs depend only on nearby samples, to show that stitched windows equal
  a whole-item pass).

A random-init head gives near-uniform scores that hardly depend on the input, so the
head is redrawn on whitened inputs (mean and spread of its input over calibration audio),
with logits a few units apart: rankings are decisive and follow the audio, and float
noise between a batched and a single run cannot reorder them. Deterministic per seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.testing.threads import one_thread
from pipeline.testing.tiny_ctc import CONV, ENCODER, GROUP_NORM, LAYER_NORM, SAMPLING_RATE

if TYPE_CHECKING:
    import numpy as np

LABELS = ("speech", "music", "dog", "siren", "rain", "silence")
MULTI_LABEL = "multi_label_classification"


def _label_config(labels: tuple[str, ...], multi_label: bool) -> dict:
    return {
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "problem_type": MULTI_LABEL if multi_label else "single_label_classification",
    }


def calibration_audio(seed: int, n: int = 6) -> list[np.ndarray]:
    """Varied short clips (tones, chirps, noise, silence, clicks) to calibrate a head."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(2 * SAMPLING_RATE) / SAMPLING_RATE
    clips = [
        0.5 * np.sin(2 * np.pi * 440 * t),
        0.4 * np.sin(2 * np.pi * (100 + 900 * t) * t),
        0.2 * rng.standard_normal(t.size),
        np.zeros(t.size) + 1e-4 * rng.standard_normal(t.size),
        0.6 * (np.sin(2 * np.pi * 3 * t) > 0.95) * rng.standard_normal(t.size),
        0.3 * np.sin(2 * np.pi * 1500 * t) * (np.sin(2 * np.pi * 2 * t) > 0),
    ]
    return [c.astype(np.float32) for c in clips[:n]]


def _redraw_head(model, head, extractor, seed: int, scale: float = 3.0) -> None:
    """Whiten `head`'s input (a Linear) over calibration audio and redraw it at `scale`."""
    import torch

    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    with torch.no_grad(), one_thread():  # the same sums whatever threads the caller set
        for clip in calibration_audio(seed):
            inputs = extractor(clip, sampling_rate=SAMPLING_RATE, return_tensors="pt")
            model(**inputs)
    hook.remove()
    hidden = torch.cat([c.reshape(-1, head.in_features) for c in captured])
    mean, spread = hidden.mean(0), hidden.std(0) + 1e-3
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        weight = torch.randn(head.weight.shape, generator=gen) * (scale / head.in_features**0.5)
        weight = weight / spread
        head.weight.copy_(weight)
        head.bias.copy_(-(weight @ mean) + 0.5 * torch.randn(head.out_features, generator=gen))


def _save(model, extractor, path: str) -> str:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    extractor.save_pretrained(str(out))
    return str(out)


def _init(model_cls, config, seed: int):
    import torch

    # A private RNG stream: building a fixture must not reseed the caller's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config).eval()


def build_tiny_ast(
    path: str,
    *,
    seed: int = 0,
    labels: tuple[str, ...] = LABELS,
    multi_label: bool = False,
    max_length: int = 1024,
) -> str:
    """A tiny ASTForAudioClassification + ASTFeatureExtractor in `path`; returns `path`."""
    import transformers as tf

    config = tf.ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=128,
        **_label_config(labels, multi_label),
    )
    model = _init(tf.ASTForAudioClassification, config, seed)
    extractor = tf.ASTFeatureExtractor(max_length=max_length, num_mel_bins=128)
    _redraw_head(model, model.classifier.dense, extractor, seed)
    return _save(model, extractor, path)


def _wav2vec2_extractor(group_norm: bool, normalize: bool = True):
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=normalize,
        # As the real checkpoints: group-norm ones were trained without attention masks.
        return_attention_mask=not group_norm,
    )


# Config class and head classes per encoder family (all with the wav2vec2 conv encoder).
_ARCHS = {
    "wav2vec2": (
        "Wav2Vec2Config",
        "Wav2Vec2ForSequenceClassification",
        "Wav2Vec2ForAudioFrameClassification",
    ),
    "hubert": ("HubertConfig", "HubertForSequenceClassification", None),
    "wavlm": ("WavLMConfig", "WavLMForSequenceClassification", "WavLMForAudioFrameClassification"),
    "unispeech_sat": (
        "UniSpeechSatConfig",
        "UniSpeechSatForSequenceClassification",
        "UniSpeechSatForAudioFrameClassification",
    ),
}


def _encoder_model(arch: str, head: int, extra: dict, seed: int):
    import transformers as tf

    if arch not in _ARCHS or _ARCHS[arch][head] is None:
        raise ValueError(f"no tiny {arch!r} model with that head; expected one of {sorted(_ARCHS)}")
    config_cls, model_cls = getattr(tf, _ARCHS[arch][0]), getattr(tf, _ARCHS[arch][head])
    if arch == "wavlm":
        extra = {**extra, "num_buckets": 32, "max_bucket_distance": 64}
    return _init(model_cls, config_cls(**CONV, **extra), seed)


def build_tiny_sequence_classifier(
    path: str,
    *,
    seed: int = 0,
    labels: tuple[str, ...] = LABELS,
    multi_label: bool = False,
    group_norm: bool = False,
    arch: str = "wav2vec2",
) -> str:
    """A tiny `<arch>ForSequenceClassification` (+ feature extractor) in `path`.

    `arch`: wav2vec2, hubert, wavlm or unispeech_sat.
    """
    norm = GROUP_NORM if group_norm else LAYER_NORM
    extra = {**ENCODER, **norm, "classifier_proj_size": 16, **_label_config(labels, multi_label)}
    model = _encoder_model(arch, 1, extra, seed)
    extractor = _wav2vec2_extractor(group_norm)
    _redraw_head(model, model.classifier, extractor, seed)
    return _save(model, extractor, path)


def build_tiny_frame_classifier(
    path: str,
    *,
    seed: int = 0,
    labels: tuple[str, ...] = LABELS,
    multi_label: bool = True,
    group_norm: bool = False,
    local: bool = False,
    arch: str = "wav2vec2",
) -> str:
    """A tiny `<arch>ForAudioFrameClassification` (+ feature extractor) in `path`.

    `arch`: wav2vec2, wavlm or unispeech_sat. `local`: no transformer layer and no per-item
    input normalisation, so a frame's output depends only on samples within ~0.2 s (conv
    stack and positional conv).
    """
    if local and group_norm:
        raise ValueError("a local frame model needs layer norm: group norm spans the whole item")
    norm = GROUP_NORM if group_norm else LAYER_NORM
    encoder = {**ENCODER, "num_hidden_layers": 0} if local else ENCODER
    model = _encoder_model(arch, 2, {**encoder, **norm, **_label_config(labels, multi_label)}, seed)
    extractor = _wav2vec2_extractor(group_norm, normalize=not local)
    _redraw_head(model, model.classifier, extractor, seed)
    return _save(model, extractor, path)
