"""A likely reference the spec does not use is warned about, naming the spec key (issue 11)."""

from __future__ import annotations

import pytest

from pipeline.io.listing import plan_input
from pipeline.spec import InputSpec
from tests.io import corpora

# Warnings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "spec", "key"),
    [
        ("parquet_sentence", {"format": "parquet"}, "input.text_column: sentence"),
        ("wds_transcription", {}, "input.text_column: transcription"),
        ("librispeech", {}, "input.references: librispeech"),
    ],
)
def test_a_likely_reference_that_is_not_used_is_warned_about(tmp_path, build, spec, key):
    if build == "parquet_sentence":
        clips = corpora.write_clips(tmp_path / "c", 2)
        corpora.hf_parquet_embedded(clips, tmp_path / "d" / "t.parquet", sentence=["a", "b"])
        uri = tmp_path / "d"
    elif build == "wds_transcription":
        corpora.webdataset_dotted(tmp_path)
        uri = tmp_path
    else:
        corpora.librispeech(tmp_path)
        uri = tmp_path
    (warning,) = plan_input(InputSpec(uri=str(uri), **spec)).warnings
    assert key in warning
