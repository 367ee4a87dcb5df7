"""The vectorised logits processors against transformers' and against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

from pipeline.models.whisper.processors import (
    KeyedSampler,
    LogprobTracker,
    TimestampRules,
    item_key,
    uniform_noise,
)

EOT, NO_TS = 50, 57  # a small vocabulary: text < 50, specials 50-57, timestamps 58-99
VOCAB = 100
TB = NO_TS + 1


def sequences(rng: np.random.Generator, rows: int, begin: int, length: int) -> torch.Tensor:
    """Token rows that mix text and timestamps in the patterns decoding produces."""
    out = np.zeros((rows, begin + length), dtype=np.int64)
    out[:, :begin] = rng.integers(EOT, NO_TS, size=(rows, begin))
    for r in range(rows):
        stamp = TB + int(rng.integers(0, 5))
        for k in range(begin, begin + length):
            if rng.random() < 0.45:
                stamp = min(stamp + int(rng.integers(0, 4)), VOCAB - 1)
                out[r, k] = stamp
            else:
                out[r, k] = int(rng.integers(0, EOT))
    return torch.from_numpy(out)


@pytest.mark.parametrize("max_initial", [None, 3])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 7])
def test_timestamp_rules_equal_transformers_processor(max_initial, length):
    config = GenerationConfig(
        eos_token_id=EOT, no_timestamps_token_id=NO_TS, max_initial_timestamp_index=max_initial
    )
    begin = 3
    rng = np.random.default_rng(length + 10 * (max_initial or 0))
    outcomes = set()
    for trial in range(12):
        ids = sequences(rng, rows=16, begin=begin, length=length)
        # Scores spread so that sometimes timestamps, sometimes text, win the mass test.
        scores = torch.from_numpy(rng.normal(0, 2 + trial % 3, size=(16, VOCAB))).float()
        scores[:, TB:] -= rng.uniform(0, 4)
        reference = WhisperTimeStampLogitsProcessor(config, begin_index=begin)(ids, scores.clone())
        ours = TimestampRules(
            no_timestamps=NO_TS, eot=EOT, begin_index=begin, max_initial_timestamp_index=max_initial
        )(ids, scores.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(reference))
        assert torch.equal(ours, reference)
        text_open = ~torch.isinf(reference[:, :EOT]).all(-1)
        stamp_open = ~torch.isinf(reference[:, TB:]).all(-1)
        outcomes |= set(zip(text_open.tolist(), stamp_open.tolist(), strict=True))
    # Every rule was exercised: text only, timestamps only, both open (the first step
    # allows timestamps only).
    assert outcomes == (
        {(False, True)} if length == 0 else {(True, False), (False, True), (True, True)}
    )


def test_logprob_tracker_scores_the_chosen_tokens():
    tracker = LogprobTracker()
    rng = np.random.default_rng(0)
    ids = torch.tensor([[1, 2], [1, 3]])
    steps = [torch.from_numpy(rng.normal(size=(2, 6))).float() for _ in range(3)]
    chosen = [[4, 0], [5, 5], [2, 1]]
    for scores, tokens in zip(steps, chosen, strict=True):
        tracker(ids, scores)
        ids = torch.cat([ids, torch.tensor(tokens)[:, None]], 1)
    got = tracker.finish(ids)
    expected = torch.tensor(
        [
            [torch.log_softmax(s, -1)[r, t[r]].item() for s, t in zip(steps, chosen, strict=True)]
            for r in range(2)
        ]
    )
    assert torch.allclose(got, expected)


def test_keyed_sampler_is_a_function_of_key_step_and_token():
    keys = torch.tensor([7, 123456789, 7])
    a = uniform_noise(keys, step=5, vocab=300)
    assert torch.equal(a[0], a[2])  # same key, same noise, whatever the row
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], uniform_noise(keys, step=6, vocab=300)[0])
    assert float(a.min()) > 0 and float(a.max()) < 1
    # Batched or alone: the same samples.
    scores = torch.randn(3, 300, generator=torch.Generator().manual_seed(1))
    ids = torch.zeros(3, 5, dtype=torch.long)
    together = KeyedSampler(0.7, keys)(ids, scores).argmax(-1)
    alone = KeyedSampler(0.7, keys[1:2])(ids[1:2], scores[1:2]).argmax(-1)
    assert together[1] == alone[0]


def test_keyed_sampler_samples_from_the_tempered_softmax():
    """Gumbel-max over many keys: frequencies follow softmax(scores / T)."""
    temperature, n = 0.5, 20000
    scores = torch.tensor([[1.0, 0.5, 0.0, -1.0, -float("inf")]]).repeat(n, 1)
    keys = torch.arange(n, dtype=torch.int64)
    picks = KeyedSampler(temperature, keys)(torch.zeros(n, 1, dtype=torch.long), scores).argmax(-1)
    freq = torch.bincount(picks, minlength=5).double() / n
    expected = torch.softmax(scores[0].double() / temperature, -1)
    assert freq[4] == 0  # a suppressed token is never drawn
    assert torch.allclose(freq, expected, atol=0.015)


def test_item_key_depends_on_samples_seed_and_parts():
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    assert item_key(x, 0) == item_key(x.copy(), 0)
    assert len({item_key(x, 0), item_key(x, 1), item_key(x[:-1], 0), item_key(x, 0, 3000)}) == 4
    assert 0 <= item_key(x, 0) < 2**32
