"""Sequential timestamped decoding, batched across items (Whisper paper, section 3.8).

An item is decoded one 30 s window at a time. A window's tokens are cut into segments at
each pair of timestamp tokens; if the window ends inside a segment (no single timestamp
before `<|endoftext|>`), that unfinished segment is dropped and the next window starts
at the last complete timestamp, otherwise right after the window. A window judged
silence (see `decode.is_silent`) is skipped whole. This is transformers' long-form
`generate` (`_retrieve_segment` and its seek arithmetic, ported in `split_segments`),
so the segments are the ones it returns for the same item.

Batched across items: up to `batch` items decode their current window together, and
when one finishes, the next waiting item takes its place in the following step, so the
batch stays full (transformers' batched long-form shrinks as items finish). Each window
of a batch is decoded exactly as alone (same prompt length, no padding), so an item's
segments do not depend on the others.

Short items with timestamps go through the same loop, with features zero-padded to
30 s as transformers pads them: decoding resumes inside the padding when a window ends
mid-segment, exactly as `generate(..., return_timestamps=True)` does.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.models.whisper.align import align_windows
from pipeline.models.whisper.decode import (
    DecodeOptions,
    WindowResult,
    decode_text,
    decode_windows,
    derive_key,
    first_step,
)
from pipeline.models.whisper.features import LogMel
from pipeline.models.whisper.load import NO_SPACE_LANGUAGES, WhisperModel
from pipeline.models.whisper.words import split_words
from pipeline.stages.batching import batch_or_alone

log = logging.getLogger(__name__)

TIME_PRECISION = 0.02  # seconds per timestamp token step
FRAME_PRECISION = 0.01  # seconds per log-mel frame


@dataclass
class Segment:
    start: float
    end: float
    tokens: list[int]  # timestamps included
    text: str = ""


@dataclass
class Job:
    """One item being transcribed with timestamps."""

    row: int
    audio: np.ndarray
    key: int
    long: bool  # over 30 s: features at its own length; else padded to 30 s
    language: int | None = None  # fixed, or detected on the first window
    language_prob: float | None = None
    features: torch.Tensor | None = None
    max_frames: int = 0
    content_frames: int = 0  # frames of real audio (short items: before the padding)
    seek: int = 0
    windows: list[WindowResult] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    words: list[dict] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.max_frames > 0 and self.seek >= self.max_frames


def split_segments(
    tokens: list[int], *, seek: int, window_frames: int, timestamp_begin: int, input_stride: int
) -> tuple[list[Segment], int]:
    """A window's segments and how many frames to move forward (transformers' arithmetic)."""
    tb = timestamp_begin
    is_ts = [t >= tb for t in tokens]
    single_ending = is_ts[-2:] == [False, True]
    pairs = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
    offset_s = seek * TIME_PRECISION / input_stride
    if pairs:
        slices = pairs + [len(tokens)] if single_ending else pairs[:-1] + [pairs[-1] + 1]
        segments, last = [], 0
        for i, end in enumerate(slices):
            piece = tokens[last:end]
            closing = -1 if i < len(slices) - 1 or single_ending else -2
            segments.append(
                Segment(
                    start=offset_s + (piece[0] - tb) * TIME_PRECISION,
                    end=offset_s + (piece[closing] - tb) * TIME_PRECISION,
                    tokens=piece,
                )
            )
            last = end
        if single_ending:
            return segments, window_frames
        return segments, (tokens[last - 2] - tb) * input_stride
    # No pair: the whole window is one segment, ending at its last timestamp if any.
    end_pos: float = int(window_frames * FRAME_PRECISION / TIME_PRECISION)
    stamps = [t for t in tokens if t >= tb]
    if stamps and stamps[-1] != tb:
        end_pos = stamps[-1] - tb
    return [Segment(offset_s, offset_s + end_pos * TIME_PRECISION, tokens)], window_frames


@dataclass
class _Update:
    """What one window step decided for one job (applied only once the step succeeded)."""

    result: WindowResult
    frames: int
    language: int | None
    language_prob: float | None
    segments: list[Segment]
    advance: int
    words: list[dict]


class TimestampedDecoder:
    """Runs `Job`s through windowed decoding, `batch` windows per step."""

    def __init__(
        self,
        wm: WhisperModel,
        opts: DecodeOptions,
        features: LogMel,
        *,
        batch: int,
        word_timestamps: bool,
    ) -> None:
        self.wm, self.opts, self.features = wm, opts, features
        self.batch = batch
        self.word_timestamps = word_timestamps

    def run(self, jobs: list[Job], on_error: Callable[[Job, Exception], None]) -> None:
        """Decode every job to the end; a job whose window fails alone goes to `on_error`."""
        waiting, active = deque(jobs), []
        while waiting or active:
            while waiting and len(active) < self.batch:
                job = waiting.popleft()
                try:
                    self._prepare(job)
                except Exception as exc:  # feature extraction on one item
                    on_error(job, exc)
                    continue
                active.append(job)
            if not active:
                continue
            moved = batch_or_alone(
                active, self._advance, on_error, what="whisper: window batch of %d"
            )
            active = [job for job, ok in zip(active, moved, strict=True) if ok]
            for job in [j for j in active if j.done]:
                job.features = None  # free device memory as soon as an item is finished
                active.remove(job)

    def _advance(self, jobs: list[Job]) -> list[bool]:
        """Decode one window of each job and move it on (all or none of them)."""
        self._apply(jobs, self._step(jobs))
        return [True] * len(jobs)

    def _prepare(self, job: Job) -> None:
        if job.long:
            job.features = self.features.full(job.audio)
            job.max_frames = job.content_frames = job.features.shape[-1]
        else:
            job.features = self.features.windows([job.audio])[0]
            job.max_frames = job.features.shape[-1]
            job.content_frames = min(self.features.frames(len(job.audio)), job.max_frames)
        job.language = self.opts.language  # None: detected on the first window

    def _step(self, jobs: list[Job]) -> list[_Update]:
        """Decode the current window of each job; mutates nothing."""
        wm, opts, size = self.wm, self.opts, self.wm.window_frames
        frames = [min(j.max_frames - j.seek, size) for j in jobs]
        windows = torch.stack(
            [
                torch.nn.functional.pad(j.features[:, j.seek : j.seek + n], (0, size - n))
                for j, n in zip(jobs, frames, strict=True)
            ]
        )
        encoded = wm.encode(windows)
        detect = wm.multilingual and any(j.language is None for j in jobs)
        first = first_step(wm, opts, encoded, detect=detect)
        languages = [
            j.language if j.language is not None else first.languages[i] for i, j in enumerate(jobs)
        ]
        probs = [
            j.language_prob if j.language is not None else first.language_probs[i]
            for i, j in enumerate(jobs)
        ]
        prompts = torch.tensor(
            [opts.prompt_tokens(wm, lang, timestamps=True) for lang in languages],
            device=encoded.device,
        )
        keys = [derive_key(j.key, j.seek) for j in jobs]
        results = decode_windows(wm, opts, encoded, prompts, first.no_speech, keys, timestamps=True)
        updates = []
        for j, n, lang, prob, r in zip(jobs, frames, languages, probs, results, strict=True):
            segments, advance = [], n
            if not r.silent:
                segments, advance = split_segments(
                    r.tokens,
                    seek=j.seek,
                    window_frames=n,
                    timestamp_begin=wm.tokens.timestamp_begin,
                    input_stride=wm.input_stride,
                )
                for s in segments:
                    s.text = decode_text(wm, s.tokens)
            # A window must move forward even if a model closes a segment at <|0.00|>.
            updates.append(_Update(r, n, lang, prob, segments, max(advance, 1), []))
        if self.word_timestamps:
            self._add_words(jobs, encoded, updates, languages)
        return updates

    def _add_words(
        self,
        jobs: list[Job],
        encoded: torch.Tensor,
        updates: list[_Update],
        languages: list[int | None],
    ) -> None:
        wm, eot = self.wm, self.wm.tokens.eot
        todo = []
        for i, (j, u) in enumerate(zip(jobs, updates, strict=True)):
            text = [t for s in u.segments for t in s.tokens if t < eot]
            if text:
                audio_frames = max(min(u.frames, j.content_frames - j.seek), 1)
                todo.append((i, text, audio_frames))
        if not todo:
            return
        sots = [
            self.opts.prompt_tokens(wm, languages[i], timestamps=True)[len(self.opts.prompt) :]
            for i, _, _ in todo
        ]
        index = torch.tensor([i for i, _, _ in todo], device=encoded.device)
        times = align_windows(
            wm,
            encoded.index_select(0, index),
            sots,
            [t for _, t, _ in todo],
            [f for _, _, f in todo],
        )
        for (i, text, audio_frames), bounds in zip(todo, times, strict=True):
            offset = jobs[i].seek * TIME_PRECISION / wm.input_stride
            audio_end = offset + audio_frames * FRAME_PRECISION
            # Each text token's segment: a word is kept within the segments it belongs to
            # (the alignment covers the whole window, the text only the kept segments).
            spans = [(s.start, s.end) for s in updates[i].segments for t in s.tokens if t < eot]
            code = wm.tokens.language_code(languages[i]) if languages[i] is not None else "en"
            for w in split_words(wm.tokenizer, text, spaced=code not in NO_SPACE_LANGUAGES):
                # Within its segments, and not after the audio (a model may place a
                # timestamp in the padding after the end).
                high = min(spans[w.indices[-1]][1], audio_end)
                low = min(spans[w.indices[0]][0], high)
                start = min(max(offset + float(bounds[w.indices[0]]), low), high)
                end = min(max(offset + float(bounds[w.indices[-1] + 1]), start), high)
                updates[i].words.append({"word": w.text.strip(), "start": start, "end": end})

    @staticmethod
    def _apply(jobs: list[Job], updates: list[_Update]) -> None:
        for j, u in zip(jobs, updates, strict=True):
            j.language, j.language_prob = u.language, u.language_prob
            j.windows.append(u.result)
            j.segments += u.segments
            j.words += u.words
            j.seek += u.advance
