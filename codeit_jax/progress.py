"""Progress reporting that suits where the output goes.

On a terminal a tqdm bar redraws one line in place. In a file (a launcher's log, ``nohup``,
a cluster's job output) those redraws become thousands of carriage-return fragments, so there
the same calls write one plain log line at most every ``interval_s`` seconds (and one at the
end): ``training epoch 0: 120/400 steps (30%), 41 s, loss=2.3104``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from absl import logging

T = TypeVar("T")

#: Seconds between two progress lines written to a file.
FILE_INTERVAL_S = 30.0


def is_terminal() -> bool:
    """Whether stderr (where progress goes) is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class LineProgress:
    """The file-friendly stand-in for a tqdm bar: the same ``update``/``set_postfix``/``close``
    calls, written as occasional log lines."""

    def __init__(
        self, total: int | None, desc: str, unit: str, interval_s: float = FILE_INTERVAL_S
    ) -> None:
        self.total, self.desc, self.unit, self.interval_s = total, desc, unit, interval_s
        self.n = 0
        self.postfix = ""
        self.begin = self.last = time.monotonic()
        self.closed = False

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            self.last = now
            self._write()

    def _write(self) -> None:
        done = f"{self.n}/{self.total} {self.unit}s" if self.total else f"{self.n} {self.unit}s"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        elapsed = time.monotonic() - self.begin
        logging.info("%s: %s%s, %.0f s%s", self.desc, done, share, elapsed, extra)

    def close(self) -> None:
        """One last line when the work took long enough to have been reported at all."""
        if not self.closed and time.monotonic() - self.begin >= self.interval_s:
            self._write()
        self.closed = True


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Any:
    """A tqdm bar on a terminal, a `LineProgress` elsewhere; a silent one when not enabled."""
    if enabled and is_terminal():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return LineProgress(total, desc, unit, FILE_INTERVAL_S if enabled else float("inf"))


def track(items: Iterable[T], desc: str, unit: str = "it", enabled: bool = True) -> Iterator[T]:
    """``items`` with progress (see `progress_bar`)."""
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    bar = progress_bar(total, desc, unit, enabled)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
