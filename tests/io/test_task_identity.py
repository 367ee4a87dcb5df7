import json

import pytest

from pipeline.cli import main
from pipeline.errors import SpecError
from pipeline.io.storage import filesystem
from pipeline.io.task_identity import TASKS_DIR, check_tasks, identity, record_tasks
from pipeline.spec import parse_spec


def _spec(out, **task):
    return parse_spec(
        {
            "name": "n",
            "input": {"uri": "/data"},
            "tasks": [{"kind": "whisper", "model": "openai/whisper-tiny", **task}],
            "output": {"uri": str(out)},
        }
    )


def test_execution_options_are_not_part_of_a_task(tmp_path):
    fs, root = filesystem(str(tmp_path))
    record_tasks(fs, root, _spec(tmp_path, batch_size=8, num_gpus=1))
    check_tasks(fs, root, _spec(tmp_path, batch_size=512, micro_batch=64, num_gpus=0.5))
    saved = json.loads((tmp_path / TASKS_DIR / "whisper.json").read_text())
    assert saved == identity(_spec(tmp_path).tasks[0]) and "batch_size" not in saved


@pytest.mark.parametrize(
    "change",
    [
        {"model": "openai/whisper-base"},
        {"revision": "abc123"},
        {"num_beams": 5},
        {"language": "de"},
    ],
)
def test_a_changed_task_under_its_old_name_is_refused_naming_the_field(tmp_path, change):
    fs, root = filesystem(str(tmp_path))
    record_tasks(fs, root, _spec(tmp_path))
    with pytest.raises(SpecError) as err:
        check_tasks(fs, root, _spec(tmp_path, **change))
    field = next(iter(change))
    assert "tasks.whisper: changed since it last wrote" in str(err.value)
    assert f"{field}: " in str(err.value) and "new name (e.g. whisper_v2)" in str(err.value)
    check_tasks(fs, root, _spec(tmp_path, name="whisper_v2", **change))  # a new name is fine


def test_validate_refuses_a_changed_task_of_a_local_output(tmp_path, capsys):
    fs, root = filesystem(str(tmp_path / "out"))
    record_tasks(fs, root, _spec(tmp_path / "out"))
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: n\ninput: {uri: /data}\noutput: {uri: '" + str(tmp_path / "out") + "'}\n"
        "tasks: [{kind: whisper, model: openai/whisper-small}]\n"
    )
    assert main(["validate", str(spec)]) == 2
    assert "tasks.whisper: changed" in capsys.readouterr().err
