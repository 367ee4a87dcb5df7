"""MFSC features for M-CTC-T: log mel filterbank energies, normalised per utterance.

What the checkpoint was trained on (Flashlight's MFSC, as transformers' last
`MCTCTFeatureExtractor` computes it), per item:

1. samples x 32768 (int16 range), cut into 25 ms windows every 10 ms, no centring
   padding, so `1 + (n - 400) // 160` frames at 16 kHz (none below 400 samples);
2. pre-emphasis inside each window (`y[0] = 0.03 x[0]`, `y[i] = x[i] - 0.97 x[i-1]`),
   a symmetric Hamming window, a 512-point real FFT, magnitudes (not power);
3. 80 triangular HTK-mel filters over 0..8 kHz, clamped below at 1.0, natural log;
4. each mel bin minus its mean and divided by its standard deviation over the item's
   own frames; padded frames are then set to `padding_value`.

Computed with torch on the model's device, in float64 until the last step, so a GPU
actor does not wait on the CPU. One departure from the reference: a mel bin whose
standard deviation is exactly zero (digital silence, a one-frame item, a band that
stays under the floor) is left at zero instead of dividing 0 by 0; the reference
returns NaN there, and the conv and attention then spread it to every logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.models.mctct.config import FeatureConfig


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """The HTK mel scale."""
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filters(n_freqs: int, n_mels: int, sampling_rate: int) -> np.ndarray:
    """[n_freqs, n_mels] triangular filters, unnormalised, centres evenly spaced in mel."""
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sampling_rate / 2), n_mels + 2))
    freqs = np.linspace(0, sampling_rate // 2, n_freqs)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


class MfscFeatures:
    """Turns a list of 1-D float arrays into padded, normalised MFSC frames on `device`."""

    def __init__(self, config: FeatureConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        c = config
        if c.win_function == "hamming_window":  # symmetric, as the reference asks for it
            window = torch.hamming_window(c.window_samples, periodic=False, dtype=torch.float64)
        else:
            window = torch.hann_window(c.window_samples, periodic=True, dtype=torch.float64)
        self._window = window.to(self.device)
        filters = mel_filters(c.fft_size // 2 + 1, c.feature_size, c.sampling_rate)
        self._filters = torch.from_numpy(filters).to(self.device)

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    def frames(self, samples: int) -> int:
        """Feature frames for `samples` samples (0 when shorter than one window)."""
        win, hop = self.config.window_samples, self.config.hop_samples
        return 0 if samples < win else 1 + (samples - win) // hop

    def __call__(self, audio: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [batch, frames, mel bins] (float32) and each item's frame count [batch].

        Raises ValueError when an item is shorter than one window.
        """
        counts = [self.frames(len(a)) for a in audio]
        if min(counts) < 1:
            raise ValueError(
                f"an item is shorter than the {self.config.window_samples}-sample analysis window"
            )
        lengths = torch.tensor(counts, device=self.device)
        log_mel = self._log_mel(self._padded(audio))
        valid = torch.arange(log_mel.shape[1], device=self.device)[None, :] < lengths[:, None]
        return self._normalised(log_mel, valid).float(), lengths

    def _padded(self, audio: Sequence[np.ndarray]) -> torch.Tensor:
        batch = np.zeros((len(audio), max(len(a) for a in audio)), np.float64)
        for i, a in enumerate(audio):
            batch[i, : len(a)] = a
        return torch.from_numpy(batch).to(self.device)

    def _log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        c = self.config
        windows = (waves * c.frame_signal_scale).unfold(-1, c.window_samples, c.hop_samples)
        coeff = c.preemphasis_coeff
        emphasised = torch.cat(
            (windows[..., :1] * (1.0 - coeff), windows[..., 1:] - coeff * windows[..., :-1]),
            dim=-1,
        )
        magnitude = torch.fft.rfft(emphasised * self._window, n=c.fft_size).abs()
        return (magnitude @ self._filters).clamp_min(c.mel_floor).log()

    def _normalised(self, log_mel: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        c = self.config
        weight = valid[..., None].to(log_mel.dtype)
        count = weight.sum(dim=1, keepdim=True)
        mean = (log_mel * weight).sum(dim=1, keepdim=True) / count
        out = log_mel - mean if c.normalize_means else log_mel
        if c.normalize_vars:
            # Population deviation over valid frames (numpy's std), centred either way.
            std = (((log_mel - mean) ** 2 * weight).sum(dim=1, keepdim=True) / count).sqrt()
            out = out / torch.where(std > 0, std, torch.ones_like(std))
        return out.masked_fill(~valid[..., None], c.padding_value)
