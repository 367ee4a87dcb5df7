"""FramesStage on tiny frame classifiers: per-frame probabilities equal the model run alone,
long items are stitched without seams, and segments are the segmenter's over them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioFrameClassification

from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE
from pipeline.errors import ModelLoadError
from pipeline.kinds.frames import FramesTaskSpec
from pipeline.spec import StorageOptions
from pipeline.stages.frames import FramesStage
from pipeline.stages.segments import SegmentRules, segment
from pipeline.stages.windows import kept_ranges, plan_windows
from pipeline.testing.tiny_classifiers import LABELS, build_tiny_frame_classifier

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # WavLM
RATE = 16_000
STEP = 320  # samples per frame


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_frames")
    return {
        "layernorm": build_tiny_frame_classifier(str(root / "ln")),
        "groupnorm": build_tiny_frame_classifier(str(root / "gn"), group_norm=True, seed=1),
        "local": build_tiny_frame_classifier(str(root / "local"), local=True, seed=2),
        "unispeech_sat": build_tiny_frame_classifier(
            str(root / "usat"), arch="unispeech_sat", group_norm=True, seed=3
        ),
        "wavlm": build_tiny_frame_classifier(str(root / "wavlm"), arch="wavlm", seed=4),
    }


def make_stage(path: str, **spec) -> FramesStage:
    return FramesStage(FramesTaskSpec(model=path, **spec), StorageOptions()).load()


def alone(path: str, audio: np.ndarray) -> np.ndarray:
    """Sigmoid frame probabilities of one item through plain transformers (no padding)."""
    extractor = AutoFeatureExtractor.from_pretrained(path)
    model = AutoModelForAudioFrameClassification.from_pretrained(path).eval()
    with torch.inference_mode():
        inputs = extractor(audio, sampling_rate=RATE, return_tensors="pt")
        return model(**inputs).logits[0].sigmoid().numpy()


def tone_silence_tone(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE
    tone = 0.5 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
    quiet = 1e-3 * rng.standard_normal(RATE // 2)
    return np.concatenate([tone, quiet, tone[: int(rng.uniform(0.3, 1.0) * RATE)]]).astype(
        np.float32
    )


def batch(audio: list[np.ndarray], rates: list[int] | None = None) -> pa.Table:
    n = len(audio)
    return pa.table(
        {
            AUDIO: pa.array([a.tolist() for a in audio], pa.list_(pa.float32())),
            SAMPLE_RATE: pa.array(rates or [RATE] * n, pa.int32()),
            ERROR_STAGE: pa.nulls(n, pa.string()),
            ERROR_CODE: pa.nulls(n, pa.string()),
            ERROR_MESSAGE: pa.nulls(n, pa.string()),
        }
    )


@pytest.mark.parametrize("norm", ["layernorm", "groupnorm", "unispeech_sat", "wavlm"])
def test_frame_probabilities_equal_the_model_run_alone(norm, model_dirs):
    """Mixed lengths in one padded batch; measured max difference ~2e-6."""
    audio = [tone_silence_tone(s) for s in range(4)] + [np.full(400, 0.1, np.float32)]
    probs = make_stage(model_dirs[norm]).probabilities(audio)
    for i, a in enumerate(audio):
        expected = alone(model_dirs[norm], a)
        assert probs[i].shape == expected.shape
        np.testing.assert_allclose(probs[i], expected, atol=1e-4)
    assert probs[4].shape == (1, len(LABELS))  # the shortest item: one frame


def test_long_items_are_windows_stitched_at_the_middle_of_each_overlap(model_dirs):
    path = model_dirs["layernorm"]
    stage = make_stage(path, window_s=1.0, window_overlap_s=0.2)
    long = np.concatenate([tone_silence_tone(5), tone_silence_tone(6)])
    stitched = stage.probabilities([long])[0]
    bounds = plan_windows(len(long), stage.window, stage.overlap, align=STEP)
    assert len(bounds) >= 5
    pieces = [alone(path, long[a:b]) for a, b in bounds]
    spans = [(a // STEP, a // STEP + len(p)) for (a, _), p in zip(bounds, pieces, strict=True)]
    by_hand = np.concatenate(
        [
            p[k0 - g : k1 - g]
            for p, (g, _), (k0, k1) in zip(pieces, spans, kept_ranges(spans), strict=True)
        ]
    )
    assert stitched.shape == alone(path, long).shape  # every frame once, none missing
    np.testing.assert_allclose(stitched, by_hand, atol=1e-4)


def test_stitching_is_seamless_for_a_model_whose_context_fits_the_overlap(model_dirs):
    """No attention layer and no per-item normalisation: a frame depends on ~0.2 s around it,
    so with 0.45 s of context kept on each side the stitch equals one whole-item pass."""
    path = model_dirs["local"]
    long = np.concatenate([tone_silence_tone(7), tone_silence_tone(8)])
    stage = make_stage(path, window_s=2.0, window_overlap_s=0.9)
    stitched = stage.probabilities([long])[0]
    whole = alone(path, long)
    assert len(plan_windows(len(long), stage.window, stage.overlap, align=STEP)) >= 3
    np.testing.assert_allclose(stitched, whole, atol=1e-5)
    # With no overlap beyond one frame the windows' edges do show: the tolerance means something.
    seams = make_stage(path, window_s=2.0, window_overlap_s=0.0).probabilities([long])[0]
    assert np.abs(seams - whole).max() > 1e-2


def test_segments_are_the_segmenter_over_the_stage_probabilities(model_dirs):
    path = model_dirs["layernorm"]
    spec = {"threshold": 0.6, "smoothing_frames": 5, "min_segment_s": 0.1, "merge_gap_s": 0.06}
    stage = make_stage(path, labels=["music", "siren", "rain"], **spec)
    audio = [tone_silence_tone(s) for s in (10, 11)]
    out = stage(batch(audio))
    rules = SegmentRules(**spec)
    for i, a in enumerate(audio):
        probs = alone(path, a)[:, [1, 3, 4]]
        expected = segment(probs, ["music", "siren", "rain"], 0.02, rules, duration_s=len(a) / RATE)
        got = out.column("frames__segments")[i].as_py()
        assert [(s["label"], s["start"], s["end"]) for s in got] == [
            (s["label"], pytest.approx(s["start"]), pytest.approx(s["end"])) for s in expected
        ]
        assert [s["score"] for s in got] == pytest.approx([s["score"] for s in expected], abs=1e-4)
        assert got and {s["label"] for s in got} <= {"music", "siren", "rain"}
        assert max(s["end"] for s in got) <= len(a) / RATE
    assert out.column("frames__labels").null_count == 2
    assert out.column("frames__model").to_pylist() == [path, path]


def test_bad_rows_fail_alone(model_dirs):
    stage = make_stage(model_dirs["groupnorm"])
    audio = [tone_silence_tone(12), np.zeros(399, np.float32), tone_silence_tone(13)]
    out = stage(batch(audio, rates=[RATE, RATE, 22050]))
    assert out.column("frames__error_code").to_pylist() == [None, "model_failed", "model_failed"]
    messages = out.column("frames__error_message").to_pylist()
    assert "399 samples" in messages[1] and "22050 Hz" in messages[2]
    assert out.column("frames__segments")[0].as_py()


def test_a_window_that_makes_the_model_raise_fails_its_row_alone(model_dirs):
    stage = make_stage(model_dirs["layernorm"], window_s=1.0, window_overlap_s=0.2)
    audio = [tone_silence_tone(14)[:12_000], tone_silence_tone(15), tone_silence_tone(16)[:9_000]]

    def refuse(_module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.sum(dim=1).max() > RATE:  # only item 1 has long windows
            raise RuntimeError("simulated kernel failure")

    stage.model.model.register_forward_pre_hook(refuse, with_kwargs=True)
    out = stage(batch(audio))
    assert out.column("frames__error_code").to_pylist() == [None, "model_failed", None]
    assert "simulated kernel failure" in out.column("frames__error_message")[1].as_py()


def test_unknown_labels_and_even_smoothing_are_refused(model_dirs):
    with pytest.raises(ModelLoadError, match="not labels of"):
        make_stage(model_dirs["layernorm"], labels=["speech", "cat"])
    with pytest.raises(ValueError, match="odd"):
        FramesTaskSpec(model="x", smoothing_frames=4)
    with pytest.raises(ModelLoadError, match="too short"):  # overlap rounds up to one frame
        make_stage(model_dirs["layernorm"], window_s=0.03, window_overlap_s=0.0)
