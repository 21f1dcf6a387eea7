"""The random streams of each meta-iteration, derived from ``(seed, meta-iteration)`` alone.

Nothing random carries over from one meta-iteration to the next: each stage of meta-iteration
``i`` draws from its own stream (`stage_rng`, `sampling_key`), so a run restarted from the
checkpoint of ``i`` repeats ``i`` exactly, and one stage drawing more numbers does not shift
another's.
"""

from __future__ import annotations

import jax
import numpy as np

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
