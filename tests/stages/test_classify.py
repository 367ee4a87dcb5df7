"""ClassifyStage against `transformers.pipeline("audio-classification")` on tiny models.

The reference runs one item at a time, so it never pads: matching it on batches of mixed
lengths (several micro-batches) is what proves a label list does not depend on its batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from transformers import pipeline

from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE
from pipeline.errors import ModelLoadError
from pipeline.kinds.classify import ClassifyTaskSpec
from pipeline.schemas import CLASSIFICATIONS
from pipeline.spec import StorageOptions
from pipeline.stages.classify import ClassifyStage
from pipeline.stages.windows import plan_windows
from pipeline.testing.tiny_classifiers import (
    LABELS,
    build_tiny_ast,
    build_tiny_sequence_classifier,
)

RATE = 16_000
AST_WINDOW = 400 + 255 * 160  # samples that fill the 256 fbank frames of "ast_multi"
MODELS = ["ast", "seq", "seq_groupnorm"]
pytestmark = [
    # The reference's ASTFeatureExtractor warns about its own mel filters; torch about WavLM's masks.
    pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values"),
    pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask"),
]
SCORE_TOL = 1e-4  # measured: <= 1.1e-5 (AST: fbank in float32 on torch vs numpy float64)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_classifiers")
    return {
        "ast": build_tiny_ast(str(root / "ast")),
        # A shorter AST window (256 fbank frames, 2.575 s) keeps the windowing tests cheap.
        "ast_multi": build_tiny_ast(
            str(root / "ast_multi"), multi_label=True, seed=3, max_length=256
        ),
        "seq": build_tiny_sequence_classifier(str(root / "seq")),
        "seq_groupnorm": build_tiny_sequence_classifier(str(root / "seq_gn"), group_norm=True),
        "hubert": build_tiny_sequence_classifier(
            str(root / "hubert"), arch="hubert", group_norm=True, seed=5
        ),
        "wavlm": build_tiny_sequence_classifier(str(root / "wavlm"), arch="wavlm", seed=6),
    }


@pytest.fixture(scope="module")
def references(model_dirs):
    return {k: _reference(path) for k, path in model_dirs.items()}


def _reference(path: str):
    """The pipeline on one item; for a multi-label model with sigmoid, which transformers
    5.24 picks by itself and 5.17 (the GPU machine's) does not: it always softmaxes."""
    pipe = pipeline("audio-classification", model=path, device="cpu")
    multi = pipe.model.config.problem_type == "multi_label_classification"

    def call(audio, **kwargs):
        if multi:
            kwargs.setdefault("function_to_apply", "sigmoid")
        return pipe(audio, **kwargs)

    return call


def make_stage(path: str, **spec) -> ClassifyStage:
    return ClassifyStage(ClassifyTaskSpec(model=path, **spec), StorageOptions()).load()


def signal(seconds: float, seed: int) -> np.ndarray:
    """A chirp plus gated noise, different per seed, so the models rank labels differently."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0, sweep = rng.uniform(80, 2500), rng.uniform(-100, 400)
    x = rng.uniform(0.05, 0.6) * np.sin(2 * np.pi * (f0 + sweep * t) * t)
    gate = np.sin(2 * np.pi * rng.uniform(0.5, 4) * t) > rng.uniform(-1, 1)
    x += rng.uniform(0.0, 0.4) * rng.standard_normal(t.size) * gate
    return x.astype(np.float32)


def varied(n: int, seed: int, longest: float = 3.0) -> list[np.ndarray]:
    lengths = np.random.default_rng(seed).uniform(0.2, longest, n)
    return [signal(s, seed * 100 + i) for i, s in enumerate(lengths)]


def batch(
    audio: list[np.ndarray], rates: list[int] | None = None, errors: dict[int, str] | None = None
) -> pa.Table:
    n = len(audio)
    codes = [(errors or {}).get(i) for i in range(n)]
    return pa.table(
        {
            AUDIO: pa.array([a.tolist() for a in audio], pa.list_(pa.float32())),
            SAMPLE_RATE: pa.array(rates or [RATE] * n, pa.int32()),
            ERROR_STAGE: pa.array(["decode" if c else None for c in codes], pa.string()),
            ERROR_CODE: pa.array(codes, pa.string()),
            ERROR_MESSAGE: pa.array(["earlier failure" if c else None for c in codes], pa.string()),
        }
    )


def labels_of(table: pa.Table, task: str = "classify") -> list[list[dict] | None]:
    return table.column(f"{task}__labels").to_pylist()


def assert_same(got: list[dict], expected: list[dict], tol: float = SCORE_TOL) -> float:
    """Same labels in the same order, scores within `tol`; returns the largest difference."""
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    diffs = [abs(g["score"] - e["score"]) for g, e in zip(got, expected, strict=True)]
    assert max(diffs, default=0.0) < tol
    return max(diffs, default=0.0)


@pytest.mark.parametrize("name", MODELS)
def test_top_k_equals_the_pipeline_one_item_at_a_time(name, model_dirs, references):
    audio = varied(8, seed=1) + [signal(0.03, seed=5)]  # 30 ms: shortest items still work
    # A small budget forces several micro-batches of mixed lengths (AST: 2 windows each).
    out = make_stage(model_dirs[name], top_k=3, batch_seconds=21)(batch(audio))
    got = labels_of(out)
    for g, a in zip(got, audio, strict=True):
        assert_same(g, references[name](a, top_k=3))
    assert len({tuple(x["label"] for x in g) for g in got}) >= 3  # the models follow the audio
    assert out.column(ERROR_CODE).null_count == len(audio)
    assert set(out.column("classify__model").to_pylist()) == {model_dirs[name]}
    assert out.column("classify__windows").null_count == len(audio)  # keep_windows is off
    assert out.column("classify__segments").null_count == len(audio)


@pytest.mark.parametrize("name", ["hubert", "wavlm"])
def test_other_encoders_batch_exactly_too(name, model_dirs, references):
    audio = varied(5, seed=6)
    out = make_stage(model_dirs[name], top_k=3, batch_seconds=6)(batch(audio))
    for got, a in zip(labels_of(out), audio, strict=True):
        assert_same(got, references[name](a, top_k=3))


@pytest.mark.parametrize("name", MODELS)
def test_labels_do_not_depend_on_batch_composition(name, model_dirs):
    stage = make_stage(model_dirs[name], top_k=6)
    audio = varied(6, seed=2)
    mixed = labels_of(stage(batch(audio)))
    # Measured: <= 2e-5 (AST: float32 GEMMs blocked differently at another batch size).
    for i in (0, 4):
        assert_same(labels_of(stage(batch([audio[i]])))[0], mixed[i])
    reordered = labels_of(stage(batch(audio[::-1])))
    for a, b in zip(reordered, mixed[::-1], strict=True):
        assert_same(a, b)


def test_activation_follows_problem_type_and_the_spec(model_dirs, references):
    audio = varied(3, seed=3)
    single = labels_of(make_stage(model_dirs["seq"], top_k=6)(batch(audio)))
    for labels in single:  # softmax: all six scores sum to one
        assert sum(x["score"] for x in labels) == pytest.approx(1.0, abs=1e-5)
    multi = labels_of(make_stage(model_dirs["ast_multi"], top_k=6)(batch(audio)))
    assert any(sum(x["score"] for x in labels) > 1.5 for labels in multi)  # sigmoid
    for got, a in zip(multi, audio, strict=True):  # the pipeline's sigmoid (see _reference)
        assert_same(got, references["ast_multi"](a, top_k=6))
    forced = labels_of(make_stage(model_dirs["seq"], activation="sigmoid", top_k=4)(batch(audio)))
    for got, a in zip(forced, audio, strict=True):
        assert_same(got, references["seq"](a, top_k=4, function_to_apply="sigmoid"))


def test_threshold_keeps_only_labels_scoring_at_least_it(model_dirs):
    audio = varied(6, seed=4)
    full = labels_of(make_stage(model_dirs["ast_multi"], top_k=4)(batch(audio)))
    cut = labels_of(make_stage(model_dirs["ast_multi"], top_k=4, threshold=0.5)(batch(audio)))
    for f, c in zip(full, cut, strict=True):
        assert c == [x for x in f if x["score"] >= 0.5]
    assert any(len(c) < len(f) for f, c in zip(full, cut, strict=True))  # it cut something
    assert any(c for c in cut)


def by_hand(reference, audio: np.ndarray, bounds, k: int) -> tuple[dict, list]:
    """Each window through the pipeline alone: ({pooling: top k}, per-window top k)."""
    per_window = []
    for start, stop in bounds:
        scored = {x["label"]: x["score"] for x in reference(audio[start:stop], top_k=len(LABELS))}
        per_window.append(np.array([scored[label] for label in LABELS]))
    scores = np.stack(per_window)

    def top(s):
        return [{"label": LABELS[j], "score": float(s[j])} for j in np.argsort(-s)[:k]]

    return {"mean": top(scores.mean(0)), "max": top(scores.max(0))}, [top(s) for s in scores]


@pytest.mark.parametrize(
    ("name", "seconds", "window_s", "overlap_s"),
    [("ast_multi", 7.2, None, 0.5), ("seq", 7.3, 2.0, 0.5)],
)
def test_long_items_pool_their_windows(name, seconds, window_s, overlap_s, model_dirs, references):
    long = signal(seconds, seed=7)
    audio = [signal(1.5, seed=8), long]
    window = AST_WINDOW if window_s is None else int(window_s * RATE)
    bounds = plan_windows(len(long), window, int(overlap_s * RATE))
    assert len(bounds) >= 3 and bounds[-1][1] == len(long)
    expected, expected_windows = by_hand(references[name], long, bounds, 3)
    for how in ("mean", "max"):
        out = make_stage(
            model_dirs[name],
            top_k=3,
            window_s=window_s,
            window_overlap_s=overlap_s,
            pooling=how,
            keep_windows=True,
            batch_seconds=25,
        )(batch(audio))
        assert_same(labels_of(out)[1], expected[how])
        windows = out.column("classify__windows")[1].as_py()
        assert [(w["start"], w["end"]) for w in windows] == [
            (a / RATE, b / RATE) for a, b in bounds
        ]
        for w, e in zip(windows, expected_windows, strict=True):
            assert_same(w["labels"], e)
        # The short item is one window: the whole item, as the pipeline sees it.
        assert_same(labels_of(out)[0], references[name](audio[0], top_k=3))
        assert out.column("classify__windows")[0].as_py() == [
            {"start": 0.0, "end": 1.5, "labels": labels_of(out)[0]}
        ]
    assert expected["mean"] != expected["max"]  # the two poolings were told apart


def test_wrong_rate_too_short_and_earlier_errors_fail_alone(model_dirs, references):
    audio = [signal(1.2, 9), signal(0.02, 10), signal(2.0, 11), signal(1.0, 12), signal(0.8, 13)]
    out = make_stage(model_dirs["ast"], top_k=2)(
        batch(audio, rates=[RATE, RATE, 8000, RATE, RATE], errors={3: "undecodable"})
    )
    codes = out.column("classify__error_code").to_pylist()
    assert codes == [None, "model_failed", "model_failed", None, None]
    messages = out.column("classify__error_message").to_pylist()
    assert "320 samples" in messages[1] and "8000 Hz" in messages[2]
    assert out.column(ERROR_CODE).to_pylist()[3] == "undecodable"  # passed through untouched
    got = labels_of(out)
    assert got[1] is None and got[2] is None and got[3] is None
    for i in (0, 4):
        assert_same(got[i], references["ast"](audio[i], top_k=2))


def test_window_that_makes_the_model_raise_fails_its_row_alone(model_dirs, references):
    stage = make_stage(model_dirs["seq"], top_k=3, window_s=2.0)
    audio = varied(4, seed=14, longest=1.5) + [signal(5.0, seed=15)]  # the last has 3 windows
    bad = 2 * RATE  # the long item's windows are the only ones this long

    def refuse(_module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and bad in mask.sum(dim=1).tolist():
            raise RuntimeError("simulated kernel failure")

    stage.model.model.register_forward_pre_hook(refuse, with_kwargs=True)
    out = stage(batch(audio))
    assert out.column("classify__error_code").to_pylist() == [None] * 4 + ["model_failed"]
    assert "simulated kernel failure" in out.column("classify__error_message")[4].as_py()
    for got, a in zip(labels_of(out)[:4], audio[:4], strict=True):
        assert_same(got, references["seq"](a, top_k=3))


def test_windows_longer_than_ast_sees_are_refused(model_dirs):
    with pytest.raises(ModelLoadError, match="longer than"):
        make_stage(model_dirs["ast"], window_s=11.0)
    with pytest.raises(ModelLoadError, match="window_overlap_s"):
        make_stage(model_dirs["ast"], window_overlap_s=10.5)  # its window is 10.255 s
    assert make_stage(model_dirs["ast"]).window == 400 + 1023 * 160
    assert make_stage(model_dirs["ast_multi"]).window == AST_WINDOW


def test_columns_are_typed_as_the_classifications_table(model_dirs):
    stage = make_stage(model_dirs["seq"], name="tags")
    assert stage.name == stage.task == "tags"
    for field in stage.adds():
        assert field.type == CLASSIFICATIONS.field(field.name.removeprefix("tags__")).type


def test_stage_output_writes_as_the_classifications_table(model_dirs):
    from pipeline.io.tables import TaskInfo, split_batch

    audio = [signal(1.0, 20), signal(0.01, 21), signal(2.0, 22)]
    out = make_stage(model_dirs["seq"], top_k=2, keep_windows=True)(batch(audio))
    n = out.num_rows
    items = {
        "item_id": [f"i{k}" for k in range(n)],
        "source_uri": [f"/c/{k}.wav" for k in range(n)],
        "member": [""] * n,
        "shard": ["s"] * n,
        "duration_s": [len(a) / RATE for a in audio],
        "metadata": [None] * n,
    }
    for name, values in items.items():
        out = out.append_column(name, pa.array(values, CLASSIFICATIONS.field(name).type))
    task = TaskInfo("classify", "classify", model_dirs["seq"], "classifications")
    tables = split_batch(out, [task], run_id="r")
    written = tables[("classifications", "classify")]
    assert written.schema == CLASSIFICATIONS
    assert written.column("item_id").to_pylist() == ["i0", "i2"]  # i1 is too short
    assert written.column("segments").null_count == 2 and len(written.column("windows")[0]) == 1
    assert tables[("errors", "classify")].column("task").to_pylist() == ["classify"]
