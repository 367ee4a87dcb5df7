"""WhisperStage against transformers' own Whisper `generate` on a tiny random-init Whisper.

The references run one item at a time through `WhisperForConditionalGeneration.generate`
(short-form, long-form with `return_segments`, `detect_language`, beam search), loaded
from the same folder as the stage: matching them on batches of mixed items is what shows
a transcript does not depend on its batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE
from pipeline.kinds.whisper import WhisperTaskSpec
from pipeline.models.whisper.align import eager_attention
from pipeline.spec import StorageOptions
from pipeline.stages.whisper import WhisperStage
from pipeline.testing.synth import sentences, speechlike
from pipeline.testing.tiny_whisper import build_tiny_whisper

RATE = 16_000
# Decoding choices that make the stage and transformers' short-form `generate` comparable:
# no silence rule and no fallback (transformers applies neither to short-form audio).
PLAIN = {
    "compression_ratio_threshold": None,
    "logprob_threshold": None,
    "no_speech_threshold": None,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two fight over this box's two busy cores
    (10x slower per op when other processes run)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return build_tiny_whisper(str(tmp_path_factory.mktemp("tiny_whisper") / "model"))


@pytest.fixture(scope="module")
def reference(model_dir):
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    return model, WhisperProcessor.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def short_items() -> list[np.ndarray]:
    """Speech-like clips of 0.4-5 s, different words and voices."""
    texts = sentences(5, seed=21) + ["red", "a quiet river"]
    return [speechlike(t, RATE, seed=i) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def long_items() -> list[np.ndarray]:
    """Two items over 30 s (several windows each)."""
    return [
        speechlike(" ".join(sentences(n, seed=seed)), RATE, seed=seed)
        for n, seed in ((13, 31), (12, 32))  # 32.1 s and 33.0 s
    ]


def make_stage(path: str, **spec) -> WhisperStage:
    return WhisperStage(WhisperTaskSpec(model=path, cpu_threads=1, **spec), StorageOptions()).load()


def batch(
    audio: list[np.ndarray | None],
    rates: list[int] | None = None,
    errors: dict[int, str] | None = None,
) -> pa.Table:
    n = len(audio)
    codes = [(errors or {}).get(i) for i in range(n)]
    values = [None if a is None else a.tolist() for a in audio]
    return pa.table(
        {
            AUDIO: pa.array(values, pa.list_(pa.float32())),
            SAMPLE_RATE: pa.array(rates or [RATE] * n, pa.int32()),
            ERROR_STAGE: pa.array(["decode" if c else None for c in codes], pa.string()),
            ERROR_CODE: pa.array(codes, pa.string()),
            ERROR_MESSAGE: pa.array(["earlier failure" if c else None for c in codes], pa.string()),
        }
    )


def column(table: pa.Table, field: str) -> list:
    return table.column(f"whisper__{field}").to_pylist()


def reference_text(reference, audio: np.ndarray, **generate) -> str:
    model, processor = reference
    features = processor(audio, sampling_rate=RATE, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(features, task="transcribe", **generate)
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


@pytest.mark.parametrize("language", ["en", None])
def test_greedy_batch_equals_generate_one_item_at_a_time(
    language, model_dir, reference, short_items
):
    """(1) and (3): fixed language, and language detected per item."""
    stage = make_stage(model_dir, language=language, max_new_tokens=12, micro_batch=4, **PLAIN)
    out = stage(batch(short_items))
    expected = [
        reference_text(reference, a, language=language, max_new_tokens=12) for a in short_items
    ]
    assert column(out, "text") == expected
    assert len(set(expected)) >= 6  # the comparison means something: varied transcripts
    assert out.column(ERROR_CODE).null_count == len(short_items)
    assert set(column(out, "model")) == {model_dir}
    assert column(out, "segments") == [None] * len(short_items)  # short-form, no timestamps
    if language is None:
        model, processor = reference
        features = processor(short_items, sampling_rate=RATE, return_tensors="pt").input_features
        detected = [
            processor.tokenizer.convert_ids_to_tokens(int(model.detect_language(f[None])[0]))
            for f in features
        ]
        assert [f"<|{c}|>" for c in column(out, "language")] == detected
        assert len(set(detected)) >= 2
        assert all(0 < p <= 1 for p in column(out, "language_prob"))
    else:
        assert column(out, "language") == ["en"] * len(short_items)
        assert column(out, "language_prob") == [None] * len(short_items)


def test_avg_logprob_equals_the_one_from_generate_scores(model_dir, reference, short_items):
    """What transformers' `_retrieve_avg_logprobs` computes from `output_scores`."""
    model, processor = reference
    stage = make_stage(model_dir, language="en", max_new_tokens=12, **PLAIN)
    out = stage(batch(short_items[:4]))
    eot = model.generation_config.eos_token_id
    for i, audio in enumerate(short_items[:4]):
        features = processor(audio, sampling_rate=RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            ref = model.generate(
                features,
                language="en",
                task="transcribe",
                max_new_tokens=12,
                return_dict_in_generate=True,
                output_scores=True,
            )
        tokens = ref.sequences[0, -len(ref.scores) :].tolist()
        if eot in tokens:
            tokens = tokens[: tokens.index(eot) + 1]
        logprobs = [
            torch.log_softmax(ref.scores[k][0].float(), -1)[t].item() for k, t in enumerate(tokens)
        ]
        avg = column(out, "avg_logprob")[i]
        assert avg == pytest.approx(np.mean(logprobs), abs=1e-5)
        assert column(out, "confidence")[i] == pytest.approx(np.exp(avg))


def test_prompt_equals_generate_with_prompt_ids(model_dir, reference, short_items):
    model, processor = reference
    prompt = "the green garden"
    stage = make_stage(model_dir, language="en", max_new_tokens=10, prompt=prompt, **PLAIN)
    out = stage(batch(short_items[:4]))
    prompt_ids = torch.tensor(processor.get_prompt_ids(prompt))
    expected = [
        reference_text(reference, a, language="en", max_new_tokens=10, prompt_ids=prompt_ids)
        for a in short_items[:4]
    ]
    assert column(out, "text") == expected


def test_beam_search_equals_generate_with_num_beams(model_dir, reference, short_items):
    """(4)"""
    items = short_items[:4]
    stage = make_stage(model_dir, language="en", num_beams=3, max_new_tokens=8, **PLAIN)
    out = stage(batch(items))
    expected = [
        reference_text(reference, a, language="en", num_beams=3, max_new_tokens=8) for a in items
    ]
    assert column(out, "text") == expected
    greedy = make_stage(model_dir, language="en", max_new_tokens=8, **PLAIN)(batch(items))
    assert column(greedy, "text") != expected  # beam search really ran
    assert all(v is not None and v < 0 for v in column(out, "avg_logprob"))


def test_long_form_segments_equal_generate_long_form(model_dir, reference, long_items, short_items):
    """(2) Two items over 30 s and a short one with timestamps, decoded side by side."""
    model, processor = reference
    items = [long_items[0], short_items[2], long_items[1]]
    stage = make_stage(
        model_dir, language="en", timestamps="segment", max_new_tokens=20, micro_batch=2, **PLAIN
    )
    out = stage(batch(items))
    windows = 0
    for i, audio in enumerate(items):
        long = len(audio) > 30 * RATE
        features = processor(
            audio,
            sampling_rate=RATE,
            return_tensors="pt",
            truncation=not long,
            padding="longest" if long else "max_length",
            return_attention_mask=True,
        )
        with torch.inference_mode():
            ref = model.generate(
                features.input_features,
                attention_mask=features.attention_mask,
                return_timestamps=True,
                return_segments=True,
                language="en",
                task="transcribe",
                max_new_tokens=20,
            )
        decode = processor.tokenizer.decode
        expected = [
            (
                float(s["start"]),
                float(s["end"]),
                decode(s["tokens"], skip_special_tokens=True).strip(),
            )
            for s in ref["segments"][0]
        ]
        expected = [s for s in expected if s[2]]
        got = [(s["start"], s["end"], s["text"]) for s in column(out, "segments")[i]]
        assert got == [
            (pytest.approx(a, abs=1e-9), pytest.approx(b, abs=1e-9), t) for a, b, t in expected
        ]
        text = processor.batch_decode(ref["sequences"], skip_special_tokens=True)[0].strip()
        assert column(out, "text")[i] == text
        windows += len({id(s["result"]) for s in ref["segments"][0]})
    assert len(column(out, "segments")[0]) >= 5
    assert windows >= 6  # several windows per long item, some resumed mid-window


def test_word_timestamps_exist_and_attention_is_restored(model_dir, long_items, short_items):
    """(5)"""
    stage = make_stage(model_dir, language="en", timestamps="word", max_new_tokens=16, **PLAIN)
    model = stage.model.model
    assert model.config._attn_implementation == "sdpa"
    items = [short_items[0], short_items[4], long_items[0]]
    out = stage(batch(items))
    assert model.config._attn_implementation == "sdpa"
    assert all(
        m.config._attn_implementation == "sdpa" for m in model.modules() if hasattr(m, "config")
    )
    for i in range(len(items)):
        words, text = column(out, "words")[i], column(out, "text")[i]
        segments = column(out, "segments")[i]
        assert words, "every test item says something"
        assert "".join(w["word"] for w in words) == text.replace(" ", "")
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        assert all(w["start"] <= w["end"] for w in words)
        assert segments[0]["start"] <= words[0]["start"] and words[-1]["end"] <= segments[-1]["end"]


def test_generate_with_token_timestamps_leaves_eager_attention(model_dir, short_items):
    """Why the stage does not use `return_token_timestamps` (docs/FACTS.md): it sticks."""
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    features = processor(short_items[0], sampling_rate=RATE, return_tensors="pt")
    assert model.config._attn_implementation == "sdpa"
    with torch.inference_mode():
        model.generate(features.input_features, return_token_timestamps=True, max_new_tokens=4)
    assert model.config._attn_implementation == "eager"


def test_eager_attention_is_restored_when_the_block_raises(model_dir):
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    with pytest.raises(RuntimeError), eager_attention(model):
        assert model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_transcript_does_not_depend_on_batch_even_when_sampling(model_dir, short_items):
    """Fallback at temperature 0.7 for every item (logprob_threshold 0 always fails):
    sampled text is the same alone and in a batch, and differs from greedy."""
    spec = dict(PLAIN, language="en", max_new_tokens=10, micro_batch=3)
    sampled = make_stage(
        model_dir, **{**spec, "temperatures": (0.0, 0.7), "logprob_threshold": 0.0}
    )
    items = short_items[:5]
    together = column(sampled(batch(items)), "text")
    alone = [column(sampled(batch([a])), "text")[0] for a in (items[0], items[3])]
    assert alone == [together[0], together[3]]
    assert column(sampled(batch(items[::-1])), "text") == together[::-1]
    greedy = column(make_stage(model_dir, **spec)(batch(items)), "text")
    assert sum(a != b for a, b in zip(together, greedy, strict=True)) >= 3


def test_silence_rule_drops_text_and_keeps_the_measures(model_dir, short_items):
    """No-speech above 0 with log-prob not above 0: every window counts as silence."""
    stage = make_stage(
        model_dir, language="en", max_new_tokens=6, no_speech_threshold=0.0, logprob_threshold=0.0
    )
    out = stage(batch(short_items[:3]))
    assert column(out, "text") == ["", "", ""]
    assert column(out, "confidence") == [None] * 3
    assert column(out, "flags") == [[], [], []]
    assert all(v is not None for v in column(out, "avg_logprob") + column(out, "no_speech_prob"))


def test_flags_are_written_per_item(model_dir, short_items):
    """(6) at the stage: an empty list when checked and clean; `too_long` on a tiny clip."""
    stage = make_stage(model_dir, language="en", max_new_tokens=30, **PLAIN)
    clip = short_items[6][: RATE // 20]  # 50 ms: any word is too much text for it
    out = stage(batch([short_items[0], clip]))
    flags = column(out, "flags")
    assert flags[0] == []
    assert "too_long" in flags[1]


def test_bad_rows_fail_alone(model_dir, reference, short_items, long_items):
    """(7) empty, too short, null and wrong-rate rows; a model that raises on one item."""
    stage = make_stage(model_dir, language="en", max_new_tokens=8, **PLAIN)
    items = [short_items[0], np.zeros(0, np.float32), short_items[1][:399], None, short_items[2]]
    out = stage(batch(items, rates=[RATE, RATE, RATE, RATE, 8000]))
    codes = column(out, "error_code")
    assert codes == [None, "model_failed", "model_failed", "model_failed", "model_failed"]
    messages = column(out, "error_message")
    assert "analysis window" in messages[1] and "399 samples" in messages[2]
    assert "8000 Hz" in messages[4]
    assert column(out, "error_stage")[1] == "whisper"
    assert out.column(ERROR_CODE).null_count == len(items)  # task-scoped, not row-level
    assert column(out, "text")[0] == reference_text(
        reference, items[0], language="en", max_new_tokens=8
    )
    assert column(out, "text")[1:] == [None] * 4


def test_item_that_makes_the_model_raise_fails_alone(model_dir, reference, short_items, long_items):
    bad_short, bad_long = short_items[3], long_items[1]
    stage = make_stage(model_dir, language="en", max_new_tokens=8, timestamps="none", **PLAIN)
    marks = torch.stack(
        [stage.features.windows([bad_short])[0], stage.features.full(bad_long)[:, :3000]]
    )

    def refuse(_module, args):  # the encoder "crashes" on two items' first windows
        features = args[0].float()
        if any(torch.allclose(f, m) for f in features for m in marks):
            raise RuntimeError("simulated kernel failure")

    stage.model.model.model.encoder.register_forward_pre_hook(refuse)
    items = [short_items[0], bad_short, long_items[0], short_items[5], bad_long]
    out = stage(batch(items))
    assert column(out, "error_code") == [None, "model_failed", None, None, "model_failed"]
    assert "simulated kernel failure" in column(out, "error_message")[1]
    texts = column(out, "text")
    for i in (0, 3):
        assert texts[i] == reference_text(reference, items[i], language="en", max_new_tokens=8)
    assert column(out, "segments")[2]  # the healthy long item got its segments


def test_errored_rows_pass_through_untouched(model_dir, short_items):
    table = batch(short_items[:3], errors={1: "undecodable"})
    out = make_stage(model_dir, language="en", max_new_tokens=4, **PLAIN)(table)
    assert out.column(ERROR_CODE).to_pylist() == [None, "undecodable", None]
    assert out.column(ERROR_MESSAGE)[1].as_py() == "earlier failure"
    assert out.column(AUDIO).equals(table.column(AUDIO))
    for name in ("text", "language", "segments", "flags", "model"):
        assert column(out, name)[1] is None
    assert column(out, "text")[0] is not None and column(out, "text")[2] is not None


def test_output_columns_have_the_transcripts_types(model_dir, short_items):
    from pipeline.schemas import TRANSCRIPTS

    stage = make_stage(model_dir, language="en", max_new_tokens=4)
    out = stage(batch(short_items[:2]))
    for field in stage.adds():
        name = field.name.removeprefix("whisper__")
        assert out.schema.field(field.name).type == TRANSCRIPTS.field(name).type


def test_rows_uploaded_once_give_the_same_output(model_dir, short_items, long_items):
    """The GPU path (the batch's samples uploaded in one copy, rows as device views),
    taken here on the CPU: the same features, so the same output."""
    stage = make_stage(model_dir, language="en", max_new_tokens=12, timestamps="segment", **PLAIN)
    items = [short_items[0], long_items[0][: 31 * RATE], short_items[1]]
    expected = stage(batch(items))
    stage.model.device = "cuda:0"  # only the row upload reads it; features stay on the CPU
    got = stage(batch(items))
    for field in ("text", "segments", "avg_logprob"):
        assert column(got, field) == column(expected, field)
    assert len(column(got, "segments")[1]) >= 2
