from __future__ import annotations

import pytest

from pipeline.cluster.paths import local_paths, refuse_local_paths
from pipeline.errors import SpecError
from pipeline.models.hub import is_hub_id
from pipeline.spec import parse_spec


def _spec(**over):
    data = {
        "name": "p",
        "input": {"uri": "s3://b/corpus/", "manifest": "s3://b/corpus/m.jsonl"},
        "tasks": [{"kind": "ctc", "model": "facebook/wav2vec2-base-960h"}],
        "output": {"uri": "gs://b/out/"},
    }
    data.update(over)
    return parse_spec(data)


def test_object_storage_and_hub_ids_are_not_local():
    assert local_paths(_spec()) == []
    refuse_local_paths(_spec(), allow=False)


def test_each_local_path_is_named(tmp_path):
    model = tmp_path / "w2v"
    model.mkdir()
    spec = _spec(
        input={"uri": "/data/corpus", "manifest": "file:///data/m.jsonl"},
        tasks=[{"kind": "ctc", "model": str(model)}, {"kind": "ctc", "name": "b", "model": "./m"}],
    )
    assert local_paths(spec) == [
        ("input.uri", "/data/corpus"),
        ("input.manifest", "file:///data/m.jsonl"),
        ("tasks.0.model", str(model)),
        ("tasks.1.model", "./m"),
    ]
    with pytest.raises(SpecError, match=r"(?s)input.uri: /data/corpus.*--allow-local-paths"):
        refuse_local_paths(spec, allow=False)
    refuse_local_paths(spec, allow=True)


def test_synthesis_paths_are_checked():
    spec = _spec(
        input={"uri": "s3://b/texts.jsonl", "format": "texts"},
        tasks=[
            {
                "kind": "synthesize",
                "model": "microsoft/speecht5_tts",
                "speaker_embeddings": "spk.npy",
                "audio_uri": "/tmp/audio",
            }
        ],
    )
    assert [f for f, _ in local_paths(spec)] == ["tasks.0.speaker_embeddings", "tasks.0.audio_uri"]


def test_hub_ids(tmp_path, monkeypatch):
    assert is_hub_id("facebook/wav2vec2-base-960h") and is_hub_id("gpt2")
    assert not is_hub_id("s3://b/m") and not is_hub_id("./m") and not is_hub_id("/m")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id("org/name"), "a folder here wins over a hub id"
