"""The one console setting of every ``skelray`` command: how wide output is.

On a terminal, rich uses the terminal's width. Elsewhere (a file, a pipe, a CI log, a test's
captured output) rich falls back to 80 columns and cuts table cells to fit ("run-0…",
"2.44e-…"). There is no screen to fit there, and a log viewer wraps lines itself, so output
that is not a terminal is laid out ``LOG_WIDTH`` columns wide: tables keep their natural
width and lines are not wrapped. ``COLUMNS`` applies on a terminal only: shells and tools pass
a stale ``COLUMNS=80`` on to the processes they start (pytest's subprocesses get one), which
would cut tables in files again.

The choice is made at each print, not when the console is made, so a console made at import
time follows where its stream goes later (a test's captured output, a redirected stdout).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions

# Wide enough that no table of skelray's is cut; a log line of this length is not wrapped.
LOG_WIDTH = 1000


class _Console(Console):
    def __init__(self, *args: Any, width: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._asked_width = width  # rich's own _width also takes COLUMNS in

    def _dimensions(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._asked_width is None and not self.is_terminal:
            return ConsoleDimensions(LOG_WIDTH, size.height)
        return size

    size = property(_dimensions, Console.size.fset)  # type: ignore[assignment,attr-defined]


def make_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A rich console for a command's output (``stderr=True``: for its errors) that is not cut
    to 80 columns when it is not a terminal. ``kwargs`` go to ``rich.console.Console`` (an
    explicit ``width`` is kept everywhere)."""
    return _Console(stderr=stderr, **kwargs)
