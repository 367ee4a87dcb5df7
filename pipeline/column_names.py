"""The names of the columns that flow between stages, and of a task's columns.

No imports: planning and `validate` use these without pyarrow (`pipeline/contract.py`).
`pipeline/columns.py` re-exports them beside the Arrow types.
"""

from __future__ import annotations

ITEM_ID = "item_id"
SOURCE_URI = "source_uri"
MEMBER = "member"
SHARD = "shard"
AUDIO_BYTES = "audio_bytes"
REFERENCE = "reference"
METADATA = "metadata"
INPUT_BYTES = "input_bytes"
START_S = "start_s"  # a segment's span in its file (NeMo offsets, lhotse supervisions)
END_S = "end_s"
# The file's channels a segment averages (lhotse supervisions of multi-channel recordings);
# null: every channel, downmixed.
CHANNELS = "channels"
# audio_bytes holds only the segment's span, cut by the read step (io/segments.py): decode
# reads it whole (start_s/end_s still say where it lies in its file).
SPAN_CUT = "span_cut"

AUDIO = "audio"
SAMPLE_RATE = "sample_rate"
DURATION_S = "duration_s"

ERROR_STAGE = "error_stage"
ERROR_CODE = "error_code"
ERROR_MESSAGE = "error_message"
ERROR_COLUMNS = (ERROR_STAGE, ERROR_CODE, ERROR_MESSAGE)
# `{task}__done`: an earlier run settled this task for the item; its stages pass the row
# through and the sink writes nothing for it (see io/completion.py).
TASK_DONE = "done"

# What the item's source (file or shard) looked like when read: its size and its etag or
# mtime (io/completion.py records them; a later run tells a changed source by them).
SOURCE_SIZE = "source_size"
SOURCE_VERSION = "source_version"

TEXT_ID = "text_id"
TEXT = "text"
SPEAKER = "speaker"
SPEAKER_EMBEDDING = "speaker_embedding"


def task_column(task: str, field: str) -> str:
    """The column a task's stage writes `field` to, e.g. `ctc__text`."""
    return f"{task}__{field}"
