"""Saving a `RunState` after each meta-iteration and restoring the latest usable one.

The checkpoint holds the train state as Orbax arrays (`codeit_jax.loop.checkpoint`), the
buffer's columns beside it, and everything else as JSON metadata, with the identity of the run
(`codeit_jax.config.run_identity`): a working directory written by a run with other settings
is refused with the settings that differ, never silently continued.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from codeit_jax.errors import ConfigError, RunError
from codeit_jax.loop.checkpoint import (
    CheckpointStore,
    NoUsableCheckpointError,
    Restored,
    StateMismatchError,
)
from codeit_jax.loop.integrity import all_finite
from codeit_jax.loop.state import RunState
from codeit_jax.policy.trainer import Trainer
from codeit_jax.replay.buffer import ReplayBuffer
from codeit_jax.replay.metrics import Scoreboard


class RunCheckpoints:
    """Saves a `RunState` after each meta-iteration and restores the latest one."""

    def __init__(self, directory: Path, identity: dict[str, Any], max_to_keep: int):
        self.identity = json.loads(json.dumps(identity))  # as it reads back from JSON
        self.store = CheckpointStore(directory, max_to_keep=max_to_keep)

    def save(self, state: RunState) -> None:
        """Starts saving; the write completes in the background (`wait` or the next save)."""
        buffer = state.buffer.state_dict()
        meta = {
            "completed": state.completed,
            "identity": self.identity,
            "buffer": buffer["meta"],
            "scoreboard": state.scoreboard.state_dict(),
            "performance_rows": state.performance_rows,
        }
        arrays, meta["empty_arrays"] = split_empty(buffer["arrays"])
        self.store.save(state.completed, state.train_state, extra={"buffer": arrays}, meta=meta)

    def restore(self, trainer: Trainer) -> RunState | None:
        """The newest undamaged saved state on the trainer's mesh, or None when there is none.

        Damaged steps are skipped (`codeit_jax.loop.checkpoint`); a state holding a NaN or an
        infinity counts as damaged too (a run never saves one). Raises `ConfigError` when the
        checkpoints belong to a run with other settings, `RunError` when none is usable.
        """
        if self.store.latest_step() is None:
            return None
        try:
            restored = self.store.restore(trainer.abstract_state(), check=self._check)
        except StateMismatchError as e:
            raise ConfigError(
                f"{self.store.directory} holds a train state that does not fit this config: {e}; "
                "resume with the model and optimizer settings (train.max_grad_norm, "
                "train.weight_decay_on) of the run that wrote it, or use a new --workdir"
            ) from None
        except NoUsableCheckpointError as e:
            raise RunError(str(e)) from None
        meta = restored.meta
        stored = restored.extra["buffer"] if restored.extra is not None else {}
        arrays = join_empty(stored, meta["empty_arrays"])
        buffer = ReplayBuffer.from_state_dict({"meta": meta["buffer"], "arrays": arrays})
        return RunState(
            completed=int(meta["completed"]),
            train_state=restored.state,
            buffer=buffer,
            scoreboard=Scoreboard.from_state_dict(meta["scoreboard"]),
            performance_rows=list(meta["performance_rows"]),
        )

    def _check(self, restored: Restored) -> str | None:
        """Refuse another run's checkpoint (bad input) and a non-finite state (damage)."""
        identity = restored.meta.get("identity")
        if identity != self.identity:
            raise ConfigError(_identity_mismatch(identity or {}, self.identity))
        if not all_finite(restored.state):
            return "its train state holds NaN or infinite values"
        return None

    def wait(self) -> None:
        self.store.wait()

    def close(self) -> None:
        self.store.close()


def split_empty(
    arrays: dict[str, dict[str, np.ndarray]],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, str]]]:
    """(non-empty arrays, dtype names of the empty ones): Orbax refuses zero-size arrays."""
    kept: dict[str, dict[str, np.ndarray]] = {}
    empty: dict[str, dict[str, str]] = {}
    for group, columns in arrays.items():
        for name, array in columns.items():
            if np.size(array):
                kept.setdefault(group, {})[name] = array
            else:
                empty.setdefault(group, {})[name] = np.asarray(array).dtype.str
    return kept, empty


def join_empty(
    kept: dict[str, dict[str, Any]], empty: dict[str, dict[str, str]]
) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of `split_empty`."""
    arrays = {group: {k: np.asarray(v) for k, v in cols.items()} for group, cols in kept.items()}
    for group, columns in empty.items():
        for name, dtype in columns.items():
            arrays.setdefault(group, {})[name] = np.zeros(0, np.dtype(dtype))
    return arrays


def _identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    changed = [
        f"{key}: checkpoint {saved.get(key)!r}, config {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    return (
        "the working directory holds a run with other settings; use a new --workdir or the "
        "original settings (" + "; ".join(changed) + ")"
    )
