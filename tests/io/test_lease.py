"""The output lease: one winner among racing runs, refusal naming the holder, takeover
after expiry, and a stalled holder that learns it lost the lease."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from pipeline.io.lease import LEASE_DIR, LeaseHeld, LeaseInfo, acquire, atomic_create
from pipeline.io.storage import filesystem
from pipeline.spec import StorageOptions


def _race(uri: str, endpoint: str | None, run_id: str, barrier, results) -> None:
    fs, root = filesystem(uri, StorageOptions(endpoint_url=endpoint))
    fs.exists(root)  # the first request sets up the client: done before the race starts
    barrier.wait(timeout=120)
    try:
        acquire(fs, root, run_id, ttl_s=60)
        results.put(("won", run_id))
    except LeaseHeld as exc:
        results.put(("held", exc.holder.run_id))


def _race_processes(uri: str, endpoint: str | None = None, n: int = 4) -> list[tuple[str, str]]:
    # Local: forked processes start in milliseconds; S3: spawned, so no client state is shared.
    ctx = multiprocessing.get_context("spawn" if endpoint else "fork")
    results, barrier = ctx.Queue(), ctx.Barrier(n)
    procs = [
        ctx.Process(target=_race, args=(uri, endpoint, f"r{i}", barrier, results)) for i in range(n)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return outcomes


def _check_one_winner(outcomes: list[tuple[str, str]]) -> None:
    winners = [r for kind, r in outcomes if kind == "won"]
    assert len(winners) == 1, outcomes
    assert all(r == winners[0] for kind, r in outcomes if kind == "held"), outcomes


def test_racing_processes_on_local_disk_have_one_winner(tmp_path):
    _check_one_winner(_race_processes(str(tmp_path / "out")))


def test_live_lease_is_refused_naming_the_holder_and_expired_one_taken_over(tmp_path):
    fs, root = filesystem(str(tmp_path / "out"))
    first = acquire(fs, root, "night-1", ttl_s=2)
    with pytest.raises(LeaseHeld) as held:
        acquire(fs, root, "night-2", ttl_s=2)
    assert held.value.exit_code == 3
    assert "run night-1 on host" in str(held.value) and f"pid {first.info.pid}" in str(held.value)
    time.sleep(2.1)  # the holder never beat: as if it had been killed
    second = acquire(fs, root, "night-2", ttl_s=2)
    assert second.taken_over is not None and second.taken_over.run_id == "night-1"
    assert second.info.generation == first.info.generation + 1
    # The stalled first holder finds out at its next heartbeat and does not overwrite.
    assert first.heartbeat() is False and first.lost
    assert LeaseInfo.from_bytes((tmp_path / "out" / LEASE_DIR / "00000001.json").read_bytes()) == (
        second.info
    )


def test_heartbeat_keeps_a_lease_alive_past_its_ttl_and_release_frees_it(tmp_path):
    fs, root = filesystem(str(tmp_path / "out"))
    lease = acquire(fs, root, "long", ttl_s=2).start_heartbeat()
    time.sleep(3)  # past the first expiry: only the heartbeat thread keeps it
    with pytest.raises(LeaseHeld):
        acquire(fs, root, "other", ttl_s=2)
    lease.release()
    after = acquire(fs, root, "other", ttl_s=2)
    assert after.taken_over is None  # released, not taken over
    assert sorted(p.name for p in (tmp_path / "out" / LEASE_DIR).iterdir()) == [
        "00000000.json",
        "00000001.json",
    ], "older generations are cleaned up, the previous one is kept, no temp files"


def test_only_local_and_s3_count_as_atomic():
    assert atomic_create(filesystem("/tmp/x")[0])
    assert atomic_create(filesystem("s3://bucket/x")[0])
    assert not atomic_create(filesystem("memory://x")[0])


@pytest.mark.integration
def test_racing_processes_on_s3_have_one_winner(s3_bucket):
    endpoint, bucket = s3_bucket
    _check_one_winner(_race_processes(f"s3://{bucket}/out", endpoint, n=3))
    fs, root = filesystem(f"s3://{bucket}/out", StorageOptions(endpoint_url=endpoint))
    with pytest.raises(LeaseHeld):
        acquire(fs, root, "late", ttl_s=5)
