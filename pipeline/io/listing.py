"""Listing the input into work units, on the driver, before any audio is fetched.

Lists the input once, picks the format (`input.format`, or detected from what is
there), and lets that format (`pipeline/io/formats/`) cut the listing into units.
"""

from __future__ import annotations

import posixpath

from pipeline.errors import InputError
from pipeline.io.formats import FORMATS
from pipeline.io.idset import IdSet
from pipeline.io.storage import filesystem, is_local
from pipeline.io.units import InputPlan, Listing
from pipeline.spec import InputSpec


def plan_input(spec: InputSpec, items_per_unit: int = 32, done: IdSet | None = None) -> InputPlan:
    """List the input and cut it into work units; raise InputError if nothing is there.

    Files whose ids are in `done` (already written by an earlier run) are left out
    here, before anything is fetched; shard formats skip done members while reading.
    """
    fs, root = filesystem(spec.uri, spec.storage)
    listing = _list(fs, root, spec.uri)
    fmt = spec.format or _detect_format(listing.files, spec)
    units, skipped = FORMATS[fmt].list_units(listing, spec, items_per_unit, done or IdSet())
    return InputPlan(fmt, units, skipped, tuple(FORMATS[fmt].hints(listing, spec)))


def _list(fs, root: str, uri: str) -> Listing:
    """Every file and its size, the local paths that are not plain files, and the folder
    that relative paths are relative to."""
    glob_at = min((root.index(ch) for ch in "*?[" if ch in root), default=None)
    # A glob's prefix is the folder before its first wildcard: /data/*/x.wav -> /data.
    base = posixpath.dirname(root if glob_at is None else root[:glob_at])
    local = is_local(fs)
    try:
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
    special = tuple(
        sorted(
            p
            for p, info in paths.items()
            if local and p != root and info.get("type") in ("other", "directory")
        )
    )
    return Listing(fs, base, files, special)


def _detect_format(files: dict, spec: InputSpec) -> str:
    if spec.manifest:
        return "files"
    endings = {p.lower().rsplit(".", 1)[-1] for p in files if "." in p}
    if "tar" in endings or "tgz" in endings or any(p.lower().endswith(".tar.gz") for p in files):
        return "webdataset"
    if endings & {"parquet", "arrow"} and not endings & set(spec.extensions):
        return "parquet"  # Parquet shards, or a datasets.save_to_disk folder of .arrow files
    return "files"
