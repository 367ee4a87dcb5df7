"""Random-init M-CTC-T checkpoints written by our own port, in the published format.

`build_mctct` writes what `MCTCTForCTC.save_pretrained` + `MCTCTProcessor.save_pretrained`
would: `config.json` (`model_type: mctct`), `preprocessor_config.json`, a character
tokenizer and `model.safetensors` with the checkpoint's tensor names. Tiny ones (the
default) serve the tests; the GPU benchmark builds one of the published size.

The weights are redrawn so that a tiny model is a sensitive test subject: scales that
make attention and its positional term matter, a non-identity input affine, and a CTC
head whitened on calibration audio so its argmax is decisive and follows the input
(see `pipeline/testing/tiny_ctc.py` for why a random head needs that). The two helpers
work on any module with the checkpoint's parameter names, so the reference test's
transformers 4.57.6 model is drawn the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.models.mctct.config import FeatureConfig, MctctConfig
from pipeline.testing.threads import one_thread

PAD, UNK, BOS, EOS, DELIMITER = "<pad>", "<unk>", "<s>", "</s>", "|"
# Unnormalised characters, as the real vocabulary has them (case and punctuation kept).
CHARS = "abcdefghijklmnopqrstuvwxyzAEIOST.,'"

# Tiny widths; the real front end (80 mel bins, kernel 7, stride 3). 40 positions
# (1.2 s) so that ordinary test clips exceed the relative-position table.
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
}


def vocabulary(chars: str = CHARS) -> dict[str, int]:
    """Special tokens first, with the ids the published config names (`<s>` 0, the blank
    `<pad>` 1, `</s>` 2), then `<unk>`, the word delimiter and `chars`."""
    tokens = [BOS, PAD, EOS, UNK, DELIMITER] + [
        c for c in dict.fromkeys(chars) if c not in (BOS, PAD, EOS, UNK, DELIMITER)
    ]
    return {t: i for i, t in enumerate(tokens)}


def redraw_weights(model: torch.nn.Module, seed: int) -> None:
    """Redraw every parameter by its checkpoint name (see the module docstring)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, device=device)
            if name.endswith("singleton_weight"):
                p.fill_(1.25)
            elif name.endswith("singleton_bias"):
                p.fill_(0.3)  # nonzero: padded frames would leak through it
            elif name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "distance_embedding" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)


def decisive_head(
    head: torch.nn.Linear, hidden: torch.Tensor, vocab: dict[str, int], seed: int
) -> None:
    """Redraw the CTC head on `hidden` [frames, width] from calibration audio: whitened
    input, a large scale, biases that make blanks and word breaks common."""
    mean, spread = hidden.mean(0), hidden.std(0) + 1e-3
    gen = torch.Generator(hidden.device).manual_seed(seed + 1)
    with torch.no_grad():
        weight = torch.randn(head.weight.shape, generator=gen, device=hidden.device)
        weight = weight * (3.0 / head.in_features**0.5)
        weight = weight / spread
        bias = -(weight @ mean)
        bias[vocab[PAD]] += 6.0
        bias[vocab[DELIMITER]] += 4.0
        for token in (UNK, BOS, EOS):  # keep special tokens out of transcripts
            bias[vocab[token]] -= 10.0
        head.weight.copy_(weight)
        head.bias.copy_(bias)


def calibration_audio(seed: int, rate: int = 16_000) -> np.ndarray:
    """A few seconds of speech-like audio to calibrate the head on."""
    from pipeline.testing.synth import sentences, speechlike

    return speechlike(" ".join(sentences(3, seed)), rate, seed)


def build_mctct(
    path: str,
    *,
    seed: int = 0,
    chars: str = CHARS,
    config: dict | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> str:
    """Write a random-init M-CTC-T checkpoint to the folder `path`; return `path`.

    `config` overrides `MctctConfig` fields (default: `TINY`; `{}` gives the published
    size). The same seed gives the same weights on the same `device` (where the model
    is drawn: a real-size one draws in seconds on a GPU, minutes on a CPU).
    """
    from safetensors.torch import save_file

    from pipeline.models.mctct.features import MfscFeatures
    from pipeline.models.mctct.modeling import MctctForCtc

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(chars)
    cfg = replace(
        MctctConfig(),
        **(TINY if config is None else config),
        vocab_size=len(vocab),
        pad_token_id=vocab[PAD],
    )
    with torch.device("meta"):  # redraw_weights sets every value
        model = MctctForCtc(cfg).eval()
    model = model.to_empty(device=device)
    redraw_weights(model, seed)
    features, lengths = MfscFeatures(FeatureConfig(), device)([calibration_audio(seed)])
    captured: list[torch.Tensor] = []
    hook = model.ctc_head.register_forward_pre_hook(lambda _m, a: captured.append(a[0][0]))
    with torch.inference_mode(), one_thread():  # the same sums whatever threads the caller set
        model(features, lengths)
    hook.remove()
    decisive_head(model.ctc_head, captured[0], vocab, seed)
    state = {k: v.to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_configs(out, cfg, vocab)
    return str(out)


def _write_configs(out: Path, cfg: MctctConfig, vocab: dict[str, int]) -> None:
    from transformers import Wav2Vec2CTCTokenizer

    model_json = {
        "model_type": "mctct",
        "architectures": ["MCTCTForCTC"],
        **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "bos_token_id": vocab[BOS],
        "eos_token_id": vocab[EOS],
    }
    (out / "config.json").write_text(json.dumps(model_json, indent=2))
    extractor_json = {
        "feature_extractor_type": "MCTCTFeatureExtractor",
        "processor_class": "MCTCTProcessor",
        "padding_side": "right",
        "return_attention_mask": False,
        **asdict(FeatureConfig()),
    }
    (out / "preprocessor_config.json").write_text(json.dumps(extractor_json, indent=2))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(out / "vocab.json"),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        word_delimiter_token=DELIMITER,
        do_lower_case=False,
    )
    tokenizer.save_pretrained(str(out))
