"""Word timestamps: cross-attention of the alignment heads, aligned by dynamic time warping.

OpenAI's `find_alignment`: the window's text tokens are run teacher-forced after
`<|startoftranscript|> <|lang|> <|task|> <|notimestamps|>` and before `<|endoftext|>`;
the cross-attention of the checkpoint's alignment heads (`generation_config.
alignment_heads`) over the window's audio frames is normalised per frame across tokens,
median-filtered in time, averaged over heads, and a monotonic path through it (DTW)
gives each token the time of the first audio frame it is aligned with. Row k is the
query that predicts text token k, so word w made of tokens a..b spans times
[row a, row b + 1]: the same boundaries OpenAI's `add_word_timestamps` and transformers'
ASR pipeline (`return_timestamps="word"`) take.

Why not `generate(..., return_token_timestamps=True)`: it switches the model to eager
attention and leaves it there (every later batch, encoder included, runs ~8x slower),
and it keeps the cross-attention of every layer and head at every decoding step. Here
one extra decoder pass per window, over tokens already decoded with SDPA, runs in eager
attention inside `eager_attention`, which puts the previous implementation back even
when the pass raises; and only a few windows' attention exist at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pipeline.models.whisper.load import WhisperModel

ALIGN_ROWS = 8  # windows per teacher-forced pass (its attention is [rows, heads, len, 1500])
TIME_PRECISION = 0.02  # seconds per encoder position


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run the block with eager attention (needed for attention weights), then restore."""
    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        yield
    finally:
        model.config._attn_implementation = previous


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of odd `width` along the last dimension (reflect-padded),
    as transformers' and OpenAI's Whisper code filter attention."""
    pad = width // 2
    if width <= 1 or x.shape[-1] <= pad:
        return x
    padded = torch.nn.functional.pad(x, (pad, pad), mode="reflect")  # x: [heads, rows, cols]
    return padded.unfold(-1, width, 1).sort()[0][..., pad]


def dtw(cost_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotonic path through [rows, cols]: (row indices, col indices).

    transformers' `_dynamic_time_warping` (same float32 accumulation, same tie-breaking),
    filled one anti-diagonal at a time instead of cell by cell.
    """
    x = np.asarray(cost_matrix, dtype=np.float64)
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = -np.ones((n + 1, m + 1), dtype=np.float32)
    cost[0, 0] = 0
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        take0 = (c0 < c1) & (c0 < c2)
        take1 = ~take0 & (c1 < c0) & (c1 < c2)
        best = np.where(take0, c0, np.where(take1, c1, c2))
        cost[i, j] = x[i - 1, j - 1] + best.astype(np.float64)
        trace[i, j] = np.where(take0, 0, np.where(take1, 1, 2))
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    rows, cols = [], []
    while i > 0 or j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def boundary_times(weights: torch.Tensor, filter_width: int) -> np.ndarray:
    """Seconds of the rows' first aligned frames, from attention [heads, rows, frames]."""
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    matrix = median_filter((weights - mean) / std, filter_width).mean(dim=0)
    rows, cols = dtw(-matrix.cpu().double().numpy())
    jumps = np.pad(np.diff(rows), (1, 0), constant_values=1).astype(bool)
    return cols[jumps] * TIME_PRECISION


def align_windows(
    wm: WhisperModel,
    encoded: torch.Tensor,
    sot_sequences: list[list[int]],
    texts: list[list[int]],
    frames: list[int],
) -> list[np.ndarray]:
    """For each window, len(text) + 1 boundary times in seconds from the window's start.

    `sot_sequences[i]`: `<|startoftranscript|>` [+ language and task]; `texts[i]`: the
    window's text token ids (non-empty); `frames[i]`: log-mel frames of audio in it.
    """
    from transformers.modeling_outputs import BaseModelOutput

    t = wm.tokens
    width = int(getattr(wm.model.config, "median_filter_width", 7))
    seqs = [
        [*sot, t.no_timestamps, *text, t.eot]
        for sot, text in zip(sot_sequences, texts, strict=True)
    ]
    times: list[np.ndarray] = []
    for s in range(0, len(seqs), ALIGN_ROWS):
        chunk = seqs[s : s + ALIGN_ROWS]
        longest = max(map(len, chunk))
        # Right padding is invisible to the rows that matter: the decoder is causal.
        ids = torch.tensor([q + [t.eot] * (longest - len(q)) for q in chunk], device=encoded.device)
        with torch.inference_mode(), eager_attention(wm.model):
            out = wm.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded[s : s + ALIGN_ROWS]),
                decoder_input_ids=ids,
                output_attentions=True,
                use_cache=False,
            )
        heads = torch.stack(
            [out.cross_attentions[layer][:, h] for layer, h in wm.alignment_heads], 1
        )
        for k in range(len(chunk)):
            first, n = len(sot_sequences[s + k]), len(texts[s + k])
            cols = max(frames[s + k] // wm.input_stride, 1)
            weights = heads[k, :, first : first + n + 1, :cols].float()
            times.append(boundary_times(weights, width))
    return times
