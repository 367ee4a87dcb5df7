import pyarrow as pa

from pipeline.reports.syntheses import synthesis_summary
from pipeline.schemas import SYNTHESES


def _row(text_id, ref_words, edits, *, runaway=False, empty=False, rms=-20.0):
    row = {f.name: None for f in SYNTHESES}
    row.update(
        item_id=text_id,
        source_uri="/t.jsonl",
        member=text_id,
        shard="t.jsonl",
        text_id=text_id,
        text="some words here",
        model="tts",
        duration_s=1800.0,
        runaway=runaway,
        empty=empty,
        roundtrip_task="asr",
        transcript="x",
        normalizer="basic",
        ref_words=ref_words,
        substitutions=edits,
        deletions=0,
        insertions=0,
        wer=edits / ref_words,
        ref_chars=10,
        char_edits=edits,
        rms_dbfs=rms,
        run_id="r",
        task="tts",
    )
    return row


def test_roundtrip_wer_is_corpus_wer_and_worst_items_come_first():
    rows = [_row("a", 10, 1), _row("b", 1, 1, runaway=True, rms=-40.0), _row("c", 4, 0)]
    table = pa.Table.from_pylist(rows, schema=SYNTHESES)
    s = synthesis_summary(table, worst=2)["tts"]
    assert s["items"] == 3 and s["audio_hours"] == 1.5 and s["runaway"] == 1
    assert s["roundtrip"]["wer"] == 2 / 15  # not the mean of 0.1, 1.0, 0.0
    assert s["roundtrip"]["task"] == "asr" and s["roundtrip"]["cer"] == 2 / 30
    assert [w["text_id"] for w in s["worst"]] == ["b", "a"]
    assert s["signal"]["rms_dbfs"] == {"mean": -80 / 3, "median": -20.0, "max": -20.0}
    assert s["signal"]["clipping_share"] is None
