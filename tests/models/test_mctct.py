"""Our M-CTC-T port against transformers 4.57.6, the model's last release (issue 6).

The reference runs in a subprocess (`mctct_reference.py`) with transformers 4.57.6,
huggingface_hub and tokenizers installed into a cached folder (`.cache/mctct-ref/`,
made by pip on first use; see `reference_env`) and this environment's torch and numpy.
It builds a tiny random-init `MCTCTForCTC`, saves it as a hub checkpoint would be
saved, and answers for the same inputs: features, logits, greedy transcripts, a
padded batch, and the ASR pipeline's transcripts, word timestamps and chunked
transcripts. Everything here then loads that folder through `load_ctc` / `CtcStage`,
the path a user's `model: speechbrain/m-ctc-t-large` takes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soxr
import torch

from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE
from pipeline.errors import ModelLoadError
from pipeline.kinds.ctc import CtcTaskSpec
from pipeline.models.ctc_load import load_ctc
from pipeline.models.mctct import MctctCtcModel
from pipeline.models.mctct.features import MfscFeatures
from pipeline.spec import StorageOptions
from pipeline.stages.ctc import CtcStage
from pipeline.testing import tiny_mctct
from pipeline.testing.synth import sentences, speechlike

REFERENCE_PINS = ("transformers==4.57.6", "huggingface_hub==0.36.2", "tokenizers==0.22.2")
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "mctct-ref"
RATE = 16_000
SEED = 0
# Speech-like clips made at these rates and resampled to 16 kHz (as decode does), and
# how many words each says: the tiny model's 40 relative positions span 1.2 s; the
# one-word clip (22 frames) and "short" (1) fit the table, s44 (41) just exceeds it,
# the others (100-300) exceed it by far.
CLIPS = {
    "s16": (16_000, 8),
    "s8": (8_000, 8),
    "s44": (44_100, 2),
    "s22": (22_050, 8),
    "s48": (48_000, 1),
}
NORMAL = [*CLIPS, "short", "long"]  # items the reference handles without NaN
DEGENERATE = ["one_frame", "silence"]  # zero variance: NaN features in the reference
CHUNK_S, STRIDE_S = 4.0, 1.0
NO_STORAGE = StorageOptions()


def reference_env() -> Path:
    """A folder with the reference's packages, created once per pin set and cached.

    `--no-deps`: the rest of what transformers 4.57.6 needs (numpy, safetensors,
    regex, pyyaml, ...) is what transformers 5 needs too, so this environment has it;
    the subprocess puts the folder first on PYTHONPATH. A lock and an atomic rename
    keep concurrent or interrupted runs from using half an install.
    """
    key_text = " ".join((*REFERENCE_PINS, sys.version, platform.machine()))
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    target = CACHE / key
    if (target / ".complete").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").is_file():
            return target
        shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=f".{key}-"))
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]
        cmd += ["--disable-pip-version-check", "--target", str(tmp), *REFERENCE_PINS]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as exc:
            proc = subprocess.CompletedProcess(cmd, -1, "", f"timed out after {exc.timeout} s")
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(
                f"could not create the transformers 4.57.6 reference environment the M-CTC-T "
                f"tests compare against: `{' '.join(cmd)}` exited {proc.returncode}:\n"
                f"{(proc.stderr or proc.stdout)[-3000:]}\nIt needs the package index (PyPI) "
                f"once; it is then cached in {CACHE}.",
                pytrace=False,
            )
        (tmp / ".complete").write_text(key_text)
        os.rename(tmp, target)
    return target


def make_inputs() -> dict[str, np.ndarray]:
    """16 kHz float32 test items, keyed by name (see CLIPS, NORMAL, DEGENERATE)."""
    texts = sentences(len(CLIPS) + 5, seed=5)
    items = {}
    for i, (name, (rate, words)) in enumerate(CLIPS.items()):
        x = speechlike(" ".join(texts[i].split()[:words]), rate, seed=i)
        items[name] = x if rate == RATE else soxr.resample(x, rate, RATE).astype(np.float32)
    spare = speechlike(texts[len(CLIPS)], RATE, seed=20)
    items["short"] = spare[4000:4560]  # two feature frames, one logit frame
    items["one_frame"] = spare[4000:4500]  # one feature frame: zero variance
    items["silence"] = np.zeros(RATE, np.float32)
    items["long"] = speechlike(" ".join(texts[-4:]), RATE, seed=21)  # ~9 s: chunked too
    return items


@dataclass
class Reference:
    folder: str  # the reference's checkpoint, safetensors
    pickle_folder: str  # the same, pytorch_model.bin
    ours_folder: str  # a checkpoint written by pipeline.testing.tiny_mctct
    inputs: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray]
    results: dict


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Reference:
    env = reference_env()
    work = tmp_path_factory.mktemp("mctct")
    inputs = make_inputs()
    np.savez(work / "inputs.npz", calibration=tiny_mctct.calibration_audio(SEED), **inputs)
    ours = tiny_mctct.build_mctct(str(work / "ours"), seed=SEED + 1)
    request = {
        "work": str(work),
        "build": {
            "chars": tiny_mctct.CHARS,
            "config": tiny_mctct.TINY,
            "seed": SEED,
            "folder": str(work / "reference"),
            "pickle_folder": str(work / "reference-pickle"),
        },
        "batch": NORMAL,
        "pipeline": {
            "items": NORMAL,
            "chunked": ["long"],
            "chunk_length_s": CHUNK_S,
            "stride_s": STRIDE_S,
        },
        "load": [ours],
        "load_inputs": ["s16", "long"],
    }
    (work / "request.json").write_text(json.dumps(request))
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join((str(env), str(REPO))),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    script = Path(__file__).with_name("mctct_reference.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(work / "request.json")],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"the M-CTC-T reference subprocess failed:\n{proc.stderr[-4000:]}")
    with np.load(work / "results.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    results = json.loads((work / "results.json").read_text())
    assert results["transformers"] == "4.57.6"
    return Reference(
        request["build"]["folder"], request["build"]["pickle_folder"], ours, inputs, arrays, results
    )


@pytest.fixture(scope="module")
def model(ref) -> MctctCtcModel:
    loaded = load_ctc(CtcTaskSpec(model=ref.folder), NO_STORAGE, "cpu")
    assert isinstance(loaded, MctctCtcModel)
    return loaded


def batch(audio: list[np.ndarray]) -> pa.Table:
    healthy = pa.nulls(len(audio), pa.string())
    return pa.table(
        {
            AUDIO: pa.array([a.tolist() for a in audio], pa.list_(pa.float32())),
            SAMPLE_RATE: pa.array([RATE] * len(audio), pa.int32()),
            ERROR_STAGE: healthy,
            ERROR_CODE: healthy,
            ERROR_MESSAGE: healthy,
        }
    )


def worst(a: np.ndarray | torch.Tensor, b: np.ndarray) -> float:
    a = a.float().numpy() if isinstance(a, torch.Tensor) else a
    return float(np.abs(a - b).max())


def assert_features_close(ours: torch.Tensor, ref: Reference, name: str) -> None:
    """Normalised features equal to float32 rounding as normalisation scales it: by
    1 / std of each mel bin, large where a bin barely moves (the two-frame item)."""
    expected = ref.arrays[f"features/{name}"]
    assert ours.shape == expected.shape
    spread = ref.arrays[f"log_mel/{name}"].std(axis=0)
    assert float((np.abs(ours.numpy() - expected) * spread).max()) < 1e-4
    assert worst(ours, expected) < 5e-3


# ------------------------------------------------------------------ features


@pytest.mark.parametrize("name", NORMAL)
def test_features_equal_the_reference(name, ref, model):
    """Ours stay float64 until the end; the reference rounds its spectrum to complex64
    and normalises in float32. Measured: log mel <= 1e-6; normalised features 3e-6..4e-4
    apart (4e-4: the two-frame item), <= 1.3e-5 once scaled back by each bin's std."""
    x = ref.inputs[name]
    raw = MfscFeatures(replace(model.features.config, normalize_means=False, normalize_vars=False))
    log_mel, _ = raw([x])
    assert log_mel.shape[1:] == ref.arrays[f"log_mel/{name}"].shape
    assert worst(log_mel[0], ref.arrays[f"log_mel/{name}"]) < 2e-5
    ours, lengths = model.features([x])
    assert lengths.tolist() == [ours.shape[1]]
    assert_features_close(ours[0], ref, name)


def test_padded_features_equal_each_item_alone(ref, model):
    audio = [ref.inputs[k] for k in NORMAL]
    ours, lengths = model.features(audio)
    mask = ref.arrays["batch/mask"].astype(bool)
    assert lengths.tolist() == mask.sum(1).tolist()
    for i, name in enumerate(NORMAL):
        n = int(lengths[i])
        assert_features_close(ours[i, :n], ref, name)
        # The reference's padded batch normalises over valid frames too.
        assert np.array_equal(ref.arrays["batch/features"][i, :n], ref.arrays[f"features/{name}"])
        assert not ours[i, n:].any()  # padding_value


@pytest.mark.parametrize("name", DEGENERATE)
def test_zero_variance_gives_zeros_where_the_reference_gives_nan(name, ref, model):
    """A deliberate departure (see pipeline/models/mctct/features.py)."""
    assert np.isnan(ref.arrays[f"features/{name}"]).all()
    assert np.isnan(ref.arrays[f"logits/{name}"]).all()
    ours, _ = model.features([ref.inputs[name]])
    assert not ours.any()
    logits, _ = model.logits([ref.inputs[name]])
    assert torch.isfinite(logits).all()


# ------------------------------------------------------------------ network


@pytest.mark.parametrize("name", NORMAL)
def test_network_on_the_reference_features_equals_its_logits(name, ref, model):
    """The network alone, fed the reference's own features. Measured: <= 1e-5 on logits
    of magnitude up to ~20."""
    feats = torch.from_numpy(ref.arrays[f"features/{name}"])[None]
    with torch.inference_mode():
        logits, frames = model.model(feats, torch.tensor([feats.shape[1]]))
    expected = ref.arrays[f"logits/{name}"]
    assert frames.tolist() == [len(expected)] == [model.frames(len(ref.inputs[name]))]
    assert worst(logits[0], expected) < 1e-4


@pytest.mark.parametrize("name", NORMAL)
def test_logits_and_transcripts_equal_the_reference(name, ref, model):
    """Audio to logits: the features' rounding differences, through the network.
    Measured: <= 6.2e-4 (the two-frame item; 1e-4 for the others)."""
    logits, frames = model.logits([ref.inputs[name]])
    expected = ref.arrays[f"logits/{name}"]
    assert frames == [len(expected)]
    assert worst(logits[0], expected) < 5e-3
    ids = model.predict([ref.inputs[name]])[0].ids
    assert model.tokenizer.decode(ids) == ref.results["texts"][name]


def test_padded_batch_gives_each_item_its_single_logits(ref, model):
    """Our batched logits equal the reference's single-item logits; the reference's own
    padded batch does not (its input affine turns padded frames into its bias, which
    the last valid frames' convolution reads)."""
    logits, frames = model.logits([ref.inputs[k] for k in NORMAL])
    leaks = []
    for i, name in enumerate(NORMAL):
        alone = ref.arrays[f"logits/{name}"]
        assert frames[i] == len(alone)
        assert worst(logits[i, : frames[i]], alone) < 5e-3
        leaks.append(worst(ref.arrays["batch/logits"][i, : frames[i]], alone))
    assert max(leaks) > 0.1  # the reference batch leaks (the longest item alone is exact)
    assert sorted(leaks)[0] == 0.0


def test_inputs_beyond_the_relative_position_table(ref, model):
    """Frames further apart than max_position_embeddings - 1 get no positional term, as
    in the reference; the comparisons above cover items longer than the table."""
    table = tiny_mctct.TINY["max_position_embeddings"]
    longer = [k for k in NORMAL if len(ref.arrays[f"logits/{k}"]) > table]
    shorter = [k for k in NORMAL if len(ref.arrays[f"logits/{k}"]) <= table]
    assert len(longer) >= 4 and len(shorter) >= 2  # both regimes are compared
    attention = model.model.encoder.layers[0].attention["self"]
    learned = attention.distance_embedding.weight
    m = table
    for frames in (1, 7, m, m + 1, 3 * m):
        rows = attention.distance_table(frames)  # distances -(frames-1)..frames-1
        assert rows.shape == (2 * frames - 1, learned.shape[1])
        for d in (-(frames - 1), 0, frames - 1):
            row = rows[d + frames - 1]
            expected = learned[m - 1 + d] if abs(d) <= m - 1 else torch.zeros_like(row)
            assert torch.equal(row, expected)


def test_the_positional_term_matters(ref, model):
    """Without the distance table the logits move a lot: the comparisons can see it."""
    x = ref.inputs["long"]
    before, _ = model.logits([x])
    tables = [
        layer.attention["self"].distance_embedding.weight for layer in model.model.encoder.layers
    ]
    saved = [t.detach().clone() for t in tables]
    try:
        with torch.no_grad():
            for t in tables:
                t.zero_()
        after, _ = model.logits([x])
    finally:
        with torch.no_grad():
            for t, s in zip(tables, saved, strict=True):
                t.copy_(s)
    assert worst(after[0], before[0].numpy()) > 1.0


# ------------------------------------------------------------------ the CTC stage


def make_stage(path: str, **spec) -> CtcStage:
    return CtcStage(CtcTaskSpec(model=path, **spec), NO_STORAGE).load()


def test_stage_transcripts_equal_the_reference_pipeline(ref):
    audio = [ref.inputs[k] for k in NORMAL]
    out = make_stage(ref.folder, batch_seconds=8, chunk_length_s=30)(batch(audio))
    expected = [ref.results["pipeline"]["text"][k] for k in NORMAL]
    assert out.column("ctc__text").to_pylist() == expected
    assert len(set(expected)) == len(expected)  # varied text: the check means something
    assert out.column("ctc__error_code").null_count == len(audio)


def test_stage_word_timestamps_equal_the_reference_pipeline(ref):
    audio = [ref.inputs[k] for k in NORMAL]
    out = make_stage(ref.folder, chunk_length_s=30)(batch(audio))
    for i, name in enumerate(NORMAL):
        duration = len(audio[i]) / RATE
        got = [(w["word"], w["start"], w["end"]) for w in out.column("ctc__words")[i].as_py()]
        # The pipeline lets the last frame run past the audio; the stage stops at its end.
        expected = [
            (word, pytest.approx(start, abs=1e-9), pytest.approx(min(end, duration), abs=1e-9))
            for word, start, end in ref.results["pipeline"]["words"][name]
        ]
        assert got == expected


def test_stage_chunks_long_audio_like_the_reference_pipeline(ref):
    long = ref.inputs["long"]
    assert len(long) / RATE > 2 * CHUNK_S  # three chunks or more
    stage = make_stage(ref.folder, chunk_length_s=CHUNK_S, stride_length_s=STRIDE_S)
    out = stage(batch([ref.inputs["s16"], long]))
    texts = out.column("ctc__text").to_pylist()
    assert texts[1] == ref.results["pipeline"]["chunked"]["long"]
    assert texts[1] != ref.results["pipeline"]["text"]["long"]  # chunking changed it
    assert texts[0] == ref.results["pipeline"]["text"]["s16"]  # shorter than a chunk


def test_stage_marks_audio_shorter_than_one_window(ref):
    audio = [ref.inputs["s16"], ref.inputs["s16"][:399], ref.inputs["short"]]
    out = make_stage(ref.folder)(batch(audio))
    assert out.column("ctc__error_code").to_pylist() == [None, "model_failed", None]
    assert "400-sample" in out.column("ctc__error_message")[1].as_py()
    assert out.column("ctc__text")[2].as_py() == ref.results["texts"]["short"]


# ------------------------------------------------------------------ loading


def test_checkpoint_keys_are_the_published_names(ref, model):
    from safetensors import safe_open

    with safe_open(f"{ref.folder}/model.safetensors", "pt") as f:
        saved = set(f.keys())
    assert set(model.model.state_dict()) == saved
    assert "mctct.encoder.layers.1.attention.self.distance_embedding.weight" in saved


def test_pickle_checkpoint_loads_with_weights_only_and_says_so(ref, model, caplog):
    assert not any(Path(ref.pickle_folder).glob("*.safetensors"))
    with caplog.at_level(logging.WARNING):
        pickled = load_ctc(CtcTaskSpec(model=ref.pickle_folder), NO_STORAGE, "cpu")
    assert "weights_only=True" in caplog.text and "pytorch_model.bin" in caplog.text
    x = [ref.inputs["s22"]]
    assert torch.equal(pickled.logits(x)[0], model.logits(x)[0])


def test_a_pickle_that_is_not_plain_tensors_is_refused(ref, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(ref.pickle_folder, folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["extra"] = np.dtype  # not a tensor: weights_only refuses to unpickle it
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_ctc(CtcTaskSpec(model=str(folder)), NO_STORAGE, "cpu")


def test_our_checkpoint_loads_in_the_reference_with_equal_logits(ref):
    info = ref.results["loaded"][ref.ours_folder]
    assert info == {
        "missing_keys": [],
        "unexpected_keys": [],
        "mismatched_keys": [],
        "error_msgs": [],
    }
    ours = load_ctc(CtcTaskSpec(model=ref.ours_folder), NO_STORAGE, "cpu")
    for name in ("s16", "long"):
        logits, _ = ours.logits([ref.inputs[name]])
        assert worst(logits[0], ref.arrays[f"loaded/0/logits/{name}"]) < 1e-3


def test_hub_id_and_revision_go_to_the_hub_client(ref, monkeypatch):
    import huggingface_hub

    asked = []

    def file_download(repo, filename, revision=None, **_):
        asked.append(("file", repo, filename, revision))
        return f"{ref.folder}/{filename}"

    def snapshot(repo, revision=None, allow_patterns=(), **_):
        asked.append(("snapshot", repo, revision, tuple(allow_patterns)))
        return ref.folder

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", file_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    spec = CtcTaskSpec(model="speechbrain/m-ctc-t-large", revision="abc123")
    loaded = load_ctc(spec, NO_STORAGE, "cpu")
    assert isinstance(loaded, MctctCtcModel) and loaded.name == "speechbrain/m-ctc-t-large"
    assert asked[0] == ("file", "speechbrain/m-ctc-t-large", "config.json", "abc123")
    assert asked[1][:3] == ("snapshot", "speechbrain/m-ctc-t-large", "abc123")
    assert "*.safetensors" in asked[1][3] and len(asked) == 2  # safetensors found: no pickle


def test_unsupported_or_broken_checkpoints_are_model_load_errors(ref, tmp_path):
    def variant(name: str, edit) -> str:
        folder = tmp_path / name
        shutil.copytree(ref.folder, folder)
        edit(folder)
        return str(folder)

    def config_edit(**changes):
        def edit(folder: Path) -> None:
            cfg = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**cfg, **changes}))

        return edit

    cases = {
        "two_convs": (config_edit(num_conv_layers=2, conv_kernel=[7, 7]), "one subsampling conv"),
        "wider": (config_edit(hidden_size=48), "must equal hidden_size"),
        "deeper": (config_edit(num_hidden_layers=3), "missing: mctct.encoder.layers.2"),
        "no_weights": (lambda f: (f / "model.safetensors").unlink(), "no weights"),
        "rate": (None, "expects 16000 Hz"),
    }
    for name, (edit, message) in cases.items():
        path = variant(name, edit) if edit else ref.folder
        spec = CtcTaskSpec(model=path, **({"sample_rate": 8000} if name == "rate" else {}))
        with pytest.raises(ModelLoadError, match=message):
            load_ctc(spec, NO_STORAGE, "cpu")


@pytest.mark.integration
def test_object_storage_prefix_loads(ref, s3_bucket, tmp_path, monkeypatch):
    import s3fs

    from pipeline.models import hub

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    for path in Path(ref.folder).iterdir():
        fs.put_file(str(path), f"{bucket}/mctct/{path.name}")
    monkeypatch.setattr(hub, "DEFAULT_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/mctct"
    loaded = load_ctc(CtcTaskSpec(model=uri), StorageOptions(endpoint_url=endpoint), "cpu")
    assert isinstance(loaded, MctctCtcModel) and loaded.name == uri
    ids = loaded.predict([ref.inputs["s8"]])[0].ids
    assert loaded.tokenizer.decode(ids) == ref.results["texts"]["s8"]


# ------------------------------------------------------------------ bfloat16


def test_bfloat16_runs_the_same_path(ref):
    """On the CPU, bf16 weights and activations (on CUDA autocast is added): the frames
    and most argmaxes survive the lower precision."""
    bf16 = load_ctc(CtcTaskSpec(model=ref.folder, dtype="bfloat16"), NO_STORAGE, "cpu")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    logits, frames = bf16.logits([ref.inputs[k] for k in NORMAL])
    assert logits.dtype == torch.bfloat16
    agree = [
        (logits[i, :n].float().argmax(-1).numpy() == ref.arrays[f"logits/{k}"].argmax(-1)).mean()
        for i, (k, n) in enumerate(zip(NORMAL, frames, strict=True))
    ]
    assert min(agree) > 0.9  # measured: 0.98 at worst


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bfloat16_follows_the_reference(ref):
    """Features on the GPU (float64) as on the CPU; bf16 logits keep nearly every argmax
    (the tiny head leaves near-ties that bf16 rounding may flip, so texts can differ)."""
    audio = [ref.inputs[k] for k in NORMAL]
    gpu = make_stage(ref.folder, device="cuda", dtype="bfloat16")
    features, lengths = gpu.model.features(audio)
    assert features.device.type == "cuda"
    for i, name in enumerate(NORMAL):
        assert_features_close(features[i, : int(lengths[i])].cpu(), ref, name)
    logits, frames = gpu.model.logits(audio)
    for i, name in enumerate(NORMAL):
        ids = logits[i, : frames[i]].float().argmax(-1).cpu().numpy()
        assert (ids == ref.arrays[f"logits/{name}"].argmax(-1)).mean() > 0.9
    out = gpu(batch(audio))
    assert out.column("ctc__error_code").null_count == len(audio)
    assert all(out.column("ctc__text").to_pylist())
