"""The M-CTC-T network: scalar input affine, GLU conv subsampler, post-norm transformer
layers with relative-position self-attention, linear CTC head.

Module paths reproduce the published checkpoint's state-dict keys
(`mctct.encoder.layers.0.attention.self.query.weight`, `ctc_head.bias`, ...), so its
weights load as they are; everything else here is ours.

Batching: every item gives, at its valid frames, the logits it gives alone. The
reference leaks one thing across padding: its input affine (`x * w + b`) turns padded
feature frames into `b`, and the subsampler's last valid frames read them where a
single run reads the conv's zero padding. Padded frames are zeroed after the affine,
and attention masks padded keys, so nothing else crosses.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.models.mctct.config import MctctConfig

_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "selu": F.selu,
    "silu": F.silu,
    "swish": F.silu,
}


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[batch, frames] bool, True at each item's first `lengths[i]` frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


class ScalarAffine(nn.Module):
    """`x * w + b` with one learned scalar each (what the checkpoint calls its layer norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.singleton_weight = nn.Parameter(torch.ones(1))
        self.singleton_bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.singleton_weight + self.singleton_bias


class GluSubsampler(nn.Module):
    """Zero-pad `kernel // 2` frames each side, one strided conv over time, GLU over channels.

    [batch, frames, features] -> [batch, ceil(frames / stride), hidden] for the
    published kernel 7 / stride 3.
    """

    def __init__(self, config: MctctConfig) -> None:
        super().__init__()
        self.kernel, self.stride = config.conv_kernel[0], config.conv_stride[0]
        self.padding = self.kernel // 2
        # Twice the width: GLU halves it.
        conv = nn.Conv1d(config.input_size, 2 * config.hidden_size, self.kernel, self.stride)
        self.conv_layers = nn.ModuleList([conv])

    def output_frames(self, frames: torch.Tensor | int) -> torch.Tensor | int:
        return (frames + 2 * self.padding - self.kernel) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.transpose(1, 2), (self.padding, self.padding))
        return F.glu(self.conv_layers[0](x), dim=1).transpose(1, 2)


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with a learned bias per head dimension and distance.

    The score of query i for key j is `q_i . k_j + q_i . E[j - i]`, with q already
    divided by sqrt(head_dim) and `E` the `distance_embedding` table, whose middle row is
    distance 0. Distances beyond the table (|j - i| >= max_position_embeddings) get no
    positional term at all, which is what the reference's shift-and-reshape computes.
    """

    def __init__(self, config: MctctConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = config.num_attention_heads, config.attention_head_dim
        inner = self.heads * self.head_dim
        self.query = nn.Linear(config.hidden_size, inner, bias=False)
        self.key = nn.Linear(config.hidden_size, inner, bias=False)
        self.value = nn.Linear(config.hidden_size, inner, bias=False)
        self.distance_embedding = nn.Embedding(
            2 * config.max_position_embeddings - 1, self.head_dim
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [batch, frames, hidden], valid [batch, frames] -> [batch, frames, heads*dim]."""
        batch, frames, _ = x.shape
        q = self._split(self.query(x)) / math.sqrt(self.head_dim)
        k, v = self._split(self.key(x)), self._split(self.value(x))
        bias = self._relative_scores(q).masked_fill(~valid[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return out.transpose(1, 2).reshape(batch, frames, -1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        return x.view(batch, frames, self.heads, self.head_dim).transpose(1, 2)

    def _relative_scores(self, q: torch.Tensor) -> torch.Tensor:
        """[batch, heads, frames(query), frames(key)]: q_i . E[j - i]."""
        batch, heads, frames, _ = q.shape
        table = self.distance_table(frames).to(q.dtype)  # row r: distance r - (frames - 1)
        by_distance = q @ table.T  # [batch, heads, frames, 2 * frames - 1]
        positions = torch.arange(frames, device=q.device)
        rows = positions[None, :] - positions[:, None] + (frames - 1)  # [query, key]
        return by_distance.gather(-1, rows.expand(batch, heads, frames, frames))

    def distance_table(self, frames: int) -> torch.Tensor:
        """[2 * frames - 1, head_dim]: rows for distances -(frames-1)..frames-1, zero
        where a distance lies outside the learned table."""
        learned = self.distance_embedding.weight
        centre, last = (learned.shape[0] - 1) // 2, learned.shape[0] - 1
        first_row, last_row = centre - (frames - 1), centre + (frames - 1)
        before, after = max(0, -first_row), max(0, last_row - last)
        padded = F.pad(learned, (0, 0, before, after))
        start = first_row + before
        return padded[start : start + 2 * frames - 1]


class ProjectAddNorm(nn.Module):
    """`LayerNorm(residual + dense(x))`: the post-norm closing both halves of a layer."""

    def __init__(self, width_in: int, config: MctctConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, config.hidden_size, bias=False)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dense(x))


class Expand(nn.Module):
    """The feed-forward's first half: a bias-free projection and the activation."""

    def __init__(self, config: MctctConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.activation = _ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x))


class EncoderLayer(nn.Module):
    """Attention, add & norm; feed-forward, add & norm."""

    def __init__(self, config: MctctConfig) -> None:
        super().__init__()
        inner = config.num_attention_heads * config.attention_head_dim
        # A dict because the checkpoint names the attention half "self".
        self.attention = nn.ModuleDict(
            {"self": RelativeSelfAttention(config), "output": ProjectAddNorm(inner, config)}
        )
        self.intermediate = Expand(config)
        self.output = ProjectAddNorm(config.intermediate_size, config)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        attended = self.attention["output"](self.attention["self"](x, valid), x)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    """MFSC frames -> hidden states at a third of the frame rate."""

    def __init__(self, config: MctctConfig) -> None:
        super().__init__()
        self.layer_norm = ScalarAffine()
        self.conv = GluSubsampler(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [batch, frames, bins], lengths [batch] -> hidden, output lengths."""
        scaled = self.layer_norm(features)
        # Zero, as the conv's own padding is zero; see the module docstring.
        scaled = scaled * frame_mask(lengths, features.shape[1])[..., None].to(scaled.dtype)
        hidden = self.conv(scaled)
        out_lengths = self.conv.output_frames(lengths)
        valid = frame_mask(out_lengths, hidden.shape[1])
        for layer in self.layers:
            hidden = layer(hidden, valid)
        return hidden, out_lengths


class MctctForCtc(nn.Module):
    """Encoder plus the CTC head; `forward` returns logits and valid frame counts."""

    def __init__(self, config: MctctConfig) -> None:
        super().__init__()
        self.config = config
        # Checkpoint keys start "mctct.encoder."; a dict holds that extra level.
        self.mctct = nn.ModuleDict({"encoder": Encoder(config)})
        self.ctc_head = nn.Linear(config.hidden_size, config.vocab_size)

    @property
    def encoder(self) -> Encoder:
        return self.mctct["encoder"]

    def output_frames(self, feature_frames: int) -> int:
        return int(self.encoder.conv.output_frames(feature_frames))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, out_lengths = self.encoder(features, lengths)
        return self.ctc_head(hidden), out_lengths
