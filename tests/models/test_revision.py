"""Resolved model revisions (pipeline/models/revision.py): content hashes of folders and
object-storage prefixes, hub commits, and the memo that spares hashing weights each run."""

import json

import boto3
import pytest

from pipeline.errors import ModelLoadError
from pipeline.models import revision
from pipeline.models.revision import folder_revision, hub_commit, resolve_revision
from pipeline.spec import StorageOptions


@pytest.fixture(autouse=True)
def memo_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(revision.MEMO_ENV, str(tmp_path / "memo"))
    return tmp_path / "memo"


def _folder(root, weights=b"\x00" * 1000):
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_a_folder_revision_is_its_content(tmp_path):
    a = folder_revision(_folder(tmp_path / "a"))
    b = folder_revision(_folder(tmp_path / "b"))
    assert a == b and a.startswith("sha256:") and len(a) == len("sha256:") + 16
    c = folder_revision(_folder(tmp_path / "c", weights=b"\x00" * 999 + b"\x01"))
    assert c != a
    (tmp_path / "a" / "extra_tokens.json").write_text("{}")
    assert folder_revision(tmp_path / "a") != a
    (tmp_path / "a" / ".hidden").write_text("not part of the model")
    (tmp_path / "a" / "extra_tokens.json").unlink()
    assert folder_revision(tmp_path / "a") == a


def test_the_memo_is_used_while_no_file_changed(tmp_path, memo_dir):
    folder = _folder(tmp_path / "m")
    first = folder_revision(folder)
    (memo_path,) = memo_dir.glob("*.json")
    memo = json.loads(memo_path.read_text())
    memo["revision"] = "sha256:from-the-memo"
    memo_path.write_text(json.dumps(memo))
    assert folder_revision(folder) == "sha256:from-the-memo"  # stats unchanged: not hashed
    (folder / "model.safetensors").write_bytes(b"\x02" * 1000)  # same size, new mtime
    assert folder_revision(folder) not in (first, "sha256:from-the-memo")


def test_a_local_model_that_is_not_a_model_folder_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        resolve_revision(str(tmp_path / "missing"), None, StorageOptions())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        resolve_revision(str(tmp_path / "empty"), None, StorageOptions())


def test_a_commit_is_its_own_revision_and_an_unknown_hub_id_offline_is_refused(monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert hub_commit("org/model", sha) == sha
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="cannot resolve revision 'main' to a commit"):
        hub_commit("audiobatch-test/not-cached", None)


@pytest.mark.integration
def test_an_object_storage_revision_follows_its_etags(s3_bucket):
    endpoint, bucket = s3_bucket
    s3 = boto3.client("s3", endpoint_url=endpoint)
    storage = StorageOptions(endpoint_url=endpoint)
    s3.put_object(Bucket=bucket, Key="m/config.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="m/model.safetensors", Body=b"\x00" * 100)
    first = resolve_revision(f"s3://{bucket}/m", None, storage)
    assert (
        first.startswith("etag:") and resolve_revision(f"s3://{bucket}/m/", None, storage) == first
    )
    s3.put_object(Bucket=bucket, Key="m/model.safetensors", Body=b"\x01" * 100)
    assert resolve_revision(f"s3://{bucket}/m", None, storage) != first
    with pytest.raises(ModelLoadError, match="no objects under this prefix"):
        resolve_revision(f"s3://{bucket}/nothing", None, storage)
