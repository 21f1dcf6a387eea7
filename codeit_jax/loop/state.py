"""The resumable state of a CodeIt run: what one meta-iteration hands to the next.

After meta-iteration ``i`` completes, checkpoint step ``i + 1`` (the number of completed
meta-iterations) holds a `RunState`: the train state (params, optimizer state, step, dropout
key), the replay buffer, every solution record and the performance rows
(`codeit_jax.loop.run_checkpoints`). Nothing else carries over: the random streams of
meta-iteration ``i`` derive from ``(seed, i)`` (`codeit_jax.loop.streams`) and the dropout
keys from the train state's key and step. So a run killed anywhere inside meta-iteration ``i``
restarts from step ``i`` and repeats ``i`` exactly: nothing is lost or done twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codeit_jax.policy.trainer import TrainState
from codeit_jax.replay.buffer import ReplayBuffer
from codeit_jax.replay.metrics import Scoreboard


@dataclass
class RunState:
    """Everything a CodeIt run carries from one meta-iteration to the next."""

    completed: int  # meta-iterations completed; the next one to run has this index
    train_state: TrainState
    buffer: ReplayBuffer
    scoreboard: Scoreboard
    performance_rows: list[dict[str, Any]] = field(default_factory=list)
