"""CtcStage against `transformers.pipeline("automatic-speech-recognition")` on tiny models.

The reference runs one item at a time, so it never pads: matching it on batches of
mixed lengths is what proves a transcript does not depend on its batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCTC, AutoProcessor, pipeline
from transformers.pipelines.automatic_speech_recognition import chunk_iter

from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE
from pipeline.kinds.ctc import CtcTaskSpec
from pipeline.spec import StorageOptions
from pipeline.stages.batching import micro_batches
from pipeline.stages.ctc import CtcStage, chunk_bounds, emitted_confidence
from pipeline.testing.tiny_ctc import build_tiny_ctc

RATE = 16_000
ARCHS = ["wav2vec2", "wav2vec2_groupnorm", "hubert"]
OTHER_ARCHS = ["wavlm", "data2vec_audio"]  # group norm + relative positions; stacked pos convs


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_ctc")
    return {arch: build_tiny_ctc(str(root / arch), arch=arch) for arch in ARCHS + OTHER_ARCHS}


@pytest.fixture(scope="module")
def references(model_dirs):
    """One reference pipeline per architecture, loaded from the same folder."""
    refs = {}
    for arch, path in model_dirs.items():
        proc = AutoProcessor.from_pretrained(path)
        refs[arch] = pipeline(
            "automatic-speech-recognition",
            model=AutoModelForCTC.from_pretrained(path),
            feature_extractor=proc.feature_extractor,
            tokenizer=proc.tokenizer,
            device="cpu",
        )
    return refs


def make_stage(path: str, **spec) -> CtcStage:
    return CtcStage(CtcTaskSpec(model=path, **spec), StorageOptions()).load()


def signal(seconds: float, seed: int) -> np.ndarray:
    """A sine, chirp or noise burst mix, different per seed, so the model says different things."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0, sweep = rng.uniform(80, 600), rng.uniform(-150, 400)
    x = rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * (f0 + sweep * t) * t)
    x += (
        rng.uniform(0.0, 0.3)
        * rng.standard_normal(t.size)
        * (np.sin(2 * np.pi * rng.uniform(0.5, 4) * t) > 0)
    )
    return (x + rng.uniform(-0.05, 0.05)).astype(np.float32)


def varied(n: int, seed: int = 0) -> list[np.ndarray]:
    lengths = np.random.default_rng(seed).uniform(0.3, 4.0, n)
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


def texts(table: pa.Table) -> list[str | None]:
    return table.column("ctc__text").to_pylist()


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_transcripts_equal_the_pipeline_one_item_at_a_time(arch, model_dirs, references):
    audio = varied(10, seed=1) + [np.zeros(400, np.float32) + 0.1]  # shortest valid item
    # A small budget forces several micro-batches of mixed lengths.
    out = make_stage(model_dirs[arch], batch_seconds=8)(batch(audio))
    expected = [references[arch](a)["text"] for a in audio]
    assert texts(out) == expected
    assert len({t for t in expected if t}) >= 8  # the check means something: varied text
    assert out.column(ERROR_CODE).null_count == len(audio)
    assert set(out.column("ctc__model").to_pylist()) == {model_dirs[arch]}


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # wavlm, in torch
@pytest.mark.parametrize("arch", OTHER_ARCHS)
def test_other_architectures_batch_exactly_too(arch, model_dirs, references):
    audio = varied(6, seed=16)
    out = make_stage(model_dirs[arch], batch_seconds=10)(batch(audio))
    assert texts(out) == [references[arch](a)["text"] for a in audio]


@pytest.mark.parametrize("arch", ARCHS)
def test_transcript_does_not_depend_on_batch_composition(arch, model_dirs):
    stage = make_stage(model_dirs[arch])
    audio = varied(6, seed=2)
    mixed = stage(batch(audio))
    for i in (0, 3):
        alone = stage(batch([audio[i]]))
        assert texts(alone) == [texts(mixed)[i]]
        assert alone.column("ctc__words")[0].as_py() == mixed.column("ctc__words")[i].as_py()
        confidence = (
            alone.column("ctc__confidence")[0].as_py(),
            mixed.column("ctc__confidence")[i].as_py(),
        )
        assert confidence[0] == pytest.approx(confidence[1], abs=1e-5)
    reordered = stage(batch(audio[::-1]))
    assert texts(reordered) == texts(mixed)[::-1]


def test_group_norm_batch_logits_match_single_logits(model_dirs):
    """The masked group norm makes padded logits equal single-item logits to float rounding.

    Measured on this batch: max |batched - single| ~1e-5 (logits of magnitude ~10);
    the unmasked model on the same padded batch differs by ~10 and flips ~15% of argmaxes.
    """
    model = make_stage(model_dirs["wav2vec2_groupnorm"]).model
    audio = varied(5, seed=3)
    batched, frames = model.logits(audio)
    extract = model.feature_extractor
    with torch.inference_mode():
        singles = [
            model.model(extract(a, sampling_rate=RATE, return_tensors="pt")["input_values"]).logits[
                0
            ]
            for a in audio
        ]
        padded = extract(
            audio,
            sampling_rate=RATE,
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )
        unmasked = model.model(**padded).logits
    assert [s.shape[0] for s in singles] == frames

    def worst(logits):
        return max((logits[i, :n] - singles[i]).abs().max().item() for i, n in enumerate(frames))

    assert worst(batched) < 1e-4
    assert worst(unmasked) > 1.0  # what the masked norm fixes


@pytest.mark.parametrize("arch", ["wav2vec2", "wav2vec2_groupnorm"])
@pytest.mark.parametrize("stride", [None, 0.5])
def test_long_audio_is_chunked_like_the_pipeline(arch, stride, model_dirs, references):
    long = signal(12.0, seed=7)
    audio = [varied(1, seed=4)[0], long, signal(5.3, seed=8)]
    out = make_stage(model_dirs[arch], chunk_length_s=4, stride_length_s=stride, batch_seconds=10)(
        batch(audio)
    )
    kwargs = {"chunk_length_s": 4} | ({"stride_length_s": stride} if stride else {})
    assert texts(out) == [references[arch](a, **kwargs)["text"] for a in audio]
    # Chunking changes the text of long audio: the comparison above covers the chunk path.
    assert texts(out)[1] != references[arch](long)["text"]


@pytest.mark.parametrize("samples", [0, 1, 64_000, 64_001, 100_000, 200_321])
@pytest.mark.parametrize(("chunk", "left", "right"), [(64_000, 10_560, 10_560), (8_000, 1_600, 0)])
def test_chunk_bounds_follow_transformers_chunk_iter(samples, chunk, left, right):
    class LengthOnly:  # chunk_iter calls the extractor per chunk; only lengths matter here
        sampling_rate = RATE

        def __call__(self, chunk, **_):
            return {}

    x = np.zeros(samples, np.float32)
    expected = [item["stride"] for item in chunk_iter(x, LengthOnly(), chunk, left, right)]
    got = [
        (stop - start, lft, rgt)
        for start, stop, lft, rgt in chunk_bounds(samples, chunk, left, right)
    ]
    assert got == expected


@pytest.mark.parametrize("arch", ["wav2vec2", "hubert"])
def test_word_timestamps_follow_the_alignment(arch, model_dirs, references):
    audio = varied(4, seed=5) + [signal(9.0, seed=9)]
    out = make_stage(model_dirs[arch], chunk_length_s=4)(batch(audio))
    for i, a in enumerate(audio):
        words = out.column("ctc__words")[i].as_py()
        text = texts(out)[i]
        duration = len(a) / RATE
        assert words, "every test signal gives some words"
        # The tokenizer keeps runs of delimiters as runs of spaces in the text.
        assert " ".join(w["word"] for w in words) == " ".join(text.split())
        bounds = [t for w in words for t in (w["start"], w["end"])]
        assert bounds == sorted(bounds)
        assert bounds[0] >= 0 and bounds[-1] <= duration
        assert all(w["end"] > w["start"] for w in words)
    # Unchunked items: the same boundaries as the pipeline's word timestamps.
    for i in range(4):
        ref = references[arch](audio[i], return_timestamps="word")["chunks"]
        got = out.column("ctc__words")[i].as_py()
        assert [(w["word"], w["start"], w["end"]) for w in got] == [
            (
                c["text"],
                pytest.approx(c["timestamp"][0], abs=1e-9),
                pytest.approx(c["timestamp"][1], abs=1e-9),
            )
            for c in ref
        ]


def test_word_timestamps_off_leaves_words_null(model_dirs):
    out = make_stage(model_dirs["wav2vec2"], word_timestamps=False)(batch(varied(2, seed=6)))
    assert out.column("ctc__words").null_count == 2
    assert all(texts(out))


def test_errored_rows_pass_through_untouched(model_dirs):
    audio = varied(3, seed=10)
    table = batch(audio, errors={1: "undecodable"})
    out = make_stage(model_dirs["wav2vec2"])(table)
    assert out.column(ERROR_CODE).to_pylist() == [None, "undecodable", None]
    assert out.column(ERROR_STAGE)[1].as_py() == "decode"
    assert out.column(ERROR_MESSAGE)[1].as_py() == "earlier failure"
    assert out.column(AUDIO).equals(table.column(AUDIO))
    for name in ("ctc__text", "ctc__words", "ctc__confidence", "ctc__model"):
        assert out.column(name)[1].as_py() is None
    assert texts(out)[0] and texts(out)[2]


@pytest.mark.parametrize("short", [1, 399])
def test_audio_shorter_than_the_receptive_field_fails_alone(short, model_dirs, references):
    """The pipeline raises on it; the stage marks that row MODEL_FAILED and goes on."""
    arch = "wav2vec2_groupnorm"
    tiny = signal(1.0, seed=11)[:short]
    with pytest.raises(RuntimeError, match="Kernel size"):
        references[arch](tiny)
    audio = [signal(1.5, seed=12), tiny, signal(0.7, seed=13)]
    out = make_stage(model_dirs[arch])(batch(audio))
    assert out.column("ctc__error_code").to_pylist() == [None, "model_failed", None]
    assert "receptive field" in out.column("ctc__error_message")[1].as_py()
    assert out.column("ctc__error_stage")[1].as_py() == "ctc"
    assert texts(out)[0::2] == [references[arch](a)["text"] for a in audio[0::2]]


def test_item_that_makes_the_model_raise_fails_alone(model_dirs, references):
    stage = make_stage(model_dirs["hubert"])
    audio = varied(5, seed=14)
    bad = len(audio[2])

    def refuse(_module, args, kwargs):  # the model "crashes" on one item's length
        mask = kwargs.get("attention_mask")
        if mask is not None and bad in mask.sum(dim=1).tolist():
            raise RuntimeError("simulated kernel failure")

    stage.model.model.register_forward_pre_hook(refuse, with_kwargs=True)
    out = stage(batch(audio))
    assert out.column("ctc__error_code").to_pylist() == [None, None, "model_failed", None, None]
    assert "simulated kernel failure" in out.column("ctc__error_message")[2].as_py()
    expected = [references["hubert"](a)["text"] for a in audio]
    assert [t for i, t in enumerate(texts(out)) if i != 2] == expected[:2] + expected[3:]


def test_wrong_sample_rate_is_a_row_error(model_dirs):
    out = make_stage(model_dirs["wav2vec2"])(batch(varied(2, seed=15), rates=[RATE, 8000]))
    assert out.column("ctc__error_code").to_pylist() == [None, "model_failed"]
    assert "8000 Hz" in out.column("ctc__error_message")[1].as_py()


def test_confidence_is_mean_probability_of_emitted_tokens():
    blank = 0
    ids = np.array([0, 5, 5, 0, 5, 2, 2, 0, 0])
    probs = np.array([0.9, 0.4, 0.99, 0.9, 0.6, 0.8, 0.1, 0.9, 0.9], np.float32)
    # Emitted: 5 (frame 1), 5 again after a blank (frame 4), 2 (frame 5).
    assert emitted_confidence(ids, probs, blank) == pytest.approx((0.4 + 0.6 + 0.8) / 3)
    assert emitted_confidence(np.zeros(4, np.int64), np.ones(4, np.float32), blank) is None


def test_micro_batches_respect_the_padded_budget():
    lengths = [5, 50, 7, 30, 200, 12, 31, 6]
    batches = micro_batches(lengths, budget=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 64
    assert [lengths[i] for i in batches[-1]] == [200]  # over budget: a batch of its own


def test_tiny_models_are_deterministic_per_seed(tmp_path, model_dirs):
    from safetensors.numpy import load_file

    again = build_tiny_ctc(str(tmp_path / "again"), arch="hubert", seed=0)
    other = build_tiny_ctc(str(tmp_path / "other"), arch="hubert", seed=1)
    weights = {p: load_file(f"{p}/model.safetensors") for p in (model_dirs["hubert"], again, other)}
    same, different = weights[model_dirs["hubert"]], weights[other]
    assert all(np.array_equal(same[k], weights[again][k]) for k in same)
    assert not np.array_equal(same["lm_head.weight"], different["lm_head.weight"])
