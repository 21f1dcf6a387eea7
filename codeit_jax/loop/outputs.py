"""The files a CodeIt run writes into its working directory (process 0 only).

Per meta-iteration ``i``: ``performance.csv`` (the whole history, rewritten), ``solutions_<i>.json``
(the cumulative solutions up to ``i``, with the name and source of the inference set, so that
the report can say which tasks they are), ``log_<i>.json`` (the policy samples and their
outcomes) and TensorBoard scalars. Every file is written through a temporary file and a
rename, before the checkpoint of ``i``; a run killed in between repeats ``i`` on restart and
overwrites them with the same content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from codeit_jax.files import write_json_atomic
from codeit_jax.replay.metrics import Scoreboard, write_performance_csv, write_solutions_json

PERFORMANCE_FILE = "performance.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


def solutions_path(workdir: Path, meta_iteration: int) -> Path:
    return workdir / f"solutions_{meta_iteration}.json"


def log_path(workdir: Path, meta_iteration: int) -> Path:
    return workdir / f"log_{meta_iteration}.json"


class RunOutputs:
    """Writes the per-iteration files; a no-op on every process but the first."""

    def __init__(
        self,
        workdir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        inference_set: Mapping[str, str] | None = None,
    ):
        self.workdir = workdir
        self.enabled = enabled
        #: ``inference_source`` and ``inference_set`` (its name) for every solutions file.
        self.inference_set = dict(inference_set or {})
        self._writer = None
        if enabled and tensorboard:
            from tensorboardX import SummaryWriter  # only the writing process needs it

            self._writer = SummaryWriter(str(workdir / TENSORBOARD_DIR))

    def write_iteration(
        self,
        meta_iteration: int,
        rows: Sequence[Mapping[str, Any]],
        scoreboard: Scoreboard,
        log: Mapping[str, Any],
        scalars: Mapping[str, float],
    ) -> None:
        if not self.enabled:
            return
        write_json_atomic(log_path(self.workdir, meta_iteration), log)
        write_solutions_json(
            solutions_path(self.workdir, meta_iteration),
            {**self.inference_set, **scoreboard.solutions_document(meta_iteration)},
        )
        write_performance_csv(self.workdir / PERFORMANCE_FILE, rows)
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, meta_iteration)
            self._writer.flush()

    def rewrite_history(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """performance.csv as the checkpoint knows it (drops a row of an unfinished iteration)."""
        if self.enabled and rows:
            write_performance_csv(self.workdir / PERFORMANCE_FILE, rows)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if self.enabled:
            write_json_atomic(self.workdir / SUMMARY_FILE, dict(summary))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
