"""A new model kind is two files: its module in `pipeline/kinds/` and its stage (or a
package of its own, found through its `audiobatch.kinds` entry point).

The test copies the package, adds a kind there as a developer would (nothing else is
edited), and runs it in a fresh interpreter over that copy: the spec accepts it, the JSON
schema lists it, `validate` prints its stage, and real WAV files go through read ->
decode -> the new stage -> the sink's rows of `classifications` (a corrupt file an error
row). The kind ("level") labels each item loud or quiet by its RMS level, an adapter of a
few lines: what is tested is the wiring, not a model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

import pipeline

KIND = '''
"""Loudness labels: a test kind."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.kinds.base import CLASSIFICATION_FIELDS, StageKind, TaskBase


class LevelTaskSpec(TaskBase):
    """Label each item loud or quiet by its RMS level."""

    kind: Literal["level"] = "level"
    loud_dbfs: float = Field(-20.0, description="At least this RMS level is loud")


KIND = StageKind(
    LevelTaskSpec,
    "pipeline.stages.level",
    "LevelStage",
    "classifications",
    scored=False,
    fields=CLASSIFICATION_FIELDS,
)
'''

STAGE = '''
"""The level kind's stage and its adapter."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching
from pipeline.stages.classify import CLASSIFICATION_FIELDS
from pipeline.stages.model import ModelStage


class RmsLevel:
    """The adapter: an item's RMS level in dBFS."""

    min_samples = 1

    def __init__(self, name: str, rate: int) -> None:
        self.name, self.sampling_rate = name, rate

    def cost(self, samples: int) -> int:
        return samples

    def predict(self, batch: list) -> list[float]:
        return [float(10 * np.log10(np.mean(np.square(x)) + 1e-12)) for x in batch]


class LevelStage(ModelStage):
    FIELDS = CLASSIFICATION_FIELDS

    def load_model(self, device: str) -> RmsLevel:
        return RmsLevel(self.spec.model, self.spec.sample_rate)

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        errors = self.checked(audio, rows.column(SAMPLE_RATE).to_pylist())
        todo = [i for i in range(len(audio)) if i not in errors]
        levels = self.run_batched(
            [audio[i] for i in todo],
            self.model.predict,
            rows=todo,
            sizes=[len(audio[i]) for i in todo],
            batching=Batching(budget=10**9),
            errors=errors,
        )
        columns = self.empty_columns(len(audio))
        for i, db in zip(todo, levels, strict=True):
            label = "loud" if db >= self.spec.loud_dbfs else "quiet"
            self.put(columns, i, {"labels": [{"label": label, "score": db}], "model": self.model.name})
        return StageOutput(columns=columns, errors=errors)
'''

DRIVER = """
import json, sys

from pipeline.io.listing import plan_input
from pipeline.io.reading import read_unit
from pipeline.io.tables import split_batch
from pipeline.plan import build_plan, describe
from pipeline.spec import json_schema, load_spec

spec = load_spec(sys.argv[1])
plan = build_plan(spec)
stages = [p.factory().load() for p in plan.stages]
rows = {}
for unit in plan_input(spec.input).units:
    for batch in read_unit(unit, spec.input, 1 << 30):
        for stage in stages:
            batch = stage(batch)
        for (table, _), part in split_batch(batch, plan.tasks, "run1").items():
            rows.setdefault(table, []).extend(part.to_pylist())
print(json.dumps({
    "package": __import__("pipeline").__file__,
    "kinds": sorted(json_schema()["$defs"]),
    "plan": describe(plan.stages),
    "rows": {t: [{k: r[k] for k in ("source_uri", "task", "labels", "error_code")
                  if k in r} for r in v] for t, v in rows.items()},
}, default=str))
"""


def _copy_package(tmp_path: Path) -> Path:
    """A copy of the `pipeline` package under tmp_path/src; returns that folder."""
    copy = tmp_path / "src"
    shutil.copytree(
        Path(pipeline.__file__).parent,
        copy / "pipeline",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return copy


def _plugin(tmp_path: Path) -> Path:
    """The level kind as another package with an `audiobatch.kinds` entry point, as pip
    installs one (a dist-info folder beside the package); returns the folder holding both."""
    root = tmp_path / "plugin"
    package = root / "audiobatch_level"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kind.py").write_text(
        KIND.replace("pipeline.stages.level", "audiobatch_level.stage")
    )
    (package / "stage.py").write_text(STAGE)
    info = root / "audiobatch_level-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: audiobatch-level\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[audiobatch.kinds]\nlevel = audiobatch_level.kind\n")
    return root


def _run(tmp_path: Path, pythonpath: list[Path], script: str, *args: str):
    """`script` in a fresh interpreter that imports from `pythonpath` only (not the cwd)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))},
        cwd=tmp_path,  # not the repository: `-c` puts the working directory first
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _level_job(tmp_path: Path) -> Path:
    """Two WAVs (loud, quiet) and a corrupt one, and a job running the level kind on them."""
    audio = tmp_path / "in"
    audio.mkdir()
    t = np.arange(16_000) / 16_000
    sf.write(audio / "loud.wav", 0.9 * np.sin(2 * np.pi * 440 * t), 16_000)
    sf.write(audio / "quiet.wav", 0.001 * np.sin(2 * np.pi * 440 * t), 16_000)
    (audio / "broken.wav").write_bytes(b"RIFF not a wave file at all")
    spec = tmp_path / "job.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""
            name: level
            input: {{uri: {audio}}}
            tasks: [{{kind: level, model: rms, device: cpu}}]
            output: {{uri: {tmp_path / "out"}}}
            """
        )
    )
    return spec


def _check_level_run(out: dict) -> None:
    assert "LevelTaskSpec" in out["kinds"]
    assert any(line.startswith("level: 1 actor") for line in out["plan"])
    labelled = {Path(r["source_uri"]).name: r for r in out["rows"]["classifications"]}
    assert set(labelled) == {"loud.wav", "quiet.wav"}
    assert [x["label"] for x in labelled["loud.wav"]["labels"]] == ["loud"]
    assert [x["label"] for x in labelled["quiet.wav"]["labels"]] == ["quiet"]
    assert labelled["loud.wav"]["task"] == "level"
    assert [Path(r["source_uri"]).name for r in out["rows"]["errors"]] == ["broken.wav"]


def test_a_kind_added_as_two_files_runs_end_to_end(tmp_path):
    copy = _copy_package(tmp_path)
    (copy / "pipeline" / "kinds" / "level.py").write_text(KIND.lstrip())
    (copy / "pipeline" / "stages" / "level.py").write_text(STAGE.lstrip())
    done = _run(tmp_path, [copy], DRIVER, str(_level_job(tmp_path)))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["package"].startswith(str(copy))  # the copy ran, with its two new files
    _check_level_run(out)


def test_a_kind_from_another_package_runs_through_its_entry_point(tmp_path):
    repo = Path(pipeline.__file__).parent.parent
    done = _run(tmp_path, [_plugin(tmp_path), repo], DRIVER, str(_level_job(tmp_path)))
    assert done.returncode == 0, done.stderr
    _check_level_run(json.loads(done.stdout))
    # A worker unpickling the spec imports the plugin's kind module before any of ours.
    first = "import audiobatch_level.kind, pipeline.contract as c; print(sorted(c.MODEL_STAGES))"
    done = _run(tmp_path, [tmp_path / "plugin", repo], first)
    assert done.returncode == 0, done.stderr
    assert "'level'" in done.stdout


def test_a_plugin_cannot_take_a_built_in_kinds_name(tmp_path):
    plugin = _plugin(tmp_path)
    points = plugin / "audiobatch_level-0.1.dist-info" / "entry_points.txt"
    points.write_text("[audiobatch.kinds]\nctc = audiobatch_level.kind\n")
    done = _run(tmp_path, [plugin, Path(pipeline.__file__).parent.parent], "import pipeline.spec")
    assert done.returncode != 0
    assert "entry point 'ctc' (audiobatch_level.kind) names a kind that exists" in done.stderr


def test_a_kind_module_must_be_named_as_its_kind(tmp_path):
    copy = _copy_package(tmp_path)
    (copy / "pipeline" / "kinds" / "loudness.py").write_text(KIND.lstrip())
    done = _run(tmp_path, [copy], "import pipeline.spec")
    assert done.returncode != 0
    assert "pipeline.kinds.loudness: its spec's kind is 'level'" in done.stderr
