"""Tiny random-init CTC models of the real architecture classes, saved like a hub checkpoint.

The demo job and the tests cannot reach a model hub, so they build a folder with
`config.json`, `model.safetensors`, `vocab.json`, the tokenizer and feature extractor
configs, and load it through the same `from_pretrained` path a hub id takes.

The models use the real 7-layer convolutional feature encoder (400-sample receptive
field, 320 samples per logit frame at 16 kHz, as in wav2vec2-base) with tiny widths, so
chunking and timestamp arithmetic see real-sized numbers. A random-init head gives
near-uniform logits, so the head is re-drawn larger (decisive argmax, robust to float
noise between batched and single runs) with biases that make blanks and word delimiters
common: transcripts come out non-empty, varied and word-like, deterministic per seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.testing.threads import one_thread

if TYPE_CHECKING:
    import numpy as np

Arch = Literal["wav2vec2", "wav2vec2_groupnorm", "hubert", "wavlm", "data2vec_audio"]

LETTERS = "abcdefghijklmnopqrstuvwxyz'"
PAD, UNK, DELIMITER = "<pad>", "<unk>", "|"
SAMPLING_RATE = 16_000

# The real wav2vec2 feature encoder shape; only the widths are tiny.
CONV = {
    "conv_dim": (32,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
}
ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    # No dropout or SpecAugment anywhere, so eval/train drift cannot hide in a test.
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "layerdrop": 0.0,
    "mask_time_prob": 0.0,
}
# Group norm in the first conv layer (wav2vec2-base / hubert-base / wavlm-base style) or
# layer norm in every conv layer with the pre-norm encoder (wav2vec2-large-lv60 style).
GROUP_NORM = {"feat_extract_norm": "group", "do_stable_layer_norm": False}
LAYER_NORM = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}


def _model_class_and_config(arch: Arch, vocab_size: int, pad_id: int):
    import transformers as tf

    common = {**CONV, **ENCODER, "vocab_size": vocab_size, "pad_token_id": pad_id}
    if arch == "wav2vec2":
        return tf.Wav2Vec2ForCTC, tf.Wav2Vec2Config(**common, **LAYER_NORM)
    if arch == "wav2vec2_groupnorm":
        return tf.Wav2Vec2ForCTC, tf.Wav2Vec2Config(**common, **GROUP_NORM)
    if arch == "hubert":
        return tf.HubertForCTC, tf.HubertConfig(**common, **GROUP_NORM)
    if arch == "wavlm":
        return tf.WavLMForCTC, tf.WavLMConfig(
            **common, **GROUP_NORM, num_buckets=32, max_bucket_distance=64
        )
    if arch == "data2vec_audio":
        # data2vec-audio always uses layer-norm conv layers; its positional embedding is a
        # stack of small convs instead of one wide one.
        cfg = {**common, "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5}
        return tf.Data2VecAudioForCTC, tf.Data2VecAudioConfig(**cfg)
    raise ValueError(f"unknown tiny CTC architecture {arch!r}; expected one of {Arch.__args__}")


def _vocab(chars: str) -> dict[str, int]:
    tokens = [PAD, UNK, DELIMITER] + [
        c for c in dict.fromkeys(chars) if c not in (PAD, UNK, DELIMITER)
    ]
    return {tok: i for i, tok in enumerate(tokens)}


def _calibration_audio(seed: int) -> np.ndarray:
    """A few seconds of varied synthetic audio (chirp, tones, noise) to calibrate the head."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(3 * SAMPLING_RATE) / SAMPLING_RATE
    chirp = np.sin(2 * np.pi * (100 + 600 * t) * t)
    tones = np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)
    return (0.4 * chirp + 0.3 * tones + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def _make_head_decisive(model, vocab: dict[str, int], seed: int) -> None:
    """Redraw the CTC head so argmax is decisive and follows the input.

    A random encoder's frames share a large common component, so a random head maps
    nearly every frame to the same letter. Whitening the head's input with statistics
    from a calibration signal (mean and spread per hidden unit) makes the argmax depend
    on what differs between frames; a larger weight scale makes it decisive, so float
    noise between a batched and a single run cannot flip it.
    """
    import torch

    head = model.lm_head
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    with torch.no_grad(), one_thread():  # the same sums whatever threads the caller set
        model(torch.from_numpy(_calibration_audio(seed))[None])
    hook.remove()
    hidden = captured[0].reshape(-1, head.in_features)
    mean, spread = hidden.mean(0), hidden.std(0) + 1e-3

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        weight = torch.randn(head.weight.shape, generator=gen) * (3.0 / head.in_features**0.5)
        weight = weight / spread  # whiten the input per hidden unit
        bias = -(weight @ mean)  # ...and centre it
        bias[vocab[PAD]] += 6.5  # about half the frames blank, as in real CTC output
        bias[vocab[DELIMITER]] += 4.0  # words of a few letters
        bias[vocab[UNK]] -= 8.0  # keep "<unk>" out of transcripts
        head.weight.copy_(weight)
        head.bias.copy_(bias)


def _save_processor(path: Path, vocab: dict[str, int], group_norm: bool) -> None:
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    vocab_file = path / "vocab.json"
    vocab_file.write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file),
        unk_token=UNK,
        pad_token=PAD,
        word_delimiter_token=DELIMITER,
        bos_token=None,
        eos_token=None,
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        # The real wav2vec2-base extractor asks for no attention mask (its group-norm
        # model was trained on zero-padded batches); layer-norm checkpoints do.
        return_attention_mask=not group_norm,
    )
    # Each part also in its own file, as hub checkpoints have them (preprocessor_config.json
    # and the tokenizer files), so older transformers releases load the folder too.
    extractor.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(path))


def build_tiny_ctc(
    path: str,
    *,
    arch: Arch = "wav2vec2",
    seed: int = 0,
    vocab: str = LETTERS,
) -> str:
    """Write a tiny random-init CTC checkpoint of `arch` to the folder `path`; return `path`.

    `vocab` is the characters the model can emit besides "<pad>" (id 0, the CTC blank),
    "<unk>" and the word delimiter "|". The same `seed` gives the same weights.
    """
    import torch

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    token_ids = _vocab(vocab)
    model_cls, config = _model_class_and_config(arch, len(token_ids), token_ids[PAD])
    # A private RNG stream: building a fixture must not reseed the caller's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    _make_head_decisive(model, token_ids, seed)
    model.save_pretrained(str(out))
    _save_processor(
        out, token_ids, group_norm=getattr(config, "feat_extract_norm", "layer") == "group"
    )
    return str(out)
