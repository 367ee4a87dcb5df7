"""The resolved revision of a task's model: what its rows record in `model_revision`.

- a hub id: the commit hash its revision (branch, tag or commit; default `main`) points
  at now, asked of the hub (`HfApi.model_info`), or, offline, read from the local hub
  cache (`snapshot_download(local_files_only=True)`); a 40-hex revision is itself;
- a local folder: `sha256:` + a hash of every file's relative path and contents. Hashing
  gigabytes of weights on every run would cost seconds, so the hash is kept beside the
  node's model cache, keyed by the folder's path and each file's size and mtime, and
  computed again only when one of them changed;
- an object-storage prefix: `etag:` + a hash of every object's relative key, size and
  ETag (a content hash the store keeps: nothing is downloaded).

A synthesis task's revision joins its model's and its vocoder's with `+`. The run resolves
revisions once, on the driver, before any actor loads: a hub model is then loaded at that
commit on every node, so a revision pushed mid-run cannot mix two models in one run, and
an object-storage model whose objects changed is copied again (its cache key holds the
revision). `io/task_identity.py` records the revision with the task: a model that changed
under a task's name is refused like any other change of the task.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Collection
from pathlib import Path

from pipeline.errors import ModelLoadError
from pipeline.io.storage import filesystem, is_remote
from pipeline.models.hub import is_hub_id, resolve_model
from pipeline.spec import JobSpec, StorageOptions

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
MEMO_DIR = "~/.cache/audiobatch/revisions"
MEMO_ENV = "AUDIOBATCH_REVISION_CACHE"


def resolve_revisions(
    spec: JobSpec, *, hub: bool = True, remote: bool = True, only: Collection[str] | None = None
) -> dict[str, str]:
    """Task name -> resolved revision of its model(s). `hub=False` leaves out tasks with a
    hub model, `remote=False` those with an object-storage one (`validate`: offline);
    `only` names the tasks to resolve (default: all)."""
    revisions = {}
    for task in spec.tasks:
        if only is not None and task.task_name not in only:
            continue
        storage = task.storage or spec.input.storage
        models = [value for _, value in task.sources()]
        if (not hub and any(map(is_hub_id, models))) or (
            not remote and any(map(is_remote, models))
        ):
            continue
        parts = [resolve_revision(m, _revision(task, m), storage) for m in models]
        revisions[task.task_name] = "+".join(parts)
    return revisions


def _revision(task, model: str) -> str | None:
    return task.revision if model == task.model else None


def resolve_revision(model: str, revision: str | None, storage: StorageOptions) -> str:
    """The resolved revision of one model (see the module doc)."""
    if is_remote(model):
        return _prefix_revision(model, storage)
    if is_hub_id(model):
        return hub_commit(model, revision)
    # resolve_model checks the folder (and says what is wrong with it).
    return folder_revision(Path(resolve_model(model, revision=None, storage=storage)))


def hub_commit(repo: str, revision: str | None) -> str:
    """The commit `revision` of hub repo `repo` points at (the hub, else the local cache)."""
    if revision and _COMMIT.match(revision):
        return revision
    try:
        from huggingface_hub import HfApi

        sha = HfApi().model_info(repo, revision=revision or "main").sha
        if sha:
            return sha
    except Exception:  # offline, or the hub refused: the local cache may know
        pass
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, revision=revision, local_files_only=True)).name
    except Exception as exc:
        raise ModelLoadError(
            f"model {repo!r}: cannot resolve revision {revision or 'main'!r} to a commit: the "
            f"hub did not answer and the local hub cache has no copy ({type(exc).__name__}). "
            "Check the id and the network, or give a commit hash as `revision`"
        ) from None


def folder_revision(folder: Path) -> str:
    """`sha256:` + 16 hex digits over every file of `folder` (relative path and bytes)."""
    if not folder.is_dir():
        raise ModelLoadError(f"model {str(folder)!r}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder))
    stats = {str(p.relative_to(folder)): _stat(p) for p in files}
    memo = _memo_path(folder)
    known = _read_memo(memo)
    if known.get("files") == stats:
        return known["revision"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    revision = f"sha256:{digest.hexdigest()[:16]}"
    _write_memo(memo, {"files": stats, "revision": revision})
    return revision


def _prefix_revision(uri: str, storage: StorageOptions) -> str:
    fs, root = filesystem(uri, storage)
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        found = {}
    if not found:
        raise ModelLoadError(f"model {uri!r}: no objects under this prefix")
    digest = hashlib.sha256()
    for key in sorted(found):
        info = found[key]
        tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime")
        rel = posixpath.relpath(key, root)
        digest.update(f"{rel}\0{info.get('size')}\0{tag}\0".encode())
    return f"etag:{digest.hexdigest()[:16]}"


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _memo_path(folder: Path) -> Path:
    root = Path(os.environ.get(MEMO_ENV) or MEMO_DIR).expanduser()
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]
    return root / f"{key}.json"


def _read_memo(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_memo(path: Path, memo: dict) -> None:
    """Best effort: a read-only home only means hashing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, path)
    except OSError:
        pass
