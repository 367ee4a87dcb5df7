"""Too many failures: a run whose items mostly failed must not look like a success.

`run` exits with code 4 when more than `runtime.max_error_share` of this run's items
failed (after everything was written), and prints the most common error codes of
this run with one example each, so a wrong spec (the audio column misnamed, the
wrong format) is seen at once instead of as a table full of error rows.
"""

from __future__ import annotations

from collections import Counter

from pipeline.io.tables import read_table

EXIT_TOO_MANY_ERRORS = 4


def too_many_errors(items: int, failed: int, max_share: float) -> bool:
    """More than `max_share` of this run's `items` failed (a run with no items never did)."""
    return items > 0 and failed / items > max_share


def top_errors(fs, root: str, run_id: str, n: int = 5) -> list[tuple[str, int, str]]:
    """This run's `n` most common error codes: (code, rows, one example "where: message")."""
    import pyarrow.compute as pc

    errors = read_table(fs, root, "errors")
    if errors is None:
        return []
    rows = errors.filter(pc.equal(errors.column("run_id"), run_id)).to_pylist()
    counts = Counter(r["error_code"] for r in rows)
    examples: dict[str, str] = {}
    for r in rows:
        where = r["source_uri"] + (f" [{r['member']}]" if r["member"] else "")
        examples.setdefault(r["error_code"], f"{where}: {r['error_message']}")
    return [(code, count, examples[code]) for code, count in counts.most_common(n)]


def failure_report(items: int, failed: int, max_share: float, top: list) -> str:
    lines = [
        f"audiobatch: {failed:,} of {items:,} items of this run failed, more than "
        f"runtime.max_error_share={max_share:g} (exit code {EXIT_TOO_MANY_ERRORS}); "
        "everything was written. Most common errors:"
    ]
    lines += [f"  {code} x{count:,}, e.g. {example}" for code, count, example in top]
    return "\n".join(lines)
