"""One item's output columns from its decoded windows.

Definitions (also in the stage's doc):
- `text`: the kept windows' text tokens decoded together, stripped (a window judged
  silence keeps none); `""` when nothing was said;
- `segments`: `{start, end, text}` in seconds from the item's start, for timestamped and
  long-form items; segments without text are left out; null for short-form items decoded
  without timestamps;
- `words`: `{word, start, end}` when the task asks for word timestamps, else null;
- `avg_logprob`: total log-probability of every token of every window's final decode
  (`<|endoftext|>` included), over their number: OpenAI's per-window measure, pooled;
- `confidence`: `exp(avg_logprob)`, the geometric-mean probability of a decoded token;
  null when the text is empty;
- `no_speech_prob`: the highest no-speech probability among the item's windows;
- `compression_ratio`: of the text (zlib, OpenAI's measure); null when the text is empty;
- `language` / `language_prob`: the language code; its probability when it was detected
  (on the first 30 s), null when the task fixed it or the model is English-only.
"""

from __future__ import annotations

import math

from pipeline.models.whisper.decode import DecodeOptions, WindowResult
from pipeline.models.whisper.flags import FlagInputs, compression_ratio, hallucination_flags
from pipeline.models.whisper.load import WhisperModel
from pipeline.models.whisper.longform import Segment


def item_columns(
    wm: WhisperModel,
    opts: DecodeOptions,
    *,
    windows: list[WindowResult],
    segments: list[Segment] | None,
    words: list[dict] | None,
    language: int | None,
    language_prob: float | None,
    duration_s: float,
) -> dict:
    """Field name -> value for one successfully decoded item."""
    if segments is None:
        text = " ".join(w.text for w in windows if not w.silent and w.text)
    else:
        eot = wm.tokens.eot
        text = wm.tokenizer.decode([t for s in segments for t in s.tokens if t < eot]).strip()
    scored = sum(w.n_scored for w in windows)
    avg_logprob = sum(w.sum_logprob for w in windows) / scored if scored else None
    no_speech = [w.no_speech_prob for w in windows if w.no_speech_prob is not None]
    ratio = compression_ratio(text) if text else None
    kept = tuple(
        w.no_speech_prob
        for w in windows
        if not w.silent and w.text and w.no_speech_prob is not None
    )
    flags = hallucination_flags(
        FlagInputs(text, duration_s, ratio, kept),
        compression_ratio_threshold=opts.compression_ratio_threshold,
        no_speech_threshold=opts.no_speech_threshold,
    )
    return {
        "text": text,
        "language": wm.tokens.language_code(language) if language is not None else "en",
        "language_prob": language_prob if opts.language is None else None,
        "segments": None
        if segments is None
        else [{"start": s.start, "end": s.end, "text": s.text} for s in segments if s.text],
        "words": words,
        "avg_logprob": avg_logprob,
        "no_speech_prob": max(no_speech) if no_speech else None,
        "compression_ratio": ratio,
        "flags": flags,
        "confidence": math.exp(avg_logprob) if text and avg_logprob is not None else None,
        "model": wm.name,
    }
