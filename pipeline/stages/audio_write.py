"""Writing synthesized audio to storage, one file per item under a deterministic key.

Runs as CPU tasks between the synthesis actor pool and the round-trip ASR, so the
GPU never waits on encoding or PUTs. The key comes from the text id (made safe for
a path, see `pipeline.io.audio_out.audio_key`), so a re-run of the same item writes
the same object again instead of a second copy. The stage adds `{task}__audio_uri`.
A write that fails fails the row (row-level, like the synthesis itself): a syntheses
row must point at its audio.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.columns import AUDIO, SAMPLE_RATE, TEXT_ID, task_column
from pipeline.contract import audio_write_columns
from pipeline.errors import ErrorCode, RowError
from pipeline.spec import StorageOptions
from pipeline.stages.base import Stage, StageOutput


class AudioWriteStage(Stage):
    """Encode each row's `audio` as `fmt` and write it under `root`."""

    def __init__(self, task: str, root: str, storage: StorageOptions, fmt: str = "flac") -> None:
        from pipeline.io.storage import filesystem

        self.synth_task = task
        self.name = f"{task}_write"
        self.root = root.rstrip("/")
        self.fmt = fmt
        self._fs, _ = filesystem(self.root, storage)

    def reads(self) -> Sequence[str]:
        return audio_write_columns(self.synth_task).reads

    def adds(self) -> pa.Schema:
        return pa.schema([pa.field(task_column(self.synth_task, "audio_uri"), pa.string())])

    def process(self, rows: pa.Table) -> StageOutput:
        import numpy as np

        from pipeline.io.audio_out import audio_key, encode_audio, write_audio

        uris: list[str | None] = []
        out = StageOutput()
        rates = rows.column(SAMPLE_RATE).to_pylist()
        ids = rows.column(TEXT_ID).to_pylist()
        audio = rows.column(AUDIO)
        for i, (rate, text_id) in enumerate(zip(rates, ids, strict=True)):
            uri = audio_key(self.root, text_id, self.fmt)
            try:
                samples = np.asarray(audio[i].values.to_numpy(zero_copy_only=False), np.float32)
                write_audio(self._fs, uri, encode_audio(samples, rate, self.fmt))
            # Storage backends raise many unrelated types; one failed PUT fails one item.
            except Exception as exc:
                out.errors[i] = RowError(
                    ErrorCode.WRITE_FAILED,
                    f"writing {uri} failed: {type(exc).__name__}: {exc}",
                )
                uris.append(None)
                continue
            uris.append(uri)
        out.columns[task_column(self.synth_task, "audio_uri")] = uris
        return out
