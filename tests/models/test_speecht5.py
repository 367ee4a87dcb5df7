"""The SpeechT5 adapter and its decoding loop, on a tiny random-init model and vocoder.

The reference is transformers' own `generate_speech` run on one item at a time (with
the prenet dropout patched out, since it draws from the global RNG): matching it shows
the loop is the same computation; matching our own one-at-a-time runs with dropout on
shows an item's audio does not depend on its batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.errors import ModelLoadError
from pipeline.kinds.synthesize import SynthesizeTaskSpec
from pipeline.models.speecht5 import SpeechT5Synthesizer, load_speecht5
from pipeline.models.speecht5_decode import keep_masks, postnet, split_seeds, vocode
from pipeline.spec import StorageOptions
from pipeline.testing.tiny_speecht5 import build_tiny_speecht5

MAXLENRATIO = 2.0  # short runaways keep the tests fast
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world.",
    "a",
    "How vexingly quick daft zebras jump? Sphinx of black quartz, judge my vow.",
    "Pack my box.",
    "Jackdaws love my big sphinx of quartz.",
]
SEEDS = [11, 22, 33, 44, 55, 66]


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


@pytest.fixture(scope="module")
def synth(model_dirs) -> SpeechT5Synthesizer:
    tts, vocoder = model_dirs
    spec = SynthesizeTaskSpec(model=tts, vocoder=vocoder, maxlenratio=MAXLENRATIO)
    return load_speecht5(spec, StorageOptions(), "cpu")


@pytest.fixture(scope="module")
def speakers() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((len(TEXTS), 512)).astype(np.float32)


@pytest.fixture(scope="module")
def singles(synth, speakers) -> list:
    """Each text synthesized alone, dropout on."""
    return [synth.synthesize([t], speakers[i : i + 1], [SEEDS[i]])[0] for i, t in enumerate(TEXTS)]


def with_options(synth: SpeechT5Synthesizer, **options) -> SpeechT5Synthesizer:
    return dataclasses.replace(synth, options=dataclasses.replace(synth.options, **options))


def reference(synth, text: str, speaker: np.ndarray, monkeypatch, **kwargs) -> np.ndarray:
    """transformers' generate_speech on one item, prenet dropout patched out."""
    prenet = synth.model.speecht5.decoder.prenet
    with monkeypatch.context() as m:
        m.setattr(prenet, "_consistent_dropout", lambda x, p: x)
        ids = synth.tokenizer(text, return_tensors="pt").input_ids
        wave = synth.model.generate_speech(
            ids, torch.from_numpy(speaker[None]), vocoder=synth.vocoder, **kwargs
        )
    return wave.numpy()


@pytest.mark.parametrize("i", [0, 2, 3, 4], ids=["runaway", "one-char", "long", "short"])
def test_loop_without_dropout_equals_generate_speech(synth, speakers, monkeypatch, i):
    ours = with_options(synth, dropout=False).synthesize([TEXTS[i]], speakers[i : i + 1], [0])[0]
    ref = reference(synth, TEXTS[i], speakers[i], monkeypatch, maxlenratio=MAXLENRATIO)
    assert len(ours.waveform) == len(ref)
    np.testing.assert_allclose(ours.waveform, ref, atol=1e-4)  # measured: <= 2e-6


def test_reference_comparison_covers_stopping_and_runaway(synth, speakers):
    outs = with_options(synth, dropout=False).synthesize(TEXTS, speakers, [0] * len(TEXTS))
    assert {o.runaway for o in outs} == {True, False}
    assert len({o.n_frames for o in outs}) >= 4


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sync_every": 1, "compact_share": 0.0},  # drop finished items at every step
        {"sync_every": 5, "compact_share": 1.0},  # only ever drop them at the end
    ],
    ids=["default", "compact-every-step", "never-compact"],
)
def test_batched_equals_one_at_a_time(synth, speakers, singles, options):
    batched = with_options(synth, **options).synthesize(TEXTS, speakers, SEEDS)
    for b, s in zip(batched, singles, strict=True):
        assert (b.n_frames, b.runaway, b.empty) == (s.n_frames, s.runaway, s.empty)
        assert len(b.waveform) == b.n_frames * synth.hop
        np.testing.assert_allclose(b.waveform, s.waveform, atol=1e-4)  # measured: <= 1.2e-6
    assert {b.runaway for b in batched} == {True, False}


def test_seed_fixes_the_output_and_changes_it(synth, speakers):
    text, spk = TEXTS[3], speakers[3:4]
    first = synth.synthesize([text], spk, [7])[0].waveform
    again = synth.synthesize([text], spk, [7])[0].waveform
    other = synth.synthesize([text], spk, [8])[0].waveform
    np.testing.assert_array_equal(first, again)
    n = min(len(first), len(other))
    assert np.abs(first[:n] - other[:n]).max() > 1e-3


def test_masks_depend_on_seed_step_layer_and_unit_only():
    seeds = split_seeds([0, 1, 2**70 + 5, 123456789], "cpu")
    masks = keep_masks(seeds, 0, 10, 2, 64, 0.5)
    assert masks.shape == (4, 10, 2, 64)
    # An item's masks are the same alone and in a batch, and whatever the chunking.
    torch.testing.assert_close(keep_masks(seeds[2:3], 0, 10, 2, 64, 0.5), masks[2:3])
    chunks = torch.cat(
        [keep_masks(seeds, 0, 4, 2, 64, 0.5), keep_masks(seeds, 4, 6, 2, 64, 0.5)], dim=1
    )
    torch.testing.assert_close(chunks, masks)
    assert (masks[0] != masks[1]).float().mean() > 0.3  # seeds differ -> masks differ
    assert (masks[0, 0] != masks[0, 1]).float().mean() > 0.3  # steps differ -> masks differ


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_masks_keep_a_share_of_one_minus_p(p):
    masks = keep_masks(split_seeds(list(range(64)), "cpu"), 0, 50, 2, 256, p)
    assert float(masks.float().mean()) == pytest.approx(1 - p, abs=0.005)


def test_immediate_stop_is_empty(synth, speakers):
    outs = with_options(synth, stop_threshold=1e-9).synthesize(TEXTS[:3], speakers[:3], [1, 2, 3])
    r = synth.model.config.reduction_factor
    for o in outs:
        assert o.empty and not o.runaway
        assert o.n_frames == r and len(o.waveform) == r * synth.hop


def test_runaway_stops_at_maxlenratio(synth, speakers):
    # Two stop probabilities never sum to more than 2: the stop head can never fire.
    outs = with_options(synth, stop_threshold=2.5).synthesize(TEXTS[:3], speakers[:3], [1, 2, 3])
    r = synth.model.config.reduction_factor
    for text, o in zip(TEXTS[:3], outs, strict=True):
        tokens = len(synth.token_ids([text])[0])
        assert o.runaway and not o.empty
        assert o.n_frames == r * int(tokens * MAXLENRATIO / r)


def test_minlenratio_delays_the_stop(synth, speakers):
    fast = with_options(synth, stop_threshold=1e-9, minlenratio=1.5)
    out = fast.synthesize([TEXTS[0]], speakers[:1], [1])[0]
    tokens = len(synth.token_ids([TEXTS[0]])[0])
    r = synth.model.config.reduction_factor
    assert out.n_frames == r * int(tokens * 1.5 / r)
    assert not out.runaway and not out.empty


def test_masked_postnet_and_vocoder_equal_plain_ones_per_item(synth):
    gen = torch.Generator().manual_seed(0)
    bins = synth.model.config.num_mel_bins
    mels = [2 * torch.randn(n, bins, generator=gen) for n in (7, 30, 2, 19)]
    with torch.inference_mode():
        batched_post = postnet(synth.model, mels)
        batched_wave = vocode(synth.vocoder, mels)
        for mel, post, wave in zip(mels, batched_post, batched_wave, strict=True):
            plain_post = synth.model.speech_decoder_postnet.postnet(mel[None])[0]
            torch.testing.assert_close(post, plain_post, atol=1e-5, rtol=0)
            plain_wave = synth.vocoder(mel)
            assert wave.shape == plain_wave.shape == (len(mel) * synth.hop,)
            torch.testing.assert_close(wave, plain_wave, atol=1e-5, rtol=0)


def test_unmasked_batched_vocoder_would_differ(synth):
    """Why the masking is needed: padding changes the last samples of shorter items."""
    gen = torch.Generator().manual_seed(0)
    mels = [2 * torch.randn(n, synth.model.config.num_mel_bins, generator=gen) for n in (5, 40)]
    with torch.inference_mode():
        padded = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
        naive = synth.vocoder(padded)[0, : 5 * synth.hop]
        alone = synth.vocoder(mels[0])
    assert float((naive - alone).abs().max()) > 1e-3


def test_bad_inputs_raise(synth, speakers):
    with pytest.raises(ValueError, match="speakers of shape"):
        synth.synthesize(TEXTS[:2], speakers[:1], [1, 2])
    with pytest.raises(ValueError, match="2 seeds"):
        synth.synthesize(TEXTS[:2], speakers[:2], [1])
    with pytest.raises(ValueError, match="tokens"):
        synth.synthesize(["word " * 100], speakers[:1], [1])
    assert synth.synthesize([], speakers[:0], []) == []


def test_load_refuses_a_mismatched_sample_rate(model_dirs):
    tts, vocoder = model_dirs
    spec = SynthesizeTaskSpec(model=tts, vocoder=vocoder, sample_rate=22050)
    with pytest.raises(ModelLoadError, match="16000 Hz"):
        load_speecht5(spec, StorageOptions(), "cpu")


def test_load_refuses_a_vocoder_that_is_not_one(model_dirs):
    tts, _ = model_dirs
    with pytest.raises(ModelLoadError, match="HiFi-GAN"):
        load_speecht5(SynthesizeTaskSpec(model=tts, vocoder=tts), StorageOptions(), "cpu")
