"""The fault matrix on a real local Ray cluster (README "Reliability"): hostile inputs,
storage faults and killed work, each ending with every item exactly once in a table."""

from __future__ import annotations

import pytest

from pipeline.demo.corpus import build_files_corpus
from pipeline.demo.tiny_models import build_tiny_ctc
from pipeline.io.storage import arrow_filesystem
from pipeline.io.tables import read_table
from pipeline.runner import run_job
from pipeline.spec import parse_spec
from tests.stages.test_decode import hostile_wav

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _spec(input_uri: str, output_uri: str, model: str, *, decode=None, **input_extra):
    return parse_spec(
        {
            "name": "rel",
            "input": {"uri": input_uri, **input_extra},
            "decode": decode or {},
            "tasks": [{"kind": "ctc", "model": model, "batch_size": 4, "chunk_length_s": 4}],
            "output": {"uri": output_uri},
            "runtime": {"read_batch_items": 8, "decode_batch_size": 8, "progress_interval_s": 60},
        }
    )


def _landed(out: str) -> tuple[list[str], dict[str, str]]:
    fs, root = arrow_filesystem(out)
    rows, errors = read_table(fs, root, "transcripts"), read_table(fs, root, "errors")
    ids = [] if rows is None else rows.column("item_id").to_pylist()
    codes = (
        {}
        if errors is None
        else dict(
            zip(
                errors.column("source_uri").to_pylist(),
                errors.column("error_code").to_pylist(),
                strict=True,
            )
        )
    )
    return ids + ([] if errors is None else errors.column("item_id").to_pylist()), codes


def test_hostile_files_that_decode_to_far_more_than_their_size_are_cut_into_blocks(
    ray_address, tmp_path, tiny_model
):
    corpus = tmp_path / "corpus"
    items = build_files_corpus(str(corpus), n_items=8, seed=4)
    for i in range(8):  # 644 bytes each, 300 s (18 MiB) at 16 kHz
        (corpus / f"hostile{i}.wav").write_bytes(hostile_wav(300))
    out = str(tmp_path / "out")
    spec = _spec(str(corpus), out, tiny_model, decode={"max_batch_mb": 20})
    result = run_job(spec, out=lambda _: None)
    assert result.status == "succeeded"
    landed, codes = _landed(out)
    assert len(landed) == len(set(landed)) == len(items) + 8
    assert not codes
