"""The interactive prompt of `audiobatch query OUTPUT`: statements end with `;` and may span
lines; `.tables`, `.schema NAME`, `.help`, `.quit`; history in ~/.audiobatch_history."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from pipeline.query.confine import QueryError
from pipeline.query.formats import render
from pipeline.query.run import run_statement
from pipeline.query.views import VIEWS

PROMPT, MORE = "audiobatch> ", "       ...> "
HELP = """Statements end with ';' and may span lines. Read-only: SELECT, DESCRIBE, SHOW, SUMMARIZE,
EXPLAIN. Commands: .tables  .schema NAME  .help  .quit (or Ctrl-D)"""


def shell(
    con,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
    limit: int = 1000,
) -> None:
    """Read statements with `read(prompt)` until EOF or `.quit`, writing each result or error
    with `write`; a failing statement never ends the session."""
    buffer: list[str] = []
    while True:
        try:
            line = read(MORE if buffer else PROMPT)
        except EOFError:
            return
        except KeyboardInterrupt:  # Ctrl-C drops the statement being typed, not the session
            buffer.clear()
            write("")
            continue
        if not buffer and line.strip().startswith("."):
            if not _command(con, line.strip(), write):
                return
            continue
        if line.strip():
            buffer.append(line)
        if buffer and buffer[-1].rstrip().endswith(";"):
            sql = "\n".join(buffer)
            buffer.clear()
            write(_answer(con, sql, limit))


def _answer(con, sql: str, limit: int) -> str:
    try:
        result, more = run_statement(con, sql, limit)
    except QueryError as exc:
        return f"error: {exc}"
    return render(result, "table", more=more).rstrip("\n")


def _command(con, line: str, write) -> bool:
    """Run one dot command; False when the session should end."""
    name, _, arg = line.partition(" ")
    if name in (".quit", ".exit"):
        return False
    if name == ".tables":
        write("  ".join(VIEWS))
    elif name == ".schema" and arg.strip():
        write(_answer(con, f'DESCRIBE "{arg.strip().replace(chr(34), "")}";', limit=10_000))
    elif name == ".help":
        write(HELP)
    else:
        write(f"error: unknown command {line!r}; {HELP.splitlines()[-1]}")
    return True


def interactive(con) -> None:
    """`shell` on the terminal, with line editing and a history file when readline exists."""
    try:
        import readline
    except ImportError:  # e.g. Windows: still usable, without history
        readline = None
    history = os.path.expanduser("~/.audiobatch_history")
    if readline is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
    print(f"audiobatch query: {', '.join(VIEWS)}\n{HELP}")
    try:
        shell(con)
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.set_history_length(2000)
                readline.write_history_file(history)
