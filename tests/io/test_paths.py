"""Hostile paths in the files format (README "Reliability": R1, S2): aliases of one file,
NUL bytes, paths outside the input prefix, symlinks, loops, FIFOs and directories named
like audio. Each is exactly one row: the file's, or one coded error row; nothing blocks."""

from __future__ import annotations

import json
import os
import threading

import pytest

from pipeline.io.listing import plan_input
from pipeline.io.paths import check_path, normalise, read_local
from pipeline.io.reading import read_unit
from pipeline.spec import InputSpec

MAX = 2**20


def _read(spec: InputSpec, within_s: float = 30) -> dict[str, dict]:
    """Every row of the input by member-or-file name; fails (not hangs) if reading blocks."""
    box: dict = {}

    def run():
        plan = plan_input(spec, items_per_unit=4)
        box["rows"] = box.get("rows", []) + [
            r for u in plan.units for t in read_unit(u, spec, MAX) for r in t.to_pylist()
        ]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), "reading the input blocked"
    return box["rows"]


def _manifest(root, paths: list[str]) -> str:
    path = root / "manifest.jsonl"
    path.write_text(
        "".join(json.dumps({"path": p, "text": f"t{i}"}) + "\n" for i, p in enumerate(paths))
    )
    return str(path)


def test_aliases_of_one_file_are_one_row_and_duplicate_id_error_rows(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "g003.flac").write_bytes(b"audio")
    aliases = [
        "good/g003.flac",
        "./good/g003.flac",
        "good//g003.flac",
        str(tmp_path / "good/g003.flac"),
    ]
    spec = InputSpec(uri=str(tmp_path), manifest=_manifest(tmp_path, aliases))
    rows = _read(spec)
    assert len(rows) == 4 and len({r["item_id"] for r in rows}) == 4
    ok = [r for r in rows if r["error_code"] is None]
    assert len(ok) == 1 and ok[0]["audio_bytes"] == b"audio" and ok[0]["reference"] == "t0"
    dupes = [r for r in rows if r["error_code"] == "duplicate_id"]
    assert len(dupes) == 3 and all("names the file of row 1" in r["error_message"] for r in dupes)
    # A re-run plans the same ids: the duplicates are not new items each time.
    again = [r["item_id"] for r in _read(spec)]
    assert sorted(again) == sorted(r["item_id"] for r in rows)


def test_a_nul_byte_in_a_manifest_path_is_one_error_row(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"a")
    spec = InputSpec(uri=str(tmp_path), manifest=_manifest(tmp_path, ["a.wav", "b\x00.wav"]))
    rows = {r["error_code"]: r for r in _read(spec)}
    assert set(rows) == {None, "invalid_input"}
    assert "NUL or control character" in rows["invalid_input"]["error_message"]


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "file:///etc/passwd", "../../../../etc/hostname", "/proc/self/environ"],
)
def test_manifest_paths_outside_the_input_prefix_are_refused(tmp_path, path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    spec = InputSpec(uri=str(corpus), manifest=_manifest(corpus, [path]))
    (row,) = _read(spec)
    assert row["error_code"] == "invalid_input" and row["audio_bytes"] is None
    assert (
        "outside the input prefix" in row["error_message"] or "never read" in row["error_message"]
    )


def test_allow_outside_paths_reads_them_but_never_proc_sys_or_dev(tmp_path):
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    corpus.mkdir()
    elsewhere.mkdir()
    (elsewhere / "x.wav").write_bytes(b"x")
    paths = [str(elsewhere / "x.wav"), "/proc/self/environ", "/dev/zero", "/sys/kernel/notes"]
    spec = InputSpec(uri=str(corpus), manifest=_manifest(corpus, paths), allow_outside_paths=True)
    rows = {r["source_uri"]: r for r in _read(spec)}
    assert rows[str(elsewhere / "x.wav")]["audio_bytes"] == b"x"
    for p in paths[1:]:
        assert rows[p]["error_code"] == "invalid_input" and "never read" in rows[p]["error_message"]


def test_r1_symlinks_loops_fifos_and_directories_named_like_audio(tmp_path):
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir()
    outside.mkdir()
    (corpus / "good.wav").write_bytes(b"good")
    (outside / "secret.wav").write_bytes(b"secret")
    os.symlink("good.wav", corpus / "link.wav")  # inside: followed
    os.symlink(outside / "secret.wav", corpus / "escape.wav")  # leads outside: refused
    os.symlink("loop2.wav", corpus / "loop1.wav")
    os.symlink("loop1.wav", corpus / "loop2.wav")
    os.symlink("gone.wav", corpus / "broken.wav")
    os.mkfifo(corpus / "fifo.wav")  # opening it for reading would block forever
    (corpus / "dir.wav").mkdir()
    rows = {r["source_uri"].rsplit("/", 1)[1]: r for r in _read(InputSpec(uri=str(corpus)))}
    assert set(rows) == {
        "good.wav",
        "link.wav",
        "escape.wav",
        "loop1.wav",
        "loop2.wav",
        "broken.wav",
        "fifo.wav",
        "dir.wav",
    }
    assert rows["good.wav"]["audio_bytes"] == rows["link.wav"]["audio_bytes"] == b"good"
    codes = {name: (r["error_code"], r["error_message"]) for name, r in rows.items()}
    assert codes["escape.wav"][0] == "invalid_input" and "symlink" in codes["escape.wav"][1]
    assert codes["loop1.wav"] == ("read_failed", f"{corpus}/loop1.wav is a symlink loop")
    assert codes["broken.wav"][0] == "missing_audio"
    assert codes["fifo.wav"] == (
        "read_failed",
        f"{corpus}/fifo.wav is a FIFO, not a file: not read",
    )
    assert codes["dir.wav"] == (
        "read_failed",
        f"{corpus}/dir.wav is a directory, not a file: not read",
    )
    # Nothing is read twice or dropped: one row per path, ids distinct.
    assert len({r["item_id"] for r in rows.values()}) == len(rows)


def test_fifo_named_in_a_manifest_is_never_opened_for_a_blocking_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    spec = InputSpec(uri=str(tmp_path), manifest=_manifest(tmp_path, ["pipe.wav"]))
    (row,) = _read(spec, within_s=20)
    assert row["error_code"] == "read_failed" and "FIFO" in row["error_message"]


def test_path_rules():
    assert normalise("/a/./b//c/../d.wav") == "/a/b/d.wav"
    assert check_path("/data/x.wav", "/data", allow_outside=False, local=True) is None
    assert check_path("/database/x.wav", "/data", allow_outside=False, local=True) is not None
    assert check_path("/proc/1/mem", "/", allow_outside=True, local=True) is not None
    assert check_path("bucket/other/x", "bucket/in", allow_outside=False, local=False) is not None
    assert check_path("bucket/in/x", "bucket/in", allow_outside=False, local=False) is None
    data = read_local("/nonexistent/x.wav", "/nonexistent", allow_outside=False, max_bytes=MAX)
    assert str(data.code) == "missing_audio"
