"""Loading Whisper checkpoints: from a folder and object storage, special tokens, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.errors import ModelLoadError
from pipeline.kinds.whisper import WhisperTaskSpec
from pipeline.models import hub
from pipeline.models.whisper.decode import DecodeOptions
from pipeline.models.whisper.load import load_whisper
from pipeline.spec import StorageOptions
from pipeline.testing.tiny_whisper import LANGUAGES, build_tiny_whisper

NO_STORAGE = StorageOptions()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return build_tiny_whisper(str(tmp_path_factory.mktemp("tiny_whisper") / "model"))


def edited_copy(src: str, dest: Path, **generation) -> str:
    shutil.copytree(src, dest)
    path = dest / "generation_config.json"
    config = json.loads(path.read_text())
    for key, value in generation.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    return str(dest)


def test_load_from_a_folder_reads_the_special_tokens(tiny_dir):
    wm = load_whisper(WhisperTaskSpec(model=tiny_dir), NO_STORAGE, "cpu")
    t, tok = wm.tokens, wm.tokenizer
    assert tok.convert_ids_to_tokens([t.eot, t.sot, t.no_timestamps, t.timestamp_begin]) == [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|notimestamps|>",
        "<|0.00|>",
    ]
    assert tok.convert_ids_to_tokens([t.no_speech, t.prev, t.translate, t.transcribe]) == [
        "<|nospeech|>",
        "<|startofprev|>",
        "<|translate|>",
        "<|transcribe|>",
    ]
    assert set(t.languages) == set(LANGUAGES) and wm.multilingual
    assert wm.model.config._attn_implementation == "sdpa"
    assert wm.dtype == torch.float32 and not wm.model.training
    assert (wm.window_frames, wm.input_stride, wm.sampling_rate) == (3000, 2, 16_000)
    assert wm.alignment_heads == [(1, 0), (1, 2), (0, 1)]


@pytest.mark.integration
def test_load_from_object_storage(s3_bucket, tiny_dir, tmp_path, monkeypatch):
    import s3fs

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    for path in Path(tiny_dir).rglob("*"):
        if path.is_file():
            fs.put_file(str(path), f"{bucket}/whisper/{path.relative_to(tiny_dir)}")
    monkeypatch.setattr(hub, "DEFAULT_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/whisper"
    wm = load_whisper(WhisperTaskSpec(model=uri), StorageOptions(endpoint_url=endpoint), "cpu")
    assert wm.name == uri and wm.tokens.languages["en"] > wm.tokens.sot


def test_options_build_the_prompts(tiny_dir):
    spec = WhisperTaskSpec(model=tiny_dir, language="German", task="translate", prompt=" red bird ")
    wm = load_whisper(spec, NO_STORAGE, "cpu")
    opts = DecodeOptions.from_spec(spec, wm)
    t = wm.tokens
    words = wm.tokenizer.encode(" red bird", add_special_tokens=False)
    assert opts.prompt == (t.prev, *words)
    assert opts.language == t.languages["de"]
    assert opts.prompt_tokens(wm, opts.language, timestamps=False) == [
        t.prev,
        *words,
        t.sot,
        t.languages["de"],
        t.translate,
        t.no_timestamps,
    ]
    assert opts.prompt_tokens(wm, t.languages["fr"], timestamps=True)[-3:] == [
        t.sot,
        t.languages["fr"],
        t.translate,
    ]


def test_english_only_checkpoints(tiny_dir, tmp_path):
    english = edited_copy(tiny_dir, tmp_path / "en", is_multilingual=False, lang_to_id=None)
    wm = load_whisper(WhisperTaskSpec(model=english), NO_STORAGE, "cpu")
    assert not wm.multilingual
    opts = DecodeOptions.from_spec(WhisperTaskSpec(model=english), wm)
    assert opts.prompt_tokens(wm, None, timestamps=False) == [
        wm.tokens.sot,
        wm.tokens.no_timestamps,
    ]
    with pytest.raises(ModelLoadError, match="English-only: it cannot translate"):
        load_whisper(WhisperTaskSpec(model=english, task="translate"), NO_STORAGE, "cpu")
    with pytest.raises(ModelLoadError, match="English-only"):
        load_whisper(WhisperTaskSpec(model=english, language="fr"), NO_STORAGE, "cpu")


def test_refusals_are_model_load_errors(tiny_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="has no language 'klingon'"):
        load_whisper(WhisperTaskSpec(model=tiny_dir, language="klingon"), NO_STORAGE, "cpu")
    with pytest.raises(ModelLoadError, match="expects 16000 Hz"):
        load_whisper(WhisperTaskSpec(model=tiny_dir, sample_rate=22050), NO_STORAGE, "cpu")
    outdated = edited_copy(tiny_dir, tmp_path / "old", no_timestamps_token_id=None)
    with pytest.raises(ModelLoadError, match="outdated Whisper generation config"):
        load_whisper(WhisperTaskSpec(model=outdated), NO_STORAGE, "cpu")
    other = tmp_path / "ctc"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ModelLoadError, match="is a 'wav2vec2' checkpoint"):
        load_whisper(WhisperTaskSpec(model=str(other)), NO_STORAGE, "cpu")
