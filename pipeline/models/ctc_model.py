"""The CTC model adapter: one loaded checkpoint that turns a micro-batch of audio into
per-frame token ids and probabilities, each item exactly as if it had run alone.

The stage (`pipeline/stages/ctc.py`) owns batching, chunking and columns and sees a
model only through `CtcAdapter`. `CtcModel` here adapts wav2vec2-style checkpoints
(M-CTC-T has its own, `pipeline/models/mctct/`) and owns the tricks that make a padded
batch give each item the logits it would get on its own:

- the feature extractor is asked for an attention mask, so it normalises every item
  over its own samples (without one it folds the padding into the statistics);
- the model gets that attention mask, so the encoder zeroes padded frames before the
  positional convolution and attention ignores them;
- group-norm checkpoints (wav2vec2-base, hubert-base, wavlm-base) normalise the first
  conv layer's output per channel over *time*, padding included; `MaskedGroupNorm`
  replaces that norm with one over each item's valid frames only;
- data2vec-audio stacks several positional convs, and the padded frames one of them
  writes would leak into the next; a hook zeroes them between layers.

Conv outputs at valid frames depend only on valid samples (the valid frame count is
exactly the frames whose receptive field lies inside the item), so with these in place
batched logits equal single-item logits up to float rounding (measured in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pipeline.models.base import ModelAdapter
from pipeline.models.device import autocast


@dataclass
class FrameOutput:
    """One item's greedy CTC frames: argmax token id and its softmax probability."""

    ids: np.ndarray  # int64 [frames]
    probs: np.ndarray  # float32 [frames]


class CtcAdapter(ModelAdapter, Protocol):
    """What the CTC stage needs from a loaded checkpoint, whatever its architecture.

    `CtcModel` below (wav2vec2-style conv encoders on raw samples) and
    `pipeline.models.mctct.MctctCtcModel` (MFSC frames, conv subsampler) implement it.
    Logit frame `o` covers the audio from sample `o * samples_per_frame`.
    """

    name: str  # the model URI as given in the spec
    tokenizer: Any  # decodes ids; `pad_token_id` is the CTC blank
    sampling_rate: int
    samples_per_frame: int  # input samples per logit frame
    receptive_field: int  # fewest samples that give one logit frame

    @property
    def frame_duration(self) -> float: ...

    def frames(self, samples: int) -> int: ...

    def predict(self, audio: list[np.ndarray]) -> list[FrameOutput]: ...


class SampleCost:
    """What the CTC adapters on raw samples share: `ModelAdapter.min_samples` (the receptive
    field) and `cost` (the padded samples themselves), greedy `predict` over `logits`, and
    the frame counts `logits` checks (`checked_frames`)."""

    receptive_field: int
    too_short_note: str = ""  # said after "shorter than the receptive field", if anything

    @property
    def min_samples(self) -> int:
        return self.receptive_field

    def cost(self, samples: int) -> int:
        return samples

    def frames(self, samples: int) -> int:
        raise NotImplementedError

    def logits(self, audio: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        raise NotImplementedError

    def predict(self, audio: list[np.ndarray]) -> list[FrameOutput]:
        """Greedy frames (argmax id and its probability) for each item."""
        return greedy_frames(*self.logits(audio))

    def checked_frames(self, audio: list[np.ndarray]) -> list[int]:
        """Each item's logit frames; ValueError when one is shorter than the receptive field."""
        frames = [self.frames(len(a)) for a in audio]
        if min(frames) < 1:
            raise ValueError(
                f"an item is shorter than the {self.receptive_field}-sample receptive field"
                + self.too_short_note
            )
        return frames


def greedy_frames(logits: torch.Tensor, frames: list[int]) -> list[FrameOutput]:
    """Each item's argmax id and its softmax probability over its first `frames[i]` frames."""
    ids = logits.argmax(dim=-1)
    probs = logits.float().log_softmax(dim=-1).gather(-1, ids[..., None])[..., 0].exp()
    ids_np, probs_np = ids.cpu().numpy(), probs.cpu().numpy()
    return [FrameOutput(ids_np[i, :n], probs_np[i, :n]) for i, n in enumerate(frames)]


class MaskedGroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` whose statistics cover only each item's first `valid_frames[i]` frames.

    Shares the parameters of the norm it replaces (same state-dict keys). With
    `valid_frames` unset it is plain group norm. Each item is normalised with the same
    `group_norm` call a single-item forward makes on the same slice.
    """

    valid_frames: list[int] | None = None

    @classmethod
    def replacing(cls, norm: nn.GroupNorm) -> MaskedGroupNorm:
        masked = cls(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine)
        masked.weight, masked.bias = norm.weight, norm.bias
        return masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.valid_frames is None:
            return super().forward(x)
        out = torch.zeros_like(x)
        for i, n in enumerate(self.valid_frames):
            item = x[i : i + 1, :, :n]
            out[i, :, :n] = nn.functional.group_norm(
                item, self.num_groups, self.weight, self.bias, self.eps
            )[0]
        return out


def conv_output_frames(samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Frames a valid-padding conv stack yields for `samples` inputs (0 when too short)."""
    n = samples
    for k, s in zip(kernels, strides, strict=True):
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


@dataclass
class CtcModel(SampleCost):
    """A loaded CTC checkpoint: predicts per-frame ids/probs for a micro-batch."""

    name: str  # the model URI as given in the spec (recorded in the output)
    model: Any  # a transformers `*ForCTC` module in eval mode
    feature_extractor: Any
    tokenizer: Any
    device: str
    dtype: torch.dtype
    sampling_rate: int = field(init=False)
    samples_per_frame: int = field(init=False)
    receptive_field: int = field(init=False)
    _kernels: tuple[int, ...] = field(init=False)
    _strides: tuple[int, ...] = field(init=False)
    _group_norm: MaskedGroupNorm | None = field(init=False, default=None)
    _frame_mask: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        cfg = self.model.config
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self._kernels, self._strides = tuple(cfg.conv_kernel), tuple(cfg.conv_stride)
        self.samples_per_frame = int(np.prod(self._strides))
        self.receptive_field = receptive_field_of(self._kernels, self._strides)
        self._group_norm = install_masked_group_norm(self.model)
        install_pos_conv_masking(self.model, self)

    @property
    def frame_duration(self) -> float:
        """Seconds between consecutive logit frames."""
        return self.samples_per_frame / self.sampling_rate

    def frames(self, samples: int) -> int:
        """Logit frames for an item of `samples` samples (0: shorter than the receptive field)."""
        return conv_output_frames(samples, self._kernels, self._strides)

    def logits(self, audio: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """Padded logits [batch, frames, vocab] and each item's valid frame count.

        Raises ValueError when an item is shorter than the receptive field.
        """
        frames = self.checked_frames(audio)
        return padded_forward(self, audio, frames), frames


def padded_forward(owner: Any, audio: list[np.ndarray], frames: list[int]) -> torch.Tensor:
    """Logits of a wav2vec2-style model on a padded batch, each item as if it ran alone.

    `owner` (`CtcModel`, or the waveform classifiers in `classifier.py`) holds `model`,
    `feature_extractor`, `sampling_rate`, `device`, `dtype`, the conv `_kernels` and
    `_strides`, its `_group_norm` (from `install_masked_group_norm`) and the
    `_frame_mask` its pos-conv hooks read; `frames` are the items' valid frame counts.
    """
    # Asking for the attention mask makes the extractor normalise each item over its
    # own samples; without it the padding would enter the mean and variance.
    inputs = owner.feature_extractor(
        audio,
        sampling_rate=owner.sampling_rate,
        padding="longest",
        return_attention_mask=True,
        return_tensors="pt",
    )
    values = inputs[owner.model.main_input_name].to(owner.device, owner.dtype)
    mask = inputs["attention_mask"].to(owner.device)
    if owner._group_norm is not None:
        k0, s0 = owner._kernels[0], owner._strides[0]
        owner._group_norm.valid_frames = [(len(a) - k0) // s0 + 1 for a in audio]
    positions = torch.arange(max(frames), device=owner.device)
    owner._frame_mask = positions[None, :] < torch.tensor(frames, device=owner.device)[:, None]
    try:
        with torch.inference_mode(), autocast(owner.device, owner.dtype):
            return owner.model(values, attention_mask=mask).logits
    finally:
        # Unset, so a direct call to the module outside `predict` is plain again.
        if owner._group_norm is not None:
            owner._group_norm.valid_frames = None
        owner._frame_mask = None


def receptive_field_of(kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    field_, jump = 1, 1
    for k, s in zip(kernels, strides, strict=True):
        field_ += (k - 1) * jump
        jump *= s
    return field_


def _feature_encoder(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if isinstance(getattr(module, "conv_layers", None), nn.ModuleList):
            return module
    return None


def install_masked_group_norm(model: nn.Module) -> MaskedGroupNorm | None:
    """Swap the first conv layer's GroupNorm (group-norm checkpoints) for a masked one."""
    encoder = _feature_encoder(model)
    if encoder is None:
        return None
    first = encoder.conv_layers[0]
    for name, child in first.named_children():
        if isinstance(child, nn.GroupNorm):
            masked = MaskedGroupNorm.replacing(child)
            setattr(first, name, masked)
            return masked
    return None


def install_pos_conv_masking(model: nn.Module, owner: CtcModel) -> None:
    """Zero padded frames between stacked positional conv layers (data2vec-audio)."""
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if not type(module).__name__.endswith("PositionalConvEmbedding"):
            continue
        if not isinstance(layers, nn.ModuleList):
            continue
        for layer in list(layers)[:-1]:
            layer.register_forward_hook(_zero_padded_frames(owner))


def _zero_padded_frames(owner: CtcModel):
    def hook(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        mask = owner._frame_mask
        if mask is None or mask.shape[1] != output.shape[-1]:
            return output
        return output * mask[:, None, :].to(output.dtype)  # layout [batch, channels, frames]

    return hook
