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
from codeit_jax.loop.seeds import load_eval_tasks
from codeit_jax.replay.mutated_tasks import check_collections, search_files
from codeit_jax.replay.paper_metric import PaperMetric, load_paper_metric
from codeit_jax.tasks import Task, load_codeit_dir


@dataclass
class RunInputs:
    """What the run keeps of its inputs (the rest is read again when it is needed)."""

    paper: PaperMetric  # the paper figure: the mutation baseline's solutions
    eval_tasks: list[Task]


def read_inputs(config: RunConfig) -> RunInputs:
    """Read every input of a run."""
    paper = load_paper_metric(config.metric, config.sampling.n_samples)
    eval_tasks = load_eval_tasks(config.data)
    training = config.data.training
    if config.data.seeds == "codeit" or training.is_dir():
        load_codeit_dir(training)  # seeds, the tokenizer's program list, random seeds' parents
    check_collections(config.data.mutated_files)
    if not config.add_policy_experience:
        needed = search_files(config.no_exit, config.n_meta_iterations)
        check_collections(needed)
        logging.info("A1: %d search files read", len(needed))
    return RunInputs(paper=paper, eval_tasks=eval_tasks)
