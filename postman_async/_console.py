"""Terminal output for the CLI: rich tables and live progress on a terminal (with the ``cli``
extra), plain text when piped, JSON or TSV for scripts."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._redact import redact_text

try:  # the optional "cli" extra
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text
except ImportError:  # pragma: no cover - exercised only without the extra
    Console = None  # type: ignore[assignment,misc]

#: Off a terminal, progress is a plain line on stderr at most this often (s).
PLAIN_PROGRESS_EVERY = 10.0
#: A connection retry or a 429 stays on the progress line this long (s).
TROUBLE_SHOWN_FOR = 10.0


class RecentTrouble(logging.Handler):
    """Keeps the session's latest "failed ..., retrying" or 429 line, so live progress shows
    connection retries while they happen (not only as a final error)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.text = ""
        self.at = -float("inf")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying in" in message:
            self.text, self.at = redact_text(message), time.monotonic()

    def note(self) -> str:
        if time.monotonic() - self.at > TROUBLE_SHOWN_FOR:
            return ""
        return f"  | {self.text}"


@contextmanager
def watching_trouble() -> Iterator[RecentTrouble]:
    """Collect the SDK's retry lines while a command runs."""
    logger = logging.getLogger("postman_async")
    handler, level = RecentTrouble(), logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.WARNING, logging.INFO))
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Output:
    """``fmt``: ``table`` (people), ``json`` or ``tsv`` (scripts). Human lines go to stderr
    in the script formats, so stdout stays machine-readable."""

    def __init__(self, *, as_json: bool = False, fmt: str = "table") -> None:
        self.fmt = "json" if as_json else fmt
        self._tty = sys.stdout.isatty()
        # Rich only on a terminal: piped output gets plain columns, no boxes, no folding.
        self._console = Console(highlight=False) if Console is not None and self._tty else None
        self._err = Console(stderr=True, highlight=False) if Console is not None else None

    @property
    def as_json(self) -> bool:
        return self.fmt == "json"

    @property
    def for_scripts(self) -> bool:
        return self.fmt != "table"

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str))

    def line(self, text: str) -> None:
        """A human line (on stderr in the script formats)."""
        print(text, file=sys.stderr if self.for_scripts else sys.stdout, flush=True)

    def plain(self, text: str) -> None:
        """A line for stdout whatever the format (IDs for a pipe)."""
        print(text, flush=True)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.fmt == "tsv":
            print("\t".join(columns))
            for row in rows:
                print("\t".join(str(cell).replace("\t", " ") for cell in row))
            return
        if self._console is not None:
            table = Table(title=Text(title), title_justify="left")
            for column in columns:
                table.add_column(column, no_wrap=column == "id")  # an ID split is unusable
            for row in rows:
                table.add_row(*(Text(str(cell)) for cell in row))  # text, not markup
            self._console.print(table)
            return
        print(title)
        widths = [
            max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(str(c))
            for i, c in enumerate(columns)
        ]
        print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    @contextmanager
    def live(self, render: Callable[[], str]) -> Iterator[Callable[[], None]]:
        """A status line redrawn on each call of the yielded ``refresh`` (on stderr), with the
        latest connection retry or 429 while it is recent. Off a terminal it is a plain line
        at most every ``PLAIN_PROGRESS_EVERY`` s, and none in the script formats."""
        with watching_trouble() as trouble:

            def line() -> str:
                return render() + trouble.note()

            if self.for_scripts or self._err is None or not self._err.is_terminal:
                last = [0.0]

                def plain_refresh() -> None:
                    now = time.monotonic()
                    if not self.for_scripts and now - last[0] >= PLAIN_PROGRESS_EVERY:
                        last[0] = now
                        print(line(), file=sys.stderr, flush=True)

                yield plain_refresh
                return
            # Text, not markup: "[sending]" is a phase, not a style tag. Redrawn 8 times a
            # second, so a retry shows even while nothing else moves.
            with Live(
                get_renderable=lambda: Text(line()),
                console=self._err,
                refresh_per_second=8,
                transient=True,
            ):
                yield lambda: None
            self._err.print(Text(render()))
