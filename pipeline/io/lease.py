"""One run at a time per output: a lease object kept in the output.

The lease lives in `<output>/_lease/` as numbered generations (`00000007.json`); the
highest number is the current lease. Taking the lease means *creating the next
generation exclusively*: two runs that both saw generation 7 expire race for the same
name `00000008.json`, and the storage lets only one create succeed:

- local disk: the body is written to a temporary file and `link()`ed to the name,
  which fails if the name exists (and a reader never sees half a body);
- S3: `PutObject` with `If-None-Match: *` (s3fs `pipe_file(mode="create")`); AWS,
  and the moto emulator the tests use, answer 412 to the second writer;
- any other fsspec storage: fsspec's check-then-write, which is *not* atomic; the
  lease then still refuses a run started while another is alive, but two runs
  started within the same second could both win (the runner says so).

The holder rewrites its own generation every `ttl / 3` seconds (heartbeat, new
expiry). A lease whose expiry has passed belongs to a dead run and is taken over by
creating the next generation; the old holder, if it was only stalled, sees the newer
generation at its next heartbeat and knows it lost the lease. Expiry is compared with
the reader's clock: keep the TTL well above the clock skew between machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import fsspec

from pipeline.errors import AudiobatchError

LEASE_DIR = "_lease"


class LeaseHeld(AudiobatchError):
    """Another run holds the output's lease and is alive (heartbeat not expired)."""

    exit_code = 3

    def __init__(self, holder: LeaseInfo, where: str):
        self.holder = holder
        left = holder.expires_at - time.time()
        super().__init__(
            f"{where} is in use by run {holder.run_id} on host {holder.host} (pid {holder.pid}), "
            f"last heartbeat {_ago(holder.heartbeat_at)}, lease expires at "
            f"{_iso(holder.expires_at)} (in {max(left, 0):.0f} s). Wait for that run to end; if "
            "its process is gone, re-run after the expiry and the lease is taken over"
        )


@dataclass(frozen=True)
class LeaseInfo:
    """The lease object's body."""

    run_id: str
    host: str
    pid: int
    generation: int
    acquired_at: float  # unix seconds
    heartbeat_at: float
    expires_at: float
    ttl_s: float
    released: bool = False

    def live(self, now: float) -> bool:
        return not self.released and self.expires_at > now

    def to_bytes(self) -> bytes:
        body = asdict(self) | {"expires_at_utc": _iso(self.expires_at)}
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseInfo:
        body = json.loads(data)
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in body.items() if k in fields})


class Lease:
    """A held lease: heartbeats in a thread until released."""

    def __init__(self, fs, folder: str, info: LeaseInfo, taken_over: LeaseInfo | None):
        self._fs, self._folder, self.info = fs, folder, info
        self.taken_over = taken_over  # the expired lease this one replaced, if any
        self.lost = False  # a newer generation exists: another run took over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return _gen_path(self._folder, self.info.generation)

    def start_heartbeat(self) -> Lease:
        self._thread = threading.Thread(target=self._beat, name="audiobatch-lease", daemon=True)
        self._thread.start()
        return self

    def heartbeat(self) -> bool:
        """Renew the expiry; False (and `lost`) when another run has taken the lease."""
        if self.lost or _exists(self._fs, _gen_path(self._folder, self.info.generation + 1)):
            self.lost = True
            return False
        now = time.time()
        self.info = replace(self.info, heartbeat_at=now, expires_at=now + self.info.ttl_s)
        _overwrite(self._fs, self.path, self.info.to_bytes())
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.lost or _exists(self._fs, _gen_path(self._folder, self.info.generation + 1)):
            self.lost = True
            return
        now = time.time()
        self.info = replace(self.info, heartbeat_at=now, expires_at=now, released=True)
        _overwrite(self._fs, self.path, self.info.to_bytes())

    def _beat(self) -> None:
        interval = self.info.ttl_s / 3
        while not self._stop.wait(interval):
            try:
                if not self.heartbeat():
                    return
            except OSError:  # a storage hiccup: retried at the next beat, before the expiry
                if time.time() > self.info.expires_at:
                    self.lost = True
                    return

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(
    fs: fsspec.AbstractFileSystem, root: str, run_id: str, ttl_s: float, *, where: str = ""
) -> Lease:
    """Take the lease of the output at `root` on `fs`, or raise `LeaseHeld`."""
    folder = posixpath.join(root, LEASE_DIR)
    where = where or root
    for _ in range(5):  # lost races re-read the winner's lease and refuse on it
        generations = _generations(fs, folder)
        current = _read(fs, folder, generations[-1]) if generations else None
        if current is None and generations:
            continue  # cleaned up between the listing and the read
        now = time.time()
        if current is not None and current.live(now):
            raise LeaseHeld(current, where)
        info = LeaseInfo(
            run_id=run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            generation=(generations[-1] + 1) if generations else 0,
            acquired_at=now,
            heartbeat_at=now,
            expires_at=now + ttl_s,
            ttl_s=ttl_s,
        )
        try:
            create_exclusive(fs, _gen_path(folder, info.generation), info.to_bytes())
        except FileExistsError:
            continue
        for old in generations[:-1]:  # keep the previous generation: who held it last
            remove(fs, _gen_path(folder, old))
        taken = current if current is not None and not current.released else None
        return Lease(fs, folder, info, taken)
    raise AudiobatchError(f"could not take the lease of {where}: too many concurrent runs")


def atomic_create(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `acquire` on this filesystem is race-free (local disk, S3)."""
    return _is_local(fs) or _protocol(fs) in ("s3", "s3a")


def create_exclusive(fs, path: str, data: bytes) -> None:
    """Create `path` with `data`, or FileExistsError if it exists (module docstring: how)."""
    if _is_local(fs):
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic; FileExistsError when another run linked first
        finally:
            os.unlink(tmp)
    else:
        # s3fs: PutObject If-None-Match: * -> FileExistsError on 412.
        fs.pipe_file(path, data, mode="create")


def _overwrite(fs, path: str, data: bytes) -> None:
    if _is_local(fs):
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def _generations(fs, folder: str) -> list[int]:
    try:
        names = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return []
    stems = [posixpath.basename(n.rstrip("/")) for n in names]
    return sorted(int(s[:-5]) for s in stems if s.endswith(".json") and s[:-5].isdigit())


def _read(fs, folder: str, generation: int) -> LeaseInfo | None:
    try:
        data = fs.cat_file(_gen_path(folder, generation))
    except FileNotFoundError:
        return None
    try:
        return LeaseInfo.from_bytes(data)
    except (ValueError, TypeError) as exc:
        raise AudiobatchError(
            f"lease {_gen_path(folder, generation)} is unreadable ({exc}); if no run is using "
            "the output, delete that file"
        ) from None


def _exists(fs, path: str) -> bool:
    return os.path.exists(path) if _is_local(fs) else fs.exists(path)


def remove(fs, path: str) -> None:
    """Delete `path`; nothing if it is already gone."""
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def _gen_path(folder: str, generation: int) -> str:
    return posixpath.join(folder, f"{generation:08d}.json")


def _protocol(fs) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def _is_local(fs) -> bool:
    return _protocol(fs) in ("file", "local")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(t: float) -> str:
    return f"{max(time.time() - t, 0):.0f} s ago ({_iso(t)})"
