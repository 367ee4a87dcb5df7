"""Typed M-CTC-T configuration, read from the checkpoint's `config.json` and
`preprocessor_config.json`.

The JSON keys are fixed by compatibility with the published checkpoint
(`speechbrain/m-ctc-t-large`, written by transformers' `MCTCTConfig` and
`MCTCTFeatureExtractor`); the defaults are that checkpoint's values. Keys that only
matter for training (dropouts, layerdrop, CTC loss options) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.errors import ModelLoadError

ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "selu", "silu", "swish")
WINDOWS = ("hamming_window", "hann_window")


@dataclass(frozen=True)
class MctctConfig:
    """The encoder and CTC head (`config.json`, `model_type: mctct`)."""

    vocab_size: int = 8065  # CTC output classes (characters, blank included)
    hidden_size: int = 1536  # width of the transformer layers
    num_hidden_layers: int = 36
    intermediate_size: int = 6144  # feed-forward width
    num_attention_heads: int = 4
    attention_head_dim: int = 384  # heads x head dim must equal hidden_size
    max_position_embeddings: int = 920  # relative distances beyond +-(this - 1) get no bias
    layer_norm_eps: float = 1e-5
    hidden_act: str = "relu"
    pad_token_id: int = 1  # the CTC blank
    conv_glu_dim: int = 1  # GLU over channels ([batch, channels, time] layout)
    num_conv_layers: int = 1
    conv_kernel: tuple[int, ...] = (7,)
    conv_stride: tuple[int, ...] = (3,)
    input_feat_per_channel: int = 80  # mel bins per input channel
    input_channels: int = 1

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> MctctConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        for key in ("conv_kernel", "conv_stride"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        config = cls(**values)
        config._validate(where)
        return config

    @property
    def input_size(self) -> int:
        """Features per input frame the subsampler expects."""
        return self.input_feat_per_channel * self.input_channels

    def _validate(self, where: str) -> None:
        problems = []
        # The reference pads as if there were one conv layer and feeds each later layer
        # the wrong channel count, so multi-layer configs never ran; the published one
        # has a single layer.
        if self.num_conv_layers != 1 or len(self.conv_kernel) != 1 or len(self.conv_stride) != 1:
            problems.append(
                f"only one subsampling conv layer is supported (num_conv_layers="
                f"{self.num_conv_layers}, conv_kernel={list(self.conv_kernel)}, "
                f"conv_stride={list(self.conv_stride)})"
            )
        if self.conv_glu_dim != 1:
            problems.append(f"conv_glu_dim must be 1 (GLU over channels), got {self.conv_glu_dim}")
        if self.num_attention_heads * self.attention_head_dim != self.hidden_size:
            problems.append(
                f"num_attention_heads x attention_head_dim ({self.num_attention_heads} x "
                f"{self.attention_head_dim}) must equal hidden_size ({self.hidden_size})"
            )
        if self.hidden_act not in ACTIVATIONS:
            problems.append(f"hidden_act {self.hidden_act!r} is not one of {ACTIVATIONS}")
        if self.max_position_embeddings < 1:
            problems.append("max_position_embeddings must be at least 1")
        if problems:
            raise ModelLoadError(f"M-CTC-T config {where}: " + "; ".join(problems))


@dataclass(frozen=True)
class FeatureConfig:
    """The MFSC feature extractor (`preprocessor_config.json`)."""

    feature_size: int = 80  # mel bins
    sampling_rate: int = 16_000
    padding_value: float = 0.0  # written into padded frames after normalisation
    hop_length: int = 10  # milliseconds between frames
    win_length: int = 25  # milliseconds per analysis window
    win_function: str = "hamming_window"
    frame_signal_scale: float = 32768.0  # samples are scaled to the int16 range first
    preemphasis_coeff: float = 0.97
    mel_floor: float = 1.0  # mel energies are clamped to this before the log
    normalize_means: bool = True  # per utterance and mel bin, over the valid frames
    normalize_vars: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in known and v is not None})
        if config.win_function not in WINDOWS:
            raise ModelLoadError(
                f"M-CTC-T feature extractor {where}: win_function {config.win_function!r} "
                f"is not one of {WINDOWS}"
            )
        if config.window_samples < 2 or config.hop_samples < 1:
            raise ModelLoadError(
                f"M-CTC-T feature extractor {where}: win_length {config.win_length} ms and "
                f"hop_length {config.hop_length} ms are too short at {config.sampling_rate} Hz"
            )
        return config

    @property
    def window_samples(self) -> int:
        return self.win_length * self.sampling_rate // 1000

    @property
    def hop_samples(self) -> int:
        return self.hop_length * self.sampling_rate // 1000

    @property
    def fft_size(self) -> int:
        """The window rounded up to a power of two."""
        return 1 << (self.window_samples - 1).bit_length()


def read_config(folder: Path) -> MctctConfig:
    path = folder / "config.json"
    return MctctConfig.from_dict(_read_json(path), str(path))


def read_feature_config(folder: Path) -> FeatureConfig:
    """From `preprocessor_config.json`, or the `feature_extractor` entry of
    `processor_config.json` (where newer transformers releases put it)."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        return FeatureConfig.from_dict(_read_json(path), str(path))
    combined = folder / "processor_config.json"
    if combined.is_file():
        raw = _read_json(combined).get("feature_extractor")
        if isinstance(raw, dict):
            return FeatureConfig.from_dict(raw, str(combined))
    raise ModelLoadError(
        f"M-CTC-T checkpoint {str(folder)!r} has no preprocessor_config.json; the folder needs "
        "the feature extractor's settings as MCTCTProcessor.save_pretrained writes them"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {str(path)!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{str(path)!r} does not hold a JSON object")
    return raw
