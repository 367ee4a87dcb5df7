"""Speaker embeddings named in a synthesis spec: a `.npy` file or a table of x-vectors.

- `.npy`: one embedding `[dim]` (speaker "0") or a matrix `[speakers, dim]` whose row
  index is the speaker id ("0", "1", ...);
- JSONL / CSV / TSV / Parquet: a speaker id column (`speaker` or `id`) and an
  embedding column (`embedding`, `speaker_embedding` or `xvector`, a list of floats;
  in CSV a JSON list).

Every embedding must have the model's dimension (512 for SpeechT5) and be finite: a
file that breaks this is refused as a whole when the stage loads, before any text is
synthesized, so a typo never turns into thousands of failed rows.
"""

from __future__ import annotations

import io
import json

import numpy as np

from pipeline.errors import InputError
from pipeline.spec import StorageOptions

_ID_COLUMNS = ("speaker", "id", "speaker_id")
_VECTOR_COLUMNS = ("embedding", "speaker_embedding", "xvector")


def load_speakers(uri: str, storage: StorageOptions, dim: int) -> dict[str, np.ndarray]:
    """Speaker id -> float32 embedding of length `dim`; raise InputError naming the problem."""
    if uri.lower().endswith(".npy"):
        speakers = _from_npy(uri, storage)
    else:
        speakers = _from_table(uri, storage)
    if not speakers:
        raise InputError(f"speaker_embeddings {uri}: holds no speakers")
    for speaker, vector in speakers.items():
        if vector.shape != (dim,) or not np.isfinite(vector).all():
            raise InputError(
                f"speaker_embeddings {uri}: speaker {speaker!r} has shape {vector.shape} or "
                f"non-finite values; the model needs {dim} finite floats (an x-vector)"
            )
    return speakers


def _from_npy(uri: str, storage: StorageOptions) -> dict[str, np.ndarray]:
    from pipeline.io.storage import filesystem

    try:
        fs, path = filesystem(uri, storage)
        with fs.open(path, "rb") as handle:
            matrix = np.load(io.BytesIO(handle.read()), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"speaker_embeddings {uri}: cannot read it ({exc})") from None
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise InputError(
            f"speaker_embeddings {uri}: expected [dim] or [speakers, dim], got {matrix.shape}"
        )
    return {str(i): row for i, row in enumerate(matrix)}


def _from_table(uri: str, storage: StorageOptions) -> dict[str, np.ndarray]:
    from pipeline.io.manifest import read_table_file

    table = read_table_file(uri, storage, what="speaker_embeddings")
    names = table.column_names
    id_col = next((c for c in _ID_COLUMNS if c in names), None)
    vec_col = next((c for c in _VECTOR_COLUMNS if c in names), None)
    if id_col is None or vec_col is None:
        raise InputError(
            f"speaker_embeddings {uri}: needs a speaker id column ({' / '.join(_ID_COLUMNS)}) "
            f"and an embedding column ({' / '.join(_VECTOR_COLUMNS)}); has {', '.join(names)}"
        )
    speakers: dict[str, np.ndarray] = {}
    for row in table.select([id_col, vec_col]).to_pylist():
        speaker, values = row[id_col], row[vec_col]
        if speaker is None or values is None:
            raise InputError(f"speaker_embeddings {uri}: a row has no speaker id or no embedding")
        if isinstance(values, str):
            try:
                values = json.loads(values)
            except ValueError:
                raise InputError(
                    f"speaker_embeddings {uri}: speaker {speaker!r}'s embedding is not a JSON list"
                ) from None
        key = str(speaker)
        if key in speakers:
            raise InputError(f"speaker_embeddings {uri}: speaker {key!r} appears twice")
        try:
            speakers[key] = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(
                f"speaker_embeddings {uri}: speaker {key!r}'s embedding is not a list of numbers"
            ) from None
    return speakers
