import json
import subprocess
import sys

import pytest

from pipeline.errors import AudiobatchError
from pipeline.reports.html import render_html
from pipeline.reports.report import ReportRequest, build_report
from pipeline.spec import ReportSpec
from tests.reports.outputs import run_row, transcript, write

EVIL = "<script>alert('x')</script>"
SETTINGS = ReportSpec(group_by=["speaker", "split", "accent"], bootstrap_resamples=200)

REFS = {
    "a": "the cat sat on the mat",
    "b": "a dog ran in the park",
    "c": "one two three four",
    "d": "hello world",
}
CTC = {
    "a": "the bat sat on the mat",
    "b": "a dog ran in park",
    "c": "one two three four",
    "d": "yellow word",
}
WHISPER = {
    "a": "the cat sat on the mat",
    "b": "a dog ran in the park",
    "c": "one two tree four",
    "d": "hello world",
}


def _rows(hyps, **extra):
    return [
        transcript(
            k,
            REFS[k],
            hyps[k],
            shard="s1" if k in "ab" else "s2",
            duration_s={"a": 1.0, "b": 3.0, "c": 6.0, "d": 1.5}[k],
            confidence=0.9 if k in "ac" else 0.4,
            metadata={"speaker": f"spk{ord(k) % 2}", "split": "test"},
            **extra,
        )
        for k in hyps
    ]


@pytest.fixture
def two_systems(tmp_path):
    root = str(tmp_path / "out")
    write(root, "transcripts", "ctc", _rows(CTC))
    write(root, "transcripts", "whisper", _rows(WHISPER))
    run_row(root, "r1", 1, 4)
    return root


def test_asr_sections_count_like_sclite(two_systems):
    report = build_report(ReportRequest(two_systems, settings=SETTINGS))
    ctc = report["tasks"]["ctc"]
    # a: 1 sub; b: 1 del; c: 0; d: 2 subs -> 4 edits over 18 reference words.
    assert (ctc["word_edits"], ctc["ref_words"]) == (4, 18)
    assert ctc["wer"] == 4 / 18
    assert ctc["counts"] == {"substitutions": 3, "deletions": 1, "insertions": 0}
    assert ctc["wer_ci"]["low"] <= ctc["wer"] <= ctc["wer_ci"]["high"]
    assert ctc["wer_ci"]["resamples"] == 200
    assert ctc["by_shard"]["s1"]["wer"] == 2 / 12 and ctc["by_shard"]["s2"]["wer"] == 2 / 6
    speakers = {g["value"]: g for g in ctc["by_group"]["speaker"]}
    assert speakers["spk1"]["wer"] == 1 / 10  # a and c (ord 97, 99)
    assert speakers["spk0"]["wer"] == 3 / 8  # b and d
    assert [g["value"] for g in ctc["by_group"]["split"]] == ["test"]
    assert "accent" in " ".join(ctc["group_notes"])
    buckets = {b["value"]: b for b in ctc["by_duration"]}
    assert buckets["0–2"]["items"] == 2 and buckets["5–10"]["wer"] == 0
    conf = ctc["wer_by_confidence"]
    assert conf["column"] == "confidence" and sum(b["items"] for b in conf["bins"]) == 4
    c = ctc["confusions"]
    assert c["items"] == 4 and c["totals"] == {"substitutions": 3, "deletions": 1, "insertions": 0}
    assert {"ref": "cat", "hyp": "bat", "count": 1} in c["substitutions"]
    assert c["deletions"] == [{"ref": "the", "count": 1}]
    worst = ctc["worst"][0]
    assert worst["item_id"] == "d" and worst["wer"] == 1.0
    assert [a["op"] for a in worst["alignment"]] == ["S", "S"]
    assert worst["audio_href"] == "file:///corpus/d.wav"
    assert sum(ctc["duration_hist"]["counts"]) == 4


def test_two_systems_are_compared_item_by_item(two_systems):
    report = build_report(ReportRequest(two_systems, settings=SETTINGS))
    (cmp,) = report["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["items"]) == ("ctc", "whisper", 4)
    assert cmp["wer_a"] == 4 / 18 and cmp["wer_b"] == 1 / 18
    # Z = ctc - whisper errors per item: 1, 1, -1, 2.
    z = [1, 1, -1, 2]
    mean = sum(z) / 4
    sd = (sum((x - mean) ** 2 for x in z) / 3) ** 0.5
    assert cmp["matched_pairs"]["w"] == pytest.approx(mean / (sd / 2))
    assert cmp["diff"]["value"] == pytest.approx(3 / 18)
    assert cmp["differ_most"][0]["item_id"] == "d"
    only = build_report(ReportRequest(two_systems, settings=SETTINGS, compare="whisper"))
    assert len(only["comparisons"]) == 1


def test_another_output_is_compared_on_the_same_items(two_systems, tmp_path):
    other = str(tmp_path / "other")
    write(other, "transcripts", "ctc", _rows(WHISPER))
    run_row(other, "r9", 2, 4)
    report = build_report(ReportRequest(two_systems, settings=SETTINGS, compare=other))
    (cmp,) = report["comparisons"]
    assert cmp["b"] == f"ctc ({other})" and cmp["wer_b"] == 1 / 18 and cmp["items"] == 4
    with pytest.raises(AudiobatchError, match="neither a task"):
        build_report(ReportRequest(two_systems, compare="nosuch"))


def test_texts_with_markup_are_escaped_in_the_page(tmp_path):
    root = str(tmp_path / "out")
    write(root, "transcripts", "ctc", [transcript("x", f"{EVIL} hi", f"hi {EVIL}", shard=EVIL)])
    run_row(root, "r1", 1, 1)
    html = render_html(build_report(ReportRequest(root, settings=SETTINGS)))
    assert "<script" not in html and "&lt;script&gt;" in html


def test_a_task_without_references_shows_no_wer(tmp_path):
    root = str(tmp_path / "out")
    write(root, "transcripts", "w", [transcript("x", None, "some words", language="en")])
    run_row(root, "r1", 1, 1)
    report = build_report(ReportRequest(root))
    task = report["tasks"]["w"]
    assert task["wer"] is None and task["cer"] is None and "wer_ci" not in task
    assert task["languages"] == {"en": 1}
    html = render_html(report)
    assert "No references" in html and "Corpus WER" not in html and "NaN" not in html


def test_an_output_with_no_tables_says_so(tmp_path):
    (tmp_path / "out").mkdir()
    report = build_report(ReportRequest(str(tmp_path / "out")))
    assert "holds no audiobatch tables" in report["empty"]
    assert "holds no audiobatch tables" in render_html(report)


def test_drift_says_when_new_items_are_beyond_the_noise(tmp_path):
    root = str(tmp_path / "out")
    good = [transcript(f"o{k}", "a b c d e", "a b c d e") for k in range(40)]
    bad = [transcript(f"n{k}", "a b c d e", "a x y d", run_id="r2") for k in range(40)]
    write(root, "transcripts", "ctc", good, name="r1")
    write(root, "transcripts", "ctc", bad, name="r2")
    error = {
        "item_id": "z",
        "source_uri": "/c/z.wav",
        "member": "",
        "shard": "s1",
        "task": None,
        "error_code": "empty",
        "error_message": "no samples",
        "run_id": "r2",
    }
    write(root, "errors", "decode", [error])
    run_row(root, "r1", 1, 40)
    run_row(root, "r2", 2, 41)
    d = build_report(ReportRequest(root, settings=SETTINGS))["drift"]
    assert (d["run"], d["previous_run"]) == ("r2", "r1")
    assert d["error_rate"] == 1 / 41 and d["previous_error_rate"] == 0 and d["open_errors"] == 1
    t = d["tasks"]["ctc"]
    assert t["new_items"] == 40 and t["wer_new"] == 0.6 and t["wer_rest"] == 0.0
    assert t["beyond_noise"] is True
    # Reported as of the first run there is nothing earlier to compare with.
    assert build_report(ReportRequest(root, run="r1"))["drift"] is None
    one = build_report(ReportRequest(root, run="r2"))
    assert one["tasks"]["ctc"]["items"] == 40 and one["errors"]["total"] == 1
    assert "beyond the bootstrap noise" in render_html(one)


def test_cli_rebuilds_the_three_files_and_refuses_an_unknown_run(two_systems, tmp_path):
    cli = [sys.executable, "-m", "pipeline.cli", "report", two_systems]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("report.json", "report.md", "report.html"):
        assert name in done.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["tasks"]["ctc"]["wer"] == 4 / 18
    bad = subprocess.run([*cli, "--run", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no run 'nope'" in bad.stderr
