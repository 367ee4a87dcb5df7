"""report.html in a real browser: headless Chromium (Debian's package, installed here when
missing and possible) loads it with no console error and every plot has a size."""

import json
import os
import posixpath

import pyarrow.fs as pafs
import pytest

from pipeline.io.tables import partition_dir, with_partition, write_parquet
from pipeline.reports.report import ReportRequest, build_report, write_report
from pipeline.schemas import CLASSIFICATIONS, conform
from tests.reports.chromium import PLOT_SIZES, Browser, install_chromium
from tests.reports.outputs import run_row, transcript, write


@pytest.fixture(scope="module")
def chromium():
    found = install_chromium()
    if not found.startswith("/"):
        pytest.skip(found)
    return found


def _output(root: str) -> None:
    refs = ["the cat sat on the mat", "a dog ran in the park", "one two three four five"]
    for run, hour in (("r1", 1), ("r2", 2)):
        rows_ctc, rows_w, labels = [], [], []
        for k in range(30):
            ref = refs[k % 3]
            words = ref.split()
            ctc = " ".join(w if (k + j) % 4 else "uh" for j, w in enumerate(words))
            item = f"{run}-{k}"
            common = dict(
                shard=f"shard{k % 2}",
                duration_s=1.0 + k % 7,
                run_id=run,
                metadata=json.dumps({"speaker": f"spk{k % 3}"}),
            )
            rows_ctc.append(transcript(item, ref, ctc, confidence=0.5 + (k % 5) / 10, **common))
            rows_w.append(
                transcript(
                    item,
                    ref,
                    " ".join(words[:-1]),
                    avg_logprob=-k / 30,
                    language="en",
                    flags=["repeated_ngrams"] if k == 3 else [],
                    **common,
                )
            )
            labels.append(
                {
                    "item_id": item,
                    "source_uri": f"/c/{item}.wav",
                    "member": "",
                    "shard": "s",
                    "duration_s": 2.0,
                    "model": "ast",
                    "run_id": run,
                    "labels": [{"label": ["speech", "music"][k % 2], "score": 0.3 + k / 50}],
                }
            )
        write(root, "transcripts", "ctc", rows_ctc, name=run)
        write(root, "transcripts", "whisper", rows_w, name=run)
        t = with_partition(
            __import__("pyarrow").Table.from_pylist(
                [{f.name: r.get(f.name) for f in CLASSIFICATIONS} for r in labels],
                schema=CLASSIFICATIONS,
            ),
            "classifications",
            "sounds",
        )
        folder = partition_dir(root, "classifications", "task", "sounds")
        write_parquet(
            pafs.LocalFileSystem(),
            posixpath.join(folder, f"{run}.parquet"),
            conform(t, "classifications"),
        )
        run_row(root, run, hour, 30)


def test_report_loads_in_chromium_without_errors_and_every_plot_has_a_size(chromium, tmp_path):
    root = str(tmp_path / "out")
    _output(root)
    report = build_report(ReportRequest(root))
    _, _, html_path = write_report(pafs.LocalFileSystem(), root, report)
    with Browser(chromium) as browser:
        browser.open(tmp_path / "out" / "report.html")
        sizes = json.loads(browser.evaluate(PLOT_SIZES))
        title = browser.evaluate("document.title")
        errors = browser.console_errors()
    assert errors == []
    assert title.startswith("audiobatch report")
    # ctc and whisper: WER by duration and by confidence, duration and speaking-rate
    # histograms; the comparison; labels and scores; runs over time.
    assert len(sizes) >= 12, sizes
    assert all(w > 0 and h > 0 for w, h in sizes), sizes


@pytest.mark.integration
def test_the_demos_report_loads_in_chromium_without_errors(chromium, ray_address, tmp_path):
    """`make demo`'s job (jobs/demo.yaml over `demo-assets`, its paths made absolute so the
    session's Ray workers find them) run by the CLI; its report.html in Chromium. With
    AUDIOBATCH_REPORT_SHOT=docs/report.png it also takes the README's screenshot."""
    import subprocess
    import sys
    from pathlib import Path

    from pipeline.demo_assets import build_demo_assets

    demo = tmp_path / ".demo"
    build_demo_assets(demo)
    models = demo / "models"
    absolute = {
        "input.uri": f"{demo}/corpus/",
        "input.manifest": f"{demo}/corpus/manifest.jsonl",
        "tasks.0.model": f"{models}/wav2vec2-tiny",
        "tasks.1.model": f"{models}/whisper-tiny",
        "tasks.2.model": f"{models}/ast-tiny",
        "output.uri": f"{demo}/out/",
    }
    sets = [a for k, v in absolute.items() for a in ("--set", f"{k}={v}")]
    root = Path(__file__).resolve().parents[2]
    cli = str(Path(sys.executable).parent / "audiobatch")
    done = subprocess.run(
        [cli, "run", str(root / "jobs/demo.yaml"), *sets, "--address", ray_address],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report" in done.stdout
    with Browser(chromium) as browser:
        browser.open(demo / "out" / "report.html")
        sizes = json.loads(browser.evaluate(PLOT_SIZES))
        text = browser.evaluate("document.body.innerText")
        errors = browser.console_errors()
        if shot := os.environ.get("AUDIOBATCH_REPORT_SHOT"):  # the README's screenshot
            browser.screenshot(Path(shot))
    assert errors == []
    assert all(w > 0 and h > 0 for w, h in sizes) and len(sizes) >= 6, sizes
    # The demo's three tasks and its broken files are all in the page.
    for shown in ("ctc", "whisper", "sounds", "errors"):
        assert shown in text, shown
