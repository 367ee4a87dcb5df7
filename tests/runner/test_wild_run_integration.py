"""Wild corpora through a real run (local Ray): segments decoded by span, every line once
as an item or an error row, and exit code 4 when most items fail (issue 11)."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.io.storage import arrow_filesystem
from pipeline.io.tables import read_table
from pipeline.spec import StorageOptions
from pipeline.testing.tiny_ctc import build_tiny_ctc
from tests.io import corpora

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _spec_file(tmp_path, input_spec: dict, model: str, **runtime) -> str:
    spec = {
        "name": "wild",
        "input": input_spec,
        "tasks": [{"kind": "ctc", "model": model, "batch_size": 4, "chunk_length_s": 4}],
        "output": {"uri": str(tmp_path / "out")},
        "runtime": {"read_batch_items": 4, "decode_batch_size": 4, "progress_interval_s": 60}
        | runtime,
    }
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return str(path)


def _tables(tmp_path):
    fs, root = arrow_filesystem(str(tmp_path / "out"), StorageOptions())
    return read_table(fs, root, "transcripts"), read_table(fs, root, "errors")


def test_nemo_segments_run_once_each_decoding_only_their_span(
    ray_address, tmp_path, tiny_model, capsys
):
    audio = corpora.steps_wav(tmp_path / "corpus" / "long.wav")
    manifest = tmp_path / "corpus" / "manifest.jsonl"
    corpora.nemo_manifest(
        manifest,
        [
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 0.0, "text": "one"},
            {"audio_filepath": "long.wav", "duration": 1.5, "offset": 1.5, "text": "two"},
            {"audio_filepath": str(audio), "duration": 3.0, "text": "all", "speaker": "s1"},
        ],
    )
    with manifest.open("a") as f:
        f.write('{"audio_filepath": "long.wav", broken\n')
    spec = _spec_file(
        tmp_path, {"uri": str(tmp_path / "corpus"), "manifest": str(manifest)}, tiny_model
    )
    assert main(["run", spec]) == 0
    transcripts, errors = _tables(tmp_path)
    durations = sorted(transcripts.column("duration_s").to_pylist())
    assert durations == pytest.approx([1.0, 1.5, 3.0], abs=1e-3)
    assert sorted(transcripts.column("reference").to_pylist()) == ["all", "one", "two"]
    whole = [r for r in transcripts.to_pylist() if r["reference"] == "all"][0]
    assert json.loads(whole["metadata"])["speaker"] == "s1"
    (bad,) = errors.to_pylist()
    assert bad["error_code"] == "invalid_input" and "line 4" in bad["error_message"]
    assert len(set(transcripts.column("item_id").to_pylist()) | {bad["item_id"]}) == 4
    # A re-run finds all four done.
    assert main(["run", spec]) == 0
    transcripts2, errors2 = _tables(tmp_path)
    assert transcripts2.num_rows == 3 and errors2.num_rows == 1


def test_lhotse_channels_of_one_span_are_items_of_their_own(
    ray_address, tmp_path, tiny_model, capsys
):
    import numpy as np
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    stereo = np.stack([corpora.tone(2.0, 440.0), corpora.tone(2.0, 900.0)], axis=1)
    sf.write(corpus / "call.wav", stereo, corpora.RATE)
    rec = Recording.from_file(str(corpus / "call.wav"), recording_id="call")
    RecordingSet.from_recordings([rec]).to_file(str(corpus / "recordings.jsonl.gz"))
    sups = [
        SupervisionSegment(id=f"s{ch}", recording_id="call", start=0.5, duration=1.0, channel=ch)
        for ch in (0, 1, 2)
    ]
    SupervisionSet.from_segments(sups).to_file(str(corpus / "supervisions.jsonl.gz"))
    manifest = str(corpus / "supervisions.jsonl.gz")
    spec = _spec_file(tmp_path, {"uri": str(corpus), "manifest": manifest}, tiny_model)
    assert main(["run", spec]) == 0
    transcripts, errors = _tables(tmp_path)
    assert sorted(transcripts.column("member").to_pylist()) == ["0.5-1.5:ch=0", "0.5-1.5:ch=1"]
    assert transcripts.column("duration_s").to_pylist() == pytest.approx([1.0, 1.0], abs=1e-3)
    (bad,) = errors.to_pylist()
    assert bad["error_code"] == "invalid_input" and "'s2'" in bad["error_message"]
    assert main(["run", spec]) == 0
    assert _tables(tmp_path)[0].num_rows == 2


def test_an_own_id_a_later_shard_repeats_from_an_earlier_run_is_a_duplicate_id_row(
    ray_address, tmp_path, tiny_model, capsys
):
    clips = corpora.write_clips(tmp_path / "clips", 4)
    data = tmp_path / "data"
    corpora.hf_parquet_embedded(clips[:2], data / "a.parquet", utt=["x1", "x2"])
    spec = _spec_file(tmp_path, {"uri": str(data), "id_column": "utt"}, tiny_model)
    assert main(["run", spec]) == 0
    # The next night a shard arrives that repeats x1: a.parquet is settled (not opened),
    # so only the records can tell; the row must be an error, not skipped as done.
    corpora.hf_parquet_embedded(clips[2:], data / "b.parquet", utt=["x3", "x1"])
    assert main(["run", spec]) == 0
    transcripts, errors = _tables(tmp_path)
    assert sorted(transcripts.column("item_id").to_pylist()) == ["x1", "x2", "x3"]
    (bad,) = errors.to_pylist()
    assert bad["error_code"] == "duplicate_id" and bad["member"] == "row=1"
    assert "b.parquet" in bad["source_uri"] and "a.parquet" in bad["error_message"]
    # Moving a shard is not a duplicate: its ids are the same items, still done.
    (data / "b.parquet").unlink()
    (data / "a.parquet").rename(data / "c.parquet")
    assert main(["run", spec]) == 0
    assert _tables(tmp_path)[0].num_rows == 3


def test_a_run_where_most_items_fail_exits_4_after_writing_everything(
    ray_address, tmp_path, tiny_model, capsys
):
    corpus = tmp_path / "corpus"
    corpora.write_clips(corpus, 1)
    for i in range(3):
        (corpus / f"junk{i}.wav").write_bytes(b"not audio at all " * 20)
    spec = _spec_file(tmp_path, {"uri": str(corpus)}, tiny_model)
    assert main(["run", spec]) == 4
    err = capsys.readouterr().err
    assert "3 of 4 items of this run failed" in err and "undecodable x3, e.g. " in err
    transcripts, errors = _tables(tmp_path)
    assert transcripts.num_rows == 1 and errors.num_rows == 3
    # The share is this run's: one new good file and one new bad one are half, accepted.
    corpora.write_clips(corpus / "more", 1)
    (corpus / "more" / "junk9.wav").write_bytes(b"still not audio " * 20)
    assert main(["run", spec]) == 0


def test_a_fixed_shard_closes_its_stale_shard_error_and_compaction_keeps_every_answer(
    ray_address, tmp_path, tiny_model, capsys
):
    """Issue 11's leftover and issue 13's compaction through real runs: a Parquet shard whose
    audio column had another name is one shard-level error; once the shard is fixed and
    re-run, `errors_open` no longer counts it, so results + open errors count each input
    once. Then `compact`: the same answers, the same report, and a re-run skips everything."""
    import pyarrow.parquet as pq

    from pipeline.query import connect
    from pipeline.reports.report import ReportRequest, build_report

    clips = corpora.write_clips(tmp_path / "clips", 4)
    data = tmp_path / "corpus"
    corpora.hf_parquet_embedded(clips[:2], data / "a.parquet", text=["a b", "c d"])
    corpora.hf_parquet_embedded(clips[2:], data / "b.parquet", text=["e f", "g h"])
    good_b = pq.read_table(data / "b.parquet")
    pq.write_table(good_b.rename_columns(["speech", "text"]), data / "b.parquet")
    spec = _spec_file(tmp_path, {"uri": str(data), "format": "parquet"}, tiny_model)
    out = str(tmp_path / "out")
    counted = (
        "SELECT (SELECT count(DISTINCT item_id) FROM transcripts), "
        "(SELECT count(*) FROM errors_open), (SELECT count(*) FROM errors)"
    )
    assert main(["run", spec]) == 0
    assert connect(out).sql(counted).fetchall() == [(2, 1, 1)]  # b: one config_error row
    pq.write_table(good_b, data / "b.parquet")  # the shard fixed
    assert main(["run", spec, "--retry-errors", "config_error"]) == 0
    con = connect(out)
    assert con.sql(counted).fetchall() == [(4, 0, 1)]  # 4 inputs, each counted once
    wer = con.sql("FROM corpus_wer").fetchall()

    def report() -> dict:
        got = build_report(ReportRequest(out, StorageOptions()))
        return {k: v for k, v in got.items() if k != "generated_at"}

    before = report()
    capsys.readouterr()
    assert main(["compact", out]) == 0
    assert "transcripts: 2 of 2 files into 1" in capsys.readouterr().out
    con = connect(out)
    assert con.sql(counted).fetchall() == [(4, 0, 1)]
    assert con.sql("FROM corpus_wer").fetchall() == wer
    assert report() == before
    assert main(["run", spec]) == 0  # everything done: nothing read, nothing written
    assert "nothing to do" in capsys.readouterr().out
    assert connect(out).sql(counted).fetchall() == [(4, 0, 1)]
    transcripts, _ = _tables(tmp_path)
    assert transcripts.num_rows == 4
