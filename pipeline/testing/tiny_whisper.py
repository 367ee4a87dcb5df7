"""A tiny random-init Whisper (WhisperForConditionalGeneration) saved like a hub checkpoint.

The tests and the demo cannot reach a model hub, so `build_tiny_whisper` writes a folder
with `config.json`, `generation_config.json`, `model.safetensors`, the feature extractor
and an offline byte-level BPE tokenizer, loaded through the same `from_pretrained` path
a hub id takes.

What is real-sized: the 80-bin log-mel front end (30 s windows of 3,000 frames), the
1,500 encoder positions, 448 decoder positions, and Whisper's special-token layout:
`<|endoftext|>`, `<|startoftranscript|>`, one token per language, `<|translate|>`,
`<|transcribe|>`, `<|startoflm|>`, `<|startofprev|>`, `<|nospeech|>`, `<|notimestamps|>`
and the 1,501 timestamps `<|0.00|>`..`<|30.00|>`, in that order after the text tokens
(transformers relies on `no_speech = no_timestamps - 1` and `timestamp_begin =
no_timestamps + 1`). The generation config carries what transformers' Whisper
`generate` reads (`lang_to_id`, `task_to_id`, `no_timestamps_token_id`,
`alignment_heads`, suppress lists, ...). Only the widths and depths are tiny.

A random-init Whisper says the same thing for every input and loops on one token until
`max_new_tokens` (its encoder output is mostly positional embedding, and a tied head
repeats the previous token). `_shape_weights` rescales a few weight groups and gives
the head a per-token bias, so transcripts are varied, audio-dependent, end after a few
words, and timestamped decoding makes segments; the logits are spread enough that
float noise between a batched and a single run does not flip an argmax (median gap
between the two best text tokens ~0.4).
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLING_RATE = 16_000
LANGUAGES = ("en", "de", "fr", "es", "it", "zh")
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps
_TRAINING_WORDS = """the a one two three four five red blue green yellow house river stone
    light morning evening quiet loud small large bird window garden city paper music road
    winter summer table water cold warm old new happy tired walks runs sings reads opens
    closes finds carries under over near behind slowly quickly today again never always
    little bright dark friend teacher sister brother . , ? !"""


def special_tokens(languages: tuple[str, ...] = LANGUAGES) -> list[str]:
    """Whisper's special tokens after `<|endoftext|>`, in the real checkpoints' order."""
    return [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in languages),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def timestamp_tokens() -> list[str]:
    return ["<|%.2f|>" % (i * 0.02) for i in range(N_TIMESTAMPS)]


def _train_bpe(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE trained offline on a small word list: every byte is a token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    lines = [" ".join(_TRAINING_WORDS.split()[i:]) for i in range(40)]
    tok.train_from_iterator(lines, trainer)
    data = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["merges"]]
    return dict(data["vocab"]), merges


def whisper_tokenizer(languages: tuple[str, ...] = LANGUAGES, text_tokens: int | None = None):
    """A byte-level BPE WhisperTokenizer with Whisper's special tokens, built offline.

    `text_tokens`: how many ids come before `<|endoftext|>` (50257 in the hub checkpoints);
    the trained vocabulary is padded with filler words to reach it. Default: no padding.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    vocab, merges = _train_bpe(vocab_size=400)
    if text_tokens is not None:
        if text_tokens < len(vocab):
            raise ValueError(f"text_tokens must be at least {len(vocab)}")
        vocab.update({f"Ġw{i}": i for i in range(len(vocab), text_tokens)})
        if len(vocab) != text_tokens or sorted(vocab.values()) != list(range(text_tokens)):
            raise RuntimeError("filler tokens collided with trained ones")
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>")
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                AddedToken(t, special=True, normalized=False) for t in special_tokens(languages)
            ]
        }
    )
    # Timestamps are plain added tokens in the hub checkpoints (decode drops them by pattern).
    tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in timestamp_tokens()]
    )
    return tokenizer


def token_ids(tokenizer, languages: tuple[str, ...] = LANGUAGES) -> dict[str, int]:
    """Ids of the special tokens by name, checked to be contiguous after <|endoftext|>."""
    names = ["<|endoftext|>", *special_tokens(languages)]
    ids = {n: tokenizer.convert_tokens_to_ids(n) for n in names}
    first = ids["<|endoftext|>"]
    if [ids[n] for n in names] != list(range(first, first + len(names))):
        raise RuntimeError(f"special tokens are not contiguous: {ids}")
    ts = tokenizer.convert_tokens_to_ids(timestamp_tokens())
    if ts != list(range(first + len(names), first + len(names) + N_TIMESTAMPS)):
        raise RuntimeError("timestamp tokens must follow <|notimestamps|> contiguously")
    return ids


def whisper_generation_config(tokenizer, languages: tuple[str, ...], decoder_layers: int):
    """What transformers' Whisper `generate` reads, for a tokenizer from `whisper_tokenizer`."""
    from transformers import GenerationConfig

    ids = token_ids(tokenizer, languages)
    space_id = tokenizer.convert_tokens_to_ids("Ġ")
    layers = decoder_layers
    eot = ids["<|endoftext|>"]
    suppress = [
        ids[t]
        for t in (
            "<|startoftranscript|>",
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nospeech|>",
        )
    ]
    return GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=[space_id, eot],
        suppress_tokens=suppress,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=True,
        lang_to_id={f"<|{c}|>": ids[f"<|{c}|>"] for c in languages},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        alignment_heads=[[layers - 1, 0], [layers - 1, 2], [layers - 2, 1]],
        max_initial_timestamp_index=50,
        return_timestamps=False,
        # As the hub checkpoints have it: with neither language nor task given,
        # transformers' `generate` detects the language and transcribes (without it, it
        # would leave the task token out of the prompt).
        forced_decoder_ids=[[1, None], [2, ids["<|transcribe|>"]]],
    )


def _shape_weights(model, ids: dict[str, int], n_text: int, seed: int) -> None:
    """Make a random-init Whisper say varied, bounded, audio-dependent things.

    - The encoder's convolutions are scaled up, so the audio, not the positional
      embedding, dominates what the encoder outputs.
    - The decoder's cross-attention is sharpened and amplified, and its positional
      embedding strengthened, so the next token depends on the audio and the position
      rather than only on the previous token (which makes a tied head repeat itself).
    - The head (`LN(x) @ E.T`, E the tied embedding) gets a per-token bias: dimension 0 of
      the final layer norm is made constant (weight 0, bias `scale`), so `E[v, 0] * scale`
      adds to token v's logit. Single-byte tokens are made rarer than merged ones (fewer
      broken UTF-8 sequences), specials never win, `<|endoftext|>` ends transcripts after
      a few words, and timestamps are unlikely one by one, likely together, and less
      likely the later they are: timestamped decoding makes segments of a few seconds.
    """
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    encoder, decoder = model.model.encoder, model.model.decoder
    emb = decoder.embed_tokens.weight
    vocab, width = emb.shape
    eot = ids["<|endoftext|>"]
    ts_begin = ids["<|notimestamps|>"] + 1
    bias = torch.zeros(vocab)
    bias[:256] = -2.5  # single bytes
    bias[n_text:] = -30.0  # specials (languages stay comparable with each other)
    bias[eot] = 1.5
    steps = torch.arange(vocab - ts_begin, dtype=torch.float32)
    bias[ts_begin:] = -2.5 - 0.005 * steps
    scale = 10.0
    with torch.no_grad():
        encoder.conv1.weight.mul_(10.0)
        encoder.conv2.weight.mul_(10.0)
        for layer in decoder.layers:
            layer.encoder_attn.q_proj.weight.mul_(20.0)
            layer.encoder_attn.k_proj.weight.mul_(20.0)
            layer.encoder_attn.out_proj.weight.mul_(100.0)
        decoder.embed_positions.weight.mul_(50.0)
        emb.copy_(torch.randn(vocab, width, generator=gen) * (1.5 / width**0.5))
        emb[:, 0] = bias / scale
        decoder.layer_norm.weight[0] = 0.0
        decoder.layer_norm.bias[0] = scale


def build_tiny_whisper(
    path: str,
    *,
    seed: int = 0,
    languages: tuple[str, ...] = LANGUAGES,
    d_model: int = 64,
    layers: int = 2,
) -> str:
    """Write a tiny random-init Whisper checkpoint (model + processor) to `path`; return it.

    The same `seed` gives the same weights and tokenizer.
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    tokenizer = whisper_tokenizer(languages)
    ids = token_ids(tokenizer, languages)
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        median_filter_width=7,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    # A private RNG stream: building a fixture must not reseed the caller's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()
    _shape_weights(model, ids, n_text=eot, seed=seed)
    return save_whisper(path, model, tokenizer, languages)


def save_whisper(path: str, model, tokenizer, languages: tuple[str, ...] = LANGUAGES) -> str:
    """Save `model` with its generation config, feature extractor and tokenizer like a hub
    checkpoint (each part also in its own file, as hub checkpoints have them)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = whisper_generation_config(
        tokenizer, languages, model.config.decoder_layers
    )
    model.save_pretrained(str(out))
    extractor = WhisperFeatureExtractor(
        feature_size=model.config.num_mel_bins, sampling_rate=SAMPLING_RATE
    )
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(out))
    extractor.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return str(out)
