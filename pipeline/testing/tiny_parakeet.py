"""Tiny random-init Parakeet CTC checkpoints (`ParakeetForCTC`), saved like a hub one.

`build_tiny_parakeet` writes what `ParakeetForCTC.save_pretrained` +
`ParakeetProcessor.save_pretrained` write for `nvidia/parakeet-ctc-*`: `config.json`
(`model_type: parakeet_ctc`), `model.safetensors`, `preprocessor_config.json` (the real
80-bin log-mel front end, 160-sample hop) and a `ParakeetTokenizer` (`tokenizer.json`),
so the folder loads through `AutoModelForCTC` / `AutoProcessor` / `AutoTokenizer` and
`transformers.pipeline` exactly as a hub id does.

The encoder keeps the real front end shape (three stride-2 subsampling convs: 8x, one
logit frame per 1,280 samples, 80 ms) and a real conformer block layout with tiny
widths. The tokenizer is character level but built like the real SentencePiece one: a
`tokenizers` BPE model without merges, a Metaspace pre-tokenizer/decoder ("▁" starts a
word) and the CTC blank as the last id, named `<pad>` (the real checkpoints' layout:
`pad_token_id` = vocab_size - 1).

Weights are redrawn so that a padded frame leaking into a valid one would show: nonzero
biases everywhere (a zero-bias conv maps zero padding to zero), non-trivial batch-norm
statistics, and a CTC head whitened on calibration audio so its argmax is decisive and
follows the input (see `pipeline/testing/tiny_ctc.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.testing.threads import one_thread

BLANK, UNK, SPACE = "<pad>", "<unk>", "▁"
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
SAMPLING_RATE = 16_000

TINY_ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_kernel_size": 9,
    "subsampling_factor": 8,
    "subsampling_conv_channels": 8,
    "num_mel_bins": 80,
    # No dropout anywhere, so eval/train drift cannot hide in a test.
    "dropout": 0.0,
    "dropout_positions": 0.0,
    "layerdrop": 0.0,
    "activation_dropout": 0.0,
    "attention_dropout": 0.0,
}


def vocabulary(chars: str = LETTERS) -> dict[str, int]:
    """`<unk>` 0, the word marker, the characters, then the blank `<pad>` last."""
    tokens = [UNK, SPACE] + [c for c in dict.fromkeys(chars) if c not in (UNK, SPACE, BLANK)]
    return {t: i for i, t in enumerate([*tokens, BLANK])}


def _tokenizer(vocab: dict[str, int]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import ParakeetTokenizer

    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always")
    return ParakeetTokenizer(tokenizer_object=backend, unk_token=UNK, pad_token=BLANK)


def _redraw(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.startswith("ctc_head"):
                continue  # drawn by `_decisive_head`
            if name.endswith("bias") or name.endswith(("bias_u", "bias_v")):
                p.copy_(0.2 * noise)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))


def _tone_clip(seed: int) -> np.ndarray:
    """Two seconds of a random chirp with gated noise (what the tests feed the model)."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SAMPLING_RATE) / SAMPLING_RATE
    f0, sweep = rng.uniform(80, 600), rng.uniform(-150, 400)
    x = rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * (f0 + sweep * t) * t)
    gate = np.sin(2 * np.pi * rng.uniform(0.5, 4) * t) > 0
    x += rng.uniform(0.0, 0.3) * rng.standard_normal(t.size) * gate
    return x.astype(np.float32)


def _decisive_head(model, extractor, vocab: dict[str, int], seed: int) -> None:
    """Whiten the head's input on calibration audio; large scale; frequent blanks/spaces."""
    from pipeline.testing import tiny_ctc, tiny_mctct

    head = model.ctc_head  # a kernel-1 Conv1d: weight [vocab, hidden, 1]
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, a: captured.append(a[0][0].detach()))
    # Speech-like audio and tones/chirps/noise: the statistics must cover both kinds of
    # test signal, or the head's centring favours one letter on the other kind.
    clips = [tiny_mctct.calibration_audio(seed), tiny_ctc._calibration_audio(seed)]
    for audio in clips + [_tone_clip(seed * 100 + i) for i in range(8)]:
        inputs = extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        with torch.inference_mode(), one_thread():  # the same sums whatever threads were set
            model(**inputs)
    hook.remove()
    hidden = torch.cat(captured)
    mean, spread = hidden.mean(0), hidden.std(0) + 1e-3
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        weight = torch.randn(head.weight.shape[:2], generator=gen) * (3.0 / hidden.shape[1] ** 0.5)
        weight = weight / spread
        bias = -(weight @ mean)
        bias[vocab[BLANK]] += 3.0  # fewer frames than wav2vec2 (80 ms each): blank less often
        bias[vocab[SPACE]] += 2.5
        bias[vocab[UNK]] -= 10.0
        head.weight.copy_(weight[..., None])
        head.bias.copy_(bias)


def build_tiny_parakeet(path: str, *, seed: int = 0, chars: str = LETTERS) -> str:
    """Write a tiny random-init Parakeet CTC checkpoint to the folder `path`; return `path`.

    The same `seed` gives the same weights.
    """
    from transformers import (
        ParakeetCTCConfig,
        ParakeetFeatureExtractor,
        ParakeetForCTC,
        ParakeetProcessor,
    )

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(chars)
    config = ParakeetCTCConfig(
        vocab_size=len(vocab), pad_token_id=vocab[BLANK], encoder_config=dict(TINY_ENCODER)
    )
    extractor = ParakeetFeatureExtractor(sampling_rate=SAMPLING_RATE)
    # A private RNG stream: building a fixture must not reseed the caller's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ParakeetForCTC(config).eval()
    _redraw(model, seed)
    _decisive_head(model, extractor, vocab, seed)
    model.save_pretrained(str(out))
    tokenizer = _tokenizer(vocab)
    tokenizer.save_pretrained(str(out))
    extractor.save_pretrained(str(out))
    ParakeetProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(out))
    return str(out)
