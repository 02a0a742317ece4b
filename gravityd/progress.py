"""Progress bars for the long commands (simulate, eval, catalog load, import), from tqdm.

On a terminal: tqdm's bar, redrawn in place, shown only once a job has run `START_DELAY_S`, so
quick runs print nothing. Anywhere else (a pipe, a log file, CI): one plain line every
`LINE_INTERVAL_S` and a last one at the end, never a `\\r` frame that turns a log into one long
line. `TQDM_DISABLE=1` in the environment silences both (tqdm's own switch).
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["LINE_INTERVAL_S", "START_DELAY_S", "Progress", "Stages"]

START_DELAY_S = 1.0  # nothing is shown for jobs shorter than this
LINE_INTERVAL_S = 5.0  # seconds between two lines when the output is not a terminal
_BAR_INTERVAL_S = 0.1  # redraws of a terminal bar
_FALLBACK_COLUMNS = 80

_LINE_FORMAT = (
    "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)
_LINE_FORMAT_OPEN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # no total known


class _Lines(tqdm):
    """tqdm writing each display as its own line: readable in logs, no cursor movement.

    tqdm's documented way to change its output is to override `display`."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm asks to clear the bar: there is nothing to clear in a log
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        self.lines = getattr(self, "lines", 0) + 1
        return True

    def close(self) -> None:
        if not self.disable and getattr(self, "lines", 0) and self.last_print_n < self.n:
            self.display()  # the final count, when the last line was an interim one
        super().close()


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


class Progress:
    """A progress meter for one job of `total` steps (None when unknown), as a context manager.

    `update(n)` adds steps; `advance_to(n)` sets the count, for cores that report totals so far.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        file: TextIO | None = None,
        delay: float | None = None,
        interval: float | None = None,
    ) -> None:
        stream = sys.stderr if file is None else file
        delay = START_DELAY_S if delay is None else delay
        common: dict[str, Any] = {
            "total": total,
            "desc": desc,
            "unit": unit,
            "file": stream,
            "delay": delay,
            "unit_scale": False,
            "dynamic_ncols": True,
        }
        self.terminal = is_terminal(stream)
        if self.terminal:
            if _columns(stream) == 0:  # a terminal that reports no size: a fixed width
                common.update(dynamic_ncols=False, ncols=_FALLBACK_COLUMNS)
            self._bar: tqdm = tqdm(
                mininterval=_BAR_INTERVAL_S if interval is None else interval, **common
            )
        else:
            self._bar = _Lines(
                mininterval=LINE_INTERVAL_S if interval is None else interval,
                maxinterval=float("inf"),  # tqdm's monitor must not make lines more frequent
                bar_format=_LINE_FORMAT if total is not None else _LINE_FORMAT_OPEN,
                leave=False,  # the final line is written by _Lines.close, without a blank one
                **common,
            )

    @property
    def n(self) -> int:
        return int(self._bar.n)

    def set_total(self, total: int) -> None:
        """The total, once the job knows it."""
        if self._bar.total != total:
            self._bar.total = total
            if not self.terminal:
                self._bar.bar_format = _LINE_FORMAT

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def advance_to(self, n: int, postfix: str | None = None) -> None:
        if postfix is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)

    def write(self, line: str) -> None:
        """A line of its own (an error report) that does not break a bar being drawn."""
        if self.terminal:
            self._bar.write(line, file=self._bar.fp)  # clears the bar, writes, redraws it
        else:  # tqdm.write would also redraw, which is a whole line here
            self._bar.fp.write(line + "\n")
            self._bar.fp.flush()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Stages:
    """One Progress per stage, for a core that reports `(stage, done, total)` as it goes: a new
    stage name closes the previous meter and opens the next."""

    def __init__(self, file: TextIO | None = None, units: dict[str, str] | None = None) -> None:
        self._file = file
        self._units = units or {}
        self._stage: str | None = None
        self._current: Progress | None = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage != self._stage or self._current is None:
            self.close()
            self._stage = stage
            unit = self._units.get(stage, "it")
            self._current = Progress(total, stage, unit=unit, file=self._file)
        self._current.advance_to(done)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
