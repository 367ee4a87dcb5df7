"""Whisper log-mel features computed on the model's device.

`WhisperFeatureExtractor(..., device="cuda")` runs its STFT on the GPU but then copies
the features back to the host as numpy (`log_spec.detach().cpu()` in
`_torch_extract_fbank_features`), and pads every item to 30 s on the host first; the
model then needs them uploaded again. Here the same arithmetic (`torch.stft` with a Hann
window, power spectrum without the last frame, the extractor's own mel filters, log10,
clamp to the item's maximum minus 8, `(x + 4) / 4`) runs where the model is, on raw
samples uploaded once, and the features stay there.

Two shapes, as transformers makes them:
- `windows`: short-form items (up to 30 s), each zero-padded (or cut) to 30 s of samples,
  as `extractor(audio)` does by default: [batch, mels, 3000];
- `full`: one long-form item at its own length, as `extractor(audio, truncation=False,
  padding="longest")` does for a single item: [mels, samples // hop].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class LogMel:
    """The feature extractor's log-mel spectrogram, on `device`."""

    def __init__(self, extractor: Any, device: str) -> None:
        self.device = device
        self.n_fft = int(extractor.n_fft)
        self.hop = int(extractor.hop_length)
        self.n_samples = int(extractor.n_samples)  # 30 s
        self.dither = float(getattr(extractor, "dither", 0.0) or 0.0)
        self.window = torch.hann_window(self.n_fft, device=device)
        self.filters = torch.from_numpy(np.asarray(extractor.mel_filters)).to(device, torch.float32)

    def frames(self, samples: int) -> int:
        """Log-mel frames of an item of `samples` samples at its own length."""
        return samples // self.hop

    def windows(self, audio: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """Short-form features [batch, mels, 3000]: each item padded or cut to 30 s.

        Items may be numpy arrays (uploaded here, in one copy) or 1-D tensors already
        on the device (views of a batch uploaded once: see `upload`)."""
        n = self.n_samples
        wave = torch.zeros(len(audio), n, device=self.device)
        if all(isinstance(a, torch.Tensor) for a in audio):
            for i, a in enumerate(audio):
                m = min(len(a), n)
                wave[i, :m] = a[:m]
            return self._log_mel(wave)
        lengths = [min(len(a), n) for a in audio]
        flat = np.concatenate([np.asarray(a[:m]) for a, m in zip(audio, lengths, strict=True)])
        uploaded = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32)).to(self.device)
        start = 0
        for i, m in enumerate(lengths):
            wave[i, :m] = uploaded[start : start + m]
            start += m
        return self._log_mel(wave)

    def full(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Long-form features [mels, frames] of one item at its own length."""
        if isinstance(audio, torch.Tensor):
            wave = audio.to(self.device, torch.float32)
        else:  # a copy: rows arrive as read-only views of Arrow buffers
            wave = torch.from_numpy(np.array(audio, dtype=np.float32)).to(self.device)
        return self._log_mel(wave[None])[0]

    def upload(self, values: np.ndarray) -> torch.Tensor:
        """A batch's samples (one contiguous float32 buffer) on the device, in one copy."""
        with warnings.catch_warnings():
            # Arrow buffers are read-only; nothing here writes to them.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(values).to(self.device)

    def _log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        if self.dither:
            wave = wave + self.dither * torch.randn_like(wave)
        stft = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True)
        # Contiguous, as the extractor makes it: the strided matmul is ~8x slower on CPU.
        power = (stft[..., :-1].abs() ** 2).contiguous()
        mel = self.filters.T @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.max(dim=2, keepdim=True)[0].max(dim=1, keepdim=True)[0]
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0
