"""A tiny random-init SpeechT5 text-to-speech model and HiFi-GAN vocoder, saved like hub
checkpoints, for tests and the CPU benchmark (no machine here reaches a model hub).

`build_tiny_speecht5(path)` writes two folders, `path/tts` (SpeechT5ForTextToSpeech, its
SpeechT5Processor with a character-level sentencepiece model trained here from a small
text) and `path/vocoder` (SpeechT5HifiGan), loadable through the same `from_pretrained`
path as `microsoft/speecht5_tts` and `microsoft/speecht5_hifigan`. The architecture is
the real one (reduction factor 2, 5-layer postnet, 4 x 4-times upsampling, 256 samples
per frame at 16 kHz) with tiny widths.

A random-init stop head says "stop" at about 50% per frame, so every piece would end
after one step. `stop_bias` (added to the head's bias) and `stop_scale` (its weights'
spread) make stopping rare and content-dependent instead, so with a small `maxlenratio`
some pieces stop early and others run to the cap: both paths get exercised. The
vocoder's last layer is scaled so the random waveform has a speech-like level.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

SAMPLING_RATE = 16_000
_CORPUS = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "How vexingly quick daft zebras jump? Sphinx of black quartz, judge my vow; "
    "Jackdaws love my big sphinx of quartz: it's forty-two o'clock. "
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG, WALTZ NYMPH FOR QUICK JIGS VEX BUD."
)
_TTS = {
    "hidden_size": 32,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_layers": 2,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 64,
    "speech_decoder_prenet_units": 32,
    "speech_decoder_postnet_units": 32,
    "num_mel_bins": 20,
    "encoder_max_relative_position": 32,
    # Eval mode turns these off anyway; zero keeps train/eval drift out of the tests.
    # The prenet dropout stays: SpeechT5 applies it even in eval mode.
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "positional_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
}
_VOCODER = {
    "model_in_dim": 20,
    "sampling_rate": SAMPLING_RATE,
    "upsample_initial_channel": 32,
    "upsample_rates": [4, 4, 4, 4],
    "upsample_kernel_sizes": [8, 8, 8, 8],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}


def train_char_spm(text: str = _CORPUS) -> bytes:
    """A character-level sentencepiece model (SpeechT5's kind) trained on `text`.

    Special ids follow SpeechT5's: <s>=0, <pad>=1, </s>=2, <unk>=3.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.split(". ")),
        model_writer=model,
        model_type="char",
        vocab_size=len(set(text)) + 5,
        hard_vocab_limit=False,
        character_coverage=1.0,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        minloglevel=2,
    )
    return model.getvalue()


def _save_processor(path: Path) -> int:
    """Save a SpeechT5Processor to `path`; return the tokenizer's vocabulary size."""
    from transformers import SpeechT5FeatureExtractor, SpeechT5Processor, SpeechT5Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "spm_char.model"
        vocab.write_bytes(train_char_spm())
        tokenizer = SpeechT5Tokenizer(str(vocab))
        extractor = SpeechT5FeatureExtractor(num_mel_bins=_TTS["num_mel_bins"])
        tokenizer.save_pretrained(str(path))
        SpeechT5Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(
            str(path)
        )
        return len(tokenizer)


def build_tiny_speecht5(
    path: str,
    *,
    seed: int = 0,
    stop_bias: float = -5.0,
    stop_scale: float = 0.5,
    level: float = 0.3,
) -> tuple[str, str]:
    """Write a tiny TTS model (`path/tts`) and vocoder (`path/vocoder`); return both folders.

    The same arguments give the same weights. `stop_bias` / `stop_scale` shape when the
    stop head fires (see the module doc); `level` is the rough peak of the waveform.
    """
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    tts_dir, vocoder_dir = Path(path) / "tts", Path(path) / "vocoder"
    tts_dir.mkdir(parents=True, exist_ok=True)
    vocoder_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = _save_processor(tts_dir)
    # A private RNG stream: building a fixture must not reseed the caller's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpeechT5ForTextToSpeech(SpeechT5Config(vocab_size=vocab_size, **_TTS)).eval()
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**_VOCODER)).eval()
        with torch.no_grad():
            head = model.speech_decoder_postnet.prob_out
            head.weight.normal_(0.0, stop_scale)
            head.bias.fill_(stop_bias)
            # Mel frames of a random decoder are tiny; spread them like log-mels.
            model.speech_decoder_postnet.feat_out.weight.mul_(20.0)
            _set_level(vocoder, level, _TTS["num_mel_bins"])
    model.save_pretrained(str(tts_dir))
    vocoder.save_pretrained(str(vocoder_dir))
    return str(tts_dir), str(vocoder_dir)


def _set_level(vocoder, level: float, mel_bins: int) -> None:
    """Re-draw the vocoder's convs with unit gain, then scale the last one for a peak of
    about `level` on a log-mel-like input.

    transformers' init draws conv weights with std 0.01: the random vocoder's output is
    ~1e-8, which every silence and "empty" check would call silence.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(1)
    for module in vocoder.modules():
        if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
            fan_in = module.in_channels * module.kernel_size[0] / module.stride[0]
            module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            module.bias.zero_()
    probe = 2.0 * torch.randn(1, 50, mel_bins, generator=gen)
    conv = vocoder.conv_post
    for _ in range(20):  # tanh comes last: shrink until it is off its plateau
        peak = float(vocoder(probe).abs().max())
        if peak < 0.95:
            break
        conv.weight.mul_(0.1)
    # With zero biases the network is positively homogeneous: scaling the last conv
    # scales what enters the tanh.
    target = float(torch.atanh(torch.tensor(min(level, 0.9))))
    conv.weight.mul_(target / float(torch.atanh(torch.tensor(max(peak, 1e-12)))))
