"""The ablations of the paper (section 4.3) as config overrides, never as branches in the loop:
each name maps to the concrete settings it changes, applied once by `codeit_jax.config`.

Some settings an ablation changes are derived ones that no config file sets
(``add_policy_experience``, ``relabel``, ``model.load_weights``); the rest are ordinary fields.
"""

from __future__ import annotations

from collections.abc import Callable

from ml_collections import ConfigDict


def _no_exit(c: ConfigDict) -> None:
    """A1: the policy's samples are not added; the mutation baseline's search tasks arrive
    before each meta-iteration's training instead (``no_exit``)."""
    c.add_policy_experience = False


def _no_relabelling(c: ConfigDict) -> None:
    """A2: only programs that solve their real task go into the buffer."""
    c.relabel = False


def _no_prioritization(c: ConfigDict) -> None:
    """A3: every priority weight zero, so the buffer samples uniformly."""
    for name in ("performance_penalty", "length_penalty", "age_penalty", "distance_penalty"):
        c.buffer[name] = 0.0
    c.buffer.priority_in_mutated = False


def _no_pretraining(c: ConfigDict) -> None:
    """A4: the checkpoint's shape and tokenizer, but freshly initialised weights."""
    c.model.load_weights = False


def _one_example(c: ConfigDict) -> None:
    """A5: the model sees one demonstration example per task."""
    c.encoding.n_examples = 1


def _no_mutated(c: ConfigDict) -> None:
    """A6: the buffer starts with the training tasks only (and the paper scores it without
    mutation solutions or their samples)."""
    c.data.mutated_files = ""
    if "metric" in c:
        c.metric.mutation_solutions, c.metric.mutation_samples = "", 0


#: Ablation name -> how it changes the (unlocked copy of the) config.
ABLATIONS: dict[str, Callable[[ConfigDict], None] | None] = {
    "none": None,
    "a1_no_exit": _no_exit,
    "a2_no_relabelling": _no_relabelling,
    "a3_no_prioritization": _no_prioritization,
    "a4_no_pretraining": _no_pretraining,
    "a5_one_example": _one_example,
    "a6_no_mutated": _no_mutated,
}


def apply_ablation(config: ConfigDict) -> ConfigDict:
    """An unlocked copy of a checked config with the derived settings at their CodeIt values,
    then changed by ``config.ablation``: the one place an ablation is applied (the run and
    ``--print_config`` both call it)."""
    c = ConfigDict(config.to_dict())
    c.add_policy_experience = True
    c.relabel = True
    c.model.load_weights = True
    change = ABLATIONS[c.ablation]
    if change is not None:
        change(c)
    return c
