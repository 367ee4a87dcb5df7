"""DecodeStage on mixed batches: one row out per row in, bad rows carry their error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.columns import AUDIO_BYTES, AUDIO_FIELDS, ITEM_SCHEMA
from pipeline.demo.corpus import encode
from pipeline.io.audio import decode_audio
from pipeline.spec import DecodeSpec
from pipeline.stages import decode as decode_module
from pipeline.stages.decode import DecodeStage

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
