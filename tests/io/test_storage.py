"""Storage faults through a loopback fault proxy in front of the S3 emulator: 503s and
resets are retried to exact bytes, a stalled object costs its own row after its
deadline, and an endpoint that is down or silent is one StorageError naming the URI
(README "Reliability": R5, R6, R7)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.errors import StorageError
from pipeline.io.reading import read_unit
from pipeline.io.storage import bounded, filesystem, probe, read_object, storage_errors
from pipeline.io.units import FileEntry, WorkUnit
from pipeline.spec import InputSpec, StorageOptions
from tests.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "audiobatch")


def _finishes(fn, within_s: float):
    """fn()'s result, failing the test (not hanging it) if it has not returned in time."""
    box: dict = {}

    def run():
        try:
            box["v"] = fn()
        except Exception as exc:
            box["e"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), f"still running after {within_s:g} s"
    if "e" in box:
        raise box["e"]
    return box["v"]


def test_503s_and_resets_are_retried_to_exact_bytes(s3_bucket):
    endpoint, bucket = s3_bucket
    blobs = {f"{bucket}/r5/{i}": os.urandom(50 + 40_000 * (i % 4)) for i in range(24)}
    with FaultProxy(endpoint, Faults(error_share=0.2, reset_share=0.05, seed=5)) as proxy:
        fs, _ = filesystem(f"s3://{bucket}", StorageOptions(endpoint_url=proxy.url))
        for path, data in blobs.items():
            fs.pipe_file(path, data)
        got = {p: read_object(fs, p, 60) for p in blobs}
        listed = fs.find(f"{bucket}/r5")
        counts = dict(proxy.faults.counts)
    assert got == blobs and sorted(listed) == sorted(blobs)
    assert counts["error"] > 5 and counts["reset"] > 0  # the faults really happened


def test_a_stalled_get_costs_its_own_row_after_the_deadline_and_the_rest_read(s3_bucket):
    endpoint, bucket = s3_bucket
    boto_fs, _ = filesystem(f"s3://{bucket}", StorageOptions(endpoint_url=endpoint))
    for name in ("a", "b", "c"):
        boto_fs.pipe_file(f"{bucket}/r7/{name}.wav", name.encode() * 100)
    with FaultProxy(endpoint, Faults(stall=rf"GET /{bucket}/r7/b\.wav")) as proxy:
        storage = {"endpoint_url": proxy.url, "timeout_s": 3}
        spec = InputSpec(uri=f"s3://{bucket}/r7", storage=storage)
        files = tuple(FileEntry(f"s3://{bucket}/r7/{n}.wav", ".", 100) for n in ("a", "b", "c"))
        unit = WorkUnit("files", num_items=3, files=files)
        tables = _finishes(lambda: list(read_unit(unit, spec, 2**20)), within_s=60)
    rows = {r["source_uri"].rsplit("/", 1)[1]: r for t in tables for r in t.to_pylist()}
    assert rows["a.wav"]["audio_bytes"] == b"a" * 100 and rows["c.wav"]["audio_bytes"] == b"c" * 100
    stalled = rows["b.wav"]
    assert stalled["audio_bytes"] is None and stalled["error_code"] == "read_failed"
    assert "no answer within 3 s" in stalled["error_message"]


@pytest.mark.parametrize("mode", ["refuses", "silent"])
def test_an_endpoint_down_or_silent_is_one_storage_error_naming_the_uri(s3_endpoint, mode):
    faults = Faults(down=True) if mode == "refuses" else Faults(stall=".*")
    with FaultProxy(s3_endpoint, faults) as proxy:
        storage = StorageOptions(endpoint_url=proxy.url, timeout_s=5)
        with pytest.raises(StorageError) as err:
            _finishes(lambda: probe("s3://bkt/in/", storage, "input"), within_s=60)
    message = str(err.value)
    assert message.startswith("input s3://bkt/in/: storage failed") and "\n" not in message
    assert proxy.url in message


def test_storage_errors_leave_missing_paths_and_bugs_alone():
    with pytest.raises(FileNotFoundError), storage_errors("s3://b/x", "input"):
        raise FileNotFoundError("b/x")
    with pytest.raises(KeyError), storage_errors("s3://b/x", "input"):
        raise KeyError("ours")
    failed = pytest.raises(StorageError, match="output s3://b/x: storage failed")
    with failed, storage_errors("s3://b/x", "output"):
        raise ConnectionResetError("reset by peer")
    assert bounded(lambda: 7, 1, "seven") == 7
    with pytest.raises(ValueError, match="boom"):
        bounded(lambda: (_ for _ in ()).throw(ValueError("boom")), 1, "boom")


@pytest.mark.parametrize("side", ["input", "output"])
def test_cli_exits_5_with_one_line_when_storage_is_down(s3_bucket, tmp_path, side):
    endpoint, bucket = s3_bucket
    with FaultProxy(endpoint, Faults(down=True)) as proxy:
        good, down = f"{{endpoint_url: '{endpoint}'}}", f"{{endpoint_url: '{proxy.url}'}}"
        spec = tmp_path / "job.yaml"
        spec.write_text(
            "name: down\n"
            f"input: {{uri: 's3://{bucket}/in/', storage: {down if side == 'input' else good}}}\n"
            "tasks: [{kind: ctc, model: /nonexistent}]\n"
            f"output: {{uri: 's3://{bucket}/out/', storage: {down if side == 'output' else good}}}\n"
        )
        out = subprocess.run(
            [CLI, "run", str(spec)], capture_output=True, text=True, timeout=120, env=os.environ
        )
    assert out.returncode == 5, out.stderr[-2000:]
    assert out.stderr.startswith(f"audiobatch: error: {side} s3://{bucket}/")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
