"""Killed work on the session's local Ray cluster (README "Reliability", R3 and R4): a
model actor SIGKILLed mid-batch, and the driver killed while a write's checkpoint is
pending. Each ends with every item exactly once in `transcripts` or `errors`, nothing
pending, and no completion file that no committed checkpoint covers. Only processes the test started, or actors of
the job it started, are signalled, each by its pid."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline.io.tables import parquet_files, read_table
from pipeline.io.units import item_id
from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_ctc import build_tiny_ctc

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "audiobatch")
STAGE = "Stage_ctc"  # the actor class name the runner gives the ctc task's pool
PENDING = ".pending.parquet"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _write_spec(path: Path, corpus: Path, out: Path, model: str) -> Path:
    path.write_text(
        "name: killed\n"
        f"input: {{uri: '{corpus}', manifest: '{corpus}/manifest.jsonl'}}\n"
        f"tasks: [{{kind: ctc, model: '{model}', batch_size: 4, actors: 1}}]\n"
        f"output: {{uri: '{out}', lease_ttl_s: 2}}\n"
        "runtime: {read_batch_items: 4, decode_batch_size: 4, progress_interval_s: 1}\n"
    )
    return path


def _checkpoints(out: Path) -> tuple[list[Path], list[Path]]:
    """(committed, pending) checkpoint files of the output."""
    files = sorted((out / "_checkpoint").glob("*.parquet"))
    return [p for p in files if not p.name.endswith(PENDING)], [
        p for p in files if p.name.endswith(PENDING)
    ]


def _landed(out: Path) -> tuple[list[str], dict[str, str]]:
    fs = pafs.LocalFileSystem()
    rows, errors = read_table(fs, str(out), "transcripts"), read_table(fs, str(out), "errors")
    ok = [] if rows is None else rows.column("item_id").to_pylist()
    if errors is None:
        return ok, {}
    ids, codes = (errors.column(c).to_pylist() for c in ("item_id", "error_code"))
    return ok + ids, dict(zip(ids, codes, strict=True))


def _uncovered(out: Path) -> list[str]:
    """Completion files whose write never committed: each carries its write task's base
    name, which that task's committed checkpoint carries (pipeline/runner/datasink.py), or
    is a merge of committed ones with a checkpoint of its own (io/completion.py `compact`).
    The table files of a merged write have no checkpoint of their name any more: a leftover
    of a write that never committed shows there as an item landed twice instead."""
    committed = {p.name for p in _checkpoints(out)[0]}
    data = parquet_files(pafs.LocalFileSystem(), str(out / "_completion"))
    return [f for f in data if Path(f).name not in committed]


def _expected(items, corpus: Path) -> dict[str, str]:
    return {item_id(str(corpus / it.path), ""): it.expected for it in items}


def _assert_exactly_once(out: Path, expected: dict[str, str]) -> None:
    landed, codes = _landed(out)
    doubled = [i for i, n in collections.Counter(landed).items() if n > 1]
    assert not doubled, f"{len(doubled)} items landed twice"
    assert sorted(landed) == sorted(expected), "every item exactly once in transcripts or errors"
    assert codes == {i: o for i, o in expected.items() if o != "ok"}, "no item failed for the kill"
    assert not _uncovered(out), "completion records of a write that never committed"
    assert not _checkpoints(out)[1], "a pending checkpoint is left"
    assert not list(out.rglob("*.tmp")), "no half-written files are left behind"


def _stage_actors() -> dict[str, dict]:
    """The model pool's actors on the session's cluster (GCS actor table), by actor id.

    `ray.util.state` needs the dashboard, which the session's cluster runs without
    (tests/conftest.py); the GCS table Ray's own state API reads has the pid too."""
    from ray._private import state

    return {a: info for a, info in state.actors().items() if STAGE in info["ActorClassName"]}


def _stage_counts(log: Path) -> dict[str, int]:
    """Items past each stage, from the driver's last progress line ("stages: decode 8 ctc 4")."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "stages:" in ln]
    if not lines:
        return {}
    words = lines[-1].split("stages:")[1].replace(",", "").split()
    return {name: int(n) for name, n in zip(words[::2], words[1::2], strict=False)}


def _busy_actor(before: set[str], driver, log: Path, total: int, timeout_s: float = 300) -> dict:
    """The started job's model actor while it runs a batch (its process title names the
    method it runs), once the model stage has done some of the items and not all."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and driver.poll() is None:
        if 0 < _stage_counts(log).get("ctc", 0) < total:
            for aid, info in _stage_actors().items():
                if aid in before or info["State"] != "ALIVE" or not info["Pid"]:
                    continue
                # "ray::MapWorker(MapBatches(Stage_ctc)).submit" while it runs a batch
                if _title(info["Pid"]).endswith(").submit"):
                    return info | {"counts": _stage_counts(log)}
        time.sleep(0.02)
    raise AssertionError(f"no busy model actor mid-run (driver rc {driver.poll()})")


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_r3_a_model_actor_killed_mid_batch_is_restarted_and_every_item_lands_once(
    ray_address, tmp_path, tiny_model
):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=200, seed=5, broken=True, manifest="jsonl")
    expected = _expected(items, corpus)
    spec = _write_spec(tmp_path / "job.yaml", corpus, out, tiny_model)
    before = set(_stage_actors())
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        driver = subprocess.Popen(
            [CLI, "run", str(spec), "--address", ray_address],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            victim = _busy_actor(before, driver, log, len(expected))
            os.kill(victim["Pid"], signal.SIGKILL)
            rc = driver.wait(timeout=600)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
    assert rc == 0, log.read_text()[-3000:]
    # Mid-run: the model stage had done some items, not all, and was running a batch.
    assert 0 < victim["counts"]["ctc"] < len(expected), victim["counts"]
    restarted = _stage_actors()[victim["ActorID"]]
    assert restarted["NumRestarts"] >= 1 and restarted["Pid"] != victim["Pid"], restarted
    _assert_exactly_once(out, expected)
    runs = read_table(pafs.LocalFileSystem(), str(out), "runs").column("status").to_pylist()
    assert runs == ["succeeded"]


ROOT = Path(__file__).resolve().parents[2]


def test_r4_the_driver_killed_while_a_checkpoint_is_pending_then_rerun_lands_each_item_once(
    ray_address, tmp_path, tiny_model
):
    """The third write task writes its files and stops before its commit (tests/runner/
    held_write.py); the driver is killed right then. The re-run deletes that write's files
    and its pending checkpoint and does its items again."""
    corpus, out, hold = tmp_path / "corpus", tmp_path / "out", tmp_path / "hold"
    hold.mkdir()
    items = build_files_corpus(str(corpus), n_items=120, seed=6, broken=True, manifest="jsonl")
    expected = _expected(items, corpus)
    spec = _write_spec(tmp_path / "job.yaml", corpus, out, tiny_model)
    args = ["run", str(spec), "--address", ray_address]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.runner.held_write", str(hold), "2", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (hold / "held").exists() and driver.poll() is None:
            assert time.monotonic() < deadline, "no write was held within 300 s"
            time.sleep(0.05)
        time.sleep(0.2)  # the base name is written just after the file is made
        base = (hold / "held").read_text()
        assert base, "the held write named its base"
        pending = out / "_checkpoint" / f"{base}{PENDING}"
        files = [p for p in out.rglob(f"{base}.parquet") if "_checkpoint" not in p.parts]
        assert pending.is_file() and driver.poll() is None, "the driver is killed mid-write"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # the driver process, not an exception
        driver.wait()
    tables = {p.relative_to(out).parts[0] for p in files}
    assert "_completion" in tables and tables & {"transcripts", "errors"}, files
    landed_before = _landed(out)[0]
    assert len(landed_before) < len(expected)

    time.sleep(2.5)  # the killed driver's lease expires (tests/runner/test_lease_integration.py)
    done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not pending.exists(), "the re-run removed the pending checkpoint"
    assert not [p for p in out.rglob(f"{base}*")], "and the held write's files"
    _assert_exactly_once(out, expected)
    runs = read_table(pafs.LocalFileSystem(), str(out), "runs").column("status").to_pylist()
    assert sorted(runs) == ["interrupted", "succeeded"]
