"""DecodeStage on mixed batches: one row out per row in, bad rows carry their error."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.columns import AUDIO, AUDIO_BYTES, AUDIO_FIELDS, ITEM_SCHEMA
from pipeline.io.audio import decode_audio
from pipeline.spec import DecodeSpec
from pipeline.stages import decode as decode_module
from pipeline.stages.decode import DecodeStage
from pipeline.testing.corpus import encode

RATE = 16000


def tone(rate: int, seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 300 * np.arange(round(rate * seconds)) / rate)).astype(
        np.float32
    )


def batch(entries: list[tuple[bytes | None, str | None]]) -> pa.Table:
    """Item rows as the read step emits them; a code marks a row that already failed."""
    rows = [
        {
            "item_id": f"id{i}",
            "source_uri": "mem://corpus",
            "member": f"m{i}",
            "shard": "shard-0",
            "audio_bytes": data,
            "reference": None,
            "metadata": None,
            "input_bytes": None if data is None else len(data),
            "error_stage": "read" if code else None,
            "error_code": code,
            "error_message": "could not fetch" if code else None,
        }
        for i, (data, code) in enumerate(entries)
    ]
    return pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


GOOD_FLAC = encode(tone(RATE, 0.5), RATE, "flac")
GOOD_WAV_8K = encode(tone(8000, 0.25), 8000, "wav")


def test_mixed_batch_keeps_every_row_and_records_errors():
    entries = [
        (GOOD_FLAC, None),
        (b"not audio at all", None),
        (b"junk that was never read", "read_failed"),
        (None, None),
        (b"", None),
        (GOOD_WAV_8K, None),
    ]
    out = DecodeStage(DecodeSpec(), RATE)(batch(entries))

    assert out.num_rows == len(entries)
    assert out.column("item_id").to_pylist() == [f"id{i}" for i in range(len(entries))]
    assert AUDIO_BYTES not in out.column_names
    for field in AUDIO_FIELDS:
        assert out.schema.field(field.name).type == field.type
    rows = out.to_pylist()
    assert [r["error_code"] for r in rows] == [
        None,
        "undecodable",
        "read_failed",
        "missing_audio",
        "empty",
        None,
    ]
    assert [r["error_stage"] for r in rows] == [None, "decode", "read", "decode", "decode", None]
    assert rows[2]["error_message"] == "could not fetch"  # an earlier failure is left alone
    assert "m1" in rows[1]["error_message"] and "tried: soundfile" in rows[1]["error_message"]
    for i in (1, 2, 3, 4):
        assert (
            rows[i]["audio"] is None
            and rows[i]["sample_rate"] is None
            and rows[i]["duration_s"] is None
        )
    assert [rows[i]["duration_s"] for i in (0, 5)] == [pytest.approx(0.5), pytest.approx(0.25)]
    assert rows[0]["sample_rate"] == rows[5]["sample_rate"] == RATE


def test_audio_column_holds_exactly_what_decode_audio_returns():
    out = DecodeStage(DecodeSpec(), RATE)(
        batch([(GOOD_WAV_8K, None), (b"bad", None), (GOOD_FLAC, None)])
    )
    audio = out.column("audio")
    for i, data in ((0, GOOD_WAV_8K), (2, GOOD_FLAC)):
        expected = decode_audio(data, target_rate=RATE, limits=DecodeSpec()).samples
        np.testing.assert_array_equal(audio[i].values.to_numpy(), expected)
    assert audio.null_count == 1 and not audio[1].is_valid


def test_limits_from_the_spec_apply_per_row():
    long_wav = encode(tone(RATE, 3.0), RATE, "wav")
    out = DecodeStage(DecodeSpec(max_duration_s=2.0), RATE)(
        batch([(long_wav, None), (GOOD_FLAC, None)])
    )
    assert out.column("error_code").to_pylist() == ["too_long", None]


def test_a_decoder_crash_costs_one_row_not_the_batch(monkeypatch):
    def flaky(data, *, target_rate, limits, name=""):
        if name == "m1":
            raise ZeroDivisionError("bug in a decoder")
        return decode_audio(data, target_rate=target_rate, limits=limits, name=name)

    monkeypatch.setattr(decode_module, "decode_audio", flaky)
    out = DecodeStage(DecodeSpec(), RATE)(batch([(GOOD_FLAC, None), (GOOD_FLAC, None)]))
    assert out.column("error_code").to_pylist() == [None, "undecodable"]
    assert "ZeroDivisionError: bug in a decoder" in out.column("error_message")[1].as_py()


def test_all_rows_already_failed_pass_through():
    out = DecodeStage(DecodeSpec(), RATE)(batch([(b"x", "read_failed"), (None, "shard_corrupt")]))
    assert out.column("error_code").to_pylist() == ["read_failed", "shard_corrupt"]
    assert out.column("audio").null_count == 2 and AUDIO_BYTES not in out.column_names


def test_empty_batch():
    out = DecodeStage(DecodeSpec(), RATE)(batch([]))
    assert out.num_rows == 0 and "audio" in out.column_names


def test_stage_declares_its_columns():
    stage = DecodeStage(DecodeSpec(), RATE)
    assert stage.name == "decode"
    assert list(stage.reads()) == list(stage.drops()) == [AUDIO_BYTES]
    assert stage.adds() == pa.schema(AUDIO_FIELDS)


def hostile_wav(frames: int, rate: int = 1) -> bytes:
    """A tiny PCM WAV at `rate` Hz: `frames` samples that resample to frames * 16000 / rate."""
    data = b"\x10\x00" * frames
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_calls_cut_a_batch_into_blocks_by_decoded_bytes_keeping_every_row_in_order():
    # 344 bytes each, 9.2 MiB each once decoded at 16 kHz.
    big = hostile_wav(150)
    entries = [(big, None), (GOOD_FLAC, None), (b"junk", None), (None, "read_failed")] * 4
    stage = DecodeStage(DecodeSpec(max_batch_mb=16), RATE)
    blocks = list(stage.calls(batch(entries)))
    # Every second hostile item takes a block past 16 MiB and closes it.
    assert [b.num_rows for b in blocks] == [5, 8, 3]
    out = pa.concat_tables(blocks)
    assert out.column("item_id").to_pylist() == [f"id{i}" for i in range(16)]
    assert all(b.column(AUDIO).nbytes <= 2 * 150 * 16000 * 4 + 2**20 for b in blocks)
    codes = out.column("error_code").to_pylist()
    assert codes == [None, None, "undecodable", "read_failed"] * 4
    whole = stage(batch(entries))  # the same rows as one call
    for i in (0, 1):
        assert np.array_equal(out.column(AUDIO)[i].values, whole.column(AUDIO)[i].values)


def test_calls_yield_one_block_for_ordinary_batches_and_an_empty_one_for_none():
    stage = DecodeStage(DecodeSpec(), RATE)
    assert [b.num_rows for b in stage.calls(batch([(GOOD_FLAC, None)] * 5))] == [5]
    assert [b.num_rows for b in stage.calls(batch([]))] == [0]


_HOSTILE_RUN = """
import re, sys
import pyarrow as pa
from pipeline.spec import DecodeSpec
from pipeline.stages.decode import DecodeStage
from tests.stages.test_decode import batch, hostile_wav

stage = DecodeStage(DecodeSpec(max_batch_mb=64), 16000)
rows, decoded = 0, 0
for block in stage.calls(batch([(hostile_wav(300), None)] * 64)):
    rows += block.num_rows
    decoded += block.column("audio").nbytes
    del block
# VmHWM, not getrusage's ru_maxrss: Linux carries the spawning process's peak (the whole
# pytest process, vfork-shared) into ru_maxrss across exec; VmHWM is this process's own.
with open("/proc/self/status") as f:
    peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) * 1024
print(rows, decoded, peak)
"""


def test_64_hostile_files_in_one_batch_stay_under_a_memory_bound():
    # 64 x 644 bytes that decode to 1.1 GiB together: held at once (one call holds them
    # all, twice) they pass the bound; cut by max_batch_mb=64 they stay far below it.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _HOSTILE_RUN],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows, decoded, peak = map(int, out.stdout.split())
    assert rows == 64 and decoded > 2**30
    # Held at once they peak at ~2,500 MiB of this process's own RSS; cut, ~400 MiB.
    assert peak < 700 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"


def test_rows_with_a_span_decode_only_their_segment():
    data = encode(tone(RATE, 3.0), RATE, "flac")
    rows = batch([(data, None), (data, None), (data, None)])
    rows = rows.set_column(
        rows.schema.get_field_index("start_s"), "start_s", pa.array([None, 0.5, 2.0])
    )
    rows = rows.set_column(
        rows.schema.get_field_index("end_s"), "end_s", pa.array([None, 1.5, None])
    )
    out = DecodeStage(DecodeSpec(), RATE)(rows)
    assert out.column("duration_s").to_pylist() == pytest.approx([3.0, 1.0, 1.0])
    assert out.column("error_code").to_pylist() == [None, None, None]
