"""The CodeIt meta-iteration loop (``config.experiment == "codeit"``).

    python -m codeit_jax.main --config=configs/tiny.py --workdir=runs/tiny

Each meta-iteration ``i``: sample the replay buffer and train the policy on it; sample programs
for every inference task, execute them and relabel the outcomes (`codeit_jax.loop.inference`); add
the experience to the buffer; score; write the iteration's files; checkpoint. This module only
wires the stages together; each stage lives in its own module.

Every process of a multi-host run executes the same command and holds the same buffer, samples
and scores (they are pure functions of the seed, the params and the outcomes); only process 0
writes files. Running the command again resumes after the last completed meta-iteration
(`codeit_jax.loop.state`, `codeit_jax.loop.run_checkpoints`); a larger ``n_meta_iterations``
continues the run.
"""

from __future__ import annotations

import json
import logging as std_logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
from absl import logging
from ml_collections import ConfigDict

from codeit_jax.config import RunConfig, prepare_run_config
from codeit_jax.errors import one_line
from codeit_jax.execution.sandbox import SandboxConfig
from codeit_jax.execution.shared import process_executor
from codeit_jax.loop.digests import buffer_digest, params_digest
from codeit_jax.loop.inputs import RunInputs, read_inputs
from codeit_jax.loop.iteration import (
    SAMPLE_RATES,
    Loop,
    initial_state,
    known_programs,
    make_loop,
    meta_iteration,
    pretraining_note,
)
from codeit_jax.loop.outputs import CHECKPOINT_DIR, PERFORMANCE_FILE, TENSORBOARD_DIR, RunOutputs
from codeit_jax.loop.policy import Policy, build_policy
from codeit_jax.loop.run_checkpoints import RunCheckpoints
from codeit_jax.loop.state import RunState
from codeit_jax.loop.workdir_lock import WorkdirLock
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.trainer import initialize_distributed
from codeit_jax.replay.buffer import TaskCounts
from codeit_jax.replay.metrics import UNKNOWN_ALLOWED
from codeit_jax.report.inputs import MUTATION_FILE as MUTATION_CURVE_FILE
from codeit_jax.tasks import Task


class _QuietOrbax(std_logging.Filter):
    """Drops Orbax's INFO chatter (several lines per array per save); warnings still pass."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    absl_logger = std_logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietOrbax())


def open_sandbox(settings: SandboxConfig) -> Any:
    """The sandbox with the config's limits (``workers`` 0: one per core)."""
    from codeit_jax.execution import sandbox

    return sandbox.open_sandbox(settings)


def run(
    config_dict: ConfigDict,
    workdir: Path,
    executor_factory: Callable[[SandboxConfig], Any] = open_sandbox,
) -> dict[str, Any]:
    """Run (or resume) CodeIt up to ``config.n_meta_iterations``; returns a summary.

    ``executor_factory`` opens the executor of the ``sandbox`` section (tests pass stand-ins).
    """
    begin = time.perf_counter()
    config = prepare_run_config(config_dict)  # the only ConfigDict read of the run
    # Every input is read before the workdir exists: a bad one leaves nothing behind.
    inputs = read_inputs(config)
    quiet_orbax_logs()
    initialize_distributed(config.distributed)
    workdir = Path(workdir)
    writer = jax.process_index() == 0
    progress = bool(config.progress) and writer
    logging.info(
        "CodeIt: ablation %s, %d meta-iterations, outputs in %s (%s)",
        config.ablation,
        config.n_meta_iterations,
        workdir,
        "resuming" if (workdir / CHECKPOINT_DIR).is_dir() else "new run",
    )
    logging.info(
        "data: %s; seeds %s; inference on %s",
        config.data.data_dir,
        config.data.seeds,
        inputs.eval_set.describe(),
    )
    if not config.model.init_from:
        logging.info(pretraining_note(config.model))
    policy = build_policy(config, make_mesh(), known_programs(config))
    devices = jax.devices()
    logging.info(
        "policy: T5 %s (%s), vocabulary %d; %d %s device(s) (%s)",
        config.model.init_from or config.model.name,
        "pretrained" if policy.pretrained_params is not None else "random init",
        policy.model_config.vocab_size,
        len(devices),
        jax.default_backend(),
        devices[0].device_kind,
    )
    workdir.mkdir(parents=True, exist_ok=True)  # the run's first write
    with WorkdirLock(workdir, enabled=writer):  # before Orbax touches checkpoints/
        return _run_locked(config, workdir, policy, inputs, executor_factory, progress, begin)


def _run_locked(
    config: RunConfig,
    workdir: Path,
    policy: Policy,
    inputs: RunInputs,
    executor_factory: Callable[[SandboxConfig], Any],
    progress: bool,
    begin: float,
) -> dict[str, Any]:
    """The run once the workdir is this process's: restore, meta-iterations, summary."""
    writer = jax.process_index() == 0
    paper, eval_tasks = inputs.paper, inputs.eval_tasks
    checkpoints = RunCheckpoints(
        workdir / CHECKPOINT_DIR, json.loads(config.identity), config.checkpoint_max_to_keep
    )
    try:
        restored = checkpoints.restore(policy.trainer)  # before anything is written
    except BaseException:
        checkpoints.close()
        raise
    resumed_from = 0 if restored is None else restored.completed
    outputs = RunOutputs(
        workdir,
        enabled=writer,
        tensorboard=bool(config.tensorboard),
        inference_set={
            "inference_source": inputs.eval_set.source,
            "inference_set": inputs.eval_set.describe(),
        },
    )
    totals = {"train_seconds": 0.0, "sample_seconds": 0.0, "execute_seconds": 0.0}
    try:
        with executor_factory(config.sandbox) as local_executor:
            executor = process_executor(local_executor)  # each host runs its share
            loop = make_loop(config, policy, eval_tasks, executor, progress, paper)
            if restored is None:
                state = initial_state(loop)
            else:
                state = restored
                # Rows of a checkpoint older than the paper columns lack them: recompute.
                state.performance_rows = [
                    {**dict.fromkeys(UNKNOWN_ALLOWED), **row}  # unknown in older checkpoints
                    for row in paper.fill_rows(state.performance_rows, state.scoreboard)
                ]
                logging.info(
                    "resuming after meta-iteration %d of %s",
                    state.completed - 1,
                    workdir / CHECKPOINT_DIR,
                )
                outputs.rewrite_history(state.performance_rows)
            if state.completed >= config.n_meta_iterations:
                logging.info(
                    "all %d meta-iterations are done; raise n_meta_iterations to continue",
                    state.completed,
                )
            for i in range(state.completed, config.n_meta_iterations):
                state, row, log = meta_iteration(loop, state, i)
                for name in totals:
                    totals[name] += row[name]
                scalars = {k: v for k, v in row.items() if k != "meta_iteration" and v is not None}
                outputs.write_iteration(i, state.performance_rows, state.scoreboard, log, scalars)
                checkpoints.save(state)
                logging.info(
                    "meta-iteration %d: solved %d/%d (cumulative %d; with mutation solutions "
                    "%d at %d sampled programs), buffer %s, step %d",
                    i,
                    round(row["performance"] * len(eval_tasks)),
                    len(eval_tasks),
                    round(row["cumulative_performance"] * len(eval_tasks)),
                    round(row["paper_cumulative_performance"] * len(eval_tasks)),
                    row["num_sampled_programs"],
                    buffer_line(state.buffer.task_counts()),
                    row["step"],
                )
                logging.info(
                    "meta-iteration %d samples: %.1f%% parse, %.1f%% run, %.1f%% grids, "
                    "%.1f%% solve a demonstration, %.1f%% new programs",
                    i,
                    *(100 * row[name] for name in SAMPLE_RATES),
                )
            checkpoints.wait()
    finally:
        checkpoints.close()
        outputs.close()
    seconds = time.perf_counter() - begin
    summary = _summary(loop, inputs, state, workdir, resumed_from, totals, seconds)
    if writer and state.completed:
        summary["report"] = write_run_report(
            workdir, eval_tasks, baseline_curve(config), official_curve=False
        )
    outputs.write_summary(summary)
    if writer:
        log_outputs(summary)
    return summary


def baseline_curve(config: RunConfig) -> str | None:
    """The curve of the mutation baseline whose solutions the paper figure merges: the
    ``mutation_performance.csv`` beside ``metric.mutation_solutions`` (the official one in the
    CodeIt data, or a baseline run's), when there is one."""
    solutions = config.metric.mutation_solutions
    if not solutions:
        return None
    curve = Path(solutions).parent / MUTATION_CURVE_FILE
    return str(curve) if curve.is_file() else None


def write_run_report(
    workdir: Path,
    eval_tasks: Sequence[Task],
    mutation_csv: str | None = None,
    official_curve: bool = True,
    out: Path | None = None,
) -> str | None:
    """The run's HTML report, with the grids of the tasks the run inferred on (the report
    tool's own default task set may not be the run's); None, with a warning, when it cannot be
    written: the run's results are in its other files either way."""
    from codeit_jax.report.page import write_report  # matplotlib, imported when needed

    try:
        return str(write_report(workdir, out, eval_tasks, mutation_csv, official_curve))
    except Exception as e:  # noqa: BLE001 - the report is a view of files already written
        logging.warning("the report could not be written: %s", one_line(e))
        return None


def log_outputs(summary: dict[str, Any]) -> None:
    """Where the run's results are and how to look at them."""
    logging.info(
        "finished: %d of %d tasks solved by the policy after %d meta-iteration(s), %.0f s",
        summary["tasks_solved"],
        summary["inference_tasks"],
        summary["meta_iterations_completed"],
        summary["total_seconds"],
    )
    files = [
        ("performance per meta-iteration", summary["performance_csv"]),
        ("solutions", summary["solutions"]),
        ("checkpoints (resume)", summary["checkpoints"]),
        ("report", summary.get("report")),
    ]
    for what, path in files:
        if path:
            logging.info("  %s: %s", what, path)
    workdir = Path(summary["performance_csv"]).parent
    logging.info("  remake the report: python -m codeit_jax.report --workdir=%s", workdir)
    if summary.get("tensorboard"):
        logging.info("  scalars: tensorboard --logdir %s", summary["tensorboard"])


def buffer_line(counts: TaskCounts) -> str:
    """The buffer's entries by origin for a log line; with an unknown seed count (a buffer
    restored from a checkpoint older than the seed marks) seeds and mutated tasks together."""
    if counts.seed is None:
        return f"policy {counts.policy} / seed and mutated {counts.mutated}"
    return f"policy {counts.policy} / seed {counts.seed} / mutated {counts.mutated}"


def _summary(
    loop: Loop,
    inputs: RunInputs,
    state: RunState,
    workdir: Path,
    resumed_from: int,
    totals: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    last = state.completed - 1
    solved: Sequence[str] = state.scoreboard.solved_tasks(last) if last >= 0 else []
    final = state.performance_rows[-1] if state.performance_rows else {}
    counts = state.buffer.task_counts()
    return {
        "experiment": "codeit",
        "ablation": loop.config.ablation,
        "meta_iterations_completed": state.completed,
        "resumed_from": resumed_from,
        "inference_set": inputs.eval_set.describe(),
        "inference_tasks": len(loop.eval_tasks),
        # tasks beyond ARC's limits, by reason; inputs kept but cut to input_state_max per side
        "inference_tasks_left_out": {r: len(k) for r, k in inputs.eval_set.left_out.items()},
        "inference_inputs_cut": loop.inputs_cut,
        "tasks_solved": len(solved),
        "solved_task_keys": list(solved),
        "paper_cumulative_performance": final.get("paper_cumulative_performance"),
        "num_sampled_programs": final.get("num_sampled_programs"),
        # None: unknown, buffer_mutated then counts the seeds too (`TaskCounts`)
        "buffer_seed": counts.seed,
        "buffer_mutated": counts.mutated,
        "buffer_policy": counts.policy,
        "step": int(jax.device_get(state.train_state.step)),
        "params_sha256": params_digest(state.train_state.params),
        "buffer_sha256": buffer_digest(state.buffer),
        **{k: round(v, 3) for k, v in totals.items()},
        "total_seconds": round(seconds, 3),
        "performance_csv": str(workdir / PERFORMANCE_FILE),
        "solutions": str(workdir / f"solutions_{last}.json") if last >= 0 else None,
        "checkpoints": str(workdir / CHECKPOINT_DIR),
        "tensorboard": str(workdir / TENSORBOARD_DIR) if loop.config.tensorboard else None,
    }
