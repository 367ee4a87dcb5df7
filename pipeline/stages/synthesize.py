"""Speech synthesis with SpeechT5: text rows in, audio columns and quality measures out.

Reads `text_id`, `text`, `speaker` and `speaker_embedding`. A row's voice is its own
embedding when it has one, else its speaker id looked up in the task's
`speaker_embeddings` (`pipeline/io/speakers.py`), else the task's default speaker. Adds the columns decode adds (`audio`, `sample_rate`, `duration_s`),
so an ASR stage can transcribe the result downstream, and per task:
`{task}__normalized_text` (what was spoken), `__n_frames`, `__runaway` (a piece hit
the length cap), `__empty` (every piece came out empty), `__model`, and signal measures
of the joined audio (`pipeline/metrics/signal.py`): `__chars_per_s`,
`__leading_silence_s`, `__trailing_silence_s`, `__silence_share` (internal: the pauses
between pieces count), `__clipping_share`, `__rms_dbfs`.

How a batch runs:
1. each text is normalised for speech (numbers, symbols, abbreviations spelled out) and
   cut into pieces of at most `max_chars` at sentence ends;
2. the pieces of all rows are sorted by length and decoded in micro-batches of
   `batch_pieces`; each piece has its own seed, from the task's seed, the text id and the
   piece's position, so an item's audio does not depend on its batch;
3. each row's pieces are joined with `pause_s` of silence between them.

An empty text (or one with nothing to say after normalisation) is an EMPTY error; a
bad embedding, an unknown speaker id, or no voice at all an INVALID_INPUT one; a
micro-batch that raises is retried piece by piece, and a piece that raises alone fails
its row (MODEL_FAILED).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.columns import (
    AUDIO,
    AUDIO_FIELDS,
    DURATION_S,
    SAMPLE_RATE,
    SPEAKER,
    SPEAKER_EMBEDDING,
    TEXT,
    TEXT_ID,
    task_column,
)
from pipeline.errors import ErrorCode, InputError, ModelLoadError, RowError
from pipeline.kinds.synthesize import SynthesizeTaskSpec
from pipeline.metrics.signal import measure, speaking_rate
from pipeline.models.speecht5 import SpeechT5Synthesizer, Synth, load_speecht5
from pipeline.spec import StorageOptions
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching
from pipeline.stages.model import ModelStage
from pipeline.text.speech import normalize_for_speech, split_sentences

_TASK_FIELDS = {
    "normalized_text": pa.string(),
    "n_frames": pa.int32(),
    "runaway": pa.bool_(),
    "empty": pa.bool_(),
    "model": pa.string(),
    "chars_per_s": pa.float64(),
    "leading_silence_s": pa.float64(),
    "trailing_silence_s": pa.float64(),
    "silence_share": pa.float64(),
    "clipping_share": pa.float64(),
    "rms_dbfs": pa.float64(),
}


@dataclass(frozen=True)
class Piece:
    """One sentence piece of row `row`: the `index`-th of its text."""

    row: int
    index: int
    text: str
    seed: int


def piece_seed(seed: int, text_id: str, index: int) -> int:
    """A 64-bit seed from the task seed, the text id and the piece's position (stable)."""
    digest = hashlib.sha256(f"{seed}\x00{text_id}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class SynthesizeStage(ModelStage):
    """Text to speech with a SpeechT5 checkpoint and its HiFi-GAN vocoder."""

    FIELDS = _TASK_FIELDS

    def __init__(
        self,
        spec: SynthesizeTaskSpec,
        storage: StorageOptions,
        default_speaker: np.ndarray | None = None,
    ) -> None:
        """`default_speaker` (512 floats) overrides what `spec` names for rows without one."""
        super().__init__(spec, storage)
        # Row-level errors (task None): the job's ASR tasks transcribe this stage's audio,
        # so an item it fails on is lost to every task, as a decode failure would be.
        self.task = None
        self._given_speaker = default_speaker

    def load_model(self, device: str) -> SpeechT5Synthesizer:
        return load_speecht5(self.spec, self.storage, device)

    def setup(self) -> None:
        dim = self.model.speaker_dim
        self.speakers, self.default_speaker = load_speaker_set(self.spec, self.storage, dim)
        if self._given_speaker is not None:
            self.default_speaker = _checked_speaker(np.asarray(self._given_speaker), dim)
            if self.default_speaker is None:
                raise ModelLoadError(f"the default speaker embedding must be {dim} finite floats")
        self._batching = Batching(
            max_items=self.spec.batch_pieces,
            what="piece",
            describe=lambda piece: f"sentence piece {piece.index}",
        )

    def adds(self) -> pa.Schema:
        return pa.schema([*AUDIO_FIELDS, *super().adds()])

    def process(self, rows: pa.Table) -> StageOutput:
        n = rows.num_rows
        ids = rows.column(TEXT_ID).to_pylist()
        texts = rows.column(TEXT).to_pylist()
        speakers = _speaker_rows(rows, n)
        names = rows.column(SPEAKER).to_pylist() if SPEAKER in rows.column_names else [None] * n
        errors: dict[int, RowError] = {}
        normalized: list[str | None] = [None] * n
        pieces: list[Piece] = []
        embeddings: dict[int, np.ndarray] = {}
        for i in range(n):
            prepared = self._prepare(ids[i], texts[i], speakers[i], names[i])
            if isinstance(prepared, RowError):
                errors[i] = prepared
                continue
            normalized[i], embeddings[i], parts = prepared
            pieces += [Piece(i, k, p, piece_seed(self.spec.seed, ids[i], k)) for k, p in parts]
        synths = self._synthesize(pieces, embeddings, errors)
        columns = self.empty_columns(n)
        per_row: dict[int, list[Synth]] = {}
        for piece, synth in zip(pieces, synths, strict=True):
            per_row.setdefault(piece.row, []).append(synth)  # pieces are in text order
        for i, parts in per_row.items():
            if i not in errors:
                for name, value in self._row_columns(parts, normalized[i]).items():
                    columns[name][i] = value
        columns[AUDIO] = _audio_array(columns[AUDIO])
        return StageOutput(columns=columns, errors=errors)

    def _prepare(self, text_id, text, speaker, name) -> tuple | RowError:
        """(normalised text, speaker embedding, [(index, piece)]) or why the row cannot go."""
        if text_id is None:
            return RowError(
                ErrorCode.INVALID_INPUT,
                "row has no text_id: its audio can be neither seeded nor named",
            )
        if text is None or not text.strip():
            return RowError(ErrorCode.EMPTY, "the text is empty: nothing to synthesize")
        normalized = normalize_for_speech(text, self.spec.language)
        if not any(c.isalnum() for c in normalized):
            return RowError(
                ErrorCode.EMPTY,
                f"the text has nothing to say after normalisation ({text[:80]!r})",
            )
        embedding = self._voice(speaker, name)
        if isinstance(embedding, RowError):
            return embedding
        parts = list(enumerate(split_sentences(normalized, self.spec.max_chars)))
        return normalized, embedding, parts

    def _voice(self, speaker, name) -> np.ndarray | RowError:
        """The row's own embedding, else its speaker id's, else the default speaker."""
        if speaker is not None:
            embedding = _checked_speaker(speaker, self.model.speaker_dim)
            if embedding is None:
                return RowError(
                    ErrorCode.INVALID_INPUT,
                    f"speaker_embedding has {len(speaker)} values or non-finite ones; "
                    f"{self.model.name} needs {self.model.speaker_dim} finite floats (an x-vector)",
                )
            return embedding
        if name is not None:
            if name not in self.speakers:
                where = self.spec.speaker_embeddings or "no speaker_embeddings file"
                return RowError(ErrorCode.INVALID_INPUT, f"speaker {name!r} is not in {where}")
            return self.speakers[name]
        if self.default_speaker is None:
            return RowError(
                ErrorCode.INVALID_INPUT,
                f"the row names no speaker and {self.spec.speaker_embeddings} holds "
                f"{len(self.speakers)}: set the task's `speaker` or a speaker per row",
            )
        return self.default_speaker

    def _synthesize(
        self, pieces: list[Piece], embeddings: dict[int, np.ndarray], errors: dict[int, RowError]
    ) -> list[Synth | None]:
        """Every piece through the model in length-sorted micro-batches, in input order."""
        return self.run_batched(
            pieces,
            lambda group: self.model.predict([(p.text, embeddings[p.row], p.seed) for p in group]),
            rows=[p.row for p in pieces],
            sizes=[self.model.cost(len(p.text)) for p in pieces],
            batching=self._batching,
            errors=errors,
        )

    def _row_columns(self, parts: list[Synth], normalized: str) -> dict:
        rate = self.model.sampling_rate
        pause = np.zeros(int(round(self.spec.pause_s * rate)), dtype=np.float32)
        chunks = [c for k, s in enumerate(parts) for c in ([pause] if k else []) + [s.waveform]]
        audio = np.concatenate(chunks).astype(np.float32, copy=False)
        signal = measure(audio, rate)
        values = {
            "normalized_text": normalized,
            "n_frames": sum(s.n_frames for s in parts),
            "runaway": any(s.runaway for s in parts),
            "empty": all(s.empty for s in parts),
            "model": self.model.name,
            "chars_per_s": speaking_rate(len(normalized), signal),
            "leading_silence_s": signal.leading_silence_s,
            "trailing_silence_s": signal.trailing_silence_s,
            "silence_share": signal.silence_share,
            "clipping_share": signal.clipping_share,
            "rms_dbfs": signal.rms_dbfs,
        }
        columns = {task_column(self.name, k): v for k, v in values.items()}
        return {**columns, AUDIO: audio, SAMPLE_RATE: rate, DURATION_S: len(audio) / rate}


def load_speaker_set(
    spec: SynthesizeTaskSpec, storage: StorageOptions, dim: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(speaker id -> embedding, default embedding) for the task.

    The default is `spec.speaker` looked up in `spec.speaker_embeddings`; else the file's
    only speaker; else, with no file, all zeros (SpeechT5 normalises it to a neutral,
    speaker-less input); else None, and every row must name its speaker.
    """
    uri = spec.speaker_embeddings
    if uri is None:
        if spec.speaker is not None:
            raise ModelLoadError(
                f"task {spec.task_name}: speaker {spec.speaker!r} is named but no "
                "speaker_embeddings file holds it; set speaker_embeddings"
            )
        return {}, np.zeros(dim, dtype=np.float32)
    from pipeline.io.speakers import load_speakers

    try:
        speakers = load_speakers(uri, storage, dim)
    except InputError as exc:
        raise ModelLoadError(f"task {spec.task_name}: {exc}") from None
    if spec.speaker is not None:
        if spec.speaker not in speakers:
            known = ", ".join(sorted(speakers)[:5])
            raise ModelLoadError(
                f"task {spec.task_name}: speaker {spec.speaker!r} is not in {uri} "
                f"(it holds {len(speakers)}, e.g. {known}; a .npy's speakers are its row indices)"
            )
        return speakers, speakers[spec.speaker]
    return speakers, next(iter(speakers.values())) if len(speakers) == 1 else None


def _checked_speaker(values, dim: int) -> np.ndarray | None:
    x = np.asarray(values, dtype=np.float32)
    return x if x.shape == (dim,) and np.isfinite(x).all() else None


def _speaker_rows(rows: pa.Table, n: int) -> list[np.ndarray | None]:
    """Per-row speaker embeddings (None: use the default); an absent column is all None."""
    if SPEAKER_EMBEDDING not in rows.column_names:
        return [None] * n
    column = rows.column(SPEAKER_EMBEDDING).combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return [
        np.asarray(column[i].values.to_numpy(zero_copy_only=False)) if valid[i] else None
        for i in range(n)
    ]


def _audio_array(values: list[np.ndarray | None]) -> pa.Array:
    """list<float32> from per-row arrays (None -> null) without a Python-level copy."""
    lengths = np.array([0 if v is None else len(v) for v in values], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = [v for v in values if v is not None]
    data = np.concatenate(flat).astype(np.float32) if flat else np.zeros(0, np.float32)
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(data), mask=mask)
