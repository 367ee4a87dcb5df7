import jiwer
import pyarrow as pa
import pytest

from pipeline.columns import ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, REFERENCE, task_column
from pipeline.errors import ErrorCode
from pipeline.stages.score import SCORE_FIELDS, ScoreStage

TASKS = ("ctc", "whisper")


def _batch(rows: list[dict]) -> pa.Table:
    """Rows of {id, reference, ctc, whisper, error}, error being (stage, code, message) or None."""
    columns = {
        "item_id": pa.array([r["id"] for r in rows], pa.string()),
        REFERENCE: pa.array([r["reference"] for r in rows], pa.string()),
    }
    for task in TASKS:
        columns[task_column(task, "text")] = pa.array([r.get(task) for r in rows], pa.string())
    for k, name in enumerate((ERROR_STAGE, ERROR_CODE, ERROR_MESSAGE)):
        columns[name] = pa.array(
            [r["error"][k] if r.get("error") else None for r in rows], pa.string()
        )
    return pa.table(columns)


ROWS = [
    {"id": "0", "reference": "The cat sat.", "ctc": "the cat sat", "whisper": "a cat sat down"},
    {"id": "1", "reference": None, "ctc": "hello", "whisper": "hello"},
    {
        "id": "2",
        "reference": "one two",
        "ctc": None,
        "whisper": None,
        "error": ("decode", "truncated", "decoded 10% of the header's frames"),
    },
    {"id": "3", "reference": "Hello, world", "ctc": "hello word", "whisper": None},
    {"id": "4", "reference": "", "ctc": "uh oh", "whisper": ""},
]


def _score(rows=ROWS, normalizer="basic") -> dict[str, list]:
    stage = ScoreStage(TASKS, normalizer)
    out = stage(_batch(rows))
    assert out.num_rows == len(rows)
    return out.to_pydict()


def test_declares_what_it_reads_and_adds():
    stage = ScoreStage(TASKS, "basic")
    assert list(stage.reads()) == ["reference", "ctc__text", "whisper__text"]
    schema = stage.adds()
    assert len(schema) == 2 * len(SCORE_FIELDS)
    assert schema.field("ctc__wer").type == pa.float64()
    assert schema.field("whisper__char_edits").type == pa.int32()
    assert schema.field("whisper__normalizer").type == pa.string()


def test_scored_row_counts_for_both_tasks():
    out = _score()
    assert out["ctc__normalizer"][0] == "basic"
    assert (out["ctc__ref_words"][0], out["ctc__wer"][0]) == (3, 0.0)
    assert (out["ctc__ref_chars"][0], out["ctc__char_edits"][0], out["ctc__cer"][0]) == (11, 0, 0.0)
    # "the cat sat" -> "a cat sat down": one substitution, one insertion.
    edits = [out[f"whisper__{f}"][0] for f in ("substitutions", "deletions", "insertions")]
    assert edits == [1, 0, 1]
    assert out["whisper__wer"][0] == pytest.approx(2 / 3)
    # "the" -> "a": 1 substitution and 2 deletions; " down": 5 insertions.
    assert (out["whisper__char_edits"][0], out["whisper__cer"][0]) == (8, pytest.approx(8 / 11))


def test_row_without_reference_gets_nulls_and_no_error():
    out = _score()
    assert all(out[task_column(t, f)][1] is None for t in TASKS for f, _ in SCORE_FIELDS)
    assert out[ERROR_CODE][1] is None


def test_errored_row_passes_through_untouched():
    out = _score()
    assert (out[ERROR_STAGE][2], out[ERROR_CODE][2]) == ("decode", "truncated")
    assert out[ERROR_MESSAGE][2] == "decoded 10% of the header's frames"
    assert all(out[task_column(t, f)][2] is None for t in TASKS for f, _ in SCORE_FIELDS)


def test_null_hypothesis_scores_as_empty():
    out = _score()
    assert out[ERROR_CODE][3] is None
    assert (out["ctc__substitutions"][3], out["ctc__wer"][3]) == (1, 0.5)
    assert (out["whisper__deletions"][3], out["whisper__wer"][3]) == (2, 1.0)
    assert (out["whisper__ref_chars"][3], out["whisper__char_edits"][3]) == (11, 11)


def test_empty_reference_counts_insertions_but_has_no_rate():
    out = _score()
    assert out["ctc__normalizer"][4] == "basic"
    assert (out["ctc__ref_words"][4], out["ctc__insertions"][4], out["ctc__wer"][4]) == (0, 2, None)
    assert (out["ctc__ref_chars"][4], out["ctc__char_edits"][4], out["ctc__cer"][4]) == (0, 5, None)
    assert (out["whisper__ref_words"][4], out["whisper__wer"][4]) == (0, None)


def test_stage_counts_give_jiwers_corpus_wer():
    out = _score()
    scored = [
        i for i, ref in enumerate(out[REFERENCE]) if ref is not None and out[ERROR_CODE][i] is None
    ]
    fields = ("substitutions", "deletions", "insertions")
    errors = sum(out[f"ctc__{f}"][i] for i in scored for f in fields)
    ref_words = sum(out["ctc__ref_words"][i] for i in scored)
    refs = ["the cat sat", "hello world", ""]
    hyps = ["the cat sat", "hello word", "uh oh"]
    assert errors / ref_words == pytest.approx(jiwer.wer(refs, hyps))


def test_named_normaliser_is_applied_and_recorded():
    rows = [
        {"id": "0", "reference": "Twenty five colours", "ctc": "25 colors", "whisper": "25 colours"}
    ]
    basic, whisper = _score(rows, "basic"), _score(rows, "whisper_english")
    assert basic["ctc__wer"][0] == 1.0  # 2 substitutions, 1 deletion
    assert whisper["ctc__normalizer"][0] == "whisper_english"
    assert (whisper["ctc__wer"][0], whisper["whisper__wer"][0]) == (0.0, 0.0)


class _FailOn:
    """A normaliser that raises on one text, standing in for a third-party bug."""

    name = "fail_on"

    def __init__(self, bad: str):
        self.bad = bad

    def __call__(self, text: str) -> str:
        if text == self.bad:
            raise RuntimeError("cannot normalise this")
        return text


@pytest.mark.parametrize(
    ("bad", "failed", "where"),
    [("boom ref", ("ctc", "whisper"), "the reference"), ("boom hyp", ("whisper",), "'whisper'")],
)
def test_a_row_that_raises_fails_alone_and_only_for_its_tasks(bad, failed, where):
    rows = [
        {"id": "0", "reference": "a b", "ctc": "a b", "whisper": "a"},
        {"id": "1", "reference": "boom ref", "ctc": "x", "whisper": "boom hyp"},
    ]
    stage = ScoreStage(TASKS, "none")
    stage.normalizer = _FailOn(bad)
    out = stage(_batch(rows)).to_pydict()
    assert out[ERROR_CODE] == [None, None]  # the row itself, and any other task, is fine
    for task in TASKS:
        expected = [None, str(ErrorCode.SCORE_FAILED) if task in failed else None]
        assert out[f"{task}__error_code"] == expected
    message = out[f"{failed[0]}__error_message"][1]
    assert out[f"{failed[0]}__error_stage"][1] == "score"
    assert where in message and "RuntimeError" in message
    assert out["whisper__wer"] == [0.5, None]
    assert out["ctc__wer"] == [0.0, None if "ctc" in failed else 1.0]


def test_a_task_that_already_failed_is_not_scored():
    rows = [
        {"id": "0", "reference": "a b", "ctc": "a b", "whisper": None},
        {"id": "1", "reference": "a b", "ctc": "a", "whisper": "a b"},
    ]
    batch = _batch(rows).append_column(
        "whisper__error_code", pa.array(["model_failed", None], pa.string())
    )
    out = ScoreStage(TASKS, "none")(batch).to_pydict()
    assert out["whisper__wer"] == [None, 0.0]
    assert out["whisper__error_code"] == ["model_failed", None]
    assert out["ctc__wer"] == [0.0, 0.5]


@pytest.mark.parametrize(
    ("tasks", "normalizer", "match"),
    [
        ((), "basic", "at least one task"),
        (("a", "a"), "basic", "distinct"),
        (("a",), "nfkc", "basic"),
    ],
)
def test_bad_configuration_is_refused(tasks, normalizer, match):
    with pytest.raises(ValueError, match=match):
        ScoreStage(tasks, normalizer)
