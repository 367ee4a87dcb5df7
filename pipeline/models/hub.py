"""Where a model comes from: a hub id, a local folder, or an object-storage prefix.

`resolve` turns a spec's `model` into a `Source` every loader hands `from_pretrained`
(`resolve_task`: a task's model at its revision, with its `trust_remote_code`):
- a local folder written by `save_pretrained` (used in place);
- an object-storage prefix (`s3://...`, `gs://...`, any fsspec URI but `file://`),
  copied once per node into a local cache, then loaded like a local folder;
- a Hugging Face hub id, handed to `from_pretrained` with its revision.

`pretrained` is the one `from_pretrained` call of every model kind: safetensors when
the folder has them, `trust_remote_code` only when the spec turns it on, and a
failure raised as a `ModelLoadError` that says what to check.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelLoadError
from pipeline.io.storage import filesystem, is_remote
from pipeline.kinds.base import TaskBase
from pipeline.spec import StorageOptions

# What from_pretrained and the processors raise for a checkpoint they cannot load.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)


@dataclass(frozen=True)
class Source:
    """A resolved model: `path` is a local folder or a hub id, `uri` what the spec said."""

    uri: str
    path: str
    revision: str | None  # None for a local folder: a revision means nothing to it
    trust_remote_code: bool = False

    @property
    def local(self) -> bool:
        return Path(self.path).is_dir()

    def kwargs(self) -> dict:
        """The keyword arguments every `from_pretrained` of this source takes."""
        kwargs: dict = {"trust_remote_code": self.trust_remote_code}
        if self.revision:
            kwargs["revision"] = self.revision
        return kwargs

    def file(self, name: str) -> Path:
        """A file of the checkpoint: from its folder, or fetched (and cached) from the hub."""
        if self.local:
            return Path(self.path) / name
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(self.path, name, revision=self.revision))

    def model_type(self) -> str | None:
        """`model_type` from config.json, read without transformers (which may not know it)."""
        try:
            return json.loads(self.file("config.json").read_text()).get("model_type")
        except Exception:  # unreadable here: the from_pretrained call reports why
            return None


def resolve(
    uri: str,
    *,
    revision: str | None,
    storage: StorageOptions,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
) -> Source:
    """The `Source` of a spec's `model` (see the module doc), copied to this node if remote."""
    path = resolve_model(uri, revision=revision, storage=storage, cache_dir=cache_dir)
    local = Path(path).is_dir()
    return Source(uri, path, None if local else revision, trust_remote_code)


def resolve_task(task: TaskBase, storage: StorageOptions) -> Source:
    """The `Source` of a task's `model`, at its `revision`, as its spec allows remote code."""
    return resolve(
        task.model,
        revision=task.revision,
        storage=storage,
        trust_remote_code=task.trust_remote_code,
    )


def pretrained(cls, source: Source, failure: Callable[[Exception], str], **kwargs):
    """`cls.from_pretrained(source)`, preferring safetensors; a failure is a ModelLoadError
    whose message is `failure(exc)`."""
    # Prefer safetensors (no pickle) where the folder has them; for a hub id let
    # transformers choose, which also prefers safetensors when the repo has them.
    safetensors = any(Path(source.path).glob("*.safetensors")) if source.local else None
    try:
        return cls.from_pretrained(
            source.path, use_safetensors=safetensors, **source.kwargs(), **kwargs
        )
    except pickle.UnpicklingError:  # torch.load(weights_only=True) refused a hostile pickle
        raise ModelLoadError.refused_pickle(source.uri) from None
    except LOAD_ERRORS as exc:
        raise ModelLoadError(failure(exc)) from exc


def processor(cls, source: Source, failure: Callable[[Exception], str]):
    """`cls.from_pretrained(source)` for a tokenizer or feature extractor (no weights)."""
    try:
        return cls.from_pretrained(source.path, **source.kwargs())
    except LOAD_ERRORS as exc:
        raise ModelLoadError(failure(exc)) from exc


log = logging.getLogger(__name__)

DEFAULT_CACHE = "~/.cache/audiobatch/models"
# Where a node keeps its copies of object-storage models; a pod sets it to its own volume.
CACHE_ENV = "AUDIOBATCH_MODEL_CACHE"
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def resolve_model(
    uri: str, *, revision: str | None, storage: StorageOptions, cache_dir: str | None = None
) -> str:
    """What to hand `from_pretrained`: a local folder, or a hub id unchanged.

    Object-storage prefixes are copied into `cache_dir` (default: `$AUDIOBATCH_MODEL_CACHE`,
    else `~/.cache/audiobatch/models`) under a hash of the URI and revision, once per
    node: concurrent callers wait on a file lock and the copy appears by an atomic
    rename, so nobody loads a half-copied folder. Nodes share no disk for this.
    """
    if is_remote(uri):
        root = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
        return _cached_copy(uri, revision, storage, Path(root).expanduser())
    if not is_hub_id(uri):
        return str(_checked_folder(Path(uri.removeprefix("file://")).expanduser(), uri))
    return uri


def is_hub_id(uri: str) -> bool:
    """True when `uri` names a Hugging Face hub repo, not a folder here or object storage."""
    if is_remote(uri) or uri.startswith("file://"):
        return False
    path = Path(uri).expanduser()
    return not (path.exists() or uri.startswith(("/", ".", "~")) or not _HUB_ID.match(uri))


def _checked_folder(path: Path, uri: str) -> Path:
    if not path.is_dir():
        raise ModelLoadError(
            f"model {uri!r}: no such folder; give a folder written by save_pretrained, "
            "an s3:// or gs:// prefix, or a Hugging Face hub id (org/name)"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model folder {str(path)!r} has no config.json; point `model` at the folder "
            "save_pretrained wrote (config.json, the weights and the processor files)"
        )
    return path


def _cached_copy(uri: str, revision: str | None, storage: StorageOptions, root: Path) -> str:
    key = hashlib.sha256(f"{uri.rstrip('/')}@{revision or ''}".encode()).hexdigest()[:24]
    final = root / key
    if (final / "config.json").is_file():  # complete copies only ever appear by rename
        return str(final)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f"{key}.lock"):
        if (final / "config.json").is_file():  # another process copied it while we waited
            return str(final)
        _remove_leftovers(root, key)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
        try:
            _download(uri, storage, tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return str(final)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (flock): one copy per node even with many actors."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(root: Path, key: str) -> None:
    """Temp folders of a crashed copy, and a final folder someone emptied by hand."""
    for stale in root.glob(f".{key}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(root / key, ignore_errors=True)


def _download(uri: str, storage: StorageOptions, dest: Path) -> None:
    # Log the URI only: storage options may one day carry secrets (docs/FACTS.md).
    log.info("copying model %s to %s", uri, dest)
    try:
        fs, prefix = filesystem(uri, storage)
        files = [f for f in fs.find(prefix) if not f.endswith("/")]
    except Exception as exc:  # fsspec backends raise many unrelated types
        raise ModelLoadError(
            f"model {uri!r}: cannot list it ({type(exc).__name__}: {exc})"
        ) from exc
    relative = {f: f[len(prefix) :].lstrip("/") for f in files}
    if "config.json" not in relative.values():
        raise ModelLoadError(
            f"model {uri!r}: no config.json under that prefix ({len(files)} files found); "
            "upload the whole folder save_pretrained wrote"
        )
    for remote, rel in relative.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get_file(remote, str(target))
        except Exception as exc:
            raise ModelLoadError(
                f"model {uri!r}: copying {rel} failed ({type(exc).__name__}: {exc})"
            ) from exc
