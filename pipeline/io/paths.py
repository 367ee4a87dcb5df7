"""Which paths an input may name, and reading a local one without surprises.

A manifest is data from outside: its paths may alias one file several ways
(`a.wav`, `./a.wav`, `a//a.wav`, the absolute path), carry NUL bytes, point
anywhere the worker can read (`/etc/passwd`, `../../x`, `/proc/self/environ`) or
name a FIFO that blocks whoever opens it. So paths are normalised before anything
compares them, must stay under the input prefix unless `input.allow_outside_paths`
is set (`/proc`, `/sys` and `/dev` never), and a local file is opened without
blocking and read only if it is a regular file. Symlinks under the prefix are
followed (to where they lead, which must pass the same test); loops and
non-regular files become error rows.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from pipeline.errors import ErrorCode, RowError

NEVER_READ = ("/proc", "/sys", "/dev")  # kernel interfaces and devices: not audio, ever


def normalise(path: str) -> str:
    """One spelling per path: `./`, `//` and `x/..` folded (a leading `/` kept)."""
    return posixpath.normpath(path) if path else path


def under(path: str, prefix: str) -> bool:
    """True if normalised `path` is `prefix` or inside it."""
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix if prefix == "/" else prefix + "/")


def check_path(path: str, prefix: str, *, allow_outside: bool, local: bool) -> RowError | None:
    """Why a normalised `path` may not be read for an input under `prefix`, or None."""
    if any(ord(ch) < 32 for ch in path):
        return RowError(
            ErrorCode.INVALID_INPUT, f"path {path!r} contains a NUL or control character"
        )
    if local and any(under(path, p) for p in NEVER_READ):
        return RowError(
            ErrorCode.INVALID_INPUT, f"{path} is under {', '.join(NEVER_READ)}: never read"
        )
    if not allow_outside and not under(path, prefix):
        return RowError(
            ErrorCode.INVALID_INPUT,
            f"{path} is outside the input prefix {prefix}; set input.allow_outside_paths: true "
            "to read it",
        )
    return None


def _refused_target(path: str, prefix: str, allow_outside: bool) -> RowError | None:
    """Why the file a local `path` leads to (symlinks resolved) may not be read, or None."""
    real = os.path.realpath(path)
    refused = check_path(real, os.path.realpath(prefix), allow_outside=allow_outside, local=True)
    if refused is None:
        return None
    via = "" if real == path else f" (where the symlink {path} leads)"
    return RowError(refused.code, refused.message + via)


def local_file(path: str, prefix: str, *, allow_outside: bool) -> int | RowError:
    """The size of the local regular file `path` is or leads to, or why it is not one to read
    (the checks of `read_local`, without opening anything: a FIFO is never opened)."""
    refused = _refused_target(path, prefix, allow_outside)
    if refused is not None:
        return refused
    try:
        info = os.stat(path)
    except OSError as exc:
        return _unreachable(path, exc, "stat")
    if not stat.S_ISREG(info.st_mode):
        return _not_a_file(path, info.st_mode)
    return info.st_size


def read_local(path: str, prefix: str, *, allow_outside: bool, max_bytes: int) -> bytes | RowError:
    """The bytes of a local regular file, or why not: symlinks resolved and checked like the
    path itself, never blocking on a FIFO, never reading a device or directory."""
    refused = _refused_target(path, prefix, allow_outside)
    if refused is not None:
        return refused
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return _unreachable(path, exc, "open")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return _not_a_file(path, info.st_mode)
    with os.fdopen(fd, "rb") as f:
        if info.st_size > max_bytes:
            return RowError(
                ErrorCode.TOO_LARGE,
                f"{path} is {info.st_size / 2**20:.1f} MiB, over decode.max_file_mb",
            )
        return f.read()


def _unreachable(path: str, exc: OSError, doing: str) -> RowError:
    """Why `doing` (stat, open) the local `path` failed, as the row error it becomes."""
    if isinstance(exc, FileNotFoundError):
        return RowError(ErrorCode.MISSING_AUDIO, f"{path} does not exist (or is a broken symlink)")
    if exc.errno == errno.ELOOP:
        return RowError(ErrorCode.READ_FAILED, f"{path} is a symlink loop")
    return RowError(ErrorCode.READ_FAILED, f"could not {doing} {path}: {exc.strerror or exc}")


def _not_a_file(path: str, mode: int) -> RowError:
    return RowError(ErrorCode.READ_FAILED, f"{path} is a {_kind(mode)}, not a file: not read")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
