"""CodeIt against the mutation baseline on one task set, in one command
(``config.experiment == "comparison"``).

    python -m codeit_jax.main --config=configs/first_run.py

The paper's comparison needs two runs that share their task split: first the mutation baseline
(`codeit_jax.jobs.mutation`) writes its mutated tasks, its solutions and its curve into
``<workdir>/mutation``; then CodeIt (`codeit_jax.jobs.codeit`) starts its buffer from those
mutated tasks, merges the baseline's solutions into its headline figure, runs in
``<workdir>/codeit`` and writes its report there, the baseline's curve beside its own. The
config holds the two jobs' configs as ``config.mutation`` and ``config.codeit`` (their own
``workdir`` fields are ignored: the sub-directories above are used) and this job fills in the
links between them: CodeIt's ``data.mutated_files`` names every mutated-tasks file of the
baseline (one per ``save_chunk_size`` samples, each a point of its curve) and
``metric.mutation_solutions`` its last solutions file, and both search the same inference tasks.

Both configs are checked before anything is written. Running the same command again resumes:
the baseline skips what it already wrote, CodeIt resumes after its last meta-iteration.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from absl import logging
from ml_collections import ConfigDict

from codeit_jax import schema
from codeit_jax.config import prepare_run_config
from codeit_jax.errors import ConfigError
from codeit_jax.files import write_text_atomic
from codeit_jax.jobs import codeit as codeit_job
from codeit_jax.jobs import mutation as mutation_job
from codeit_jax.jobs.mutation_search import SOLUTIONS_FILE

#: Where each part writes, under the job's workdir.
MUTATION_DIR = "mutation"
CODEIT_DIR = "codeit"
SUMMARY_FILE = "comparison_summary.json"

#: The fields of this job's own level; ``mutation`` and ``codeit`` are checked by their jobs.
FIELDS: dict[str, schema.Rule] = {
    "experiment": schema.choice(["comparison"]).means(
        "the job this config runs: the mutation baseline, then CodeIt on the same tasks"
    ),
    "workdir": schema.path().means(
        "where both runs write (<workdir>/mutation, <workdir>/codeit); running again resumes"
    ),
}
#: The sub-configs, each checked by its own job's table.
PARTS = ("mutation", "codeit")


def own_fields(config: ConfigDict) -> ConfigDict:
    """The config without its sub-configs: the fields `FIELDS` covers."""
    return ConfigDict({k: config[k] for k in config if k not in PARTS})


def _split(config: ConfigDict) -> tuple[ConfigDict, ConfigDict]:
    """The baseline's and CodeIt's configs, as unlocked copies."""
    schema.check_fields(own_fields(config), FIELDS)
    parts = []
    for name in PARTS:
        if name not in config or not isinstance(config[name], ConfigDict):
            raise ConfigError(f"config.{name} is missing (it must hold the {name} job's config)")
        parts.append(ConfigDict(config[name].to_dict()))
    return parts[0], parts[1]


def linked_configs(config: ConfigDict, workdir: Path) -> tuple[ConfigDict, ConfigDict]:
    """The two configs with their links filled in: the baseline's workdir and task split, and
    CodeIt's mutated tasks and solutions files from the baseline's last chunk."""
    mutation, codeit = _split(config)
    mutation_job.check_config(mutation)
    mutation.workdir = str(workdir / MUTATION_DIR)
    codeit.workdir = str(workdir / CODEIT_DIR)
    if codeit.data.eval_tasks != mutation.eval_tasks:
        raise ConfigError(
            f"config.codeit.data.eval_tasks ({codeit.data.eval_tasks!r}) and "
            f"config.mutation.eval_tasks ({mutation.eval_tasks!r}) must name the same tasks"
        )
    if not mutation.evaluate:
        raise ConfigError("config.mutation.evaluate must be True: CodeIt uses its solutions")
    last = mutation.n_samples
    baseline = workdir / MUTATION_DIR
    ends = mutation_job.chunk_ends(last, mutation.save_chunk_size)
    codeit.data.mutated_files = ",".join(
        str(baseline / f"mutated_tasks_train_{n}.json") for n in ends
    )
    codeit.metric.mutation_solutions = str(baseline / SOLUTIONS_FILE.format(n=last))
    codeit.metric.mutation_samples = last
    return mutation, codeit


def _check_codeit_before_baseline(codeit: ConfigDict) -> None:
    """CodeIt's config, checked before the baseline has written the files it will read."""
    early = ConfigDict(codeit.to_dict())
    early.data.mutated_files = ""
    early.metric.mutation_solutions = ""
    prepare_run_config(early)


def run(config: ConfigDict, workdir: Path) -> dict[str, Any]:
    """The baseline, then CodeIt, then the report; returns both summaries and the report's
    path."""
    begin = time.perf_counter()
    workdir = Path(workdir)
    mutation, codeit = linked_configs(config, workdir)
    _check_codeit_before_baseline(codeit)
    logging.info(
        "comparison: the mutation baseline (%d samples) into %s, then CodeIt into %s",
        mutation.n_samples,
        mutation.workdir,
        codeit.workdir,
    )
    baseline_summary = mutation_job.run(mutation, Path(mutation.workdir))
    codeit_summary = codeit_job.run(codeit, Path(codeit.workdir))
    summary = {
        "experiment": "comparison",
        "mutation": baseline_summary,
        "codeit": codeit_summary,
        "report": codeit_summary.get("report"),
        "total_seconds": round(time.perf_counter() - begin, 3),
    }
    write_text_atomic(workdir / SUMMARY_FILE, json.dumps(summary, indent=1, default=str))
    log_comparison(baseline_summary, codeit_summary)
    return summary


def log_comparison(baseline: dict[str, Any], codeit: dict[str, Any]) -> None:
    """The two runs side by side, in tasks solved."""
    n = codeit["inference_tasks"]
    paper = codeit.get("paper_cumulative_performance")
    logging.info(
        "mutation baseline: %d of %d tasks at %d samples; CodeIt (policy and baseline "
        "solutions merged, as the paper plots it): %s of %d at %s programs; the policy alone: %d",
        round(baseline["fraction_solved"] * n),
        n,
        baseline["n_samples"],
        "?" if paper is None else round(paper * n),
        n,
        codeit.get("num_sampled_programs"),
        codeit["tasks_solved"],
    )
