"""SpeechT5's autoregressive spectrogram decoding, batched so that each item comes out as
if it had been decoded alone, plus the masked postnet and HiFi-GAN passes that keep it so.

Why not `SpeechT5ForTextToSpeech.generate_speech`: its decoder prenet applies dropout
even in eval mode (as Tacotron 2 does, for variety), drawing from torch's global RNG and
sharing one mask across the batch, so an item's audio depends on everything decoded
before it in the process, and items of one batch get correlated masks. It also re-runs
the prenet over the whole output so far at every step, and a batched call bounds each
item's length by the *padded* input length.

This loop calls the same modules (text encoder, decoder prenet layers, decoder layers,
postnet, vocoder) in the same order, with these differences:

- dropout masks come from a counter-based hash of (item seed, step, prenet layer, unit):
  the same on any device and in any batch, and cheap to draw for a whole batch at once.
  A unit is kept with probability 1 - p and scaled by 1 / (1 - p), as standard dropout
  does (transformers keeps it with probability p: the same for SpeechT5's p = 0.5);
- the prenet runs on the newest frame only (the others' outputs were already consumed
  through the key/value cache);
- attention is `scaled_dot_product_attention` over our own key/value buffers; the
  cross-attention keys and values are computed once per item;
- each item stops by its own input length: after `minlenratio * tokens / r` steps,
  when its stop probabilities sum to `stop_threshold`, or at `maxlenratio * tokens / r`
  steps (a *runaway*), where r is the reduction factor (frames per step);
- the host learns which items stopped every `sync_every` steps (one device sync), and
  finished items are dropped from the batch when enough of them have piled up;
- the postnet and vocoder run on padded batches, zeroing padded frames after every
  convolution, which is exactly what zero padding does for an item alone.

With the masks off (`dropout=False`) the loop computes what `generate_speech` computes
with its dropout patched out; the tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_M32 = 0xFFFFFFFF
# An integer hash constant below 2**31: x * _MIX < 2**63 for x < 2**32, so the products
# never overflow int64 on any device.
_MIX = 0x45D9F3B
_INITIAL_STEPS = 64


@dataclass(frozen=True)
class DecodeOptions:
    """How decoding stops, and its batching knobs (none of which changes an item's output)."""

    stop_threshold: float = 0.5
    minlenratio: float = 0.0
    maxlenratio: float = 20.0
    dropout: bool = True  # False only to compare with a reference that has it patched out
    sync_every: int = 8  # decoder steps between host syncs
    compact_share: float = 0.125  # drop finished items once they are this share of the batch


@dataclass
class Decoded:
    """One item's spectrogram before the postnet: [steps * reduction_factor, mel bins]."""

    mel: torch.Tensor
    steps: int
    runaway: bool


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (values in [0, 2**32) in, the same range out)."""
    x = (((x >> 16) ^ x) * _MIX) & _M32
    x = (((x >> 16) ^ x) * _MIX) & _M32
    return (x >> 16) ^ x


def keep_masks(
    seeds: torch.Tensor, first_step: int, steps: int, layers: int, units: int, p: float
) -> torch.Tensor:
    """Dropout keep-masks [items, steps, layers, units] for the prenet, from a hash.

    `seeds` is int64 [items, 2]: each item's seed as two 32-bit halves. The mask of one
    (item, step, layer, unit) depends on nothing else.
    """
    device = seeds.device
    base = _mix(_mix(seeds[:, 0] ^ 0x9E3779B9) ^ seeds[:, 1])
    step = torch.arange(first_step, first_step + steps, device=device)
    layer = torch.arange(layers, device=device)
    keys = _mix(((step[:, None] * layers + layer[None, :]) & _M32) ^ 0x85EBCA6B)
    unit = _mix(torch.arange(units, device=device) ^ 0xC2B2AE35)
    h = _mix(_mix(base[:, None, None] ^ keys[None])[..., None] ^ unit)
    return (h >> 8).to(torch.float32) * 2.0**-24 >= p


def split_seeds(seeds: list[int], device: str | torch.device) -> torch.Tensor:
    """Python ints (any size; taken modulo 2**64) as int64 [items, 2] 32-bit halves."""
    halves = [((s >> 32) & _M32, s & _M32) for s in (int(s) % 2**64 for s in seeds)]
    return torch.tensor(halves, dtype=torch.int64, device=device)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[batch, length, hidden] -> [batch, heads, length, hidden / heads]."""
    b, n, h = x.shape
    return x.view(b, n, heads, h // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads * d)


class _Batch:
    """Per-item decoding state; every tensor's first dimension is the active items."""

    _PER_ROW = (
        "cross_mask", "speakers", "seeds", "min_t", "max_t", "prev", "mel",
        "last_stop", "done", "steps", "runaway",
    )  # fmt: skip

    def __init__(self, model, enc, enc_mask, speakers, seeds, min_t, max_t) -> None:
        cfg = model.config
        # Buffers hold the weights' dtype: under autocast, linear layers give bf16/fp16
        # and layer norms fp32, and attention wants one dtype for query, key and value.
        dtype, device = model.dtype, enc.device
        self.heads = cfg.decoder_attention_heads
        layers = model.speecht5.decoder.wrapped_decoder.layers
        b = enc.size(0)
        self.rows = torch.arange(b)  # original index of each active row (CPU)
        self.cross = [
            (
                _heads(layer.encoder_attn.k_proj(enc), self.heads).to(dtype),
                _heads(layer.encoder_attn.v_proj(enc), self.heads).to(dtype),
            )
            for layer in layers
        ]
        self.cross_mask = enc_mask.bool()[:, None, None, :]
        self.speakers = F.normalize(speakers.float()).to(dtype)
        self.seeds, self.min_t, self.max_t = seeds, min_t, max_t
        self.prev = torch.zeros(b, cfg.num_mel_bins, dtype=dtype, device=device)
        shape = (b, self.heads, _INITIAL_STEPS, cfg.hidden_size // self.heads)
        self.kv = [
            (
                torch.zeros(shape, dtype=dtype, device=device),
                torch.zeros(shape, dtype=dtype, device=device),
            )
            for _ in layers
        ]
        mel_shape = (b, _INITIAL_STEPS, cfg.reduction_factor, cfg.num_mel_bins)
        self.mel = torch.zeros(mel_shape, dtype=dtype, device=device)
        self.last_stop = torch.zeros(b, device=device)  # summed stop probabilities, last step
        self.done = torch.zeros(b, dtype=torch.bool, device=device)
        self.steps = torch.zeros(b, dtype=torch.int64, device=device)
        self.runaway = torch.zeros(b, dtype=torch.bool, device=device)

    def ensure_capacity(self, steps: int) -> None:
        """Grow the key/value and spectrogram buffers (doubling) to hold `steps` steps."""
        capacity = self.mel.size(1)
        if steps <= capacity:
            return
        new = max(steps, 2 * capacity)
        self.kv = [(_grow(k, 2, new), _grow(v, 2, new)) for k, v in self.kv]
        self.mel = _grow(self.mel, 1, new)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the rows at `index` (a device tensor of row positions)."""
        self.rows = self.rows[index.cpu()]
        self.cross = [(k[index], v[index]) for k, v in self.cross]
        self.kv = [(k[index], v[index]) for k, v in self.kv]
        for name in self._PER_ROW:
            setattr(self, name, getattr(self, name)[index])


def _grow(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    shape = list(x.shape)
    shape[dim] = size - shape[dim]
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    speakers: torch.Tensor,
    seeds: torch.Tensor,
    options: DecodeOptions,
) -> list[Decoded]:
    """Spectrograms (before the postnet) for a padded batch of token ids, in input order."""
    cfg = model.config
    r = cfg.reduction_factor
    enc = model.speecht5.encoder(
        input_values=input_ids, attention_mask=attention_mask, return_dict=True
    ).last_hidden_state
    tokens = attention_mask.sum(1).tolist()
    positions = model.speecht5.decoder.prenet.encode_positions.pe.size(1)
    # As generate_speech counts them (steps, 1-based), but from each item's own length,
    # and never past the decoder's positional table.
    minlen = [min(int(n * options.minlenratio / r), positions) for n in tokens]
    maxlen = [min(int(n * options.maxlenratio / r), positions) for n in tokens]
    end = [max(1, lo, hi) for lo, hi in zip(minlen, maxlen, strict=True)]
    min_t = torch.tensor(minlen, device=enc.device)
    max_t = torch.tensor(maxlen, device=enc.device)
    batch = _Batch(model, enc, attention_mask, speakers, seeds, min_t, max_t)
    results: dict[int, Decoded] = {}
    t = 0
    while batch.rows.numel():
        horizon = max(end[i] for i in batch.rows.tolist())
        chunk = min(options.sync_every, horizon - t)
        batch.ensure_capacity(t + chunk)
        masks = _chunk_masks(model, batch.seeds, t, chunk, options)
        for k in range(chunk):
            _step(model, batch, t, None if masks is None else masks[:, k])
            _update_stops(batch, t + 1, options.stop_threshold)
            t += 1
        _collect(batch, results, r, options.compact_share)
    return [results[i] for i in range(enc.size(0))]


def _chunk_masks(model, seeds, t: int, steps: int, options: DecodeOptions):
    if not options.dropout:
        return None
    prenet = model.speecht5.decoder.prenet
    p = float(model.config.speech_decoder_prenet_dropout)
    units = prenet.layers[0].out_features
    keep = keep_masks(seeds, t, steps, len(prenet.layers), units, p)
    return keep.to(prenet.layers[0].weight.dtype) / (1.0 - p)


def _step(model, batch: _Batch, t: int, masks: torch.Tensor | None) -> None:
    """One decoder step for every active row: writes frame group `t` and its stop state."""
    cfg = model.config
    prenet = model.speecht5.decoder.prenet
    x = batch.prev
    for i, layer in enumerate(prenet.layers):
        x = F.relu(layer(x))
        if masks is not None:
            x = x * masks[:, i]
    position = prenet.encode_positions.pe[0, t].to(x.dtype)
    x = prenet.final_layer(x) + prenet.encode_positions.alpha * position
    x = F.relu(prenet.speaker_embeds_layer(torch.cat([x, batch.speakers.to(x.dtype)], dim=-1)))
    h = x[:, None, :]
    layers = model.speecht5.decoder.wrapped_decoder.layers
    for layer, (k_buf, v_buf), (ck, cv) in zip(layers, batch.kv, batch.cross, strict=True):
        attn = layer.self_attn
        k_buf[:, :, t] = _heads(attn.k_proj(h), batch.heads)[:, :, 0]
        v_buf[:, :, t] = _heads(attn.v_proj(h), batch.heads)[:, :, 0]
        q = _heads(attn.q_proj(h), batch.heads).to(k_buf.dtype)
        out = F.scaled_dot_product_attention(q, k_buf[:, :, : t + 1], v_buf[:, :, : t + 1])
        h = layer.self_attn_layer_norm(h + attn.out_proj(_merge(out)))
        cross = layer.encoder_attn
        q = _heads(cross.q_proj(h), batch.heads).to(ck.dtype)
        out = F.scaled_dot_product_attention(q, ck, cv, attn_mask=batch.cross_mask)
        h = layer.encoder_attn_layer_norm(h + cross.out_proj(_merge(out)))
        h = layer.final_layer_norm(h + layer.feed_forward(h))
    h = h[:, 0]
    postnet = model.speech_decoder_postnet
    spectrum = postnet.feat_out(h).view(-1, cfg.reduction_factor, cfg.num_mel_bins)
    batch.mel[:, t] = spectrum
    batch.prev = spectrum[:, -1]
    batch.last_stop = torch.sigmoid(postnet.prob_out(h).float()).sum(-1)


def _update_stops(batch: _Batch, idx: int, threshold: float) -> None:
    """Mark rows that stop at 1-based step `idx` (generate_speech's rule, per item)."""
    meet = batch.last_stop >= threshold
    stop = (idx >= batch.min_t) & (meet | (idx >= batch.max_t))
    new = stop & ~batch.done
    batch.steps = torch.where(new, idx, batch.steps)
    batch.runaway = torch.where(new, ~meet, batch.runaway)
    batch.done = batch.done | stop


def _collect(batch: _Batch, results: dict[int, Decoded], r: int, share: float) -> None:
    """Move finished rows to `results` (one host sync) once enough of them piled up."""
    done = batch.done.tolist()
    finished = sum(done)
    if finished == 0 or (finished < len(done) and finished < share * len(done)):
        return
    steps, runaway = batch.steps.tolist(), batch.runaway.tolist()
    for pos, row in enumerate(batch.rows.tolist()):
        if done[pos]:
            n = steps[pos]
            mel = batch.mel[pos, :n].reshape(n * r, -1).clone()
            results[row] = Decoded(mel=mel, steps=n, runaway=bool(runaway[pos]))
    keep = [pos for pos, d in enumerate(done) if not d]
    batch.keep(torch.tensor(keep, dtype=torch.int64, device=batch.done.device))


def postnet(model, mels: list[torch.Tensor]) -> list[torch.Tensor]:
    """SpeechT5's postnet on a padded batch, each item as if alone (padding zeroed)."""
    padded, mask = _pad(mels)
    x = padded.transpose(1, 2)
    for layer in model.speech_decoder_postnet.layers:
        x = layer.batch_norm(layer.conv(x))
        if layer.activation is not None:
            x = layer.activation(x)
        x = x * mask
    out = padded + x.transpose(1, 2)
    return [out[i, : len(m)] for i, m in enumerate(mels)]


def vocode(vocoder, mels: list[torch.Tensor]) -> list[torch.Tensor]:
    """HiFi-GAN waveforms [frames * hop] for a padded batch, each item as if alone."""
    cfg = vocoder.config
    padded, mask = _pad(mels)
    if cfg.normalize_before:
        padded = (padded - vocoder.mean) / vocoder.scale
    x = vocoder.conv_pre(padded.transpose(1, 2) * mask) * mask
    kernels = len(cfg.resblock_kernel_sizes)
    for i, upsampler in enumerate(vocoder.upsampler):
        x = F.leaky_relu(x, cfg.leaky_relu_slope)
        mask = mask.repeat_interleave(cfg.upsample_rates[i], dim=-1)
        x = upsampler(x) * mask
        blocks = vocoder.resblocks[i * kernels : (i + 1) * kernels]
        x = sum(_resblock(block, x, mask) for block in blocks) / kernels
    x = torch.tanh(vocoder.conv_post(F.leaky_relu(x)))[:, 0]
    hop = x.size(1) // padded.size(1)
    return [x[i, : len(m) * hop] for i, m in enumerate(mels)]


def _resblock(block, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for conv1, conv2 in zip(block.convs1, block.convs2, strict=True):
        h = conv1(F.leaky_relu(x, block.leaky_relu_slope)) * mask
        h = conv2(F.leaky_relu(h, block.leaky_relu_slope)) * mask
        x = x + h
    return x


def _pad(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[items, frames, bins] zero-padded, and a [items, 1, frames] mask of real frames."""
    padded = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
    lengths = torch.tensor([len(m) for m in mels], device=padded.device)
    frames = torch.arange(padded.size(1), device=padded.device)
    mask = (frames[None, :] < lengths[:, None])[:, None, :].to(padded.dtype)
    return padded, mask
