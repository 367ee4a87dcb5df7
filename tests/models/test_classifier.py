"""Loading audio classifiers (folder, object storage) and choosing their adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from pipeline.errors import ModelLoadError
from pipeline.kinds.classify import ClassifyTaskSpec
from pipeline.kinds.frames import FramesTaskSpec
from pipeline.models.classifier import (
    AstClassifier,
    ItemwiseClassifier,
    WaveformModel,
    load_classifier,
    load_frame_classifier,
)
from pipeline.models.ctc_model import MaskedGroupNorm
from pipeline.spec import StorageOptions
from pipeline.testing.tiny_classifiers import (
    build_tiny_ast,
    build_tiny_frame_classifier,
    build_tiny_sequence_classifier,
)

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
NO_STORAGE = StorageOptions()
RATE = 16_000


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("classifiers")
    return {
        "ast": build_tiny_ast(str(root / "ast"), max_length=128),
        "seq_gn": build_tiny_sequence_classifier(str(root / "seq_gn"), group_norm=True),
        "frames": build_tiny_frame_classifier(str(root / "frames")),
    }


def clip(seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.1 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def test_each_architecture_gets_its_adapter(dirs):
    ast = load_classifier(ClassifyTaskSpec(model=dirs["ast"]), NO_STORAGE, "cpu")
    assert isinstance(ast, AstClassifier)
    assert ast.max_window == 400 + 127 * 160 and ast.min_samples == 400
    seq = load_classifier(ClassifyTaskSpec(model=dirs["seq_gn"]), NO_STORAGE, "cpu")
    assert isinstance(seq, WaveformModel) and seq.batched and seq.min_samples == 400
    assert any(isinstance(m, MaskedGroupNorm) for m in seq.model.modules())
    assert seq.labels[:2] == ["speech", "music"] and not seq.multi_label
    frames = load_frame_classifier(FramesTaskSpec(model=dirs["frames"]), NO_STORAGE, "cpu")
    assert frames.frame_duration == 0.02 and frames.multi_label


def test_other_classifiers_run_item_by_item_like_the_pipeline(tmp_path):
    """WhisperForAudioClassification: no conv encoder, its own log-mel front end."""
    cfg = tf.WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        classifier_proj_size=16,
        id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tf.WhisperForAudioClassification(cfg).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(200.0)  # decisive scores
    model.save_pretrained(str(tmp_path))
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(str(tmp_path))

    adapter = load_classifier(ClassifyTaskSpec(model=str(tmp_path)), NO_STORAGE, "cpu")
    assert isinstance(adapter, ItemwiseClassifier) and adapter.max_window is None
    audio = [clip(1, 0.7), clip(2, 2.5)]
    ours = adapter.logits(audio).softmax(-1).numpy()
    reference = tf.pipeline("audio-classification", model=str(tmp_path), device="cpu")
    for row, a in zip(ours, audio, strict=True):
        expected = {x["label"]: x["score"] for x in reference(a, top_k=3)}
        np.testing.assert_allclose(row, [expected[k] for k in "abc"], atol=1e-5)
    assert np.abs(ours[0] - ours[1]).max() > 1e-3  # the inputs were told apart


@pytest.mark.integration
def test_a_model_on_object_storage_loads_like_a_folder(dirs, s3_bucket, tmp_path, monkeypatch):
    import s3fs

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    for path in Path(dirs["ast"]).rglob("*"):
        fs.put_file(str(path), f"{bucket}/ast/{path.relative_to(dirs['ast'])}")
    monkeypatch.setenv("HOME", str(tmp_path))  # the model cache goes under ~/.cache
    storage = StorageOptions(endpoint_url=endpoint)
    remote = load_classifier(ClassifyTaskSpec(model=f"s3://{bucket}/ast"), storage, "cpu")
    local = load_classifier(ClassifyTaskSpec(model=dirs["ast"]), NO_STORAGE, "cpu")
    audio = [clip(3)]
    assert torch.equal(remote.logits(audio), local.logits(audio))
    assert remote.name == f"s3://{bucket}/ast"


def test_unusable_checkpoints_are_refused_with_a_reason(dirs, tmp_path):
    with pytest.raises(ModelLoadError, match="expects 16000 Hz"):
        load_classifier(ClassifyTaskSpec(model=dirs["ast"], sample_rate=22050), NO_STORAGE, "cpu")
    with pytest.raises(ModelLoadError, match="AutoModelForAudioFrameClassification"):
        load_frame_classifier(FramesTaskSpec(model=dirs["ast"]), NO_STORAGE, "cpu")
    regression = tmp_path / "regression"
    build_tiny_sequence_classifier(str(regression))
    model = tf.AutoModelForAudioClassification.from_pretrained(str(regression))
    model.config.problem_type = "regression"
    model.save_pretrained(str(regression))
    with pytest.raises(ModelLoadError, match="regression"):
        load_classifier(ClassifyTaskSpec(model=str(regression)), NO_STORAGE, "cpu")
