"""Exactly once on Ray Data's checkpoints, with the skipping done by our own reader.

Ray 2.60's checkpointing has two halves. The write half (pending checkpoint -> data
files -> commit, and on the next run deleting the data files of any pending
checkpoint) is what makes a crashed write harmless; we keep it as is. The read half
filters already-written ids in an extra actor pool after the read, loading them with
a nested `ray.data.read_parquet`; on a small cluster (2 CPUs and one model actor)
the nested read and then the filter pool wait for CPUs the job has reserved, and a
re-run hangs. So our manager only cleans up, and returns no ids (Ray then adds no
filter); `committed_ids` gives the runner the done ids, and the read step skips them,
before fetching any bytes where it can.
"""

from __future__ import annotations

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.checkpoint.checkpoint_filter import IdColumnCheckpointManager

from pipeline.io.tables import parquet_files

PENDING_SUFFIX = ".pending.parquet"


class CleanupOnlyCheckpointManager(IdColumnCheckpointManager):
    """Deletes uncommitted writes (Ray's own clean-up) and leaves filtering to the reader."""

    def load_checkpoint(self, data_file_dir=None, data_file_filesystem=None):
        if data_file_dir is not None:
            self._clean_pending_checkpoints(data_file_dir, data_file_filesystem)
        return None, 0


def committed_ids(fs: pafs.FileSystem, path: str, id_column: str) -> np.ndarray:
    """Sorted ids (bytes) of every committed checkpoint file under `path`; empty if none."""
    files = [f for f in parquet_files(fs, path) if not f.endswith(PENDING_SUFFIX)]
    chunks = [
        pq.read_table(f, columns=[id_column], filesystem=fs).column(id_column).to_pylist()
        for f in files
    ]
    ids = [i for chunk in chunks for i in chunk]
    # Fixed-width bytes: ~24 bytes an id, and membership by binary search.
    return np.unique(np.array(ids, dtype="S")) if ids else np.array([], dtype="S1")
