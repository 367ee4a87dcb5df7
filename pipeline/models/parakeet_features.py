"""Parakeet's log-mel features, computed on the model's device.

The same arithmetic as transformers' `ParakeetFeatureExtractor` (5.24): pre-emphasis
inside each item, a centred STFT (symmetric Hann window of `win_length`, `n_fft`,
`hop_length`), power spectrum through slaney mel filters, log with a 2^-24 guard, then
each item normalised over its own valid frames (unbiased variance) and padding zeroed.

Ours because the extractor cannot run on a GPU (in 5.24 `device=` pads on the CPU and
builds the window on the device, so anything but the CPU fails) and because in 5.17,
the GPU machine's version, the extractor requires librosa for its mel filters; here
the filters come from `transformers.audio_utils.mel_filter_bank`, which needs nothing.
Equality with the extractor is checked in `tests/models/test_parakeet.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_LOG_GUARD = 2.0**-24
_EPSILON = 1e-5


@dataclass(frozen=True)
class FeatureConfig:
    """The extractor's settings, as `preprocessor_config.json` holds them."""

    feature_size: int = 80
    sampling_rate: int = 16000
    hop_length: int = 160
    n_fft: int = 512
    win_length: int = 400
    preemphasis: float | None = 0.97

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureConfig:
        data = json.loads(Path(path).read_text())
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def frames(self, samples: int) -> int:
        """Valid feature frames for `samples` samples (the extractor's formula)."""
        return (samples + self.n_fft // 2 * 2 - self.n_fft) // self.hop_length


class ParakeetFeatures:
    """Batched log-mel features on `device`: (features [batch, frames, mels], mask)."""

    def __init__(self, config: FeatureConfig, device: str) -> None:
        from transformers.audio_utils import mel_filter_bank

        self.config, self.device = config, device
        filters = mel_filter_bank(
            num_frequency_bins=config.n_fft // 2 + 1,
            num_mel_filters=config.feature_size,
            min_frequency=0.0,
            max_frequency=config.sampling_rate / 2,
            sampling_rate=config.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.filters = torch.from_numpy(np.ascontiguousarray(filters.T, dtype=np.float32)).to(
            device
        )
        self.window = torch.hann_window(config.win_length, periodic=False, device=device)

    def __call__(self, audio: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        lengths = torch.tensor([len(a) for a in audio], device=self.device)
        host = np.zeros((len(audio), int(lengths.max())), dtype=np.float32)
        for i, a in enumerate(audio):
            host[i, : len(a)] = a
        x = torch.from_numpy(host).to(self.device)  # one upload for the whole batch
        if cfg.preemphasis is not None:
            inside = torch.arange(x.shape[1], device=self.device)[None, :] < lengths[:, None]
            x = torch.cat([x[:, :1], x[:, 1:] - cfg.preemphasis * x[:, :-1]], dim=1)
            x = x.masked_fill(~inside, 0.0)
        stft = torch.stft(
            x,
            cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            return_complex=True,
            pad_mode="constant",
        )
        power = torch.view_as_real(stft).pow(2).sum(-1).sqrt().pow(2)
        mel = torch.log(self.filters @ power + _LOG_GUARD).permute(0, 2, 1)
        frames = torch.floor_divide(lengths + cfg.n_fft // 2 * 2 - cfg.n_fft, cfg.hop_length)
        mask = torch.arange(mel.shape[1], device=self.device)[None, :] < frames[:, None]
        keep = mask.unsqueeze(-1)
        masked = mel * keep
        mean = (masked.sum(dim=1) / frames.unsqueeze(-1)).unsqueeze(1)
        variance = ((masked - mean) ** 2 * keep).sum(dim=1) / (frames - 1).unsqueeze(-1)
        features = (mel - mean) / (variance.sqrt().unsqueeze(1) + _EPSILON)
        return features * keep, mask
