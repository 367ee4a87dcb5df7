"""Decoding a batch of 30 s windows: language, no-speech, generate, temperature fallback.

Every window of a batch has a decoder prompt of the same length (`[<|startofprev|>,
prompt...] <|startoftranscript|> <|lang|> <|task|> [<|notimestamps|>]`), so nothing is
padded and a window decodes as it would alone. The encoder runs once per window; the
decoder calls `GenerationMixin.generate` (what `WhisperForConditionalGeneration.generate`
calls underneath) with the checkpoint's own suppress lists, plus:

- `TimestampRules` when timestamps are predicted;
- `LogprobTracker` for the average log-probability, kept on the device (greedy and
  sampling); beam search is rescored instead (`_rescore`);
- `KeyedSampler` at temperatures above 0.

Before generating, one decoder step on `<|startoftranscript|>` gives the language
(`detect_language`'s rule: the most likely language token, with its probability among
languages) and the no-speech probability (of `<|nospeech|>` after
`<|startoftranscript|>`, after the prompt when there is one, as transformers'
`WhisperNoSpeechDetection` reads it).

Temperature fallback and silence follow OpenAI's `transcribe`: a window is decoded
again at the next temperature while its compression ratio is above
`compression_ratio_threshold` or its average log-probability below `logprob_threshold`,
unless it looks like silence (no-speech probability above `no_speech_threshold` with a
low log-probability). A window whose final decode has no-speech probability above the
threshold and average log-probability not above `logprob_threshold` is silence: its
text is dropped. The compression ratio is OpenAI's (zlib over the text's UTF-8 bytes),
not transformers' (zlib over token-id bytes): the default threshold 2.4 is calibrated
for the former.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass

import torch

from pipeline.kinds.whisper import WhisperTaskSpec
from pipeline.models.whisper.flags import compression_ratio
from pipeline.models.whisper.load import WhisperModel, language_token
from pipeline.models.whisper.processors import KeyedSampler, LogprobTracker, TimestampRules

_RESCORE_ROWS = 8  # rows per teacher-forced rescoring pass (its logits are [rows, len, vocab])


@dataclass(frozen=True)
class DecodeOptions:
    """The spec's decoding choices, resolved against one checkpoint."""

    task: str
    language: int | None  # fixed language token, None: detect per item
    num_beams: int
    max_new_tokens: int
    temperatures: tuple[float, ...]
    compression_ratio_threshold: float | None
    logprob_threshold: float | None
    no_speech_threshold: float | None
    prompt: tuple[int, ...]  # <|startofprev|> + prompt tokens, or ()
    seed: int

    @classmethod
    def from_spec(cls, spec: WhisperTaskSpec, wm: WhisperModel) -> DecodeOptions:
        prompt: tuple[int, ...] = ()
        if spec.prompt and spec.prompt.strip() and wm.tokens.prev is not None:
            ids = wm.tokenizer.encode(" " + spec.prompt.strip(), add_special_tokens=False)
            # OpenAI keeps the last n_ctx // 2 - 1 prompt tokens.
            prompt = (wm.tokens.prev, *ids[-(wm.max_target_positions // 2 - 1) :])
        fixed = None
        if wm.multilingual and spec.language is not None:
            fixed = language_token(spec.language, wm.tokens)
        return cls(
            task=spec.task,
            language=fixed,
            num_beams=spec.num_beams,
            max_new_tokens=spec.max_new_tokens,
            temperatures=tuple(spec.temperatures) or (0.0,),
            compression_ratio_threshold=spec.compression_ratio_threshold,
            logprob_threshold=spec.logprob_threshold,
            no_speech_threshold=spec.no_speech_threshold,
            prompt=prompt,
            seed=spec.seed,
        )

    def prompt_tokens(self, wm: WhisperModel, language: int | None, timestamps: bool) -> list[int]:
        """The decoder prompt of one window."""
        t = wm.tokens
        ids = [*self.prompt, t.sot]
        if wm.multilingual:
            ids += [language if language is not None else t.languages["en"]]
            ids += [t.translate if self.task == "translate" else t.transcribe]
        return ids if timestamps else [*ids, t.no_timestamps]


@dataclass
class FirstStep:
    """Per window: detected language token and probability, and no-speech probability."""

    languages: list[int | None]
    language_probs: list[float | None]
    no_speech: list[float | None]


@dataclass
class WindowResult:
    """One window's final decode."""

    tokens: list[int]  # generated ids, without <|endoftext|> or padding
    text: str  # its text tokens decoded, stripped
    sum_logprob: float
    n_scored: int  # tokens the sum covers (<|endoftext|> included when generated)
    compression_ratio: float
    no_speech_prob: float | None
    temperature: float
    silent: bool = False

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / max(self.n_scored, 1)


def first_step(
    wm: WhisperModel, opts: DecodeOptions, encoded: torch.Tensor, detect: bool
) -> FirstStep:
    """Language (when `detect`) and no-speech probability of each window."""
    t, batch = wm.tokens, encoded.shape[0]
    sot = torch.full((batch, 1), t.sot, device=encoded.device, dtype=torch.long)
    logits = wm.next_token_logits(encoded, sot)
    languages: list[int | None] = [None] * batch
    probs: list[float | None] = [None] * batch
    if detect and wm.multilingual:
        ids = torch.tensor(list(t.languages.values()), device=logits.device)
        best_prob, best = logits[:, ids].softmax(dim=-1).max(dim=-1)
        languages = ids[best].tolist()
        probs = best_prob.tolist()
    no_speech: list[float | None] = [None] * batch
    if t.no_speech is not None:
        if opts.prompt:
            prefix = torch.tensor([[*opts.prompt, t.sot]] * batch, device=encoded.device)
            logits = wm.next_token_logits(encoded, prefix)
        no_speech = logits.softmax(dim=-1)[:, t.no_speech].tolist()
    return FirstStep(languages, probs, no_speech)


@dataclass
class _Hypothesis:
    tokens: list[int]
    sum_logprob: float
    n_scored: int


def generate(
    wm: WhisperModel,
    encoded: torch.Tensor,
    prompts: torch.Tensor,
    *,
    timestamps: bool,
    max_new_tokens: int,
    num_beams: int = 1,
    temperature: float = 0.0,
    keys: list[int] | None = None,
) -> list[_Hypothesis]:
    """One `generate` call over windows whose prompts [batch, n] share a length."""
    from transformers import GenerationMixin, LogitsProcessorList
    from transformers.modeling_outputs import BaseModelOutput

    model, t = wm.model, wm.tokens
    begin = prompts.shape[1]
    config = copy.deepcopy(model.generation_config)
    new_tokens = max(1, min(max_new_tokens, wm.max_target_positions - begin))
    if model.generation_config.max_new_tokens is not None:
        config.max_new_tokens = new_tokens  # the checkpoint sets it: ours must win
    else:
        # A total length rather than max_new_tokens: with the checkpoint's max_length
        # (448) also set, generate would warn on every call that both are set.
        config.max_new_tokens = None
        config.max_length = begin + new_tokens
    config.num_beams = num_beams if temperature == 0 else 1
    config.do_sample = False  # sampling is KeyedSampler's argmax
    config.return_dict_in_generate = False
    config.output_scores = False
    processors: list = []
    if timestamps:
        processors.append(
            TimestampRules(
                no_timestamps=t.no_timestamps,
                eot=t.eot,
                begin_index=begin,
                max_initial_timestamp_index=getattr(config, "max_initial_timestamp_index", None),
            )
        )
    tracker = LogprobTracker() if config.num_beams == 1 else None
    if tracker is not None:
        processors.append(tracker)
    if temperature > 0:
        key_tensor = torch.tensor(keys or [0] * prompts.shape[0], device=prompts.device)
        processors.append(KeyedSampler(temperature, key_tensor))
    with torch.inference_mode():
        sequences = GenerationMixin.generate(
            model,
            generation_config=config,
            logits_processor=LogitsProcessorList(processors),
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
            decoder_input_ids=prompts,
        )
        generated = sequences[:, begin:]
        n = generated.shape[1]
        is_eot = generated == t.eot
        has_eot = is_eot.any(dim=1)
        first_eot = torch.where(has_eot, is_eot.int().argmax(dim=1), n)
        scored = torch.where(has_eot, first_eot + 1, first_eot)
        if tracker is not None:
            logprobs = tracker.finish(sequences)
        else:
            logprobs = _rescore(wm, encoded, prompts, generated)
        keep = torch.arange(n, device=generated.device)[None, :] < scored[:, None]
        # where, not a product: tokens after <|endoftext|> may have -inf log-probability.
        sums = torch.where(keep, logprobs, 0.0).sum(dim=1)
    rows = generated.tolist()
    return [
        _Hypothesis(row[:end], total, count)
        for row, end, total, count in zip(
            rows, first_eot.tolist(), sums.tolist(), scored.tolist(), strict=True
        )
    ]


def _rescore(
    wm: WhisperModel, encoded: torch.Tensor, prompts: torch.Tensor, generated: torch.Tensor
) -> torch.Tensor:
    """Log-probabilities [batch, n] of `generated` under the raw model, teacher-forced.

    For beam search this is what its beam scores add up: it ranks `log_softmax(logits)`
    and its processors only mask tokens, never renormalise."""
    from transformers.modeling_outputs import BaseModelOutput

    begin = prompts.shape[1]
    ids = torch.cat([prompts, generated], dim=1)[:, :-1]
    parts = []
    for s in range(0, ids.shape[0], _RESCORE_ROWS):
        out = wm.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded[s : s + _RESCORE_ROWS]),
            decoder_input_ids=ids[s : s + _RESCORE_ROWS],
            use_cache=False,
        )
        logprobs = torch.log_softmax(out.logits[:, begin - 1 :].float(), dim=-1)
        parts.append(logprobs.gather(2, generated[s : s + _RESCORE_ROWS, :, None])[..., 0])
    return torch.cat(parts)


def decode_text(wm: WhisperModel, tokens: list[int]) -> str:
    """The text of generated ids: text tokens only (no timestamps, no specials), stripped."""
    return wm.tokenizer.decode([i for i in tokens if i < wm.tokens.eot]).strip()


def derive_key(key: int, *parts: int) -> int:
    for value in parts:
        key = zlib.crc32(int(value).to_bytes(8, "little", signed=True), key)
    return key & 0xFFFFFFFF


def needs_fallback(opts: DecodeOptions, r: WindowResult) -> bool:
    """OpenAI's rule: too repetitive or too unlikely, unless it looks like silence."""
    needs = False
    if opts.compression_ratio_threshold is not None:
        needs |= r.compression_ratio > opts.compression_ratio_threshold
    if opts.logprob_threshold is not None:
        needs |= r.avg_logprob < opts.logprob_threshold
    lp_threshold = opts.logprob_threshold
    if _looks_silent(opts, r) and lp_threshold is not None and r.avg_logprob < lp_threshold:
        needs = False  # silence: decoding it again would not help
    return needs


def _looks_silent(opts: DecodeOptions, r: WindowResult) -> bool:
    return (
        opts.no_speech_threshold is not None
        and r.no_speech_prob is not None
        and r.no_speech_prob > opts.no_speech_threshold
    )


def is_silent(opts: DecodeOptions, r: WindowResult) -> bool:
    """OpenAI's skip rule: no-speech above the threshold and log-prob not above its own."""
    if not _looks_silent(opts, r):
        return False
    return not (opts.logprob_threshold is not None and r.avg_logprob > opts.logprob_threshold)


def decode_windows(
    wm: WhisperModel,
    opts: DecodeOptions,
    encoded: torch.Tensor,
    prompts: torch.Tensor,
    no_speech: list[float | None],
    keys: list[int],
    *,
    timestamps: bool,
) -> list[WindowResult]:
    """Each window's final decode after temperature fallback, `silent` set."""
    results: list[WindowResult | None] = [None] * encoded.shape[0]
    pending = list(range(encoded.shape[0]))
    for step, temperature in enumerate(opts.temperatures):
        if len(pending) == encoded.shape[0]:
            enc, pro = encoded, prompts  # no copy of the encoder output on the first pass
        else:
            index = torch.tensor(pending, device=encoded.device)
            enc, pro = encoded.index_select(0, index), prompts.index_select(0, index)
        hyps = generate(
            wm,
            enc,
            pro,
            timestamps=timestamps,
            max_new_tokens=opts.max_new_tokens,
            num_beams=opts.num_beams,
            temperature=temperature,
            keys=[derive_key(keys[j], step) for j in pending],
        )
        retry = []
        for j, hyp in zip(pending, hyps, strict=True):
            text = decode_text(wm, hyp.tokens)
            results[j] = result = WindowResult(
                tokens=hyp.tokens,
                text=text,
                sum_logprob=hyp.sum_logprob,
                n_scored=hyp.n_scored,
                compression_ratio=compression_ratio(text),
                no_speech_prob=no_speech[j],
                temperature=temperature,
            )
            if needs_fallback(opts, result):
                retry.append(j)
        pending = retry
        if not pending:
            break
    final = [r for r in results if r is not None]
    for r in final:
        r.silent = is_silent(opts, r)
    return final


def short_form(
    wm: WhisperModel, opts: DecodeOptions, features: torch.Tensor, keys: list[int]
) -> tuple[FirstStep, list[WindowResult]]:
    """Short-form items without timestamps: one window each, [batch, mels, 3000] features."""
    encoded = wm.encode(features)
    detect = opts.language is None
    first = first_step(wm, opts, encoded, detect=detect)
    if not detect:
        first.languages = [opts.language] * len(keys)
    prompts = torch.tensor(
        [opts.prompt_tokens(wm, lang, timestamps=False) for lang in first.languages],
        device=encoded.device,
    )
    windows = decode_windows(wm, opts, encoded, prompts, first.no_speech, keys, timestamps=False)
    return first, windows
