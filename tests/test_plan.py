import pytest

from pipeline import contract
from pipeline.contract import Resources
from pipeline.errors import SpecError
from pipeline.plan import build_plan, describe
from pipeline.spec import parse_spec


def _spec(**task):
    return parse_spec(
        {
            "name": "p",
            "input": {"uri": "/in"},
            "tasks": [
                {"kind": "ctc", "model": "m", **task},
                {"kind": "ctc", "name": "b", "model": "m2"},
            ],
            "output": {"uri": "/out"},
        }
    )


def test_plan_is_decode_then_each_task_then_score():
    plan = build_plan(_spec())
    assert [s.name for s in plan.stages] == ["decode", "ctc", "b", "score"]
    assert [s.resources.actor for s in plan.stages] == [False, True, True, False]
    assert plan.stages[-1].factory.kwargs == {"tasks": ["ctc", "b"], "normalizer": "basic"}
    assert [t.name for t in plan.tasks] == ["ctc", "b"] and plan.sample_rate == 16000


def test_a_cpu_pinned_task_holds_no_gpu():
    plan = build_plan(_spec(device="cpu", num_gpus=1))
    assert plan.stages[1].resources.num_gpus == 0
    assert plan.stages[2].resources.num_gpus == 1


def test_each_stage_runs_with_the_resources_its_contract_declares():
    spec = _spec(num_cpus=2, num_gpus=0.25, actors=3)
    plan = build_plan(spec)
    declared = [
        contract.decode_resources(),
        *(contract.model_resources(t) for t in spec.tasks),
        contract.score_resources(),
    ]
    assert [s.resources for s in plan.stages] == declared
    assert declared[1] == Resources(2, 0.25, actor=True, max_actors=3, cpus_from_spec=True)
    assert not declared[2].cpus_from_spec  # task b left num_cpus at its default
    assert "ctc: up to 3 actors of 2 CPU + 0.25 GPU, batches of 64" in describe(plan.stages)


def test_stage_factory_builds_the_stage_lazily():
    decode = build_plan(_spec()).stages[0].factory()
    assert decode.name == "decode" and "audio_bytes" in decode.reads()


def test_a_texts_job_synthesizes_writes_audio_then_transcribes():
    spec = parse_spec(
        {
            "name": "tts",
            "input": {"uri": "/texts", "format": "texts"},
            "tasks": [
                {"kind": "synthesize", "model": "t", "vocoder": "v", "roundtrip_task": "asr"},
                {"kind": "ctc", "name": "asr", "model": "m"},
            ],
            "output": {"uri": "s3://b/out"},
        }
    )
    plan = build_plan(spec)
    assert [s.name for s in plan.stages] == ["synthesize", "synthesize_write", "asr", "score"]
    assert [s.resources.actor for s in plan.stages] == [True, False, True, False]
    assert plan.stages[1].resources == contract.audio_write_resources()
    assert plan.stages[1].factory.kwargs["root"] == "s3://b/out/audio/synthesize"
    assert plan.stages[-1].factory.kwargs["tasks"] == ["asr"]
    synth = plan.tasks[0]
    assert (synth.table, synth.roundtrip) == ("syntheses", "asr")


def test_texts_and_synthesize_go_together():
    base = {"name": "x", "output": {"uri": "/o"}}
    with pytest.raises(SpecError, match="texts"):
        parse_spec(
            {
                **base,
                "input": {"uri": "/t", "format": "texts"},
                "tasks": [{"kind": "ctc", "model": "m"}],
            }
        )
    with pytest.raises(SpecError, match="roundtrip_task 'nope'"):
        parse_spec(
            {
                **base,
                "input": {"uri": "/t", "format": "texts"},
                "tasks": [{"kind": "synthesize", "model": "t", "roundtrip_task": "nope"}],
            }
        )
