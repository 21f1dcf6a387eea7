"""Every file a CodeIt run reads, read (or checked) before the run creates its workdir.

A bad input (a task file that is not UTF-8, JSON nested too deeply, a mutated or A1 search file
that is not a collection, a malformed mutation solutions file) then stops the run with one line
naming the file, exit status 2, and nothing written. Files read again later (the mutated files
when the buffer is built, each A1 search file at its meta-iteration) are read here once and
thrown away: a run takes hours, a second read seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from absl import logging

from codeit_jax.config import RunConfig
from codeit_jax.errors import ConfigError
from codeit_jax.loop.seeds import load_eval_set
from codeit_jax.replay.mutated_tasks import check_collections, search_files
from codeit_jax.replay.paper_metric import PaperMetric, load_paper_metric
from codeit_jax.tasks import EvalSet, Task, load_codeit_dir


@dataclass
class RunInputs:
    """What the run keeps of its inputs (the rest is read again when it is needed)."""

    paper: PaperMetric  # the paper figure: the mutation baseline's solutions
    eval_set: EvalSet  # the inference tasks and the name of their set

    @property
    def eval_tasks(self) -> list[Task]:
        return self.eval_set.tasks


def read_inputs(config: RunConfig) -> RunInputs:
    """Read every input of a run."""
    paper = load_paper_metric(config.metric, config.sampling.n_samples)
    eval_set = load_eval_set(config.data)
    log_eval_set(eval_set)
    check_mutation_set(paper, eval_set)
    training = config.data.training
    if config.data.seeds == "codeit" or training.is_dir():
        load_codeit_dir(training)  # seeds, the tokenizer's program list, random seeds' parents
    check_collections(config.data.mutated_files)
    if not config.add_policy_experience:
        needed = search_files(config.no_exit, config.n_meta_iterations)
        check_collections(needed)
        logging.info("A1: %d search files read", len(needed))
    return RunInputs(paper=paper, eval_set=eval_set)


def log_eval_set(eval_set: EvalSet) -> None:
    """One line: the tasks beyond ARC's limits left out of the inference set, by reason (with a
    few of their keys), so that a smaller set never passes unnoticed."""
    left_out = "; ".join(
        f"{reason} {len(keys)} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})"
        for reason, keys in eval_set.left_out.items()
    )
    logging.info(
        "inference tasks left out of %s, beyond ARC's limits: %s",
        eval_set.name,
        left_out or "none",
    )


def check_mutation_set(paper: PaperMetric, eval_set: EvalSet) -> None:
    """Refuse mutation solutions scored on another task set that shares task keys with this
    one: the paper figure would merge results of other versions of those tasks (ARC-AGI-2's
    evaluation set reuses 6 ARC-AGI-1 evaluation keys, with other examples). A file that
    shares no key only makes the paper figure equal the policy's, as `PaperMetric` warns."""
    keys = set(paper.mutation.by_task)
    foreign = sorted(keys - eval_set.source_keys)
    shared = sorted(keys & {t.key for t in eval_set.tasks})
    if foreign and shared:
        raise ConfigError(
            f"config.metric.mutation_solutions: {paper.mutation.source} has solutions for "
            f"{len(foreign)} tasks outside the {eval_set.name} set (e.g. {foreign[0]}), so it "
            f"was scored on another set, yet shares {len(shared)} task keys with this run "
            f"(e.g. {shared[0]}), whose tasks may differ: run with "
            "--config.metric.mutation_solutions= (the policy alone) or a mutation baseline "
            f"scored on {eval_set.source} (configs/mutation.py --config.eval_tasks="
            f"{eval_set.source})"
        )
