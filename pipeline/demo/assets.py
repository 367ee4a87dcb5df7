"""What `make demo` needs on a machine with no model hub and no data: built once.

`.demo/corpus/`: speech-like synthetic audio in several formats and sample rates,
with reference texts in `manifest.jsonl` and a few broken files (and one manifest
entry naming a file that does not exist). `.demo/models/wav2vec2-tiny/`: a tiny
random-init wav2vec2 CTC checkpoint with an offline tokenizer, loaded through the
same code path a hub id takes. Its transcripts are noise: the demo shows the
pipeline, not a model.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.demo.corpus import build_files_corpus
from pipeline.demo.tiny_models import build_tiny_ctc

DEMO_ITEMS = 120


def build_demo_assets(folder: str | Path) -> str:
    """Create the demo corpus and model under `folder` unless they are already there."""
    root = Path(folder)
    corpus, model = root / "corpus", root / "models" / "wav2vec2-tiny"
    made = []
    if not (corpus / "manifest.jsonl").exists():
        items = build_files_corpus(
            str(corpus), n_items=DEMO_ITEMS, seed=7, broken=True, manifest="jsonl"
        )
        made.append(f"corpus of {len(items)} items in {corpus}")
    if not (model / "config.json").exists():
        build_tiny_ctc(str(model), arch="wav2vec2", seed=7)
        made.append(f"tiny random-init wav2vec2 CTC model in {model}")
    return "demo assets: " + ("built " + "; ".join(made) if made else f"already in {root}")
