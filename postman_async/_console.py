"""Terminal output for the CLI: rich tables and live progress when the ``cli`` extra is
installed, plain text otherwise, and JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

try:  # the optional "cli" extra
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
except ImportError:  # pragma: no cover - exercised only without the extra
    Console = None  # type: ignore[assignment,misc]


class Output:
    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        # Piped output is read by scripts and logs: don't fold IDs to a guessed 80 columns.
        width = None if sys.stdout.isatty() else 200
        self._console = (
            Console(stderr=False, highlight=False, width=width) if Console is not None else None
        )
        self._err = Console(stderr=True, highlight=False) if Console is not None else None

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str))

    def line(self, text: str) -> None:
        """A human line (on stderr in JSON mode, so stdout stays machine-readable)."""
        target = sys.stderr if self.as_json else sys.stdout
        print(text, file=target, flush=True)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self._console is not None:
            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(*(str(cell) for cell in row))
            self._console.print(table)
            return
        print(title)
        widths = [
            max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(str(c))
            for i, c in enumerate(columns)
        ]
        print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))

    @contextmanager
    def live(self, render: Callable[[], str]) -> Iterator[Callable[[], None]]:
        """A status line redrawn on each call of the yielded ``refresh`` (stderr)."""
        if self.as_json or self._err is None or not self._err.is_terminal:
            last = [""]

            def plain_refresh() -> None:
                text = render()
                if text != last[0] and not self.as_json:
                    last[0] = text
                    print(text, file=sys.stderr, flush=True)

            yield plain_refresh
            return
        with Live(render(), console=self._err, refresh_per_second=8, transient=False) as live:
            yield lambda: live.update(render())
