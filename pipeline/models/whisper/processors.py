"""Logits processors for Whisper decoding that never wait for the device.

- `TimestampRules`: transformers' `WhisperTimeStampLogitsProcessor` (timestamps in pairs,
  never decreasing, the first one within `max_initial_timestamp_index`, a timestamp forced
  when their total probability beats every text token), computed with tensor operations
  over the whole batch. The original walks `input_ids.tolist()` row by row at every step,
  a host sync plus a Python loop over 64-256 rows per token. Equal outputs are checked in
  `tests/models/test_whisper_processors.py`.
- `LogprobTracker`: keeps, on the device, the log-probability of each chosen token under
  the processed distribution at temperature 1 (what transformers' `_retrieve_avg_logprobs`
  computes from `output_scores`, without keeping a [batch, vocab] tensor per step).
- `KeyedSampler`: sampling at a temperature as the argmax of `logits / T + Gumbel noise`,
  the noise a hash of (item key, step, token id): an item samples the same tokens whatever
  else is in its batch, which `torch.multinomial` on a shared generator cannot give.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from transformers import LogitsProcessor

_MASK32 = 0xFFFFFFFF


class TimestampRules(LogitsProcessor):
    """Whisper's timestamp rules, vectorised (same results as transformers' processor)."""

    def __init__(
        self,
        *,
        no_timestamps: int,
        eot: int,
        begin_index: int,
        max_initial_timestamp_index: int | None,
    ) -> None:
        self.no_timestamps = no_timestamps
        self.timestamp_begin = no_timestamps + 1
        self.eot = eot
        self.begin_index = begin_index
        self.max_initial = max_initial_timestamp_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        tb, neg_inf = self.timestamp_begin, -float("inf")
        out = scores.clone()
        out[:, self.no_timestamps] = neg_inf
        seq = input_ids[:, self.begin_index :]
        n, vocab = seq.shape[1], scores.shape[-1]
        vocab_ids = torch.arange(vocab, device=scores.device)
        is_ts = seq >= tb
        if n >= 1:
            last = is_ts[:, -1]
            penultimate = is_ts[:, -2] if n >= 2 else torch.ones_like(last)
            # After a pair: text next. After a single timestamp: no text (a timestamp or eot).
            out.masked_fill_((last & penultimate)[:, None] & (vocab_ids >= tb), neg_inf)
            out.masked_fill_((last & ~penultimate)[:, None] & (vocab_ids < self.eot), neg_inf)
            # Timestamps never decrease; a closing one may repeat the last, others may not.
            positions = torch.arange(n, device=seq.device)
            last_index = torch.where(is_ts, positions, -1).max(dim=1).values
            last_value = seq.gather(1, last_index.clamp(min=0)[:, None])[:, 0]
            floor = torch.where(last & ~penultimate, last_value, last_value + 1)
            floor = torch.where(last_index >= 0, floor, tb)
        else:
            floor = torch.full((seq.shape[0],), tb, device=seq.device, dtype=torch.long)
        out.masked_fill_((vocab_ids >= tb) & (vocab_ids < floor[:, None]), neg_inf)
        if n == 0:
            out[:, :tb] = neg_inf
            if self.max_initial is not None:
                out[:, tb + self.max_initial + 1 :] = neg_inf
        logprobs = torch.log_softmax(out.float(), dim=-1)
        timestamp_logprob = logprobs[:, tb:].logsumexp(dim=-1)
        max_text_logprob = logprobs[:, :tb].max(dim=-1).values
        force = (timestamp_logprob > max_text_logprob)[:, None] & (vocab_ids < tb)
        return out.masked_fill_(force, neg_inf)


class LogprobTracker(LogitsProcessor):
    """Records log p(chosen token) under each step's processed scores, on the device.

    Put it after the processors that shape the distribution and before any sampling
    noise. At each call it scores the token chosen at the previous step (now the last
    of `input_ids`); `finish` scores the last one. Greedy and sampling only: beam search
    reorders rows between steps.
    """

    def __init__(self) -> None:
        self._previous: torch.Tensor | None = None
        self._picked: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self._previous is not None:
            self._picked.append(self._previous.gather(1, input_ids[:, -1:])[:, 0])
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [batch, generated] of the generated tokens of `sequences`."""
        if self._previous is None:
            return torch.zeros(sequences.shape[0], 0, device=sequences.device)
        last = self._previous.gather(1, sequences[:, -1:])[:, 0]
        return torch.stack([*self._picked, last], dim=1)


class KeyedSampler(LogitsProcessor):
    """Samples from softmax(scores / T) as argmax(scores / T + Gumbel noise), keyed per row."""

    def __init__(self, temperature: float, keys: torch.Tensor) -> None:
        if temperature <= 0:
            raise ValueError("KeyedSampler needs a temperature above 0")
        self.temperature = temperature
        self.keys = keys  # int64 [batch], each < 2**32

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        u = uniform_noise(self.keys, input_ids.shape[1], scores.shape[-1])
        gumbel = -torch.log(-torch.log(u))
        return (scores.double() / self.temperature + gumbel).to(scores.dtype)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) on int64 tensors < 2**32."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def uniform_noise(keys: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Uniform (0, 1) float64 noise [batch, vocab], a pure function of (key, step, token)."""
    row = _mix32((keys ^ ((step * 0x9E3779B1) & _MASK32)) & _MASK32)
    col = (torch.arange(vocab, device=keys.device, dtype=torch.int64) * 0x85EBCA6B) & _MASK32
    h = _mix32(_mix32((row[:, None] ^ col[None, :]) & _MASK32) ^ 0x27D4EB2F)
    return (h.double() + 0.5) / 2.0**32


def item_key(audio: np.ndarray, seed: int, *parts: int) -> int:
    """A 32-bit key for one item's sampling: its samples, the spec's seed, and `parts`
    (window start, temperature index), so a re-run samples the same tokens."""
    key = zlib.crc32(np.ascontiguousarray(audio).view(np.uint8))
    for value in (seed, *parts):
        key = zlib.crc32(int(value).to_bytes(8, "little", signed=True), key)
    return key & _MASK32
