"""The M-CTC-T reference: run by `test_mctct.py` in a subprocess under transformers 4.57.6.

    PYTHONPATH=<reference env> python tests/models/mctct_reference.py <request.json>

The last transformers release with M-CTC-T. The subprocess shares this repo's
torch and numpy (only transformers, huggingface_hub and tokenizers come from the
reference env), so differences are the implementations', not the libraries'.

The request (JSON) names a work folder holding `inputs.npz` (16 kHz float32 arrays
"0", "1", ...) and says what to do; the answers go to `results.npz` and
`results.json` in the same folder:

- `build`: build a tiny random-init `MCTCTForCTC` from `config`, redraw its weights
  as `pipeline.testing.tiny_mctct` does, and save model, feature extractor and character
  tokenizer with `save_pretrained` to `folder` (safetensors) and `pickle_folder`
  (`pytorch_model.bin`);
- for every input: features (also before normalisation), logits and the greedy
  transcript, one item at a time;
- `batch`: the same for those inputs padded into one batch with an attention mask;
- `pipeline`: `pipeline("automatic-speech-recognition")` transcripts, word timestamps
  and chunked transcripts (see `run_pipeline` for the one setting it needs);
- `load`: other checkpoint folders to load with `from_pretrained` (reporting missing
  or unexpected keys) and run on `load_inputs`.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    MCTCTConfig,
    MCTCTFeatureExtractor,
    MCTCTForCTC,
    MCTCTProcessor,
    Wav2Vec2CTCTokenizer,
    pipeline,
)

from pipeline.testing import tiny_mctct

RATE = 16_000


def build(spec: dict, calibration: np.ndarray) -> tuple[MCTCTForCTC, MCTCTProcessor]:
    vocab = tiny_mctct.vocabulary(spec["chars"])
    config = MCTCTConfig(
        **spec["config"],
        vocab_size=len(vocab),
        pad_token_id=vocab[tiny_mctct.PAD],
        bos_token_id=vocab[tiny_mctct.BOS],
        eos_token_id=vocab[tiny_mctct.EOS],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        conv_dropout=0.0,
        layerdrop=0.0,
    )
    torch.manual_seed(spec["seed"])
    model = MCTCTForCTC(config).eval()
    tiny_mctct.redraw_weights(model, spec["seed"])
    extractor = MCTCTFeatureExtractor()  # the published checkpoint's settings
    captured: list[torch.Tensor] = []
    hook = model.ctc_head.register_forward_pre_hook(lambda _m, a: captured.append(a[0][0]))
    with torch.inference_mode():
        model(torch.from_numpy(features_of(extractor, calibration))[None])
    hook.remove()
    tiny_mctct.decisive_head(model.ctc_head, captured[0], vocab, spec["seed"])

    folder = Path(spec["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(folder / "vocab.json"),
        bos_token=tiny_mctct.BOS,
        eos_token=tiny_mctct.EOS,
        unk_token=tiny_mctct.UNK,
        pad_token=tiny_mctct.PAD,
        word_delimiter_token=tiny_mctct.DELIMITER,
        do_lower_case=False,
    )
    processor = MCTCTProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    for target, safe in ((folder, True), (Path(spec["pickle_folder"]), False)):
        model.save_pretrained(str(target), safe_serialization=safe)
        processor.save_pretrained(str(target))
    return model, processor


def features_of(extractor: MCTCTFeatureExtractor, x: np.ndarray) -> np.ndarray:
    return extractor(x, sampling_rate=RATE, return_tensors="np")["input_features"][0]


def run_items(model, processor, inputs: dict[str, np.ndarray], arrays: dict, texts: dict) -> None:
    """Each input alone: features (and before normalisation), logits, greedy transcript
    (as processor.batch_decode)."""
    raw = MCTCTFeatureExtractor(normalize_means=False, normalize_vars=False)
    for key, x in inputs.items():
        feats = features_of(processor.feature_extractor, x)
        arrays[f"features/{key}"] = feats
        arrays[f"log_mel/{key}"] = features_of(raw, x)
        if len(feats) == 0:  # shorter than one window: the model cannot run it
            continue
        with torch.inference_mode():
            logits = model(torch.from_numpy(feats)[None]).logits[0]
        arrays[f"logits/{key}"] = logits.numpy()
        texts[key] = processor.batch_decode(logits.argmax(-1)[None])[0]


def run_batch(model, processor, inputs: list[np.ndarray], arrays: dict) -> None:
    """The inputs padded into one batch, with the attention mask, as the docs show."""
    batch = processor.feature_extractor(
        inputs, sampling_rate=RATE, padding=True, return_attention_mask=True, return_tensors="pt"
    )
    with torch.inference_mode():
        logits = model(batch["input_features"], attention_mask=batch["attention_mask"]).logits
    arrays["batch/features"] = batch["input_features"].numpy()
    arrays["batch/mask"] = batch["attention_mask"].numpy()
    arrays["batch/logits"] = logits.numpy()


def run_pipeline(model, processor, inputs: dict[str, np.ndarray], spec: dict) -> dict:
    """The ASR pipeline's texts, word timestamps and chunked texts.

    Its chunking and timestamps read `config.inputs_to_logits_ratio`, which MCTCTConfig
    never defines (so in 4.57.6 both raise AttributeError on M-CTC-T). We set it to
    480, the samples per logit frame (160-sample hop x stride 3), the value a
    wav2vec2-style config would carry; plain transcription does not read it.
    """
    model.config.inputs_to_logits_ratio = 480
    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        feature_extractor=processor.feature_extractor,
        tokenizer=processor.tokenizer,
        device="cpu",
    )
    out: dict[str, dict] = {"text": {}, "words": {}, "chunked": {}}
    for key in spec["items"]:
        out["text"][key] = asr(inputs[key])["text"]
        chunks = asr(inputs[key], return_timestamps="word")["chunks"]
        out["words"][key] = [[c["text"], *c["timestamp"]] for c in chunks]
    for key in spec["chunked"]:
        kwargs = {"chunk_length_s": spec["chunk_length_s"], "stride_length_s": spec["stride_s"]}
        out["chunked"][key] = asr(inputs[key], **kwargs)["text"]
    return out


def load_others(folders: list[str], inputs: dict[str, np.ndarray], arrays: dict) -> dict:
    info = {}
    for n, folder in enumerate(folders):
        model, loading = MCTCTForCTC.from_pretrained(folder, output_loading_info=True)
        model.eval()
        extractor = MCTCTFeatureExtractor.from_pretrained(folder)
        info[folder] = {k: [str(v) for v in vals] for k, vals in loading.items()}
        for key, x in inputs.items():
            with torch.inference_mode():
                feats = torch.from_numpy(features_of(extractor, x))[None]
                arrays[f"loaded/{n}/logits/{key}"] = model(feats).logits[0].numpy()
    return info


def main(request_path: str) -> None:
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    request = json.loads(Path(request_path).read_text())
    work = Path(request["work"])
    with np.load(work / "inputs.npz") as npz:
        inputs = {k: npz[k] for k in npz.files}
    calibration = inputs.pop("calibration")
    arrays: dict[str, np.ndarray] = {}
    results: dict = {"transformers": transformers.__version__, "texts": {}}
    model, processor = build(request["build"], calibration)
    run_items(model, processor, inputs, arrays, results["texts"])
    run_batch(model, processor, [inputs[k] for k in request["batch"]], arrays)
    results["pipeline"] = run_pipeline(model, processor, inputs, request["pipeline"])
    load_inputs = {k: inputs[k] for k in request["load_inputs"]}
    results["loaded"] = load_others(request["load"], load_inputs, arrays)
    np.savez(work / "results.npz", **arrays)
    (work / "results.json").write_text(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1])
