"""Where a model comes from, and loading a CTC checkpoint behind the `CtcModel` adapter.

A spec's `model` is one of:
- a local folder written by `save_pretrained` (used in place);
- an object-storage prefix (`s3://...`, `gs://...`, any fsspec URI but `file://`),
  copied once per node into a local cache, then loaded like a local folder;
- a Hugging Face hub id, handed to `from_pretrained` with its revision.

All three then take the same `from_pretrained` path, except M-CTC-T checkpoints
(`model_type: mctct`), which transformers 5 no longer knows: our own port
(`pipeline/models/mctct/`) loads those. Parakeet CTC (`model_type: parakeet_ctc`) loads
through `from_pretrained` too, behind its own adapter (`pipeline/models/parakeet.py`).
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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ModelLoadError
from pipeline.io.storage import filesystem, is_remote
from pipeline.models.device import pick_dtype
from pipeline.spec import CtcTaskSpec, StorageOptions

if TYPE_CHECKING:
    import torch

    from pipeline.models.ctc_model import CtcAdapter

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
    # Log the URI only: storage options may one day carry secrets (FACTS.md).
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


def load_ctc(spec: CtcTaskSpec, storage: StorageOptions, device: str) -> CtcAdapter:
    """Resolve and load `spec.model` as a CTC adapter on `device` ("cpu", "cuda", "cuda:0")."""
    from pipeline.models.ctc_model import CtcModel

    source = resolve_model(spec.model, revision=spec.revision, storage=storage)
    local = Path(source).is_dir()
    dtype = pick_dtype(spec.dtype, device)
    revision = None if local else spec.revision  # a revision means nothing to a local folder
    if _model_type(source, revision) == "mctct":
        from pipeline.models.mctct import load_mctct

        mctct = load_mctct(spec.model, source, revision=revision, device=device, dtype=dtype)
        _check_processor(spec, mctct.sampling_rate, mctct.tokenizer)
        return mctct
    kwargs: dict = {"trust_remote_code": spec.trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    model = _load_model(spec.model, source, dtype, local, kwargs).to(device).eval()
    if model.config.model_type == "parakeet_ctc":  # a conformer on log-mel frames
        return _load_parakeet(spec, source, revision, model, device, dtype, kwargs)
    extractor, tokenizer = _load_processor(spec.model, source, kwargs)
    _check_architecture(spec, model)
    _check_processor(spec, extractor.sampling_rate, tokenizer)
    return CtcModel(spec.model, model, extractor, tokenizer, device=device, dtype=dtype)


def _load_parakeet(spec, source, revision, model, device, dtype, kwargs):
    """Parakeet's features are ours (`parakeet_features.py`): only its tokenizer is loaded."""
    from transformers import AutoTokenizer

    from pipeline.models.parakeet import ParakeetCtcModel
    from pipeline.models.parakeet_features import FeatureConfig, ParakeetFeatures

    try:
        config = FeatureConfig.from_file(_file(source, "preprocessor_config.json", revision))
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"model {spec.model!r}: cannot load its preprocessor_config.json and tokenizer "
            f"({type(exc).__name__}: {exc}); upload the folder processor.save_pretrained writes"
        ) from exc
    features = ParakeetFeatures(config, device)
    parakeet = ParakeetCtcModel(spec.model, model, features, tokenizer, device, dtype)
    _check_processor(spec, parakeet.sampling_rate, parakeet.tokenizer)
    return parakeet


def _file(source: str, name: str, revision: str | None) -> Path:
    """A file of the checkpoint: from its folder, or fetched (and cached) from the hub."""
    if Path(source).is_dir():
        return Path(source) / name
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(source, name, revision=revision))


def _model_type(source: str, revision: str | None) -> str | None:
    """`model_type` from config.json, read without transformers (which may not know it)."""
    try:
        return json.loads(_file(source, "config.json", revision).read_text()).get("model_type")
    except Exception:  # unreadable here: the from_pretrained path below reports why
        return None


def _load_model(name: str, source: str, dtype: torch.dtype, local: bool, kwargs: dict):
    from transformers import AutoModelForCTC

    # Prefer safetensors (no pickle) where the folder has them; for a hub id let
    # transformers choose, which also prefers safetensors when the repo has them.
    safetensors = any(Path(source).glob("*.safetensors")) if local else None
    try:
        return AutoModelForCTC.from_pretrained(
            source, dtype=dtype, use_safetensors=safetensors, **kwargs
        )
    except pickle.UnpicklingError:  # torch.load(weights_only=True) refused a hostile pickle
        raise ModelLoadError.refused_pickle(name) from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"model {name!r}: cannot load it with AutoModelForCTC ({type(exc).__name__}: {exc}); "
            "check that it is a CTC checkpoint (e.g. wav2vec2/hubert/wavlm ...ForCTC), that the "
            "revision exists, and set trust_remote_code only for checkpoints you trust"
        ) from exc


def _load_processor(name: str, source: str, kwargs: dict):
    from transformers import AutoFeatureExtractor, AutoTokenizer

    try:
        return (
            AutoFeatureExtractor.from_pretrained(source, **kwargs),
            AutoTokenizer.from_pretrained(source, **kwargs),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"model {name!r}: cannot load its feature extractor and tokenizer "
            f"({type(exc).__name__}: {exc}); the folder needs preprocessor_config.json (or "
            "processor_config.json), tokenizer_config.json and vocab.json, as "
            "processor.save_pretrained writes them"
        ) from exc


def _check_architecture(spec: CtcTaskSpec, model) -> None:
    cfg = model.config
    if not (hasattr(cfg, "conv_kernel") and hasattr(cfg, "conv_stride")):
        raise ModelLoadError(
            f"model {spec.model!r} ({cfg.model_type}): only CTC models with a wav2vec2-style "
            "convolutional feature encoder are supported (wav2vec2, hubert, wavlm, "
            "data2vec-audio, unispeech, sew)"
        )
    if getattr(cfg, "add_adapter", False):
        raise ModelLoadError(
            f"model {spec.model!r}: CTC checkpoints with an adapter are not supported"
        )


def _check_processor(spec: CtcTaskSpec, sampling_rate: int, tokenizer) -> None:
    rate = getattr(spec, "sample_rate", None)
    if rate is not None and rate != sampling_rate:
        raise ModelLoadError(
            f"model {spec.model!r} expects {sampling_rate} Hz audio but the task's "
            f"sample_rate is {rate}; set sample_rate: {sampling_rate} in the task"
        )
    if tokenizer.pad_token_id is None:
        raise ModelLoadError(
            f"model {spec.model!r}: its tokenizer has no pad token (the CTC blank)"
        )
    if spec.word_timestamps and getattr(tokenizer, "word_delimiter_token", None) is None:
        raise ModelLoadError(
            f"model {spec.model!r}: its tokenizer ({type(tokenizer).__name__}) has no word "
            "delimiter, so words cannot be aligned; set word_timestamps: false for this task"
        )
