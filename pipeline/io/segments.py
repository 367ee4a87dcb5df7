"""Segments of one file (NeMo offsets, lhotse supervisions): fetched once per work unit,
each item carrying only its span.

A manifest often cuts one long recording into many items. Read item by item, a file of
N segments in a unit was N whole-file GETs, and every item's row carried the whole file
into decode (measured in tests/io/test_segments_s3_integration.py: 15 GETs of a 30 s
file for its 15 segments in 2 units). The files reader now fetches a file once per unit
(`SharedReads`, holding its bytes only while segments of it are still to come) and
`cut_span` gives each segment a standalone file of exactly its span's frames, every
channel kept (so `channels` still applies), marked `span_cut` so decode reads it whole.
The samples decode to exactly what decoding the span of the whole file gives: 16-bit
WAV stays 16-bit WAV, 16/24-bit FLAC stays FLAC, anything else (Ogg, MP3, float or
32-bit WAV) is written as float32 WAV, the type decode reads in.

On object storage, the segments of a long WAV (over 8 MiB) that a unit holds are read
with one ranged GET covering them, after one for the header (`pipeline/io/wav_window.py`),
and cut from that with its frame offset.

A span is not cut, and the item keeps the whole file and its span as before (decode
then says what is wrong, with the same codes), when soundfile cannot open or seek the
file (m4a, webm: PyAV's), when the span does not lie wholly inside the file's frames
(past its end, or a file cut short), or when the cut would be larger than
`decode.max_file_mb`.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import soundfile as sf

from pipeline.io.audio import BLOCK_FRAMES, Span
from pipeline.io.units import FileEntry

Fetched = tuple[bytes | None, object]  # (bytes, RowError | None), as the reader fetched them


# (container, subtype) of the file -> how its cut is read and written, losslessly; any
# other file's cut is float32 WAV, the type decode reads (exact for lossy codecs too).
_CUT_AS = {
    ("WAV", "PCM_16"): ("int16", "WAV", "PCM_16"),
    ("FLAC", "PCM_16"): ("int16", "FLAC", "PCM_16"),
    ("FLAC", "PCM_24"): ("int32", "FLAC", "PCM_24"),
}
_FLOAT = ("float32", "WAV", "FLOAT")


def cut_span(
    data: bytes, start: float, end: float | None, max_bytes: int, offset: int = 0
) -> bytes | None:
    """A WAV or FLAC of exactly the frames `start` .. `end` (seconds; None: to the end) of
    `data`, every channel; None when it cannot be cut exactly (see the module docstring).

    `offset`: `data` holds the file's frames from that one on (a `wav_window.Window`)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            dtype, container, subtype = _CUT_AS.get((f.format, f.subtype), _FLOAT)
            first, last = Span(start, end).frames(f.samplerate)
            first, last = first - offset, f.frames if last is None else last - offset
            if first < 0:
                return None
            n = last - first
            size = n * f.channels * (2 if dtype == "int16" else 4)
            if n <= 0 or last > f.frames or size > max_bytes:
                return None
            if first:  # as decode does: seeking to 0 changes what libmpg123 gives
                f.seek(first)
            x = _read(f, n, dtype)
            rate = f.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None  # not one soundfile reads or seeks: decode reads the whole file
    if len(x) != n:
        return None
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=container, subtype=subtype)
    return buf.getvalue()


def _read(f: sf.SoundFile, n: int, dtype: str) -> np.ndarray:
    """`n` frames in decode's blocks (`audio.BLOCK_FRAMES`): the same reads, the same samples."""
    blocks, total = [], 0
    while total < n:
        block = f.read(min(BLOCK_FRAMES, n - total), dtype=dtype, always_2d=True)
        if len(block) == 0:
            break
        blocks.append(block)
        total += len(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, f.channels), dtype)


class SharedReads:
    """Fetch each file of a unit once: its bytes are kept while later entries of the unit
    still name it, and dropped after the last one, so a unit holds one file at a time
    when its segments come in order."""

    def __init__(self, entries: Sequence[FileEntry], fetch: Callable[[FileEntry], Fetched]):
        self._left = Counter(e.uri for e in entries if e.error is None)
        self._held: dict[str, Fetched] = {}
        self._fetch = fetch

    def read(self, entry: FileEntry) -> Fetched:
        got = self._held.get(entry.uri)
        if got is None:
            got = self._held[entry.uri] = self._fetch(entry)
        self.done(entry)
        return got

    def done(self, entry: FileEntry) -> None:
        """`entry` needs the file no more (read, or served by a window)."""
        self._left[entry.uri] -= 1
        if self._left[entry.uri] <= 0:
            self._held.pop(entry.uri, None)
