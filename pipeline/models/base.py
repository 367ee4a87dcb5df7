"""The adapter protocol: what a model stage needs from a loaded model, whatever its kind.

A kind's loader (`load_ctc`, `load_classifier`, `load_whisper`, `load_speecht5`) takes
the task spec, the storage options and a device, resolves the source through
`pipeline/models/hub.py`, and returns an adapter. The stage
(`pipeline/stages/model.py`) owns checks, micro-batching, retries and columns, and sees
the model only through this protocol, so a new architecture of an existing kind is a
new adapter and a branch in its loader, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ModelAdapter(Protocol):
    """A loaded model. `predict` returns one result per input, each exactly what that
    input would give alone (a result must not depend on what else was in its batch)."""

    name: str  # the model URI as given in the spec (recorded in the output)
    sampling_rate: int  # the rate its input audio must be at (its output's, for synthesis)

    @property
    def min_samples(self) -> int:
        """The fewest input samples that give an output (0 when any input does)."""
        ...

    def cost(self, samples: int) -> int:
        """The padded size an input of `samples` samples takes in a micro-batch."""
        ...

    def predict(self, batch: list) -> Sequence[Any]:
        """One result per input of `batch`, in order."""
        ...
