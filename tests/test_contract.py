"""The column contract (pipeline/contract.py): what the plan checks is what the stages do."""

import pytest

from pipeline import contract
from pipeline.columns import ITEM_SCHEMA, TEXT_ITEM_SCHEMA
from pipeline.contract import MODEL_STAGES, Columns, check_columns
from pipeline.errors import SpecError
from pipeline.plan import build_plan, describe, stage_plans
from pipeline.schemas import SCORE_COUNTS, TABLES
from pipeline.spec import parse_spec

TASKS = [
    {"kind": "ctc", "model": "m"},
    {"kind": "whisper", "model": "w"},
    {"kind": "classify", "name": "tags", "model": "c"},
    {"kind": "frames", "name": "vad", "model": "f"},
]


def _audio_spec(tmp_path):
    return parse_spec(
        {"name": "a", "input": {"uri": "/in"}, "tasks": TASKS, "output": {"uri": str(tmp_path)}}
    )


def _texts_spec(tmp_path):
    return parse_spec(
        {
            "name": "t",
            "input": {"uri": "/texts", "format": "texts"},
            "tasks": [
                {"kind": "synthesize", "model": "t", "vocoder": "v", "roundtrip_task": "asr"},
                {"kind": "ctc", "name": "asr", "model": "m"},
            ],
            "output": {"uri": str(tmp_path)},
        }
    )


AUDIO_STAGES = {"DecodeStage", "CtcStage", "WhisperStage", "ClassifyStage", "FramesStage"}
TEXT_STAGES = {"SynthesizeStage", "AudioWriteStage", "CtcStage"}


@pytest.mark.parametrize(
    ("make", "classes"), [(_audio_spec, AUDIO_STAGES), (_texts_spec, TEXT_STAGES)]
)
def test_every_stage_reads_adds_and_drops_what_its_contract_says(tmp_path, make, classes):
    """Each stage class, built as the runner builds it (no model loaded), against the
    names the plan checked: every kind, decode, scoring and the synthesis audio writer."""
    plans = stage_plans(make(tmp_path))
    for plan in plans:
        stage = plan.factory()
        said = Columns(tuple(stage.reads()), tuple(stage.adds().names), tuple(stage.drops()))
        assert said == plan.columns, plan.name
    assert {p.factory.cls for p in plans} == classes | {"ScoreStage"}


def test_the_stage_check_covers_every_kind():
    """A new kind in MODEL_STAGES must join TASKS (or the texts job), so its stage class
    is checked against its contract entry above."""
    assert {t["kind"] for t in TASKS} | {"synthesize"} == set(MODEL_STAGES)
    assert {MODEL_STAGES[k].cls for k in MODEL_STAGES} <= AUDIO_STAGES | TEXT_STAGES


def test_the_contract_names_the_read_steps_and_scorings_columns():
    assert tuple(ITEM_SCHEMA.names) == contract.ITEM_COLUMNS
    assert tuple(TEXT_ITEM_SCHEMA.names) == contract.TEXT_ITEM_COLUMNS
    assert tuple(f.name for f in SCORE_COUNTS) == contract.SCORE_FIELDS


@pytest.mark.parametrize("kind", sorted(MODEL_STAGES))
def test_every_field_of_a_kind_is_a_column_of_its_table(kind):
    columns = set(TABLES[MODEL_STAGES[kind].table][0].names)
    assert set(MODEL_STAGES[kind].fields) <= columns


def test_a_stage_reading_a_column_nobody_makes_is_refused_naming_both(tmp_path):
    plans = stage_plans(_audio_spec(tmp_path))
    score = next(p for p in plans if p.name == "score")
    early = [(p.name, p.columns) for p in [plans[0], score, *plans[1:-1]]]  # score before ctc
    with pytest.raises(SpecError, match=r"stage 'score' reads ctc__text, whisper__text, which"):
        check_columns(early, contract.ITEM_COLUMNS)
    # An ASR stage on texts with nothing synthesizing first: no audio to read.
    ctc = next(p for p in plans if p.name == "ctc")
    with pytest.raises(SpecError, match="stage 'ctc' reads audio, sample_rate.*synthesize"):
        check_columns([(ctc.name, ctc.columns)], contract.TEXT_ITEM_COLUMNS)
    # Decode drops the raw bytes: a stage after it cannot read them.
    late = [(p.name, p.columns) for p in plans[:1]] + [("x", Columns(reads=("audio_bytes",)))]
    with pytest.raises(SpecError, match="stage 'x' reads audio_bytes"):
        check_columns(late, contract.ITEM_COLUMNS)


def test_audio_is_dropped_after_its_last_reader(tmp_path):
    plans = build_plan(_audio_spec(tmp_path)).stages
    assert [p.name for p in plans if p.uses_audio] == ["ctc", "whisper", "tags", "vad"]
    texts = build_plan(_texts_spec(tmp_path)).stages
    assert [p.name for p in texts if p.uses_audio] == ["synthesize_write", "asr"]


def test_describe_groups_task_columns_and_says_resources(tmp_path):
    lines = describe(stage_plans(_audio_spec(tmp_path)))
    assert "ctc: 1 actor of 1 CPU + 1 GPU, batches of 64" in lines[4]
    assert "    reads reference, {ctc, whisper}__text" in lines
    assert lines[-1] == "decoded audio is dropped after vad"


def test_the_round_trip_fills_syntheses_columns_from_asr_fields():
    syntheses = set(TABLES["syntheses"][0].names)
    assert set(contract.ROUNDTRIP.values()) <= syntheses
    assert set(contract.ROUNDTRIP) <= {"text", *contract.SCORE_FIELDS}
