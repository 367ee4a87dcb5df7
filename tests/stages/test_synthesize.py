"""SynthesizeStage on a tiny random-init SpeechT5: columns, pieces, seeds, errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.columns import (
    AUDIO,
    DURATION_S,
    ERROR_CODE,
    ERROR_MESSAGE,
    ERROR_STAGE,
    SAMPLE_RATE,
)
from pipeline.errors import ModelLoadError
from pipeline.kinds.synthesize import SynthesizeTaskSpec
from pipeline.spec import StorageOptions
from pipeline.stages.synthesize import SynthesizeStage, load_speaker_set, piece_seed
from pipeline.testing.tiny_speecht5 import build_tiny_speecht5
from pipeline.text.speech import split_sentences

RATE = 16_000
HOP = 256
SPEAKERS = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
TEXTS = [
    "Hello world.",
    "Dr. Smith paid $5.50 in 1984. Then he left! Where to? Nobody knows.",
    "Pack my box with 5 dozen jugs.",
    "a",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one torch thread (and restore the setting after).

    On a shared 2-core machine two threads made every small op wait on the other
    thread: one synthesis call took 2.7 s instead of 0.04 s.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> tuple[str, str]:
    return build_tiny_speecht5(str(tmp_path_factory.mktemp("tiny_speecht5")))


def make_stage(model_dirs, **spec) -> SynthesizeStage:
    tts, vocoder = model_dirs
    options = {"maxlenratio": 2.0, "max_chars": 30, "cpu_threads": 1, **spec}
    return SynthesizeStage(
        SynthesizeTaskSpec(model=tts, vocoder=vocoder, **options), StorageOptions()
    ).load()


@pytest.fixture(scope="module")
def stage(model_dirs) -> SynthesizeStage:
    return make_stage(model_dirs)


def batch(texts, ids=None, speakers=None, errors=None) -> pa.Table:
    n = len(texts)
    codes = [(errors or {}).get(i) for i in range(n)]
    spk = speakers if speakers is not None else [None] * n
    return pa.table(
        {
            "text_id": ids or [f"t{i}" for i in range(n)],
            "text": pa.array(texts, pa.string()),
            "speaker_embedding": pa.array(
                [None if s is None else np.asarray(s).tolist() for s in spk],
                pa.list_(pa.float32()),
            ),
            ERROR_STAGE: pa.array(["read" if c else None for c in codes], pa.string()),
            ERROR_CODE: pa.array(codes, pa.string()),
            ERROR_MESSAGE: pa.array(["earlier" if c else None for c in codes], pa.string()),
        }
    )


def audio(table: pa.Table, i: int) -> np.ndarray:
    return np.asarray(table.column(AUDIO)[i].values.to_numpy(zero_copy_only=False))


def col(table: pa.Table, name: str) -> list:
    """A column by its name, task columns by their field name."""
    plain = name in (AUDIO, DURATION_S, SAMPLE_RATE, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE)
    return table.column(name if plain else f"synthesize__{name}").to_pylist()


@pytest.fixture(scope="module")
def mixed(stage) -> pa.Table:
    speakers = [None, SPEAKERS[0], None, SPEAKERS[1]]
    return stage(batch(TEXTS, speakers=speakers))


def test_adds_decode_columns_and_task_columns(stage, mixed):
    assert mixed.num_rows == len(TEXTS)
    for field in stage.adds():
        assert mixed.schema.field(field.name).type == field.type
    assert mixed.schema.field(AUDIO).type == pa.list_(pa.float32())
    assert col(mixed, SAMPLE_RATE) == [RATE] * len(TEXTS)
    assert col(mixed, "error_code") == [None] * len(TEXTS)
    for i in range(len(TEXTS)):
        assert col(mixed, DURATION_S)[i] == pytest.approx(len(audio(mixed, i)) / RATE)
        assert col(mixed, "model")[i] == stage.model.name
    normalized = col(mixed, "normalized_text")
    assert normalized[1].startswith("Doctor Smith paid five dollars and fifty cents in nineteen")
    assert normalized[2] == "Pack my box with five dozen jugs."


def test_pieces_are_joined_with_pauses(mixed):
    # Each piece is n_frames * hop samples; pieces are joined by 0.2 s of silence.
    pause = int(0.2 * RATE)
    counts = [len(split_sentences(t, 30)) for t in col(mixed, "normalized_text")]
    assert counts[0] == counts[3] == 1 and counts[1] >= 3
    for i, pieces in enumerate(counts):
        assert len(audio(mixed, i)) == col(mixed, "n_frames")[i] * HOP + (pieces - 1) * pause


def test_signal_metrics_are_filled_and_plausible(mixed):
    for i in range(len(TEXTS)):
        assert 0 <= col(mixed, "clipping_share")[i] <= 1
        assert -60 < col(mixed, "rms_dbfs")[i] < 0
        assert col(mixed, "chars_per_s")[i] > 0
        assert col(mixed, "leading_silence_s")[i] >= 0
        assert col(mixed, "trailing_silence_s")[i] >= 0
    # The pauses between the pieces of text 1 are internal silence.
    assert col(mixed, "silence_share")[1] > 0
    assert col(mixed, "empty") == [False] * len(TEXTS)


def test_each_row_is_independent_of_its_batch(stage, mixed):
    speakers = [None, SPEAKERS[0], None, SPEAKERS[1]]
    for i in (3, 1):
        alone = stage(batch([TEXTS[i]], ids=[f"t{i}"], speakers=[speakers[i]]))
        np.testing.assert_allclose(audio(alone, 0), audio(mixed, i), atol=1e-4)
        for name in ("n_frames", "runaway", "empty", "normalized_text"):
            assert col(alone, name)[0] == col(mixed, name)[i]
    reordered = stage(
        batch(TEXTS[::-1], ids=[f"t{i}" for i in range(4)][::-1], speakers=speakers[::-1])
    )
    for i in range(4):
        np.testing.assert_allclose(audio(reordered, 3 - i), audio(mixed, i), atol=1e-4)


def test_seed_comes_from_task_seed_and_text_id(stage, model_dirs):
    text = ["Jackdaws love my big sphinx of quartz."] * 2
    out = stage(batch(text, ids=["a", "b"]))
    again = stage(batch(text, ids=["a", "b"]))
    np.testing.assert_array_equal(audio(out, 0), audio(again, 0))  # a re-run is identical
    n = min(len(audio(out, 0)), len(audio(out, 1)))
    assert np.abs(audio(out, 0)[:n] - audio(out, 1)[:n]).max() > 1e-3  # another id differs
    assert piece_seed(0, "a", 0) != piece_seed(1, "a", 0) != piece_seed(0, "a", 1)


def test_runaway_and_empty_flags(model_dirs):
    never = make_stage(model_dirs, stop_threshold=2.5)  # two probabilities never sum to 2.5
    out = never(batch(["Hello world.", "a"]))
    assert col(out, "runaway") == [True, True]
    immediate = make_stage(model_dirs, stop_threshold=1e-9)
    out = immediate(batch(["Hello world.", "a"]))
    assert col(out, "empty") == [True, True]
    assert col(out, "n_frames") == [2, 2]


def test_empty_texts_are_row_errors(stage):
    # Row-level: the job's ASR tasks have no audio to transcribe for these items either.
    out = stage(batch(["", None, "  ...  ", "Fine."]))
    assert col(out, "error_code") == ["empty", "empty", "empty", None]
    assert col(out, "error_stage") == ["synthesize"] * 3 + [None]
    assert audio(out, 3).size > 0
    assert out.column(AUDIO).null_count == 3


def test_bad_speaker_embedding_fails_its_row_only(stage):
    out = stage(batch(["One.", "Two."], speakers=[np.ones(10, np.float32), None]))
    assert col(out, "error_code") == ["invalid_input", None]
    assert "512" in col(out, "error_message")[0]


def test_rows_errored_upstream_pass_through(stage):
    out = stage(batch(["One.", "Two."], errors={0: "read_failed"}))
    assert out.column(ERROR_CODE).to_pylist() == ["read_failed", None]
    assert col(out, "error_stage") == ["read", None]  # untouched
    assert out.column(AUDIO).to_pylist()[0] is None


def test_a_piece_that_raises_fails_only_its_row(stage, monkeypatch):
    real = stage.model.synthesize

    def flaky(texts, speakers, seeds):
        if any("boom" in t for t in texts):
            raise RuntimeError("kaboom")
        return real(texts, speakers, seeds)

    monkeypatch.setattr(stage.model, "synthesize", flaky)
    out = stage(batch(["Fine one.", "This goes boom.", "Fine two."]))
    assert col(out, "error_code") == [None, "model_failed", None]
    assert "kaboom" in col(out, "error_message")[1]
    assert audio(out, 0).size > 0 and audio(out, 2).size > 0


def test_default_speaker_from_npy(model_dirs, tmp_path, stage):
    path = tmp_path / "speakers.npy"
    np.save(path, SPEAKERS)
    chosen = make_stage(model_dirs, speaker_embeddings=str(path), speaker="2")
    np.testing.assert_array_equal(chosen.default_speaker, SPEAKERS[2])
    by_default = chosen(batch(["Hello there."]))
    explicit = stage(batch(["Hello there."], speakers=[SPEAKERS[2]]))
    np.testing.assert_allclose(audio(by_default, 0), audio(explicit, 0), atol=1e-5)


def test_speaker_sets_defaults_and_errors(tmp_path):
    tts_spec = {"model": "unused"}
    speakers, zeros = load_speaker_set(SynthesizeTaskSpec(**tts_spec), StorageOptions(), 512)
    assert speakers == {} and zeros.shape == (512,) and not zeros.any()
    one = tmp_path / "one.npy"
    np.save(one, SPEAKERS[0])
    spec = SynthesizeTaskSpec(**tts_spec, speaker_embeddings=str(one))
    np.testing.assert_array_equal(load_speaker_set(spec, StorageOptions(), 512)[1], SPEAKERS[0])
    many = tmp_path / "many.npy"
    np.save(many, SPEAKERS)
    spec = SynthesizeTaskSpec(**tts_spec, speaker_embeddings=str(many))
    by_id, default = load_speaker_set(spec, StorageOptions(), 512)
    assert default is None and sorted(by_id) == [str(i) for i in range(len(SPEAKERS))]
    table = tmp_path / "voices.jsonl"
    table.write_text(
        "".join(
            json.dumps({"speaker": name, "xvector": SPEAKERS[i].tolist()}) + "\n"
            for i, name in enumerate(["ann", "bob"])
        )
    )
    spec = SynthesizeTaskSpec(**tts_spec, speaker_embeddings=str(table), speaker="bob")
    by_id, default = load_speaker_set(spec, StorageOptions(), 512)
    assert sorted(by_id) == ["ann", "bob"]
    np.testing.assert_array_equal(default, SPEAKERS[1])
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3)))
    cases = [
        ({"speaker_embeddings": str(many), "speaker": "7"}, "not in"),
        ({"speaker_embeddings": str(one), "speaker": "x"}, "not in"),
        ({"speaker": "bob"}, "no speaker_embeddings"),
        ({"speaker_embeddings": str(tmp_path / "nope.npy")}, "cannot read"),
        ({"speaker_embeddings": str(tmp_path / "nope.parquet")}, "does not exist"),
        ({"speaker_embeddings": str(tmp_path / "wrong.npy")}, "shape"),
    ]
    for extra, message in cases:
        with pytest.raises(ModelLoadError, match=message):
            load_speaker_set(SynthesizeTaskSpec(**tts_spec, **extra), StorageOptions(), 512)


def test_rows_pick_their_voice_by_embedding_or_speaker_id(model_dirs, tmp_path, stage):
    table = tmp_path / "voices.jsonl"
    table.write_text(
        "".join(
            json.dumps({"speaker": name, "xvector": SPEAKERS[i].tolist()}) + "\n"
            for i, name in enumerate(["ann", "bob"])
        )
    )
    voiced = make_stage(model_dirs, speaker_embeddings=str(table))
    rows = batch(["Hello there."] * 4, speakers=[None, None, None, SPEAKERS[0]])
    rows = rows.append_column("speaker", pa.array(["bob", "zed", None, "bob"], pa.string()))
    out = voiced(rows)
    assert col(out, "error_code") == [None, "invalid_input", "invalid_input", None]
    assert (
        "'zed'" in col(out, "error_message")[1]
        and "names no speaker" in col(out, "error_message")[2]
    )
    bob = stage(batch(["Hello there."], speakers=[SPEAKERS[1]]))
    ann = stage(batch(["Hello there."], ids=["t3"], speakers=[SPEAKERS[0]]))
    np.testing.assert_allclose(audio(out, 0), audio(bob, 0), atol=1e-5)
    np.testing.assert_allclose(audio(out, 3), audio(ann, 0), atol=1e-5)  # embedding wins
