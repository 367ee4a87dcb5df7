"""The GPU suite's smoke mode end to end: every benchmark's code runs with tiny models on
the CPU and leaves its row in the table, so a typo never costs GPU time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import gpu_suite  # noqa: E402

pytestmark = pytest.mark.integration  # the CTC benchmark runs a job on the Ray cluster


def test_smoke_run_fills_every_row_of_the_table(ray_address, tmp_path):
    out = tmp_path / "table.md"
    code = gpu_suite.main(["--smoke", "--out", str(out), "--workdir", str(tmp_path / "w")])
    table = out.read_text()
    assert "**failed**" not in table, table
    assert code == 0
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    benches = [line.split(" | ")[0].removeprefix("| ") for line in rows[1:]]
    assert benches == ["ctc", "frames", "ast", "whisper", "synth", "mctct"]
    assert "wav2vec2-tiny CTC" in table and "M-CTC-T tiny" in table


def test_the_gpu_budgets_fit_in_eight_minutes():
    assert sum(b.budget_s for b in gpu_suite.SUITE) <= 480
    assert len({b.name for b in gpu_suite.SUITE}) == len(gpu_suite.SUITE)
