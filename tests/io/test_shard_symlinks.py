"""Symlinks and other non-files named like shards, in the webdataset and parquet formats
(README "Reliability", R1; issue 16 item 3), on shards made by the real writers
(`webdataset.TarWriter`, `datasets` + `embed_table_storage`). A symlink that leads to a
shard inside the input prefix is read like that shard; one leading outside, a loop, a
broken symlink, a FIFO and a directory named like a shard are one error row each, naming
the path; none is silently absent and nothing blocks."""

from __future__ import annotations

import collections
import os
import shutil
import threading

import pytest

from pipeline.io.listing import plan_input
from pipeline.io.reading import read_unit
from pipeline.spec import InputSpec
from tests.io.corpora import hf_parquet_embedded, webdataset_dotted, write_clips

MAX = 64 * 2**20


def _rows(spec: InputSpec, within_s: float = 60) -> list[dict]:
    """Every row of the input, read the way a run does; fails (not hangs) if reading blocks."""
    box: dict = {}

    def run():
        plan = plan_input(spec, items_per_unit=4)
        box["rows"] = [
            r for u in plan.units for t in read_unit(u, spec, MAX, 8) for r in t.to_pylist()
        ]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), "listing or reading the input blocked"
    return box["rows"]


def _shard(fmt: str, folder, tmp_path):
    """One real shard of `fmt` in `folder`; its path."""
    if fmt == "webdataset":
        return webdataset_dotted(folder)
    clips = write_clips(tmp_path / f"clips-{folder.name}", 3)
    return hf_parquet_embedded(clips, folder / "train-000.parquet", text=["a", "b", "c"])


def _hostile_corpus(fmt: str, tmp_path):
    ext = "tar" if fmt == "webdataset" else "parquet"
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    real = _shard(fmt, corpus / "store", tmp_path)
    escape_to = _shard(fmt, outside, tmp_path)
    os.symlink(real, corpus / f"link.{ext}")  # inside the prefix: followed
    os.symlink(os.path.relpath(real, corpus), corpus / f"rel.{ext}")  # relative, inside
    os.symlink(escape_to, corpus / f"escape.{ext}")  # leads outside: refused
    os.symlink(f"loop2.{ext}", corpus / f"loop1.{ext}")
    os.symlink(f"loop1.{ext}", corpus / f"loop2.{ext}")
    os.symlink(f"gone.{ext}", corpus / f"broken.{ext}")
    os.mkfifo(corpus / f"fifo.{ext}")  # opening it for reading would block forever
    (corpus / f"dir.{ext}").mkdir()
    return corpus, real, ext


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_shard_symlinks_inside_are_read_and_every_other_non_file_is_one_error_row(fmt, tmp_path):
    corpus, real, ext = _hostile_corpus(fmt, tmp_path)
    rows = _rows(InputSpec(uri=str(corpus), format=fmt))
    by_shard = collections.defaultdict(list)
    for r in rows:
        by_shard[r["source_uri"].removeprefix("file://").removeprefix(str(corpus) + "/")].append(r)
    stored = f"store/{real.name}"
    assert set(by_shard) == {
        stored,
        f"link.{ext}",
        f"rel.{ext}",
        f"escape.{ext}",
        f"loop1.{ext}",
        f"loop2.{ext}",
        f"broken.{ext}",
        f"fifo.{ext}",
        f"dir.{ext}",
    }, "no path named like a shard is silently absent"
    # The symlinks inside are the shard they lead to: the same samples, under their own ids.
    want = [(r["member"], r["audio_bytes"], r["error_code"]) for r in by_shard[stored]]
    assert len(want) >= 3 and any(code is None for *_, code in want)
    for name in (f"link.{ext}", f"rel.{ext}"):
        assert [(r["member"], r["audio_bytes"], r["error_code"]) for r in by_shard[name]] == want
    assert len({r["item_id"] for r in rows}) == len(rows)

    # Everything else: exactly one error row for the shard (member ""), naming the path.
    def error(name):
        (row,) = by_shard[name]
        assert row["member"] == "" and str(corpus / name) in row["error_message"], row
        return row["error_code"], row["error_message"].removeprefix(f"{corpus}/{name}")

    assert error(f"escape.{ext}")[0] == "invalid_input"
    assert "symlink" in error(f"escape.{ext}")[1]
    assert error(f"loop1.{ext}") == ("read_failed", " is a symlink loop")
    assert error(f"loop2.{ext}") == ("read_failed", " is a symlink loop")
    assert error(f"broken.{ext}")[0] == "missing_audio"
    assert error(f"fifo.{ext}") == ("read_failed", " is a FIFO, not a file: not read")
    assert error(f"dir.{ext}") == ("read_failed", " is a directory, not a file: not read")


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_a_shard_symlink_leading_outside_is_read_with_allow_outside_paths(fmt, tmp_path):
    corpus, real, ext = _hostile_corpus(fmt, tmp_path)
    for name in ("loop1", "loop2", "broken", "fifo"):
        os.unlink(corpus / f"{name}.{ext}")
    shutil.rmtree(corpus / f"dir.{ext}")
    rows = _rows(InputSpec(uri=str(corpus), format=fmt, allow_outside_paths=True))
    escaped = [r for r in rows if r["source_uri"].endswith(f"/escape.{ext}")]
    stored = [r for r in rows if r["source_uri"].endswith(f"/store/{real.name}")]
    assert len(escaped) == len(stored) >= 3
    assert any(r["audio_bytes"] and r["error_code"] is None for r in escaped)


def test_a_shard_symlink_is_detected_as_its_format(tmp_path):
    """An input of nothing but symlinked shards is still detected as webdataset."""
    corpus = tmp_path / "corpus"
    real = webdataset_dotted(tmp_path / "elsewhere")
    corpus.mkdir()
    store = corpus / "store"
    shutil.copytree(real.parent, store)
    os.symlink(store / real.name, corpus / "current.tar")
    plan = plan_input(InputSpec(uri=str(corpus)))
    assert plan.format == "webdataset"
    assert sorted(u.shard for u in plan.units) == ["current.tar", f"store/{real.name}"]
