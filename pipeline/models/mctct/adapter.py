"""M-CTC-T behind the CTC stage's model adapter: audio in, greedy frames out.

Frame arithmetic the stage needs (published config, 16 kHz): features every 160
samples from 400-sample windows, the subsampler keeps every third, so one logit frame
per 480 samples (30 ms); an item needs one window (400 samples) to give any frame.
Logit frame `o` is centred on feature frame `3o`, whose window starts at sample
`480 o`: the same "frame o starts at o x samples_per_frame" the stage assumes for
wav2vec2-style models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import ModelLoadError
from pipeline.models.ctc_model import SampleCost
from pipeline.models.device import autocast
from pipeline.models.mctct.checkpoint import hub_folder, load_network
from pipeline.models.mctct.config import read_feature_config
from pipeline.models.mctct.features import MfscFeatures
from pipeline.models.mctct.modeling import MctctForCtc

log = logging.getLogger(__name__)


@dataclass
class MctctCtcModel(SampleCost):
    """A loaded M-CTC-T checkpoint: predicts per-frame ids/probs for a micro-batch."""

    name: str  # the model URI as given in the spec (recorded in the output)
    model: MctctForCtc  # in eval mode, on `device`, in `dtype`
    features: MfscFeatures
    tokenizer: Any  # a Wav2Vec2CTCTokenizer over the checkpoint's characters
    device: str
    dtype: torch.dtype
    sampling_rate: int = field(init=False)
    samples_per_frame: int = field(init=False)
    receptive_field: int = field(init=False)  # fewest samples that give one frame

    def __post_init__(self) -> None:
        cfg = self.features.config
        self.sampling_rate = cfg.sampling_rate
        self.samples_per_frame = cfg.hop_samples * self.model.encoder.conv.stride
        self.receptive_field = cfg.window_samples

    @property
    def frame_duration(self) -> float:
        """Seconds between consecutive logit frames."""
        return self.samples_per_frame / self.sampling_rate

    def frames(self, samples: int) -> int:
        """Logit frames for an item of `samples` samples (0: shorter than one window)."""
        feature_frames = self.features.frames(samples)
        return self.model.output_frames(feature_frames) if feature_frames else 0

    def logits(self, audio: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """Padded logits [batch, frames, vocab] and each item's valid frame count.

        Raises ValueError when an item is shorter than one analysis window.
        """
        features, lengths = self.features(audio)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            logits, frames = self.model(features.to(self.dtype), lengths)
        return logits, frames.tolist()


def load_mctct(
    name: str, source: str, *, revision: str | None, device: str, dtype: torch.dtype
) -> MctctCtcModel:
    """Load an M-CTC-T checkpoint from a local folder or (with `revision`) a hub id."""
    folder = Path(source) if Path(source).is_dir() else hub_folder(source, revision)
    features = MfscFeatures(read_feature_config(folder), device)
    model = load_network(folder, name, device, dtype)
    if features.config.feature_size != model.config.input_size:
        raise ModelLoadError(
            f"model {name!r}: the feature extractor makes {features.config.feature_size} mel "
            f"bins but the model takes {model.config.input_size} features per frame"
        )
    log.info(
        "loaded M-CTC-T %s (%d layers) on %s as %s", name, len(model.encoder.layers), device, dtype
    )
    return MctctCtcModel(name, model, features, _load_tokenizer(name, folder), device, dtype)


def _load_tokenizer(name: str, folder: Path):
    # The checkpoint's tokenizer is a plain character vocabulary; transformers 5 still
    # ships the class, though it no longer knows the model type.
    from transformers import Wav2Vec2CTCTokenizer

    try:
        return Wav2Vec2CTCTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"model {name!r}: cannot load its character tokenizer ({type(exc).__name__}: "
            f"{exc}); the folder needs vocab.json and tokenizer_config.json"
        ) from exc
