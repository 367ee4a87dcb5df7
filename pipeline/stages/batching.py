"""Micro-batching for model stages: length-sorted groups within a budget, and the one
"retry each item alone after its micro-batch failed" path.

Plain Python over the items it is given; the model call is a function passed in, so
this runs the same for CTC chunks, classifier windows, Whisper items and sentence
pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.errors import ErrorCode, RowError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    """Samples [start, stop) of row `row` of the batch: a CTC chunk or a classifier window.

    `left`/`right` are the stride samples at either end whose output is dropped (CTC
    chunking; 0 for windows)."""

    row: int
    start: int
    stop: int
    left: int = 0
    right: int = 0

    @property
    def samples(self) -> int:
        return self.stop - self.start


def micro_batches(
    lengths: Sequence[int], budget: int | None, max_items: int | None = None
) -> list[list[int]]:
    """Indices grouped shortest first, each group's padded size (longest x count) within
    `budget` (None: no budget) and at most `max_items` long (None: no limit).

    An item longer than the budget gets a group of its own. The sort is stable, so equal
    lengths keep their input order.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        over_budget = budget is not None and lengths[i] * (len(current) + 1) > budget
        if current and (over_budget or (max_items is not None and len(current) >= max_items)):
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


@dataclass(frozen=True)
class Batching:
    """How a stage cuts its items into micro-batches, and what it calls things in messages.

    `sizes[j]` is item j's padded cost (samples, frames, characters); see `micro_batches`
    for `budget` and `max_items`. `describe(item)` names one item in a failure message.
    """

    budget: int | None = None
    max_items: int | None = None
    what: str = "item"
    describe: Callable[[Any], str] = lambda item: "this item"


def run_batched(
    items: Sequence[T],
    predict: Callable[[list[T]], Sequence[Any]],
    *,
    rows: Sequence[int],
    sizes: Sequence[int],
    batching: Batching,
    errors: dict[int, RowError],
    model_name: str,
    stage_name: str,
) -> list[Any | None]:
    """`predict` over `items` in micro-batches; one result per item, in input order.

    A micro-batch that raises is retried item by item, so only the row (`rows[j]` is
    item j's row) whose item raises alone fails: it gets a MODEL_FAILED error in `errors`
    and None results, and its other items are not run again. `predict` may return device
    tensors; nothing here waits for them.
    """
    results: list[Any | None] = [None] * len(items)

    def failed(j: int, exc: Exception) -> None:
        message = f"{model_name} raised on {batching.describe(items[j])} alone: "
        errors[rows[j]] = RowError(
            ErrorCode.MODEL_FAILED, f"{message}{type(exc).__name__}: {exc}"[:1000]
        )

    for group in micro_batches(sizes, batching.budget, batching.max_items):
        outputs = batch_or_alone(
            group,
            lambda js: predict([items[j] for j in js]),
            failed,
            skip=lambda j: rows[j] in errors,  # another item of this row already failed
            what=f"{stage_name}: micro-batch of %d {batching.what}s",
        )
        for j, out in zip(group, outputs, strict=True):
            results[j] = out
    return results


def batch_or_alone(
    batch: Sequence[T],
    call: Callable[[list[T]], Sequence[Any]],
    failed: Callable[[T, Exception], None],
    *,
    skip: Callable[[T], bool] = lambda item: False,
    what: str = "batch of %d",
) -> list[Any | None]:
    """`call(batch)`, one result per member; if it raises, `call([member])` for each one.

    The one "retry each item alone" path of every model stage (and of Whisper's
    long-form decoding, whose batches are windows of items): a member that raises alone
    goes to `failed` and gets None, as does one that `skip` names; the others get their
    own result, so one bad item never costs its batch-mates their output. `what` (with a
    %d for the size) names the batch in the warning logged when it fails.
    """
    try:
        return list(call(list(batch)))
    except Exception as exc:  # the model may raise anything; isolate the item
        log.warning(what + " failed (%s); retrying one by one", len(batch), exc)
    results: list[Any | None] = []
    for member in batch:
        if skip(member):
            results.append(None)
            continue
        try:
            results.append(call([member])[0])
        except Exception as exc:
            failed(member, exc)
            results.append(None)
    return results
