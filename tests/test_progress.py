"""Progress output: a bar on a terminal, occasional plain lines in a file."""

from __future__ import annotations

import io

import pytest
from absl import logging

from codeit_jax import progress


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    return fake


def test_in_a_file_progress_is_a_line_every_interval(clock, monkeypatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(progress, "is_terminal", lambda: False)
    monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
    bar = progress.progress_bar(100, "epoch 0", "step")
    assert isinstance(bar, progress.LineProgress)
    for k in range(100):
        clock.now = k * 1.0  # one step a second: a line every 30 steps
        bar.set_postfix(loss="1.5000")
        bar.update(1)
    bar.close()
    assert lines[0] == "epoch 0: 31/100 steps (31%), 30 s, loss=1.5000"
    assert len(lines) == 4  # at 30, 60 and 90 s, and the closing line
    assert lines[-1] == "epoch 0: 100/100 steps (100%), 99 s, loss=1.5000"
    assert not any("\r" in line for line in lines)


def test_short_or_disabled_progress_writes_nothing(clock, monkeypatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(progress, "is_terminal", lambda: False)
    monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
    assert list(progress.track(range(5), "sampling", "batch")) == list(range(5))
    clock.now = 1000.0
    assert list(progress.track(range(5), "sampling", "batch", enabled=False)) == list(range(5))
    assert lines == []


def test_on_a_terminal_it_is_a_tqdm_bar(monkeypatch) -> None:
    monkeypatch.setattr(progress, "is_terminal", lambda: True)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    bar = progress.progress_bar(3, "executing", "call")
    assert type(bar).__module__.startswith("tqdm")
    bar.close()
    silent = progress.progress_bar(3, "executing", "call", enabled=False)
    assert isinstance(silent, progress.LineProgress)
