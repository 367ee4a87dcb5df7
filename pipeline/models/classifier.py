"""Audio classifiers behind small adapters: scores for a micro-batch, each item as if alone.

The stages (`pipeline/stages/classify.py`, `frames.py`) own windows, batching and
columns; an adapter here owns one loaded checkpoint and how a padded batch reaches it:

- `AstClassifier` (ASTForAudioClassification): features from `fbank.py` on the model's
  device. Every input is exactly `max_length` fbank frames (shorter items zero-padded in
  the log-mel domain, as the extractor pads them), so a batch changes nothing but float
  rounding.
- `WaveformModel` (wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech(-SAT) sequence and
  frame classifiers): padded batches with an attention mask, plus the masked group norm and
  positional-conv masking of `ctc_model.py` (group-norm checkpoints otherwise depend on
  their batch, docs/FACTS.md). Other conv-encoder types (SEW, conformer, ...) run item by item.
- `ItemwiseClassifier`: any other AutoModelForAudioClassification (e.g. Whisper-based),
  through its own feature extractor one item at a time: exact by construction, slower.

`logits` return float32 tensors on the model's device; the stage applies the activation
there and moves results to the CPU once per call, so on a GPU the CPU prepares the next
micro-batch while the device still runs the last one.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import ModelLoadError
from pipeline.kinds.classify import ClassifyTaskSpec
from pipeline.kinds.frames import FramesTaskSpec
from pipeline.models.ctc_model import (
    conv_output_frames,
    install_masked_group_norm,
    install_pos_conv_masking,
    padded_forward,
    receptive_field_of,
)
from pipeline.models.device import autocast, pick_dtype
from pipeline.models.fbank import Fbank, FbankConfig
from pipeline.models.hub import pretrained, processor, resolve_task
from pipeline.spec import StorageOptions

AST_TYPE = "audio-spectrogram-transformer"
# Encoders whose padded batches are proven exact (tests here and in tests/stages/test_ctc.py).
BATCHED_TYPES = {"wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat"}


class ClassifierBase:
    """What the stages read from any adapter."""

    name: str  # the model URI as given in the spec (recorded in the output)
    model: Any  # the transformers module, in eval mode
    feature_extractor: Any
    device: str
    dtype: torch.dtype
    sampling_rate: int
    labels: list[str]  # label of each output index
    multi_label: bool  # config.problem_type says multi_label_classification
    min_samples: int = 1  # shorter items yield no output
    max_window: int | None = None  # most samples one pass can see (AST); None: any

    def _setup(self, name: str, model, extractor, device: str, dtype: torch.dtype) -> None:
        self.name, self.model, self.feature_extractor = name, model, extractor
        self.device, self.dtype = device, dtype
        self.sampling_rate = int(extractor.sampling_rate)
        cfg = model.config
        self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
        self.multi_label = cfg.problem_type == "multi_label_classification"

    def predict(self, audio: list[np.ndarray]) -> torch.Tensor:
        """`ModelAdapter.predict`: the logits, [items, labels] (or [items, frames, labels])."""
        return self.logits(audio)

    def cost(self, samples: int) -> int:
        """Padded size of one input, in samples, for the micro-batch budget."""
        return samples


class AstClassifier(ClassifierBase):
    """AST with its fbank features computed on the model's device."""

    def __init__(self, name: str, model, extractor, device: str, dtype: torch.dtype) -> None:
        self._setup(name, model, extractor, device, dtype)
        self.fbank = Fbank(FbankConfig.from_extractor(extractor), device)
        self.max_window = self.fbank.config.window_samples
        self.min_samples = self.fbank.config.frame_length  # fewer samples: no fbank frame

    def cost(self, samples: int) -> int:
        return self.max_window  # every input is max_length frames, however short the item

    def logits(self, audio: list[np.ndarray]) -> torch.Tensor:
        """[batch, labels] float32 logits of each item's first `max_window` samples."""
        with torch.inference_mode():
            features = self.fbank(audio).to(self.dtype)
            with autocast(self.device, self.dtype):
                return self.model(input_values=features).logits.float()


class WaveformModel(ClassifierBase):
    """A wav2vec2-style classifier (sequence or frame head) run on exact padded batches."""

    def __init__(self, name: str, model, extractor, device: str, dtype: torch.dtype) -> None:
        self._setup(name, model, extractor, device, dtype)
        cfg = model.config
        self._kernels, self._strides = tuple(cfg.conv_kernel), tuple(cfg.conv_stride)
        self.samples_per_frame = int(np.prod(self._strides))
        self.min_samples = receptive_field_of(self._kernels, self._strides)
        self.batched = cfg.model_type in BATCHED_TYPES
        self._group_norm = install_masked_group_norm(model) if self.batched else None
        self._frame_mask: torch.Tensor | None = None  # read by the pos-conv hooks
        if self.batched:
            install_pos_conv_masking(model, self)

    @property
    def frame_duration(self) -> float:
        return self.samples_per_frame / self.sampling_rate

    def frames(self, samples: int) -> int:
        return conv_output_frames(samples, self._kernels, self._strides)

    def logits(self, audio: list[np.ndarray]) -> torch.Tensor:
        """Clip heads: [batch, labels]; frame heads: [batch, max frames, labels] (padded)."""
        if not self.batched:
            return _pad_stack([self._forward_batch(audio[i : i + 1])[0] for i in range(len(audio))])
        return self._forward_batch(audio)

    def _forward_batch(self, audio: list[np.ndarray]) -> torch.Tensor:
        frames = [self.frames(len(a)) for a in audio]
        if min(frames) < 1:
            raise ValueError(
                f"an item is shorter than the {self.min_samples}-sample receptive field"
            )
        return padded_forward(self, audio, frames).float()


class ItemwiseClassifier(ClassifierBase):
    """Any other audio classifier, through its own feature extractor one item at a time."""

    def __init__(self, name: str, model, extractor, device: str, dtype: torch.dtype) -> None:
        self._setup(name, model, extractor, device, dtype)

    def logits(self, audio: list[np.ndarray]) -> torch.Tensor:
        out = []
        for a in audio:
            inputs = self.feature_extractor(
                a, sampling_rate=self.sampling_rate, return_tensors="pt"
            )
            inputs = {
                k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype)
                for k, v in inputs.items()
            }
            with torch.inference_mode(), autocast(self.device, self.dtype):
                out.append(self.model(**inputs).logits.float()[0])
        return torch.stack(out)


def _pad_stack(items: list[torch.Tensor]) -> torch.Tensor:
    if items[0].dim() == 1:
        return torch.stack(items)
    longest = max(t.shape[0] for t in items)
    return torch.stack([nn.functional.pad(t, (0, 0, 0, longest - t.shape[0])) for t in items])


def load_classifier(spec: ClassifyTaskSpec, storage: StorageOptions, device: str) -> ClassifierBase:
    """Load `spec.model` as an AutoModelForAudioClassification behind the fitting adapter."""
    from transformers import AutoModelForAudioClassification

    model, extractor, dtype = _load(spec, storage, device, AutoModelForAudioClassification)
    cfg = model.config
    if cfg.model_type == AST_TYPE:
        cls = AstClassifier
    elif hasattr(cfg, "conv_kernel") and not getattr(cfg, "add_adapter", False):
        cls = WaveformModel
    else:
        cls = ItemwiseClassifier
    return cls(spec.model, model, extractor, device, dtype)


def load_frame_classifier(
    spec: FramesTaskSpec, storage: StorageOptions, device: str
) -> WaveformModel:
    """Load `spec.model` as an AutoModelForAudioFrameClassification (conv encoders only)."""
    from transformers import AutoModelForAudioFrameClassification

    model, extractor, dtype = _load(spec, storage, device, AutoModelForAudioFrameClassification)
    cfg = model.config
    if not hasattr(cfg, "conv_kernel") or getattr(cfg, "add_adapter", False):
        raise ModelLoadError(
            f"model {spec.model!r} ({cfg.model_type}): frame classification needs a wav2vec2-style "
            "convolutional feature encoder without adapter (wav2vec2, wavlm, unispeech-sat, "
            "data2vec-audio), whose frame times are known"
        )
    return WaveformModel(spec.model, model, extractor, device, dtype)


def _load(spec: ClassifyTaskSpec | FramesTaskSpec, storage: StorageOptions, device: str, auto):
    from transformers import AutoFeatureExtractor

    source = resolve_task(spec, storage)
    dtype = pick_dtype(spec.dtype, device)

    def failure(exc: Exception) -> str:
        return (
            f"model {spec.model!r}: cannot load it with {auto.__name__} and its feature "
            f"extractor ({type(exc).__name__}: {exc}); check that it is such a checkpoint, that "
            "the revision exists and that the folder has preprocessor_config.json"
        )

    model = pretrained(auto, source, failure, dtype=dtype)
    with warnings.catch_warnings():  # AST's 128 kaldi mel filters: "all zero values"
        warnings.simplefilter("ignore", UserWarning)
        extractor = processor(AutoFeatureExtractor, source, failure)
    if model.config.problem_type == "regression":
        raise ModelLoadError(f"model {spec.model!r} has a regression head, not a classifier")
    if spec.sample_rate != extractor.sampling_rate:
        raise ModelLoadError(
            f"model {spec.model!r} expects {extractor.sampling_rate} Hz audio but the task's "
            f"sample_rate is {spec.sample_rate}; set sample_rate: {extractor.sampling_rate}"
        )
    return model.to(device).eval(), extractor, dtype
