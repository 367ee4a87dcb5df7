"""Loading a CTC checkpoint behind the `CtcAdapter` of its architecture.

The source is resolved by `pipeline/models/hub.py` and loaded through its one
`from_pretrained` path, except M-CTC-T checkpoints (`model_type: mctct`), which
transformers 5 no longer knows: our own port (`pipeline/models/mctct/`) loads those.
Parakeet CTC (`model_type: parakeet_ctc`) loads through `from_pretrained` too, behind
its own adapter (`pipeline/models/parakeet.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import ModelLoadError
from pipeline.kinds.ctc import CtcTaskSpec
from pipeline.models.device import pick_dtype
from pipeline.models.hub import LOAD_ERRORS, Source, pretrained, processor, resolve_task
from pipeline.spec import StorageOptions

if TYPE_CHECKING:
    from pipeline.models.ctc_model import CtcAdapter


def load_ctc(spec: CtcTaskSpec, storage: StorageOptions, device: str) -> CtcAdapter:
    """Resolve and load `spec.model` as a CTC adapter on `device` ("cpu", "cuda", "cuda:0")."""
    from transformers import AutoModelForCTC

    from pipeline.models.ctc_model import CtcModel

    source = resolve_task(spec, storage)
    dtype = pick_dtype(spec.dtype, device)
    if source.model_type() == "mctct":
        from pipeline.models.mctct import load_mctct

        mctct = load_mctct(
            spec.model, source.path, revision=source.revision, device=device, dtype=dtype
        )
        _check_processor(spec, mctct.sampling_rate, mctct.tokenizer)
        return mctct
    model = pretrained(AutoModelForCTC, source, _model_failure(spec.model), dtype=dtype)
    model = model.to(device).eval()
    if model.config.model_type == "parakeet_ctc":  # a conformer on log-mel frames
        return _load_parakeet(spec, source, model, device, dtype)
    extractor, tokenizer = _load_processor(source)
    _check_architecture(spec, model)
    _check_processor(spec, extractor.sampling_rate, tokenizer)
    return CtcModel(spec.model, model, extractor, tokenizer, device=device, dtype=dtype)


def _load_parakeet(spec, source: Source, model, device, dtype):
    """Parakeet's features are ours (`parakeet_features.py`): only its tokenizer is loaded."""
    from transformers import AutoTokenizer

    from pipeline.models.parakeet import ParakeetCtcModel
    from pipeline.models.parakeet_features import FeatureConfig, ParakeetFeatures

    def failure(exc: Exception) -> str:
        return (
            f"model {spec.model!r}: cannot load its preprocessor_config.json and tokenizer "
            f"({type(exc).__name__}: {exc}); upload the folder processor.save_pretrained writes"
        )

    try:
        config = FeatureConfig.from_file(source.file("preprocessor_config.json"))
    except LOAD_ERRORS as exc:
        raise ModelLoadError(failure(exc)) from exc
    tokenizer = processor(AutoTokenizer, source, failure)
    features = ParakeetFeatures(config, device)
    parakeet = ParakeetCtcModel(spec.model, model, features, tokenizer, device, dtype)
    _check_processor(spec, parakeet.sampling_rate, parakeet.tokenizer)
    return parakeet


def _model_failure(name: str):
    return lambda exc: (
        f"model {name!r}: cannot load it with AutoModelForCTC ({type(exc).__name__}: {exc}); "
        "check that it is a CTC checkpoint (e.g. wav2vec2/hubert/wavlm ...ForCTC), that the "
        "revision exists, and set trust_remote_code only for checkpoints you trust"
    )


def _load_processor(source: Source):
    from transformers import AutoFeatureExtractor, AutoTokenizer

    def failure(exc: Exception) -> str:
        return (
            f"model {source.uri!r}: cannot load its feature extractor and tokenizer "
            f"({type(exc).__name__}: {exc}); the folder needs preprocessor_config.json (or "
            "processor_config.json), tokenizer_config.json and vocab.json, as "
            "processor.save_pretrained writes them"
        )

    return processor(AutoFeatureExtractor, source, failure), processor(
        AutoTokenizer, source, failure
    )


def _check_architecture(spec: CtcTaskSpec, model) -> None:
    cfg = model.config
    if not (hasattr(cfg, "conv_kernel") and hasattr(cfg, "conv_stride")):
        raise ModelLoadError(
            f"model {spec.model!r} ({cfg.model_type}): only CTC models with a wav2vec2-style "
            "convolutional feature encoder are supported (wav2vec2, hubert, wavlm, "
            "data2vec-audio, unispeech, sew)"
        )
    if getattr(cfg, "add_adapter", False):
        raise ModelLoadError(
            f"model {spec.model!r}: CTC checkpoints with an adapter are not supported"
        )


def _check_processor(spec: CtcTaskSpec, sampling_rate: int, tokenizer) -> None:
    rate = getattr(spec, "sample_rate", None)
    if rate is not None and rate != sampling_rate:
        raise ModelLoadError(
            f"model {spec.model!r} expects {sampling_rate} Hz audio but the task's "
            f"sample_rate is {rate}; set sample_rate: {sampling_rate} in the task"
        )
    if tokenizer.pad_token_id is None:
        raise ModelLoadError(
            f"model {spec.model!r}: its tokenizer has no pad token (the CTC blank)"
        )
    if spec.word_timestamps and getattr(tokenizer, "word_delimiter_token", None) is None:
        raise ModelLoadError(
            f"model {spec.model!r}: its tokenizer ({type(tokenizer).__name__}) has no word "
            "delimiter, so words cannot be aligned; set word_timestamps: false for this task"
        )
