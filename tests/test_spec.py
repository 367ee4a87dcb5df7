import json
from pathlib import Path

import pytest

from pipeline.errors import SpecError
from pipeline.schemas import render_all
from pipeline.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "name": "librispeech-ctc",
    "input": {
        "uri": "s3://bucket/corpus/",
        "format": "files",
        "manifest": "s3://bucket/corpus/manifest.jsonl",
        "storage": {"endpoint_url": "http://127.0.0.1:9000"},
    },
    "tasks": [{"kind": "ctc", "model": "facebook/wav2vec2-base-960h"}],
    "output": {"uri": "s3://bucket/out/"},
}


def test_issue_example_spec_is_valid_and_defaults_apply():
    spec = parse_spec(MINIMAL)
    task = spec.tasks[0]
    assert task.task_name == "ctc"
    assert task.sample_rate == 16000
    assert spec.scoring.normalizer == "basic"
    assert spec.input.storage.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"input": {"uri": "x", "format": "zip"}}, "input.format"),
        ({"tasks": [{"kind": "nope", "model": "m"}]}, "tasks.0"),
        ({"tasks": []}, "tasks: List should have at least 1 item"),
        (
            {"tasks": [{"kind": "ctc", "model": "m", "batch_seconds": -1}]},
            "tasks.0.ctc.batch_seconds",
        ),
        (
            {"tasks": [{"kind": "ctc", "model": "m", "chunk_length_s": 10, "stride_length_s": 5}]},
            "stride_length_s",
        ),
        (
            {"tasks": [{"kind": "ctc", "model": "a"}, {"kind": "ctc", "model": "b"}]},
            "task names must be unique",
        ),
        ({"tasks": [{"kind": "ctc", "model": "a", "name": "Bad Name"}]}, "tasks.0.ctc.name"),
        ({"output": {}}, "output.uri: Field required"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_name_the_field(patch, expected):
    with pytest.raises(SpecError) as err:
        parse_spec({**MINIMAL, **patch})
    assert expected in str(err.value)


def test_load_spec_applies_dotted_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(MINIMAL))  # JSON is YAML
    spec = load_spec(path, {"output.uri": "/tmp/other", "runtime.num_cpus": 2})
    assert spec.output.uri == "/tmp/other"
    assert spec.runtime.num_cpus == 2


def test_load_spec_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="no such job spec"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_spec_hash_is_stable_and_sensitive():
    a, b = parse_spec(MINIMAL), parse_spec(json.loads(json.dumps(MINIMAL)))
    assert a.spec_hash() == b.spec_hash()
    c = parse_spec({**MINIMAL, "name": "other"})
    assert c.spec_hash() != a.spec_hash()


def test_schema_files_match_the_code():
    for name, content in render_all().items():
        assert (ROOT / "schemas" / name).read_text() == content, (
            f"schemas/{name} is stale: run `audiobatch schema`"
        )


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_job_specs_validate(job):
    assert load_spec(job).tasks


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "jobs").glob("*.yaml")))
def test_every_shipped_job_spec_is_valid(path):
    spec = load_spec(path)
    assert spec.tasks and spec.output.uri


def test_set_indexes_lists_so_task_fields_can_be_overridden(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(MINIMAL))
    spec = load_spec(path, {"tasks.0.batch_size": 2, "tasks.0.name": "fast"})
    assert spec.tasks[0].batch_size == 2 and spec.tasks[0].task_name == "fast"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "name.x",
            "name is a str ('librispeech-ctc'), not a mapping or list, so it has no field 'x'",
        ),
        ("tasks.1.batch_size", "tasks is a list of 1 items; index it with 0..0, not '1'"),
        ("tasks.first.batch_size", "not 'first'"),
        ("tasks.-1.model", "not '-1'"),
        ("output..uri", "empty field name"),
        ("input.uri.deeper.still", "input.uri is a str"),
    ],
)
def test_set_refuses_what_it_cannot_address_with_the_path(tmp_path, key, expected):
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(MINIMAL))
    with pytest.raises(SpecError) as err:
        load_spec(path, {key: 1})
    assert expected in str(err.value)


@pytest.mark.parametrize("content", ["", "- a\n- b\n", "just a string\n"])
def test_set_on_a_spec_that_is_not_a_mapping_is_a_spec_error(tmp_path, content):
    path = tmp_path / "job.yaml"
    path.write_text(content)
    with pytest.raises(SpecError, match="must be a mapping at the top level"):
        load_spec(path, {"output.uri": "/tmp/o"})


def test_oversized_spec_is_refused_before_parsing(tmp_path):
    from pipeline.spec import MAX_SPEC_BYTES

    path = tmp_path / "huge.yaml"
    body = json.dumps(MINIMAL)[:-1] + ', "items": ['
    path.write_text(body + ", ".join(['"x"'] * (MAX_SPEC_BYTES // 5)) + "]}")
    with pytest.raises(SpecError, match="at most 1024 KiB"):
        load_spec(path)


def test_report_group_by_names_metadata_columns_only():
    from pipeline.spec import ReportSpec

    assert ReportSpec().group_by == ["speaker"] and ReportSpec().bootstrap_resamples == 1000
    assert ReportSpec(group_by=["speaker", "split"]).group_by == ["speaker", "split"]
    with pytest.raises(ValueError, match="group_by"):
        ReportSpec(group_by=["speaker'); DROP"])


def test_task_kinds_are_the_contracts_and_their_roles_come_from_it():
    from typing import get_args

    from pipeline.contract import MODEL_STAGES
    from pipeline.spec import TaskSpec

    union = get_args(TaskSpec)[0]
    assert sorted(c.model_fields["kind"].default for c in get_args(union)) == sorted(MODEL_STAGES)
    texts = {"name": "x", "output": {"uri": "/o"}, "input": {"uri": "/t", "format": "texts"}}
    synth = {"kind": "synthesize", "model": "t", "roundtrip_task": "tags"}
    with pytest.raises(
        SpecError, match=r"'tags' must name a ctc or whisper task of this job \(have: none\)"
    ):
        parse_spec({**texts, "tasks": [synth, {"kind": "classify", "model": "c", "name": "tags"}]})
    with pytest.raises(SpecError, match="a frames task needs audio input"):
        parse_spec(
            {
                **texts,
                "tasks": [{**synth, "roundtrip_task": None}, {"kind": "frames", "model": "f"}],
            }
        )
    spec = parse_spec(
        {
            **texts,
            "tasks": [
                {**synth, "roundtrip_task": "asr"},
                {"kind": "whisper", "model": "w", "name": "asr"},
            ],
        }
    )
    assert spec.tasks[0].roundtrip_task == "asr"
