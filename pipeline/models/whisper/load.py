"""Loading a Whisper checkpoint, and the adapter the decoding code calls.

`load_whisper` resolves the spec's model (hub id, local folder or object-storage prefix,
through `pipeline.models.hub`), loads `WhisperForConditionalGeneration`
with SDPA attention in the spec's dtype, its feature extractor and tokenizer, and reads
the special-token layout from the generation config, refusing checkpoints whose
generation config is too old to say it (no `no_timestamps_token_id`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import ModelLoadError
from pipeline.kinds.whisper import WhisperTaskSpec
from pipeline.models.device import pick_dtype
from pipeline.models.hub import Source, pretrained, processor, resolve_task
from pipeline.spec import StorageOptions

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Scripts written without spaces between words: words are unicode pieces there.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of Whisper's special tokens in one checkpoint."""

    eot: int  # <|endoftext|>, also the pad token
    sot: int  # <|startoftranscript|>
    no_timestamps: int
    timestamp_begin: int  # <|0.00|>; every id from here on is a timestamp
    no_speech: int | None  # <|nospeech|> / <|nocaptions|>
    prev: int | None  # <|startofprev|>, opens a prompt
    translate: int | None
    transcribe: int | None
    languages: dict[str, int] = field(default_factory=dict)  # "en" -> id of <|en|>

    def language_code(self, token: int) -> str:
        for code, tid in self.languages.items():
            if tid == token:
                return code
        raise KeyError(f"token {token} is not a language token")


@dataclass
class WhisperModel:
    """A loaded Whisper checkpoint and what decoding needs to know about it."""

    name: str  # the model URI as given in the spec (recorded in the output)
    model: Any  # WhisperForConditionalGeneration in eval mode
    extractor: Any  # WhisperFeatureExtractor
    tokenizer: Any
    tokens: SpecialTokens
    device: str
    dtype: torch.dtype
    multilingual: bool
    alignment_heads: list[tuple[int, int]]
    max_target_positions: int
    window_frames: int  # log-mel frames per 30 s window (3000)
    input_stride: int  # log-mel frames per encoder position (2)

    @property
    def sampling_rate(self) -> int:
        return int(self.extractor.sampling_rate)

    @property
    def min_samples(self) -> int:
        """Fewer samples than one analysis window (n_fft) give no log-mel frame."""
        return int(self.extractor.n_fft)

    def cost(self, samples: int) -> int:
        return samples

    @property
    def hop_length(self) -> int:
        return int(self.extractor.hop_length)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder hidden states [batch, 1500, d_model] of log-mel windows [batch, mels, 3000]."""
        import torch

        with torch.inference_mode():
            return self.model.model.encoder(features.to(self.dtype)).last_hidden_state

    def next_token_logits(self, encoded: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Float32 logits [batch, vocab] of the token after `prefix` [batch, n] (no cache)."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        with torch.inference_mode():
            out = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                decoder_input_ids=prefix,
                use_cache=False,
            )
        return out.logits[:, -1].float()


def load_whisper(spec: WhisperTaskSpec, storage: StorageOptions, device: str) -> WhisperModel:
    """Resolve and load `spec.model` as a `WhisperModel` on `device`."""
    source = resolve_task(spec, storage)
    dtype = pick_dtype(spec.dtype, device)
    model = _load_model(source, dtype).to(device).eval()
    extractor, tokenizer = _load_processor(source)
    gen = model.generation_config
    tokens = _special_tokens(spec.model, gen, tokenizer)
    multilingual = bool(getattr(gen, "is_multilingual", bool(tokens.languages)))
    loaded = WhisperModel(
        name=spec.model,
        model=model,
        extractor=extractor,
        tokenizer=tokenizer,
        tokens=tokens,
        device=device,
        dtype=dtype,
        multilingual=multilingual and bool(tokens.languages),
        alignment_heads=_alignment_heads(gen, model.config),
        max_target_positions=int(model.config.max_target_positions),
        window_frames=int(extractor.nb_max_frames),
        input_stride=int(model.model.encoder.conv1.stride[0] * model.model.encoder.conv2.stride[0]),
    )
    check_spec(spec, loaded)
    return loaded


def _load_model(source: Source, dtype: torch.dtype):
    from transformers import AutoConfig, WhisperForConditionalGeneration

    name = source.uri
    config = processor(
        AutoConfig,
        source,
        lambda exc: f"model {name!r}: cannot read its config ({type(exc).__name__}: {exc})",
    )
    if config.model_type != "whisper":
        raise ModelLoadError(
            f"model {name!r} is a {config.model_type!r} checkpoint; the whisper task needs a "
            "WhisperForConditionalGeneration checkpoint (whisper, distil-whisper, large-v3-turbo)"
        )
    return pretrained(
        WhisperForConditionalGeneration,
        source,
        lambda exc: (
            f"model {name!r}: cannot load it as WhisperForConditionalGeneration "
            f"({type(exc).__name__}: {exc})"
        ),
        dtype=dtype,
        attn_implementation="sdpa",
    )


def _load_processor(source: Source):
    from transformers import AutoFeatureExtractor, AutoTokenizer

    name = source.uri

    def failure(exc: Exception) -> str:
        return (
            f"model {name!r}: cannot load its feature extractor and tokenizer "
            f"({type(exc).__name__}: {exc}); the folder needs preprocessor_config.json and the "
            "tokenizer files, as WhisperProcessor.save_pretrained writes them"
        )

    extractor = processor(AutoFeatureExtractor, source, failure)
    tokenizer = processor(AutoTokenizer, source, failure)
    if not hasattr(extractor, "mel_filters"):
        raise ModelLoadError(
            f"model {name!r}: its feature extractor ({type(extractor).__name__}) is not a "
            "WhisperFeatureExtractor"
        )
    return extractor, tokenizer


def _special_tokens(name: str, gen: Any, tokenizer: Any) -> SpecialTokens:
    no_ts = getattr(gen, "no_timestamps_token_id", None)
    if no_ts is None or gen.decoder_start_token_id is None:
        raise ModelLoadError(
            f"model {name!r}: its generation_config.json has no no_timestamps_token_id / "
            "decoder_start_token_id (an outdated Whisper generation config); update it as in "
            "https://github.com/huggingface/transformers/issues/25084"
        )
    eos = gen.eos_token_id
    eot = int(eos[0] if isinstance(eos, list | tuple) else eos)
    no_speech = no_ts - 1  # transformers' assumption too (WhisperNoSpeechDetection)
    if tokenizer.convert_ids_to_tokens(no_speech) not in ("<|nospeech|>", "<|nocaptions|>"):
        no_speech = None
    prev = getattr(gen, "prev_sot_token_id", None)
    if prev is None:
        prev = tokenizer.convert_tokens_to_ids("<|startofprev|>")
        prev = prev if isinstance(prev, int) and prev != tokenizer.unk_token_id else None
    tasks = getattr(gen, "task_to_id", None) or {}
    languages = {
        k.strip("<|>"): int(v) for k, v in (getattr(gen, "lang_to_id", None) or {}).items()
    }
    return SpecialTokens(
        eot=eot,
        sot=int(gen.decoder_start_token_id),
        no_timestamps=int(no_ts),
        timestamp_begin=int(no_ts) + 1,
        no_speech=no_speech,
        prev=prev,
        translate=tasks.get("translate"),
        transcribe=tasks.get("transcribe"),
        languages=languages,
    )


def _alignment_heads(gen: Any, config: Any) -> list[tuple[int, int]]:
    heads = getattr(gen, "alignment_heads", None)
    if heads:
        return [(int(layer), int(head)) for layer, head in heads]
    # OpenAI's default when a checkpoint names none: every head of the upper half.
    layers, per_layer = config.decoder_layers, config.decoder_attention_heads
    return [(layer, h) for layer in range(layers // 2, layers) for h in range(per_layer)]


def language_token(spec_language: str, tokens: SpecialTokens) -> int:
    """The language token for a code ("en"), a name ("english") or a token ("<|en|>")."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    value = spec_language.strip().lower().strip("<|>")
    code = TO_LANGUAGE_CODE.get(value, value)
    if code not in tokens.languages:
        raise KeyError(code)
    return tokens.languages[code]


def check_spec(spec: WhisperTaskSpec, wm: WhisperModel) -> None:
    """Refuse spec options the checkpoint cannot honour, before any audio arrives."""
    if spec.sample_rate != wm.sampling_rate:
        raise ModelLoadError(
            f"model {spec.model!r} expects {wm.sampling_rate} Hz audio but the task's "
            f"sample_rate is {spec.sample_rate}; set sample_rate: {wm.sampling_rate} in the task"
        )
    if not wm.multilingual:
        if spec.task == "translate":
            raise ModelLoadError(f"model {spec.model!r} is English-only: it cannot translate")
        if spec.language not in (None, "en", "english"):
            raise ModelLoadError(
                f"model {spec.model!r} is English-only; language {spec.language!r} is not possible"
            )
    elif spec.language is not None:
        try:
            language_token(spec.language, wm.tokens)
        except KeyError:
            known = ", ".join(sorted(wm.tokens.languages))
            raise ModelLoadError(
                f"model {spec.model!r} has no language {spec.language!r}; it knows: {known}"
            ) from None
    if wm.multilingual and (wm.tokens.transcribe is None or wm.tokens.translate is None):
        raise ModelLoadError(f"model {spec.model!r}: its generation config has no task_to_id")
