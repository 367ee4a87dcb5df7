import re

from pipeline.reports.html import render_html
from pipeline.reports.plots import bars, histogram, lines

EVIL = "<script>alert(1)</script>"


def _task(**over):
    task = {
        "model": ["m"],
        "items": 2,
        "audio_hours": 0.001,
        "scored_items": 2,
        "normalizer": ["basic"],
        "ref_words": 4,
        "word_edits": 1,
        "wer": 0.25,
        "cer": 0.1,
        "wer_ci": {"value": 0.25, "low": 0.0, "high": 0.5, "level": 0.95, "resamples": 1000},
        "counts": {"substitutions": 1, "deletions": 0, "insertions": 0},
        "by_shard": {
            EVIL: {"items": 2, "scored_items": 2, "ref_words": 4, "wer": 0.25, "cer": 0.1}
        },
        "by_duration": [
            {"value": "0–2", "items": 2, "scored_items": 2, "ref_words": 4, "wer": 0.25}
        ],
        "duration_hist": {"edges": [0, 1, 2], "counts": [1, 1]},
        "confusions": {
            "items": 2,
            "substitutions": [{"ref": EVIL, "hyp": EVIL, "count": 1}],
            "deletions": [],
            "insertions": [],
        },
        "worst": [
            {
                "item_id": "a",
                "source_uri": "/c/a.wav",
                "member": "",
                "audio_href": "file:///c/a.wav",
                "duration_s": 1.0,
                "ref_words": 2,
                "edits": 1,
                "wer": 0.5,
                "alignment": [
                    {"op": "C", "ref": "x", "hyp": "x"},
                    {"op": "S", "ref": EVIL, "hyp": EVIL},
                ],
            }
        ],
    }
    return task | over


def _report(**over):
    report = {
        "output": "/out",
        "tasks": {"ctc": _task()},
        "comparisons": [],
        "classifications": {},
        "syntheses": {},
        "errors": {"total": 0, "by_code": {}, "by_stage": {}, "by_task": {}, "examples": []},
        "runs": [],
        "drift": None,
    }
    return report | over


def test_texts_from_the_tables_are_escaped_never_markup():
    html = render_html(_report())
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="file:///c/a.wav"' in html
    assert "Corpus WER 25.00%" in html and "[0.00%, 50.00%]" in html
    # Inline SVG plots only: nothing fetched from anywhere.
    assert html.count("<svg") == 2
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_a_task_without_references_shows_no_wer():
    task = _task(scored_items=0, ref_words=0, word_edits=0, wer=None, cer=None, by_shard={})
    del task["wer_ci"]
    html = render_html(_report(tasks={"w": task}))
    assert "No references" in html
    assert "Corpus WER" not in html and "NaN" not in html and "0.00%" not in html


def test_an_output_with_no_tables_says_so():
    html = render_html(_report(tasks={}, empty="/out holds no audiobatch tables"))
    assert "/out holds no audiobatch tables" in html and "<svg" not in html


def test_plots_are_svg_with_their_title_and_the_same_bytes_for_the_same_data():
    svg = bars(["a", "b"], {"WER": [0.1, None]}, "WER <by> shard", "WER", percent=True)
    assert svg.startswith("<svg") and 'aria-label="WER &lt;by&gt; shard"' in svg
    assert svg == bars(["a", "b"], {"WER": [0.1, None]}, "WER <by> shard", "WER", percent=True)
    assert "<svg" in histogram([0, 1, 2], [3, 4], "h", "x")
    assert "<svg" in lines([1, 2], {"a": [1, 2], "b": [2, None]}, "l", "x", "y")
