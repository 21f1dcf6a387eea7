"""The resumable state of a CodeIt run, and the random streams of each meta-iteration.

After meta-iteration ``i`` completes, checkpoint step ``i + 1`` (the number of completed
meta-iterations) holds everything the next one needs: the train state (params, optimizer state,
step, dropout key), the replay buffer, every solution record, the performance rows, and the
identity of the run. Nothing else carries over between meta-iterations: every random stream of
meta-iteration ``i`` is derived from ``(seed, i)`` (`stage_rng`, `sampling_key`), and the
dropout keys from the train state's key and step. So a run killed anywhere inside meta-iteration
``i`` restarts from step ``i`` and repeats ``i`` exactly: nothing is lost or done twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from codeit_jax.errors import ConfigError, RunError
from codeit_jax.loop.checkpoint import (
    CheckpointStore,
    NoUsableCheckpointError,
    Restored,
    StateMismatchError,
)
from codeit_jax.loop.integrity import all_finite
from codeit_jax.policy.trainer import Trainer, TrainState
from codeit_jax.replay.buffer import ReplayBuffer
from codeit_jax.replay.metrics import Scoreboard

#: Independent numpy streams of one meta-iteration, by stage.
STAGES = ("buffer_sample", "batches")


def stage_rng(seed: int, meta_iteration: int, stage: str) -> np.random.Generator:
    """The numpy stream of one stage of one meta-iteration."""
    return np.random.default_rng([seed, meta_iteration, STAGES.index(stage)])


def stage_seed(seed: int, meta_iteration: int, stage: str) -> int:
    """A 63-bit integer seed for a stage (for APIs that take an int)."""
    return int(stage_rng(seed, meta_iteration, stage).integers(2**63 - 1))


def sampling_key(seed: int, meta_iteration: int) -> jax.Array:
    """The PRNG key of the policy samples of one meta-iteration."""
    return jax.random.fold_in(jax.random.key(seed), meta_iteration)


def params_digest(params: Any) -> str:
    """SHA-256 of every parameter's bytes in tree order: equal digests, bitwise equal params."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        value = np.asarray(jax.device_get(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(value.dtype.str.encode() + str(value.shape).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def buffer_digest(buffer: ReplayBuffer) -> str:
    """SHA-256 of the buffer's serialised state: equal digests, equal contents."""
    state = buffer.state_dict()
    digest = hashlib.sha256(json.dumps(state["meta"], sort_keys=True).encode())
    for partition in sorted(state["arrays"]):
        for name, array in sorted(state["arrays"][partition].items()):
            digest.update(f"{partition}/{name}/{array.dtype.str}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass
class RunState:
    """Everything a CodeIt run carries from one meta-iteration to the next."""

    completed: int  # meta-iterations completed; the next one to run has this index
    train_state: TrainState
    buffer: ReplayBuffer
    scoreboard: Scoreboard
    performance_rows: list[dict[str, Any]] = field(default_factory=list)


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
