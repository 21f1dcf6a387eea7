"""The TensorBoard scalars a run writes open in TensorBoard (the ``tensorboard`` extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeit_jax.loop.outputs import TENSORBOARD_DIR, RunOutputs
from codeit_jax.replay.metrics import PERFORMANCE_COLUMNS, Scoreboard


def test_tensorboard_reads_the_run_s_scalars(tmp_path: Path) -> None:
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="viewing the scalars needs TensorBoard: pip install -e '.[tensorboard]'",
    )
    outputs = RunOutputs(tmp_path, enabled=True, tensorboard=True)
    board = Scoreboard(["aaaa0001"])
    for i, loss in enumerate((3.0, 2.5)):
        row = {c: 0.0 for c in PERFORMANCE_COLUMNS} | {"meta_iteration": i, "train_loss": loss}
        scalars = {k: v for k, v in row.items() if k != "meta_iteration"}
        outputs.write_iteration(i, [row], board, {"meta_iteration": i}, scalars)
    outputs.close()
    events = accumulator.EventAccumulator(str(tmp_path / TENSORBOARD_DIR))
    events.Reload()
    assert {"performance", "train_loss"} <= set(events.Tags()["scalars"])
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(0, 3.0), (1, 2.5)]
