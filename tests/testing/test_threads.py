"""The tiny-model builders give one seed the same weights whatever torch thread count the
caller left set (a model stage's `configure_threads` sets it in the test process)."""

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from pipeline.testing.threads import one_thread
from pipeline.testing.tiny_classifiers import build_tiny_frame_classifier
from pipeline.testing.tiny_ctc import build_tiny_ctc


@pytest.fixture
def threads():
    """Set torch's thread count in a test; the count before is restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "build",
    [lambda p: build_tiny_ctc(p, arch="hubert"), build_tiny_frame_classifier],
    ids=["ctc", "frames"],
)
def test_a_seed_gives_the_same_weights_under_any_thread_count(tmp_path, threads, build):
    weights = []
    for n in (1, 3):
        threads(n)
        weights.append(load_file(f"{build(str(tmp_path / str(n)))}/model.safetensors"))
        assert torch.get_num_threads() == n  # the caller's count, left as it was
    one, three = weights
    assert one.keys() == three.keys()
    assert [k for k in one if not np.array_equal(one[k], three[k])] == []


def test_one_thread_restores_the_count_even_when_the_body_raises(threads):
    threads(3)
    with pytest.raises(ValueError), one_thread():
        assert torch.get_num_threads() == 1
        raise ValueError
    assert torch.get_num_threads() == 3
