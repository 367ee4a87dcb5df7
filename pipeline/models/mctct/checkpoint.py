"""Reading an M-CTC-T checkpoint folder (or hub repo) into our implementation.

A checkpoint is what transformers' `MCTCTForCTC.save_pretrained` and
`MCTCTProcessor.save_pretrained` wrote: `config.json`, `preprocessor_config.json`, the
char tokenizer (`vocab.json`, `tokenizer_config.json`, ...) and the weights. Weights
come from safetensors where the folder has them; a pickle-only checkpoint
(`pytorch_model.bin`, as older hub uploads are) is read with `torch.load(weights_only=
True)`, which refuses anything but tensors and plain containers, and the log says so.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import torch

from pipeline.errors import ModelLoadError
from pipeline.models.mctct.config import read_config
from pipeline.models.mctct.modeling import MctctForCtc

log = logging.getLogger(__name__)

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_HUB_FILES = ["*.json", "*.txt"]


def hub_folder(repo: str, revision: str | None) -> Path:
    """Download a hub repo's M-CTC-T files (safetensors if it has them) into the HF cache."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(
                repo, revision=revision, allow_patterns=[*_HUB_FILES, "*.safetensors"]
            )
        )
        if not any(folder.glob("*.safetensors")):
            folder = Path(
                snapshot_download(
                    repo, revision=revision, allow_patterns=[*_HUB_FILES, "pytorch_model*.bin"]
                )
            )
    except Exception as exc:  # the hub client raises many unrelated types (HTTP, offline, ...)
        raise ModelLoadError(
            f"model {repo!r}: cannot download it from the Hugging Face hub"
            f"{f' at revision {revision!r}' if revision else ''} ({type(exc).__name__}: {exc})"
        ) from exc
    return folder


def read_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict, on the CPU, as stored (dtype unchanged)."""
    for filename in SAFETENSORS:
        if (folder / filename).is_file():
            return _read_files(folder, filename, name, _read_safetensors)
    for filename in PICKLE:
        if (folder / filename).is_file():
            log.warning(
                "model %s has no safetensors weights; reading %s (a pickle) with "
                "torch.load(weights_only=True)",
                name,
                filename,
            )
            return _read_files(folder, filename, name, _read_pickle)
    raise ModelLoadError(
        f"model {name!r}: no weights in {str(folder)!r} (looked for "
        f"{', '.join(SAFETENSORS + PICKLE)})"
    )


def _read_files(folder: Path, filename: str, name: str, read) -> dict[str, torch.Tensor]:
    """One weights file, or every shard an `.index.json` names."""
    try:
        if not filename.endswith(".index.json"):
            return read(folder / filename)
        shards = sorted(set(json.loads((folder / filename).read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(read(folder / shard))
        return weights
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"model {name!r}: cannot read its weights {filename} ({type(exc).__name__}: {exc})"
        ) from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused something: not plain tensors
        raise ValueError(f"refused by torch.load(weights_only=True): {exc}") from exc


def load_network(folder: Path, name: str, device: str, dtype: torch.dtype) -> MctctForCtc:
    """Build the network from `config.json` and load its weights, strictly.

    Extra tensors in the checkpoint (e.g. a language-id head) are ignored with a log
    line; a missing or mis-shaped one is an error.
    """
    config = read_config(folder)
    with torch.device("meta"):  # no throwaway random init of a 1B-parameter model
        model = MctctForCtc(config)
    weights = read_weights(folder, name)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    wrong = sorted(k for k in expected if k in weights and weights[k].shape != expected[k].shape)
    if missing or wrong:
        shapes = [f"{k} {tuple(weights[k].shape)} != {tuple(expected[k].shape)}" for k in wrong]
        raise ModelLoadError(
            f"model {name!r}: its weights do not fit its config.json (missing: "
            f"{', '.join(missing[:5]) or 'none'}{' ...' if len(missing) > 5 else ''}; "
            f"shape mismatches: {', '.join(shapes[:5]) or 'none'})"
        )
    extra = sorted(set(weights) - set(expected))
    if extra:
        log.info(
            "model %s: ignoring %d tensors our CTC model does not use: %s",
            name,
            len(extra),
            extra[:5],
        )
    state = {k: weights[k].to(dtype) for k in expected}
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()
