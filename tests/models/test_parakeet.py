"""Parakeet CTC through `kind: ctc` on a tiny random-init `ParakeetForCTC`.

The folder `build_tiny_parakeet` writes loads through `load_ctc` (as a hub id would)
and through `transformers.pipeline("automatic-speech-recognition")`, the reference,
which runs one item at a time and so never pads.

What the reference cannot do for Parakeet in transformers 5.24 (see the tests):
- chunking: the pipeline aligns chunks to `config.inputs_to_logits_ratio`, which
  `ParakeetCTCConfig` lacks, so it takes 1 sample per logit frame and cuts strides of
  thousands of "frames"; the chunked reference here runs each chunk alone through the
  model and crops it the way the pipeline would with 1,280 samples per frame;
- word timestamps: it raises (TypeError) on `return_timestamps="word"`;
- items under 320 samples: it returns "<unk>" from NaN features instead of failing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ParakeetFeatureExtractor, pipeline
from transformers.pipelines.automatic_speech_recognition import chunk_iter, rescale_stride

from pipeline.columns import ERROR_CODE
from pipeline.models.parakeet import ParakeetCtcModel, PieceCtcDecoder
from pipeline.testing.tiny_parakeet import BLANK, SPACE, build_tiny_parakeet, vocabulary
from tests.stages.test_ctc import batch, make_stage, signal, texts, varied

RATE = 16_000
FRAME = 1_280  # samples per logit frame: 160-sample hop x 8


_REFERENCE: dict = {}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = build_tiny_parakeet(str(tmp_path_factory.mktemp("tiny_parakeet") / "model"))
    # transformers' own extractor: the reference for our device features.
    _REFERENCE["extractor"] = ParakeetFeatureExtractor.from_pretrained(path)
    return path


def extractor(_model=None):
    return _REFERENCE["extractor"]


@pytest.fixture(scope="module")
def reference(model_dir):
    return pipeline("automatic-speech-recognition", model=model_dir, device="cpu")


@pytest.fixture(scope="module")
def stage(model_dir):
    # A small budget forces several micro-batches of mixed lengths.
    return make_stage(model_dir, batch_seconds=8)


def clips(lengths: list[int], seed: int) -> list[np.ndarray]:
    return [signal(n / RATE + 1e-9, seed * 100 + i)[:n] for i, n in enumerate(lengths)]


# L mod 1280 decides who is right about the last logit frame (valid frames:
# ceil(L // 160 / 8)):
# - in (640, 1280) the stage and the pipeline agree;
# - under 160 (L // 160 a multiple of 8) the pipeline also argmaxes one frame made of
#   padding only: the extractor returns one more STFT frame than its mask admits, and
#   the pipeline does not crop logits to the mask (`test_frames_match_...`);
# - in [160, 640] the stage drops the last valid frame (`test_stage_keeps_...`).
AGREED = [1_280 + 700, 6_400 + 900, 12_800 + 1_279, 23_040 + 641, 40_960 + 1_000, 60_000]
PIPELINE_PADS = [1_280, 1_380, 35_840, 51_200 + 100]
STAGE_CROPS = [320, 1_280 + 160, 23_260, 6_400 + 640]


def alone(model: ParakeetCtcModel, audio: np.ndarray) -> str:
    """The model's own forward on one item, greedy over its valid frames, decoded."""
    inputs = extractor(model)(audio, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        ids = model.model(**inputs).logits[0, : model.frames(len(audio))].argmax(-1)
    return model.tokenizer.decode(ids.tolist())


def test_load_ctc_gives_the_parakeet_adapter(stage):
    model = stage.model
    assert isinstance(model, ParakeetCtcModel)
    assert (model.samples_per_frame, model.receptive_field) == (FRAME, 320)
    assert model.frame_duration == pytest.approx(0.08)
    assert isinstance(model.tokenizer, PieceCtcDecoder)
    assert model.tokenizer.pad_token_id == vocabulary()[BLANK] == model.model.config.pad_token_id


def test_frames_match_the_models_output_lengths(stage):
    model = stage.model
    lengths = [320, 321, 479, 480, 1_279, 1_280, 1_281, 1_440, 2_559, 2_560, 12_345, 64_000]
    features = extractor(model)(
        [np.ones(n, np.float32) for n in lengths], sampling_rate=RATE, return_tensors="pt"
    )
    valid = model.model._get_output_attention_mask(features["attention_mask"]).sum(-1)
    assert [model.frames(n) for n in lengths] == valid.tolist()
    assert model.frames(319) == 0 and model.frames(0) == 0
    for n in PIPELINE_PADS + AGREED:  # one item alone, as the pipeline runs it
        single = extractor(model)(np.ones(n, np.float32), sampling_rate=RATE)
        subsampled = model.model._get_subsampling_output_length(
            torch.tensor([single["attention_mask"].shape[1]])
        )
        assert subsampled.item() == model.frames(n) + (n in PIPELINE_PADS)


def test_batched_logits_equal_single_logits(stage):
    """Measured: max |batched - alone| ~2e-5 over logits up to ~26 in magnitude; the same
    padded batch without an attention mask differs by ~14 (padding leaks everywhere)."""
    model = stage.model
    audio = varied(8, seed=1) + clips([320, 1_280, 20_480, 41_040], seed=2)
    batched, frames = model.logits(audio)
    extract = extractor(model)
    singles = []
    with torch.inference_mode():
        for a in audio:
            inputs = extract(a, sampling_rate=RATE, return_tensors="pt")
            singles.append(model.model(**inputs).logits[0])
        padded = extract(audio, sampling_rate=RATE, return_tensors="pt")
        unmasked = model.model(input_features=padded["input_features"]).logits

    def worst(logits):
        return max(
            (logits[i, :n] - singles[i][:n]).abs().max().item() for i, n in enumerate(frames)
        )

    assert worst(batched) < 1e-4
    assert worst(unmasked) > 1.0  # what the mask prevents
    argmax_alone = [s[:n].argmax(-1) for s, n in zip(singles, frames, strict=True)]
    predicted = model.predict(audio)
    assert all(
        np.array_equal(p.ids, a.numpy()) for p, a in zip(predicted, argmax_alone, strict=True)
    )


def test_batched_transcripts_equal_the_pipeline_one_item_at_a_time(stage, reference, model_dir):
    audio = clips(AGREED, seed=3) + [a for a in varied(8, seed=4) if len(a) % FRAME > 640]
    out = stage(batch(audio))
    expected = [reference(a)["text"] for a in audio]
    assert texts(out) == expected
    assert len({t for t in expected if t}) >= 8  # the check means something: varied text
    assert out.column(ERROR_CODE).null_count == len(audio)
    assert set(out.column("ctc__model").to_pylist()) == {model_dir}


def test_batched_transcripts_equal_the_model_alone_where_the_pipeline_reads_padding(
    stage, reference
):
    audio = clips(PIPELINE_PADS + AGREED, seed=14)
    out = stage(batch(audio))
    assert texts(out) == [alone(stage.model, a) for a in audio]
    n = len(PIPELINE_PADS)
    assert texts(out)[n:] == [reference(a)["text"] for a in audio[n:]]


def test_stage_keeps_the_last_frame_of_an_unchunked_item(stage, reference):
    audio = clips(STAGE_CROPS, seed=5)
    expected = [reference(a)["text"] for a in audio]
    assert expected == [alone(stage.model, a) for a in audio]  # the pipeline is right here
    assert texts(stage(batch(audio))) == expected


def test_transcript_does_not_depend_on_batch_composition(stage):
    audio = varied(6, seed=6)
    mixed = stage(batch(audio))
    for i in (0, 4):
        alone = stage(batch([audio[i]]))
        assert texts(alone) == [texts(mixed)[i]]
        assert alone.column("ctc__words")[0].as_py() == mixed.column("ctc__words")[i].as_py()
        confidence = (
            alone.column("ctc__confidence")[0].as_py(),
            mixed.column("ctc__confidence")[i].as_py(),
        )
        assert confidence[0] == pytest.approx(confidence[1], abs=1e-5)
    assert texts(stage(batch(audio[::-1]))) == texts(mixed)[::-1]


def chunked_reference(reference, audio: np.ndarray, chunk_s: float, stride_s: float) -> str:
    """The pipeline's chunking with Parakeet's real 1,280 samples per frame: its own
    `chunk_iter` and `rescale_stride`, each chunk run alone."""
    align = FRAME
    chunk = int(round(chunk_s * RATE / align) * align)
    stride = int(round(stride_s * RATE / align) * align)
    pieces = []
    for item in chunk_iter(audio, reference.feature_extractor, chunk, stride, stride):
        with torch.inference_mode():
            logits = reference.model(
                input_features=item["input_features"], attention_mask=item["attention_mask"]
            ).logits
        total, left, right = rescale_stride([item["stride"]], 1 / align)[0]
        pieces.append(logits.argmax(-1)[0, left : total - right].numpy())
    return reference.tokenizer.decode(np.concatenate(pieces).tolist())


@pytest.mark.parametrize("stride_s", [None, 0.5])
def test_long_audio_is_chunked_like_the_pipeline_would(stride_s, model_dir, reference):
    assert reference._align_to == 1  # why the pipeline itself cannot chunk Parakeet
    audio = [varied(1, seed=7)[0], signal(12.0, seed=8), signal(5.3, seed=9)]
    stage = make_stage(model_dir, chunk_length_s=4, stride_length_s=stride_s, batch_seconds=10)
    out = stage(batch(audio))
    stride = stride_s if stride_s is not None else 4 / 6
    assert texts(out) == [chunked_reference(reference, a, 4, stride) for a in audio]
    assert texts(out)[1] != reference(audio[1])["text"]  # the chunk path really ran


def test_word_timestamps_follow_the_alignment(stage):
    audio = varied(4, seed=10)
    out = stage(batch(audio))
    for i, a in enumerate(audio):
        words = out.column("ctc__words")[i].as_py()
        assert words, "every test signal gives some words"
        assert " ".join(w["word"] for w in words) == " ".join(texts(out)[i].split())
        bounds = [t for w in words for t in (w["start"], w["end"])]
        assert bounds == sorted(bounds)
        assert bounds[0] >= 0 and bounds[-1] <= len(a) / RATE
        assert all(w["end"] > w["start"] for w in words)
    # The first word starts on the first frame that emits a letter.
    ids = stage.model.predict([audio[0]])[0].ids
    blank, space = stage.model.tokenizer.pad_token_id, vocabulary()[SPACE]
    first = int(np.flatnonzero((ids != blank) & (ids != space))[0])
    assert out.column("ctc__words")[0].as_py()[0]["start"] == pytest.approx(first * 0.08)


def test_word_offsets_from_word_start_pieces(stage):
    tok = stage.model.tokenizer
    v = vocabulary()
    b, s = v[BLANK], v[SPACE]
    ids = [b, s, v["h"], v["h"], v["i"], b, s, s, b, v["t"], v["o"], v["o"], b, v["o"]]
    decoded = tok.decode(ids, output_word_offsets=True)
    assert decoded.text == tok.decode(ids) == "hi too"
    assert decoded.word_offsets == [
        {"word": "hi", "start_offset": 2, "end_offset": 5},
        {"word": "too", "start_offset": 9, "end_offset": 14},
    ]


@pytest.mark.parametrize("short", [1, 159, 319])
def test_audio_shorter_than_two_feature_frames_fails_alone(short, stage, reference):
    tiny = signal(1.0, seed=11)[:short]
    assert reference(tiny)["text"] == "<unk>"  # NaN features; the pipeline does not notice
    audio = [signal(1.5, seed=12), tiny, signal(0.95, seed=13)]
    out = stage(batch(audio))
    assert out.column("ctc__error_code").to_pylist() == [None, "model_failed", None]
    assert "receptive field" in out.column("ctc__error_message")[1].as_py()
    assert texts(out)[0::2] == [reference(a)["text"] for a in audio[0::2]]
    with pytest.raises(ValueError, match="320-sample receptive field"):
        stage.model.predict([tiny])


def test_device_features_equal_the_extractor(stage):
    """Ours (`parakeet_features.py`, on the model's device) vs transformers' extractor.
    Measured: max difference 2.9e-6 (normalised features of order 1); masks identical."""
    model = stage.model
    audio = clips([320, 1_281, 16_000, 40_961], seed=9) + [np.zeros(8_000, np.float32)]
    ours, mask = model.features(audio)
    ref = extractor(model)(
        audio, sampling_rate=RATE, return_tensors="pt", return_attention_mask=True
    )
    assert torch.equal(mask.cpu(), ref["attention_mask"])
    assert (ours.cpu() - ref["input_features"]).abs().max().item() < 1e-4
    for a in audio:  # alone too: the item's own frames only
        one, _ = model.features([a])
        theirs = extractor(model)(a, sampling_rate=RATE, return_tensors="pt")["input_features"]
        assert (one.cpu() - theirs).abs().max().item() < 1e-4
