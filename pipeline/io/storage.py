"""Filesystems for local paths and object storage, built from a spec's storage options.

Reads go through fsspec; Ray's writers and checkpoints take a pyarrow filesystem,
which here wraps the same fsspec instance so both sides see one configuration.
Credentials are never passed explicitly (they would end up inside pickled
filesystems and Ray task arguments, docs/FACTS.md): the default AWS/GCP chain applies.

Time is bounded twice. Each request has botocore's connect/read timeouts and its
retries (enough for 20% 503s), but s3fs retries around botocore's retries, so one
stalled object could take many minutes (11 attempts in 327 s, issue 16). So every
object read and output write also runs under a wall-clock deadline of the storage's
`timeout_s` (`bounded`), the first contact with a storage is a short `probe`, and
storage failures on the driver become one-line `StorageError`s naming the URI.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import fsspec

from pipeline.errors import StorageError
from pipeline.spec import StorageOptions

T = TypeVar("T")
PROBE_S = 30.0  # first contact with a storage: an endpoint that does not answer fails fast

if TYPE_CHECKING:
    import pyarrow.fs

# A stalled GET hung for minutes with s3fs defaults (docs/FACTS.md): bound every request.
_S3_CONFIG = {
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"max_attempts": 5, "mode": "standard"},
}


def is_remote(uri: str) -> bool:
    """True for object-storage (or any non-local fsspec) URIs."""
    return "://" in uri and not uri.startswith("file://")


def filesystem(
    uri: str, storage: StorageOptions | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for `uri` and the path inside it (protocol stripped)."""
    storage = storage or StorageOptions()
    protocol = uri.split("://", 1)[0] if is_remote(uri) else "file"
    options: dict = {}
    if protocol in ("s3", "s3a"):
        client: dict = {}
        if storage.endpoint_url:
            client["endpoint_url"] = storage.endpoint_url
        if storage.region:
            client["region_name"] = storage.region
        options = {
            "client_kwargs": client,
            "config_kwargs": dict(_S3_CONFIG),
            "anon": storage.anon,
            # Other processes (Ray workers) write what this one lists: never trust a cached listing.
            "use_listings_cache": False,
        }
    elif protocol in ("gs", "gcs") and storage.anon:
        options = {"token": "anon"}
    fs, path = fsspec.core.url_to_fs(uri, **options)
    if protocol in ("s3", "s3a"):
        # s3fs retries around botocore's own retries; keep the outer loop short (docs/FACTS.md).
        fs.retries = 3
    return fs, path.rstrip("/") if path != "/" else path


def arrow_filesystem(
    uri: str, storage: StorageOptions | None = None
) -> tuple[pyarrow.fs.FileSystem, str]:
    """A pyarrow filesystem (for Ray's sink and checkpoints) and the path inside it."""
    import pyarrow.fs as pafs

    if not is_remote(uri):
        import os

        return pafs.LocalFileSystem(), os.path.abspath(uri.removeprefix("file://"))
    fs, path = filesystem(uri, storage)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A stable, absolute URI for a path on `fs` (what item ids are hashed from)."""
    return full_uris(fs, [path])[0]


def full_uris(fs: fsspec.AbstractFileSystem, paths: Iterable[str]) -> list[str]:
    """`full_uri` of many paths (a listing's: 1M at a time, so the common case is cheap)."""
    if not is_local(fs):
        return [fs.unstrip_protocol(p) for p in paths]
    return [p if _normal(p) else _local_uri(p) for p in paths]


def _normal(path: str) -> bool:
    """True when `posixpath.normpath` would leave this absolute path as it is (no `//`,
    no `.`/`..` part, no trailing slash); paths with a part starting with a dot are not
    looked at closely (normpath decides)."""
    return path.startswith("/") and "//" not in path and "/." not in path and path[-1] != "/"


def _local_uri(path: str) -> str:
    return posixpath.normpath(path) if path.startswith("/") else posixpath.abspath(path)


def join(uri: str, *parts: str) -> str:
    """Join URI parts with '/', refusing parts that could escape the prefix."""
    for part in parts:
        if part.startswith("/") or ".." in part.split("/"):
            raise ValueError(f"refusing path part {part!r}: it could escape {uri!r}")
    return "/".join([uri.rstrip("/"), *parts])


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (where symlinks, FIFOs and devices exist)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def bounded(fn: Callable[[], T], seconds: float, what: str) -> T:
    """`fn()`, or TimeoutError once `seconds` have passed without it returning.

    The call runs in a daemon thread; one that overruns is abandoned (its own request
    timeouts end it later), so a caller never waits past the deadline."""
    result: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"bounded {what}"[:60], daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"{what}: no answer within {seconds:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def read_object(fs: fsspec.AbstractFileSystem, path: str, timeout_s: float) -> bytes:
    """The whole object at `path`; on object storage within `timeout_s` or TimeoutError."""
    if is_local(fs):
        return fs.cat_file(path)
    return bounded(lambda: fs.cat_file(path), timeout_s, f"reading {path}")


def probe(uri: str, storage: StorageOptions | None, what: str) -> None:
    """Raise StorageError unless the storage behind `uri` answers one request quickly.

    A missing object or prefix is an answer (the caller says what is missing)."""
    if not is_remote(uri):
        return
    storage = storage or StorageOptions()
    with storage_errors(uri, what, storage):
        fs, path = filesystem(uri, storage)

        def ask() -> None:
            with contextlib.suppress(FileNotFoundError):
                fs.info(path)

        bounded(ask, min(storage.timeout_s, PROBE_S), f"{what} {uri}")


@contextlib.contextmanager
def storage_errors(uri: str, what: str, storage: StorageOptions | None = None) -> Iterator[None]:
    """Turn a storage failure (timeouts, refused connections, botocore errors, I/O errors)
    inside the block into one StorageError naming `what`, the URI and what to check."""
    try:
        yield
    except StorageError:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise  # the caller knows what a missing path means here
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        endpoint = (storage.endpoint_url if storage else None) or "the default endpoint"
        raise StorageError(
            f"{what} {uri}: storage failed ({type(exc).__name__}: {_first_line(exc)}); check "
            f"that {endpoint} is up and reachable and that credentials allow access"
        ) from None


def is_storage_failure(exc: BaseException) -> bool:
    """True for what storage raises when it fails (as opposed to a bug of ours)."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no S3 support installed: nothing botocore-shaped can be raised
        return False
    return isinstance(exc, BotoCoreError | ClientError)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "no message"
