"""One ranged read covering a work unit's segments of a long WAV on object storage.

A PCM or float WAV stores frame k at a fixed byte offset, so the segments of a long
recording that one unit holds need only the bytes from their first frame to their last:
the header (one small ranged GET) says where those are, and a second ranged GET fetches
them. `read_window` returns them as a standalone WAV (the file's header, its data chunk
resized) and the file frame it starts at; `segments.cut_span` cuts each segment from it
with that offset, to exactly the frames it would cut from the whole file.

Only files larger than `WINDOW_MIN_BYTES` are read so (below it, one whole GET is
cheaper than two), only when every entry of the unit naming the file is a segment with
an end, and only for plain RIFF/WAVE files whose header fits in `HEADER_BYTES` and
states its data size, and only while the window is within `decode.max_file_mb`.
Anything else, and any segment the window cannot cut (past the
end of a file cut short), goes the whole-file way, whose errors are the known ones.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.io.audio import Span
from pipeline.io.units import FileEntry

HEADER_BYTES = 1 << 16
WINDOW_MIN_BYTES = 8 << 20
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class Window:
    """Frames `first` .. of a WAV file, as a WAV of their own."""

    data: bytes
    first: int


@dataclass(frozen=True)
class _Layout:
    rate: int
    block_align: int
    data_at: int  # byte offset of the first frame
    data_size: int


def windowed_uris(entries: Sequence[FileEntry], min_bytes: int = WINDOW_MIN_BYTES) -> set[str]:
    """The files of a unit worth a window: large, and named only by segments with an end."""
    named: dict[str, bool] = {}
    for e in entries:
        if e.error is None:
            ok = e.start is not None and e.end is not None and (e.size or 0) > min_bytes
            named[e.uri] = named.get(e.uri, True) and ok
    return {uri for uri, ok in named.items() if ok}


def read_window(
    read_range: Callable[[int, int], bytes],
    size: int,
    spans: Sequence[tuple[float, float]],
    max_bytes: int,
) -> Window | None:
    """The bytes of `spans` (start, end seconds) of a WAV of `size` bytes, read with
    `read_range(start, end)`; None when the file is not one this applies to, or when the
    window would be over `max_bytes` (decode.max_file_mb: the whole-file read refuses it)."""
    head = read_range(0, min(size, HEADER_BYTES))
    layout = _layout(head)
    if layout is None:
        return None
    frames = [Span(s, e).frames(layout.rate) for s, e in spans]
    first, last = min(f for f, _ in frames), max(last for _, last in frames if last is not None)
    start = layout.data_at + first * layout.block_align
    end = min(layout.data_at + last * layout.block_align, layout.data_at + layout.data_size, size)
    if start >= end or end - start > max_bytes:
        return None
    body = read_range(start, end)
    header = bytearray(head[: layout.data_at])
    struct.pack_into("<I", header, layout.data_at - 4, len(body))
    struct.pack_into("<I", header, 4, len(header) + len(body) - 8)
    return Window(bytes(header) + body, first)


def _layout(head: bytes) -> _Layout | None:
    """Where a RIFF/WAVE file's frames are, from its first bytes; None if not plain PCM or
    float WAV, or if the header does not say (streamed WAVs write 0 or 0xFFFFFFFF)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and pos + 24 <= len(head):
            tag, _, rate = struct.unpack_from("<HHI", head, pos + 8)
            align = struct.unpack_from("<H", head, pos + 20)[0]
            if tag == _EXTENSIBLE and pos + 34 <= len(head):  # the subformat GUID's tag
                tag = struct.unpack_from("<H", head, pos + 32)[0]
            fmt = (tag, rate, align)
        elif chunk == b"data":
            if fmt is None or fmt[0] not in (_PCM, _FLOAT) or not fmt[2]:
                return None
            if size in (0, 0xFFFFFFFF) or not fmt[1]:
                return None
            return _Layout(fmt[1], fmt[2], pos + 8, size)
        pos += 8 + size + (size & 1)
    return None
