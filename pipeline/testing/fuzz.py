"""Mutation fuzzing of `decode_audio`: small valid files in every format, damaged.

Each mutant is a seed file with one to three damages (bit flips, overwritten bytes,
header integers smashed to extremes, a cut, an inserted or repeated slice). The
decoder must answer every one with `DecodedAudio` that keeps its invariants
(mono float32, finite, at the target rate, within `max_duration_s`) or an
`AudioDecodeError`; anything else it raises is a crash. Used by the R2 test
(2,000 mutants) and `benchmarks/fuzz_decode.py` (20,000).
"""

from __future__ import annotations

import collections
import resource
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import AudioDecodeError
from pipeline.io.audio import decode_audio
from pipeline.spec import DecodeSpec
from pipeline.testing.corpus import broken_samples, claim_flac_frames
from pipeline.testing.synth import FORMATS, encode, speechlike

_EXTREMES = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000)


@dataclass
class FuzzResult:
    mutants: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    crashes: list[str] = field(default_factory=list)  # "fmt: ExceptionType: message"
    peak_rss_mb: float = 0.0


def seed_files(seed: int = 0) -> list[tuple[str, bytes]]:
    """(format, bytes) of short valid files in every format and a few rates, plus the
    demo's broken samples (which damage differently once mutated)."""
    rng = np.random.default_rng(seed)
    files = []
    for fmt in FORMATS:
        for rate in (8000, 16000, 44100):
            x = speechlike("fuzz me", rate, int(rng.integers(2**31)))
            files.append((fmt, encode(x, rate, fmt)))
    flac = next(d for f, d in files if f == "flac")
    files.append(("flac-2^36-1", claim_flac_frames(flac, 2**36 - 1)))
    files += [(f"broken-{b.name}", b.data) for b in broken_samples(seed=seed) if b.data]
    return files


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three random damages of `data`."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        _DAMAGES[int(rng.integers(len(_DAMAGES)))](out, rng)
        if not out:
            break
    return bytes(out)


def _flip_bits(b: bytearray, rng) -> None:
    for _ in range(int(rng.integers(1, 9))):
        if b:
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))


def _overwrite(b: bytearray, rng) -> None:
    if b:
        i, n = int(rng.integers(len(b))), int(rng.integers(1, 17))
        b[i : i + n] = rng.integers(0, 256, min(n, len(b) - i), dtype=np.uint8).tobytes()


def _smash_header_int(b: bytearray, rng) -> None:
    """A 16- or 32-bit field in the first 128 bytes (sizes, rates, counts) set to an extreme."""
    if len(b) >= 8:
        i = int(rng.integers(min(len(b) - 4, 128)))
        value = _EXTREMES[int(rng.integers(len(_EXTREMES)))]
        if rng.random() < 0.5:
            b[i : i + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        else:
            b[i : i + 2] = struct.pack("<H", value & 0xFFFF)


def _cut(b: bytearray, rng) -> None:
    del b[int(rng.integers(len(b) + 1)) :]


def _insert(b: bytearray, rng) -> None:
    i, n = int(rng.integers(len(b) + 1)), int(rng.integers(1, 257))
    b[i:i] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _repeat_slice(b: bytearray, rng) -> None:
    if b:
        i = int(rng.integers(len(b)))
        n = int(rng.integers(1, min(4096, len(b) - i) + 1))
        b[i:i] = b[i : i + n]


_DAMAGES: tuple[Callable[[bytearray, np.random.Generator], None], ...] = (
    _flip_bits,
    _overwrite,
    _smash_header_int,
    _cut,
    _insert,
    _repeat_slice,
)


def fuzz_decode(
    mutants: int, seed: int = 0, limits: DecodeSpec | None = None, target_rate: int = 16000
) -> FuzzResult:
    """Decode `mutants` mutants; count outcomes, record crashes and broken invariants."""
    limits = limits or DecodeSpec(max_duration_s=600)
    rng = np.random.default_rng(seed)
    files = seed_files(seed)
    result = FuzzResult()
    for _ in range(mutants):
        fmt, data = files[int(rng.integers(len(files)))]
        mutant = mutate(data, rng)
        result.mutants += 1
        try:
            audio = decode_audio(mutant, target_rate=target_rate, limits=limits, name="mutant")
        except AudioDecodeError as exc:
            result.outcomes[str(exc.code)] += 1
            continue
        except Exception as exc:  # what the decoder must never do
            result.crashes.append(f"{fmt}: {type(exc).__name__}: {exc}"[:300])
            continue
        broken = _broken_invariant(audio, target_rate, limits)
        if broken:
            result.crashes.append(f"{fmt}: decoded but {broken}")
        else:
            result.outcomes["decoded"] += 1
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _broken_invariant(audio, target_rate: int, limits: DecodeSpec) -> str | None:
    x = audio.samples
    if x.dtype != np.float32 or x.ndim != 1:
        return f"samples are {x.dtype} with shape {x.shape}"
    if audio.sample_rate != target_rate or len(x) == 0:
        return f"{len(x)} samples at {audio.sample_rate} Hz"
    if not np.isfinite(x).all():
        return "non-finite samples passed"
    if audio.duration_s > limits.max_duration_s + 1:
        return f"{audio.duration_s:.1f} s passed max_duration_s"
    return None
