"""Filesystems for local paths and object storage, built from a spec's storage options.

Reads go through fsspec; Ray's writers and checkpoints take a pyarrow filesystem,
which here wraps the same fsspec instance so both sides see one configuration.
Credentials are never passed explicitly (they would end up inside pickled
filesystems and Ray task arguments, FACTS.md): the default AWS/GCP chain applies.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

import fsspec

from pipeline.spec import StorageOptions

if TYPE_CHECKING:
    import pyarrow.fs

# A stalled GET hung for minutes with s3fs defaults (FACTS.md): bound every request.
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
        # s3fs retries around botocore's own retries; keep the outer loop short (FACTS.md).
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
    if _is_local(fs):
        return posixpath.normpath(path) if path.startswith("/") else posixpath.abspath(path)
    return fs.unstrip_protocol(path)


def join(uri: str, *parts: str) -> str:
    """Join URI parts with '/', refusing parts that could escape the prefix."""
    for part in parts:
        if part.startswith("/") or ".." in part.split("/"):
            raise ValueError(f"refusing path part {part!r}: it could escape {uri!r}")
    return "/".join([uri.rstrip("/"), *parts])


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")
