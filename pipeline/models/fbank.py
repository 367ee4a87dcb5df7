"""AST's input features (Kaldi-compatible log-mel filterbank) in torch, batched, on any device.

`transformers`' `ASTFeatureExtractor` computes them item by item on the CPU, with
torchaudio's `compliance.kaldi.fbank` when torchaudio is installed and with numpy
otherwise (transformers 5.x; the two agree to float rounding). On a GPU node one CPU core
makes them at ~550x realtime (docs/FACTS.md) while one H200 runs AST at ~15,700x, so here they
are computed for a whole micro-batch on the model's device. Same recipe as both: 25 ms
frames every 10 ms without edge padding (Kaldi's `snip_edges`), DC offset removed per
frame, pre-emphasis 0.97, a symmetric Hann window, a 512-point power spectrum, Kaldi mel
filters from 20 Hz to Nyquist, log with a float32-epsilon floor. Items yield
`1 + (samples - 400) // 160` frames at 16 kHz; frames past an item's end are zero (the
extractor pads the log-mel features with zeros to `max_length`, then normalises).

The spectrum is computed in float64 by default: in float32 (torchaudio's choice) mel bins
many orders of magnitude below a loud frame's peak drown in rounding (measured: 2.3e-3 max
difference from the numpy extractor on a loud chirp, vs 1.2e-7 in float64). float64 costs
little next to a real model: on this 2-core CPU ~10 ms a 10 s window vs ~5 ms in float32
(the extractor: ~11 ms), against ~1 s for AST-base's forward; on a GPU it is memory-bound
elementwise work, a fraction of a millisecond per 128 windows.
`tests/models/test_classifier_fbank.py` measures the agreement with the extractor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

PREEMPHASIS = 0.97
MEL_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi's and the extractor's log floor
LOW_FREQ = 20.0


@dataclass(frozen=True)
class FbankConfig:
    """What the AST extractor's fbank depends on (read from its saved config)."""

    sampling_rate: int = 16_000
    num_mel_bins: int = 128
    max_length: int = 1024  # frames per model input: longer items are cut, shorter padded
    do_normalize: bool = True
    mean: float = -4.2677393
    std: float = 4.5689974

    @property
    def frame_length(self) -> int:
        return int(self.sampling_rate * 0.025)

    @property
    def hop_length(self) -> int:
        return int(self.sampling_rate * 0.010)

    @property
    def fft_length(self) -> int:
        return 1 << (self.frame_length - 1).bit_length()  # Kaldi rounds up to a power of two

    @property
    def window_samples(self) -> int:
        """The fewest samples that fill all `max_length` frames (10.255 s for AST at 16 kHz)."""
        return self.frame_length + (self.max_length - 1) * self.hop_length

    def frames(self, samples: int) -> int:
        """Frames an item of `samples` samples yields (at most `max_length`)."""
        if samples < self.frame_length:
            return 0
        return min(1 + (samples - self.frame_length) // self.hop_length, self.max_length)

    @classmethod
    def from_extractor(cls, extractor) -> FbankConfig:
        return cls(
            sampling_rate=int(extractor.sampling_rate),
            num_mel_bins=int(extractor.num_mel_bins),
            max_length=int(extractor.max_length),
            do_normalize=bool(extractor.do_normalize),
            mean=float(extractor.mean),
            std=float(extractor.std),
        )


class Fbank:
    """Batched AST features on one device: `(audio list) -> [batch, max_length, mel bins]`.

    `dtype` is what the spectrum is computed in; the features come out float32.
    """

    def __init__(
        self, config: FbankConfig, device: str, dtype: torch.dtype = torch.float64
    ) -> None:
        self.config, self.device, self.dtype = config, device, dtype
        self._filters = torch.from_numpy(kaldi_mel_filters(config)).to(device, dtype)
        self._window = torch.hann_window(config.frame_length, periodic=False, dtype=dtype).to(
            device
        )

    def __call__(self, audio: list[np.ndarray]) -> torch.Tensor:
        """float32 features of each item's first `max_length` frames, zero-padded, normalised."""
        cfg = self.config
        # Pinned host memory + non_blocking copies: on a GPU they queue behind the previous
        # micro-batch's forward instead of waiting for it, so the CPU prepares the next one
        # meanwhile. (A plain `torch.tensor(..., device="cuda")` would wait.)
        pin = self.device.startswith("cuda")
        waves = _stack(audio, cfg.window_samples, pin).to(self.device, non_blocking=True)
        lengths = torch.tensor([cfg.frames(len(a)) for a in audio], pin_memory=pin)
        valid = lengths.to(self.device, non_blocking=True)
        waves = waves.to(self.dtype)
        frames = waves.unfold(-1, cfg.frame_length, cfg.hop_length)  # [batch, max_length, 400]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        # Pre-emphasis with the first sample as its own predecessor (Kaldi), in place: the
        # right-hand side is materialised before the subtraction.
        frames[..., 1:] -= PREEMPHASIS * frames[..., :-1]
        frames[..., 0] *= 1.0 - PREEMPHASIS
        frames *= self._window
        power = torch.view_as_real(torch.fft.rfft(frames, n=cfg.fft_length)).square().sum(-1)
        logmel = torch.clamp(power @ self._filters, min=MEL_FLOOR).log()
        inside = torch.arange(cfg.max_length, device=self.device)[None, :] < valid[:, None]
        logmel = logmel * inside[..., None]
        if cfg.do_normalize:
            logmel = (logmel - cfg.mean) / (cfg.std * 2)
        return logmel.float()


def kaldi_mel_filters(config: FbankConfig) -> np.ndarray:
    """[fft bins, mel bins] triangular Kaldi filters, the extractor's own (float64)."""
    from transformers.audio_utils import mel_filter_bank

    with warnings.catch_warnings():  # 128 filters over 257 bins: "all zero values", as upstream
        warnings.simplefilter("ignore", UserWarning)
        return mel_filter_bank(
            num_frequency_bins=config.fft_length // 2 + 1,
            num_mel_filters=config.num_mel_bins,
            min_frequency=LOW_FREQ,
            max_frequency=config.sampling_rate // 2,
            sampling_rate=config.sampling_rate,
            norm=None,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )


def _stack(audio: list[np.ndarray], samples: int, pin: bool) -> torch.Tensor:
    """Items cut or zero-padded to `samples`, as one float32 tensor (in pinned memory)."""
    out = torch.empty((len(audio), samples), dtype=torch.float32, pin_memory=pin)
    view = out.numpy()
    for i, a in enumerate(audio):
        n = min(len(a), samples)
        view[i, :n] = a[:n]
        view[i, n:] = 0.0
    return out
