"""Terminal output for the CLI: rich tables and live progress on a terminal (with the ``cli``
extra), plain text when piped, JSON or TSV for scripts."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._redact import redact_text

try:  # the optional "cli" extra
    from rich import box
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
#: Rates shown are measured over at most this many whole seconds.
RATE_WINDOW = 5
#: ... less this much (s), for the event loop's lag between a call's token and its count.
RATE_SLACK = 0.05


class RecentRate:
    """A counter's rate per second over the last whole seconds (at most ``window``), from
    samples taken whenever :meth:`update` is called.

    Shown for calls, it never exceeds the budget: the count is taken over less than ``n``
    whole seconds and divided by ``n``, and no sliding second holds more than ``rate`` calls,
    so ``n`` seconds hold at most ``n * rate``. (Dividing by the time elapsed instead shows
    ``13.3/s`` after 3 calls in 0.225 s.)"""

    def __init__(
        self,
        count: int = 0,
        *,
        window: int = RATE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.window = window
        self._started = clock()
        self._samples: deque[tuple[float, int]] = deque([(self._started, count)])
        #: the whole seconds the last rate was measured over
        self.seconds = 1

    def update(self, count: int) -> float:
        """Record ``count`` now; the rate over the last :attr:`seconds` seconds."""
        now = self._clock()
        self._samples.append((now, count))
        self.seconds = max(1, min(self.window, int(now - self._started)))
        start = now - self.seconds + RATE_SLACK
        while self._samples[0][0] < start:  # the sample just taken always stays
            self._samples.popleft()
        return max(0, count - self._samples[0][1]) / self.seconds


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
        """A titled table. IDs (a column named ``id``) are never wrapped nor truncated: on a
        terminal too narrow for every column, the other columns fold into one ``details``
        column beside the IDs. The title is a line of its own (it wraps only at the
        terminal's width, never at the table's)."""
        if self.fmt == "tsv":
            print("\t".join(columns))
            for row in rows:
                print("\t".join(str(cell).replace("\t", " ") for cell in row))
            return
        if self._console is not None:
            self._console.print(Text(title))
            table = _rich_table(columns, rows)
            unbounded = self._console.options.update(max_width=1_000_000)
            natural = self._console.measure(table, options=unbounded).maximum
            if "id" in columns and natural > self._console.width:
                table = _compact_table(columns, rows)
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
                # The first line after PLAIN_PROGRESS_EVERY s, when rates have been measured
                # (a line at once would only guess).
                last = [time.monotonic()]

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


def _id_column(table: Table, rows: Sequence[Sequence[Any]], index: int) -> None:
    """An ID column: as wide as its longest ID, never wrapped, never cut (a split ID is
    unusable)."""
    width = max([2, *(len(str(row[index])) for row in rows)])
    table.add_column("id", no_wrap=True, min_width=width, overflow="ignore")


def _rich_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for index, column in enumerate(columns):
        if column == "id":
            _id_column(table, rows, index)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))  # text, not markup
    return table


def _compact_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """The IDs in their own column; the other columns as ``name value`` pairs beside them."""
    index = list(columns).index("id")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    _id_column(table, rows, index)
    table.add_column("details", overflow="fold")
    for row in rows:
        details = "; ".join(
            f"{name} {cell}"
            for i, (name, cell) in enumerate(zip(columns, row, strict=True))
            if i != index and str(cell) != ""
        )
        table.add_row(Text(str(row[index])), Text(details))
    return table
