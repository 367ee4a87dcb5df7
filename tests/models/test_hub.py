"""Model resolution (local folder, object storage, hub id) and loading a CtcModel."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import ModelLoadError
from pipeline.kinds.ctc import CtcTaskSpec
from pipeline.models import hub
from pipeline.models.ctc_load import load_ctc
from pipeline.models.device import uses_autocast
from pipeline.models.hub import resolve_model
from pipeline.spec import StorageOptions
from pipeline.testing.tiny_ctc import build_tiny_ctc

NO_STORAGE = StorageOptions()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return build_tiny_ctc(str(tmp_path_factory.mktemp("tiny") / "w2v"), arch="wav2vec2")


@pytest.fixture
def s3(s3_bucket):
    """An s3fs client for a fresh bucket on the session's S3 emulator (tests/conftest.py)."""
    import s3fs

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    return fs, StorageOptions(endpoint_url=endpoint), bucket


def upload(fs, local: str, prefix: str) -> None:
    for path in Path(local).rglob("*"):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(local)}")


def test_local_folder_resolves_to_itself(tiny_dir):
    assert resolve_model(tiny_dir, revision=None, storage=NO_STORAGE) == tiny_dir
    assert resolve_model(f"file://{tiny_dir}", revision=None, storage=NO_STORAGE) == tiny_dir


def test_hub_id_is_returned_unchanged():
    for hub_id in ("facebook/wav2vec2-base-960h", "wav2vec2-base"):
        assert resolve_model(hub_id, revision="main", storage=NO_STORAGE) == hub_id


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        resolve_model(str(tmp_path / "nope"), revision=None, storage=NO_STORAGE)
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(str(tmp_path), revision=None, storage=NO_STORAGE)


@pytest.mark.integration
def test_object_storage_prefix_is_copied_once(s3, tiny_dir, tmp_path):
    fs, storage, bucket = s3
    upload(fs, tiny_dir, f"{bucket}/tiny")
    cache = str(tmp_path / "cache")
    first = resolve_model(f"s3://{bucket}/tiny", revision=None, storage=storage, cache_dir=cache)
    assert Path(first).parent == Path(cache)
    copied = sorted(p.name for p in Path(first).iterdir())
    assert copied == sorted(p.name for p in Path(tiny_dir).iterdir())
    assert (Path(first) / "model.safetensors").read_bytes() == (
        Path(tiny_dir) / "model.safetensors"
    ).read_bytes()

    fs.rm(f"{bucket}/tiny", recursive=True)  # a second resolve must not need the bucket
    again = resolve_model(f"s3://{bucket}/tiny/", revision=None, storage=storage, cache_dir=cache)
    assert again == first
    # The revision is part of the cache key: a new one means a new copy (which now fails).
    with pytest.raises(ModelLoadError, match=f"s3://{bucket}/tiny"):
        resolve_model(f"s3://{bucket}/tiny", revision="v2", storage=storage, cache_dir=cache)
    assert not [p for p in Path(cache).iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.integration
def test_concurrent_resolves_copy_once(s3, tiny_dir, tmp_path, monkeypatch):
    fs, storage, bucket = s3
    upload(fs, tiny_dir, f"{bucket}/shared")
    calls = []
    real = hub._download

    def counting(*args):
        calls.append(args)
        real(*args)

    monkeypatch.setattr(hub, "_download", counting)
    cache = str(tmp_path / "cache")
    results: list[str] = []

    def resolve():
        results.append(
            resolve_model(f"s3://{bucket}/shared", revision=None, storage=storage, cache_dir=cache)
        )

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and len(results) == 4


@pytest.mark.integration
def test_object_storage_errors_name_the_model(s3, tmp_path):
    fs, storage, bucket = s3
    fs.pipe(f"{bucket}/weights-only/model.safetensors", b"x")
    with pytest.raises(ModelLoadError, match=f"s3://{bucket}/weights-only.*no config.json"):
        resolve_model(
            f"s3://{bucket}/weights-only", revision=None, storage=storage, cache_dir=str(tmp_path)
        )
    with pytest.raises(ModelLoadError, match=f"s3://{bucket}/absent"):
        resolve_model(
            f"s3://{bucket}/absent", revision=None, storage=storage, cache_dir=str(tmp_path)
        )


@pytest.mark.integration
def test_load_ctc_from_object_storage(s3, tiny_dir, tmp_path, monkeypatch):
    fs, storage, bucket = s3
    upload(fs, tiny_dir, f"{bucket}/w2v")
    monkeypatch.setattr(hub, "DEFAULT_CACHE", str(tmp_path / "cache"))
    model = load_ctc(CtcTaskSpec(model=f"s3://{bucket}/w2v"), storage, "cpu")
    assert model.name == f"s3://{bucket}/w2v"
    assert model.dtype == torch.float32 and not model.model.training
    assert model.sampling_rate == 16_000 and model.frame_duration == pytest.approx(0.02)
    assert model.receptive_field == 400
    out = model.predict([np.random.default_rng(0).standard_normal(16_000).astype(np.float32)])
    assert len(out[0].ids) == model.frames(16_000) == 49


def test_load_ctc_errors_are_model_load_errors(tmp_path, tiny_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ModelLoadError, match="broken.*AutoModelForCTC"):
        load_ctc(CtcTaskSpec(model=str(broken)), NO_STORAGE, "cpu")
    with pytest.raises(ModelLoadError, match="expects 16000 Hz"):
        load_ctc(CtcTaskSpec(model=tiny_dir, sample_rate=8000), NO_STORAGE, "cpu")


def test_autocast_only_on_cuda_with_a_half_dtype():
    cases = [("cpu", torch.bfloat16), ("cuda", torch.float32), ("cuda:0", torch.bfloat16)]
    assert [uses_autocast(device, dtype) for device, dtype in cases] == [False, False, True]


class _Evil:
    """Unpickling this runs a shell command (what a hostile pytorch_model.bin does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_s4_a_pickle_checkpoint_that_runs_code_is_refused(tiny_dir, tmp_path):
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(tiny_dir, evil)
    for f in evil.glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "pwned"
    torch.save({"wav2vec2.masked_spec_embed": _Evil(marker)}, evil / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"refused by torch.load\(weights_only=True\)"):
        load_ctc(CtcTaskSpec(model=str(evil)), NO_STORAGE, "cpu")
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.parametrize("model_type", ["wav2vec2", "evil_arch"])
def test_s4_remote_code_in_a_checkpoint_is_not_run_unless_trusted(tiny_dir, tmp_path, model_type):
    import json
    import shutil

    evil = tmp_path / "remote"
    shutil.copytree(tiny_dir, evil)
    marker = tmp_path / "pwned"
    (evil / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((evil / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "evil_model.C", "AutoModelForCTC": "evil_model.M"}
    (evil / "config.json").write_text(json.dumps(config))
    if model_type == "wav2vec2":  # transformers has the code: it uses its own, not the folder's
        model = load_ctc(CtcTaskSpec(model=str(evil)), NO_STORAGE, "cpu")
        assert type(model.model).__module__.startswith("transformers.models.wav2vec2")
    else:
        with pytest.raises(ModelLoadError, match="trust_remote_code"):
            load_ctc(CtcTaskSpec(model=str(evil)), NO_STORAGE, "cpu")
    assert not marker.exists(), "the checkpoint's code ran"
