"""What `make demo` needs on a machine with no model hub and no data: built once.

`.demo/corpus/`: speech-like synthetic audio in several formats and sample rates,
with reference texts in `manifest.jsonl` and a few broken files (and one manifest
entry naming a file that does not exist). `.demo/models/`: tiny random-init
checkpoints of the real architectures with offline tokenizers (wav2vec2 CTC,
Whisper, AST), loaded through the same code path a hub id takes. Their outputs are
noise: the demo shows the pipeline, not a model.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_classifiers import build_tiny_ast
from pipeline.testing.tiny_ctc import build_tiny_ctc
from pipeline.testing.tiny_whisper import build_tiny_whisper

DEMO_ITEMS = 120


def build_demo_assets(folder: str | Path) -> str:
    """Create the demo corpus and model under `folder` unless they are already there."""
    root = Path(folder)
    corpus, models = root / "corpus", root / "models"
    made = []
    if not (corpus / "manifest.jsonl").exists():
        items = build_files_corpus(
            str(corpus), n_items=DEMO_ITEMS, seed=7, broken=True, manifest="jsonl"
        )
        made.append(f"corpus of {len(items)} items in {corpus}")
    builders = {
        "wav2vec2-tiny": lambda path: build_tiny_ctc(path, arch="wav2vec2", seed=7),
        "whisper-tiny": lambda path: build_tiny_whisper(path, seed=7),
        "ast-tiny": lambda path: build_tiny_ast(path, seed=7),
    }
    for name, build in builders.items():
        if not (models / name / "config.json").exists():
            build(str(models / name))
            made.append(f"tiny random-init {name} in {models / name}")
    return "demo assets: " + ("built " + "; ".join(made) if made else f"already in {root}")
