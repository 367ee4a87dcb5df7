"""Writing synthesized audio: encode to FLAC/WAV, a deterministic key per text id, a write
that no reader sees half done.

Keys are built from the text id, never from raw text or an unchecked id: the id is
reduced to `[A-Za-z0-9_-]` (so no `/`, no `..`, nothing a filesystem or pyarrow would
normalise out of the prefix, docs/FACTS.md) and suffixed with a hash of the exact id, so two
ids that sanitise alike still get two files. The same id always gets the same key, so a
re-run overwrites its own files instead of adding copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from typing import Literal

import fsspec
import numpy as np
import soundfile as sf

from pipeline.io.storage import join

AudioFormat = Literal["flac", "wav"]
FORMATS: tuple[str, ...] = ("flac", "wav")
_SUBTYPE = "PCM_16"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_NAME = 64


def encode_audio(samples: np.ndarray, rate: int, fmt: AudioFormat = "flac") -> bytes:
    """Mono float samples (clipped to [-1, 1]) as 16-bit FLAC or WAV bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"audio format {fmt!r} is not one of {', '.join(FORMATS)}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or Inf; refusing to encode them")
    buffer = io.BytesIO()
    # libsndfile converts float to int without clipping unless asked: clip here.
    sf.write(buffer, np.clip(x, -1.0, 1.0), rate, format=fmt.upper(), subtype=_SUBTYPE)
    return buffer.getvalue()


def audio_key(prefix: str, text_id: str, fmt: AudioFormat) -> str:
    """`{prefix}/{safe id}-{hash of id}.{fmt}`: deterministic and safe for any storage."""
    if fmt not in FORMATS:
        raise ValueError(f"audio format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not text_id:
        raise ValueError("an empty text id cannot name an audio file")
    safe = _UNSAFE.sub("_", text_id).strip("_")[:_MAX_NAME] or "item"
    digest = hashlib.sha256(text_id.encode("utf-8")).hexdigest()[:16]
    return join(prefix, f"{safe}-{digest}.{fmt}")


def write_audio(fs: fsspec.AbstractFileSystem, uri: str, data: bytes) -> None:
    """Write `data` to `uri` on `fs`, replacing what is there.

    Local files are written to a temporary name in the same folder and renamed into
    place, so a reader (or a crash) never leaves a half-written file under the key.
    Object stores make a PUT visible only when it completes, so they get one `pipe_file`.
    """
    path = fs._strip_protocol(uri)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):
        fs.pipe_file(path, data)
        return
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
