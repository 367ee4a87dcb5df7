"""The domain exceptions and the per-row error codes written to the `errors` table.

Job-level problems (a bad spec, an unreachable input) raise an `AudiobatchError`
subclass and stop the job before work starts. Problems with one item never raise
out of a stage: they become a `RowError` on that row and the row flows on to the
`errors` table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.StrEnum):
    """Why one item failed. Stable strings: people filter the errors table by them."""

    READ_FAILED = "read_failed"  # the bytes could not be fetched from storage
    SHARD_CORRUPT = "shard_corrupt"  # a tar or parquet shard could not be parsed
    # The spec cannot read this shard (an audio column it does not have): fixed by changing
    # the spec, not the data. One row per shard (member ""), so a later run with a fixed spec
    # can tell it from the shard's items.
    CONFIG_ERROR = "config_error"
    MISSING_AUDIO = "missing_audio"  # a manifest or shard entry names audio that is not there
    AMBIGUOUS_SAMPLE = "ambiguous_sample"  # a WebDataset sample holds several audio members
    EMPTY = "empty"  # zero bytes, or decodes to zero samples
    TOO_LARGE = "too_large"  # more bytes than `decode.max_file_mb`
    TOO_LONG = "too_long"  # the header declares more than `decode.max_duration_s`
    TRUNCATED = "truncated"  # decodes to much less than the header declares
    UNDECODABLE = "undecodable"  # no backend could read it (corrupt or unknown format)
    NON_FINITE = "non_finite"  # NaN or Inf samples
    MODEL_FAILED = "model_failed"  # the model raised on this item (alone, not its batch)
    SCORE_FAILED = "score_failed"  # scoring raised on this item
    # a text row is malformed (no id, bad speaker embedding), a manifest line cannot be
    # parsed, or a manifest path is refused (a NUL byte, outside the prefix, /proc, /sys, /dev)
    INVALID_INPUT = "invalid_input"
    # a text id seen earlier in the same table; a manifest path naming a file named before
    DUPLICATE_ID = "duplicate_id"
    WRITE_FAILED = "write_failed"  # an output file (synthesized audio) could not be written


@dataclass(frozen=True)
class RowError:
    """One item's failure: which code, and a message a person can act on."""

    code: ErrorCode
    message: str


class AudiobatchError(Exception):
    """Base of everything audiobatch raises on purpose. `exit_code` is what the
    command exits with (README "Exit codes"): 2 for a spec, config or input problem."""

    exit_code = 2


class SpecError(AudiobatchError):
    """The job spec is invalid: the message names the field and what was expected."""


class InputError(AudiobatchError):
    """The input cannot be listed or read at all (missing prefix, no audio found)."""


class ModelLoadError(AudiobatchError):
    """A model or its processor could not be resolved or loaded."""

    @classmethod
    def refused_pickle(cls, model: str) -> ModelLoadError:
        """A pickle checkpoint whose unpickling would run code or build objects, refused."""
        return cls(
            f"model {model!r}: its pickle weights (pytorch_model.bin) hold more than tensors "
            "and were refused by torch.load(weights_only=True), since unpickling them could run "
            "code; use a safetensors copy of the checkpoint from a source you trust"
        )


class AudioDecodeError(AudiobatchError):
    """Audio could not be decoded; says which backends were tried and why each failed."""

    def __init__(self, code: ErrorCode, message: str, attempts: tuple[str, ...] = ()):
        detail = f"{message}" + (f" (tried: {'; '.join(attempts)})" if attempts else "")
        super().__init__(detail)
        self.code = code
        self.attempts = attempts

    def as_row_error(self) -> RowError:
        return RowError(self.code, str(self))


class StorageError(AudiobatchError):
    """Object storage did not answer or refused us: the message names the URI and what to
    check. Exit code 5, so schedulers can tell an outage from a bad spec."""

    exit_code = 5
