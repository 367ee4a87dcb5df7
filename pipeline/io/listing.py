"""Listing the input into work units, on the driver, before any audio is fetched.

Lists the input once (`list_input`: every file with its size and its etag or mtime),
picks the format (`input.format`, or detected from what is there), and lets that
format (`pipeline/io/formats/`) cut the listing into units (`cut_input`). A local
folder is walked with `os.scandir` (one `stat` per entry, no per-file fsspec info:
at 1M files that is most of the listing's cost).
"""

from __future__ import annotations

import os
import posixpath

from pipeline.errors import InputError
from pipeline.io.formats import FORMATS
from pipeline.io.idset import IdSet
from pipeline.io.paths import local_file
from pipeline.io.storage import filesystem, is_local
from pipeline.io.units import InputPlan, Listing
from pipeline.spec import InputSpec


def plan_input(spec: InputSpec, items_per_unit: int = 32, done: IdSet | None = None) -> InputPlan:
    """List the input and cut it into work units; raise InputError if nothing is there.

    Files whose ids are in `done` (already written by an earlier run) are left out
    here, before anything is fetched; shard formats skip done members while reading.
    """
    return cut_input(list_input(spec), spec, items_per_unit, done)


def list_input(spec: InputSpec) -> Listing:
    """Every file under the input with its size and version; InputError if there is none."""
    fs, root = filesystem(spec.uri, spec.storage)
    return _list(fs, root, spec.uri)


def input_format(listing: Listing, spec: InputSpec) -> str:
    """`input.format`, or the format detected from the listing."""
    return spec.format or _detect_format(listing.files, spec)


def cut_input(
    listing: Listing,
    spec: InputSpec,
    items_per_unit: int = 32,
    done: IdSet | None = None,
    changed: tuple[str, ...] = (),
) -> InputPlan:
    """Cut a listing into work units: files in `done` and shards in `listing.settled` are
    left out. Hints (which read the first shard) are only worked out when there is work."""
    fmt = input_format(listing, spec)
    units, skipped = FORMATS[fmt].list_units(listing, spec, items_per_unit, done or IdSet())
    hints = tuple(FORMATS[fmt].hints(listing, spec)) if units else ()
    return InputPlan(fmt, units, skipped, hints, len(listing.settled), changed)


def _list(fs, root: str, uri: str) -> Listing:
    """Every file and its size (symlinks to files inside the prefix included), the local paths
    that are not plain files, and the folder that relative paths are relative to."""
    glob_at = min((root.index(ch) for ch in "*?[" if ch in root), default=None)
    # A glob's prefix is the folder before its first wildcard: /data/*/x.wav -> /data.
    base = posixpath.dirname(root if glob_at is None else root[:glob_at])
    local = is_local(fs)
    try:
        if glob_at is None and local and os.path.isdir(root):
            return _walk_local(fs, root.rstrip("/") or "/")
        if glob_at is not None:
            paths = fs.glob(root, detail=True)
        elif fs.isdir(root):
            paths, base = fs.find(root, detail=True, withdirs=local), root
        elif fs.exists(root):
            paths = {root: fs.info(root)}
        else:
            raise InputError(f"input {uri} does not exist")
    except (PermissionError, OSError) as exc:
        raise InputError(f"input {uri} could not be listed: {exc}") from None
    files = {p: info.get("size") for p, info in paths.items() if info.get("type", "file") == "file"}
    versions = {p: v for p in files if (v := _version(paths[p])) is not None}
    special = sorted(
        p
        for p, info in paths.items()
        if local and p != root and info.get("type") in ("other", "directory")
    )
    if local:
        _follow_links(base, files, versions, special)
    return Listing(fs, base, files, tuple(special), versions)


def _follow_links(base: str, files: dict, versions: dict, special: list[str]) -> None:
    """Move each symlink in `special` that leads to a regular file inside `base` into
    `files`: it is that file, in every format (issue 16 item 3); the rest stay special."""
    for p in [p for p in special if os.path.islink(p)]:
        size = local_file(p, base, allow_outside=False)
        if isinstance(size, int):
            files[p] = size
            versions[p] = str(os.stat(p).st_mtime_ns)
            special.remove(p)


def _walk_local(fs, root: str) -> Listing:
    """A local folder, walked with `os.scandir`: what `fs.find(detail=True, withdirs=True)`
    gives (symlinks, FIFOs and folders as `special`; symlinked folders not followed), with
    each file's mtime in ns as its version."""
    files: dict[str, int | None] = {}
    versions: dict[str, str] = {}
    special: list[str] = []
    folders = [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    special.append(e.path)
                    folders.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    files[e.path] = st.st_size
                    versions[e.path] = str(st.st_mtime_ns)
                else:
                    special.append(e.path)
    _follow_links(root, files, versions, special)
    return Listing(fs, root, files, tuple(sorted(special)), versions)


def _version(info: dict) -> str | None:
    """An object's etag (object storage) or mtime (other filesystems), as text."""
    for key in ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "last_modified"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"')
    return None


def _detect_format(files: dict, spec: InputSpec) -> str:
    if spec.manifest:
        return "files"
    endings = {p.lower().rsplit(".", 1)[-1] for p in files if "." in p}
    if "tar" in endings or "tgz" in endings or any(p.lower().endswith(".tar.gz") for p in files):
        return "webdataset"
    if endings & {"parquet", "arrow"} and not endings & set(spec.extensions):
        return "parquet"  # Parquet shards, or a datasets.save_to_disk folder of .arrow files
    return "files"
