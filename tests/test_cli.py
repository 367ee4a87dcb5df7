import os
import subprocess
import sys
from pathlib import Path

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "audiobatch")


HEAVY = ("torch", "ray", "transformers", "pyarrow", "duckdb", "pandas", "matplotlib")


def _imported_after(calls: str) -> list[str]:
    """Run `calls` in a fresh interpreter (this checkout's `pipeline`); return the heavy
    modules it imported. What makes `--help` and `validate` instant is importing none of
    them, which can be checked without timing anything."""
    code = (
        "import sys, contextlib, io\n"
        "from pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    {calls}\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_help_imports_no_heavy_stack():
    assert _imported_after("with contextlib.suppress(SystemExit): main(['--help'])") == []
    out = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "query" in out.stdout


def test_validate_imports_no_heavy_stack(capsys):
    assert _imported_after("main(['validate', 'jobs/librispeech-ctc.yaml'])") == []
    assert main(["validate", str(ROOT / "jobs/librispeech-ctc.yaml")]) == 0
    out = capsys.readouterr().out  # the checked plan: stages, resources, columns
    assert "ctc: 1 actor of 1 CPU + 1 GPU, batches of 256" in out
    assert "reads reference, ctc__text" in out and "decoded audio is dropped after ctc" in out


def test_invalid_spec_exits_2_with_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: {uri: /tmp}\ntasks: [{kind: ctc}]\noutput: {uri: /o}\n")
    assert main(["validate", str(bad)]) == 2
    assert "tasks.0.ctc.model: Field required" in capsys.readouterr().err


def test_set_overrides_are_parsed_as_yaml(capsys):
    assert (
        main(["validate", str(ROOT / "jobs/demo.yaml"), "--set", "output.uri=/tmp/elsewhere"]) == 0
    )
    assert "output: /tmp/elsewhere" in capsys.readouterr().out


def test_schema_check_detects_a_stale_file(tmp_path, capsys):
    assert main(["schema", str(tmp_path)]) == 0
    assert main(["schema", "--check", str(tmp_path)]) == 0
    (tmp_path / "errors.schema.json").write_text("{}")
    assert main(["schema", "--check", str(tmp_path)]) == 1


def test_run_summary_names_every_written_table():
    from types import SimpleNamespace

    from pipeline.cli import _summary
    from pipeline.progress import Counters

    result = SimpleNamespace(run_id="r", status="succeeded", counters=Counters(), wall_s=1.0)
    report = {
        "tasks": {},
        "classifications": {"tags": {"items": 3, "labels": [{"label": "dog"}, {"label": "cat"}]}},
        "syntheses": {
            "tts": {
                "items": 2,
                "audio_hours": 0.001,
                "roundtrip": {"wer": 0.25},
                "runaway": 1,
                "empty": 0,
            }
        },
        "errors": {"total": 0, "by_code": {}},
    }
    text = _summary(result, report, "/out/")
    assert "tags: 3 items in table, top labels: dog, cat" in text
    assert "tts: 2 syntheses" in text and "round-trip WER 25.00%" in text and "1 runaway" in text
    assert "/out/{classifications,syntheses,errors,runs}/" in text


def test_bad_set_override_is_one_line_exit_2(capsys):
    spec = str(ROOT / "jobs/demo.yaml")
    assert main(["validate", spec, "--set", "name.x=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audiobatch: error: --set name.x:") and err.count("\n") == 1
    assert main(["validate", spec, "--set", "tasks.0.batch_size=2"]) == 0


def test_validate_prints_the_next_three_runs_of_a_schedule(tmp_path, capsys):
    spec = tmp_path / "nightly.yaml"
    spec.write_text(
        "name: n\ninput: {uri: /d}\ntasks: [{kind: ctc, model: m}]\noutput: {uri: /o}\n"
        "schedule: '15 1 * * *'\ntimezone: Asia/Tokyo\n"
    )
    assert main(["validate", str(spec)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "schedule:" in x][0]
    assert line.count(" 01:15 JST") == 3, line
    assert main(["validate", str(spec), "--set", "schedule=@hourly"]) == 0  # not YAML: kept as text
    assert main(["validate", str(spec), "--set", "schedule=0 2 30 2 *"]) == 2
    assert "schedule:" in capsys.readouterr().err
