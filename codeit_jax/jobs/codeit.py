"""The CodeIt meta-iteration loop (``config.experiment == "codeit"``).

    python -m codeit_jax.main --config=configs/tiny.py --workdir=runs/tiny

Each meta-iteration ``i``: sample the replay buffer and train the policy on it; sample programs
for every inference task, execute them and relabel the outcomes (`codeit_jax.loop.inference`); add
the experience to the buffer; score; write the iteration's files; checkpoint. This module only
wires the stages together; each stage lives in its own module.

Every process of a multi-host run executes the same command and holds the same buffer, samples
and scores (they are pure functions of the seed, the params and the outcomes); only process 0
writes files. Running the command again resumes after the last completed meta-iteration
(`codeit_jax.loop.state`); a larger ``n_meta_iterations`` continues the run.
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
from absl import logging
from ml_collections import ConfigDict

from codeit_jax.config import data_dir, prepare_config, split_paths
from codeit_jax.errors import RunError
from codeit_jax.execution.shared import process_executor
from codeit_jax.loop.inference import Executor, InferenceResult, SamplingSettings, infer
from codeit_jax.loop.inputs import RunInputs, read_inputs
from codeit_jax.loop.integrity import all_finite
from codeit_jax.loop.outputs import CHECKPOINT_DIR, PERFORMANCE_FILE, TENSORBOARD_DIR, RunOutputs
from codeit_jax.loop.policy import Policy, build_policy, has_hf_tokenizer
from codeit_jax.loop.seeds import seed_tasks, validation_keys
from codeit_jax.loop.state import (
    RunCheckpoints,
    RunState,
    buffer_digest,
    params_digest,
    run_identity,
    sampling_key,
    stage_rng,
    stage_seed,
)
from codeit_jax.loop.workdir_lock import WorkdirLock
from codeit_jax.policy.batching import BucketBatcher
from codeit_jax.policy.encoding import bare_program
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.t5 import count_params
from codeit_jax.policy.trainer import TrainState, initialize_distributed
from codeit_jax.replay.buffer import PARTITIONS, BufferConfig, ReplayBuffer
from codeit_jax.replay.experience import EncodingSettings, add_tasks, encode_input
from codeit_jax.replay.metrics import LEARNING_COLUMNS, Scoreboard
from codeit_jax.replay.mutated_tasks import add_mutated_tasks, add_search_tasks, load_mutated_files
from codeit_jax.replay.paper_metric import PaperMetric, load_paper_metric
from codeit_jax.replay.sample_stats import SAMPLE_COLUMNS, sample_rates
from codeit_jax.tasks import Task, load_codeit_dir

#: The rates of `codeit_jax.replay.sample_stats` in the order the progress line names them.
SAMPLE_RATES = SAMPLE_COLUMNS[1:]


class _QuietOrbax(std_logging.Filter):
    """Drops Orbax's INFO chatter (several lines per array per save); warnings still pass."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    absl_logger = std_logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietOrbax())


def open_sandbox(config: ConfigDict) -> Any:
    """The sandbox with the config's limits (``workers`` 0: one per core)."""
    from codeit_jax.execution import sandbox

    return sandbox.open_sandbox(sandbox.SandboxConfig.of(config.sandbox))


@dataclasses.dataclass
class Loop:
    """What every meta-iteration uses and never changes."""

    config: ConfigDict
    policy: Policy
    encoding: EncodingSettings
    sampling: SamplingSettings
    eval_tasks: list[Task]
    eval_inputs: list[list[int]]
    executor: Executor
    progress: bool
    paper: PaperMetric  # the paper's figure: the policy's solutions merged with the mutation's
    #: Validation task keys (``eval_tasks="validation"``): their descendants stay out of the
    #: mutated partition.
    held_out: frozenset[str] = frozenset()


def run(
    config: ConfigDict,
    workdir: Path,
    executor_factory: Callable[[ConfigDict], Any] = open_sandbox,
) -> dict[str, Any]:
    """Run (or resume) CodeIt up to ``config.n_meta_iterations``; returns a summary."""
    begin = time.perf_counter()
    config = prepare_config(config)
    # Every input is read before the workdir exists: a bad one leaves nothing behind.
    inputs = read_inputs(config)
    quiet_orbax_logs()
    initialize_distributed(config.distributed)
    workdir = Path(workdir)
    writer = jax.process_index() == 0
    progress = bool(config.progress) and writer
    logging.info(
        "CodeIt: ablation %s, seeds %s, %d meta-iterations, outputs in %s",
        config.ablation,
        config.data.seeds,
        config.n_meta_iterations,
        workdir,
    )
    if not config.model.init_from:
        logging.info(pretraining_note(config))
    policy = build_policy(config, make_mesh(), known_programs(config))
    logging.info(
        "policy: T5 %s (%s), vocabulary %d, %d devices",
        config.model.init_from or config.model.name,
        "pretrained" if policy.pretrained_params is not None else "random init",
        policy.model_config.vocab_size,
        jax.device_count(),
    )
    workdir.mkdir(parents=True, exist_ok=True)  # the run's first write
    with WorkdirLock(workdir, enabled=writer):  # before Orbax touches checkpoints/
        return _run_locked(config, workdir, policy, inputs, executor_factory, progress, begin)


def _run_locked(
    config: ConfigDict,
    workdir: Path,
    policy: Policy,
    inputs: RunInputs,
    executor_factory: Callable[[ConfigDict], Any],
    progress: bool,
    begin: float,
) -> dict[str, Any]:
    """The run once the workdir is this process's: restore, meta-iterations, summary."""
    writer = jax.process_index() == 0
    paper, eval_tasks = inputs.paper, inputs.eval_tasks
    checkpoints = RunCheckpoints(
        workdir / CHECKPOINT_DIR, run_identity(config), config.checkpoint_max_to_keep
    )
    try:
        restored = checkpoints.restore(policy.trainer)  # before anything is written
    except BaseException:
        checkpoints.close()
        raise
    resumed_from = 0 if restored is None else restored.completed
    outputs = RunOutputs(workdir, enabled=writer, tensorboard=bool(config.tensorboard))
    totals = {"train_seconds": 0.0, "sample_seconds": 0.0, "execute_seconds": 0.0}
    try:
        with executor_factory(config) as local_executor:
            executor = process_executor(local_executor)  # each host runs its share
            loop = make_loop(config, policy, eval_tasks, executor, progress, paper)
            if restored is None:
                state = initial_state(loop)
            else:
                state = restored
                # Rows of a checkpoint older than the paper columns lack them: recompute.
                state.performance_rows = [
                    {**dict.fromkeys(LEARNING_COLUMNS), **row}  # unknown in older checkpoints
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
                    "%d at %d sampled programs), buffer policy %d / mutated %d, step %d",
                    i,
                    round(row["performance"] * len(eval_tasks)),
                    len(eval_tasks),
                    round(row["cumulative_performance"] * len(eval_tasks)),
                    round(row["paper_cumulative_performance"] * len(eval_tasks)),
                    row["num_sampled_programs"],
                    row["num_policy_tasks"],
                    row["num_mutated_tasks"],
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
    summary = _summary(loop, state, workdir, resumed_from, totals, time.perf_counter() - begin)
    outputs.write_summary(summary)
    return summary


def pretraining_note(config: ConfigDict) -> str:
    """The start-up line of a run without ``model.init_from``: it is not the paper's CodeIt."""
    return (
        f"model.init_from is empty: the policy ({config.model.name}) starts from random weights, "
        "so this run has no pretraining (ablation A4), unlike the paper's CodeIt, which "
        "fine-tunes CodeT5+ 220M (--config.model.init_from=/path/to/codet5p-220m)"
    )


def make_loop(
    config: ConfigDict,
    policy: Policy,
    eval_tasks: list[Task],
    executor: Executor,
    progress: bool,
    paper: PaperMetric | None = None,
) -> Loop:
    """The fixed parts of every meta-iteration, from a prepared config (``paper``: the
    config's `load_paper_metric`, read here when not given)."""
    encoding = EncodingSettings(
        config.encoding.n_examples,
        config.encoding.input_state_max,
        config.encoding.max_program_tokens,
    )
    return Loop(
        config=config,
        policy=policy,
        encoding=encoding,
        sampling=SamplingSettings(
            config.sampling.n_samples,
            float(config.sampling.temperature),
            config.sampling.tasks_per_batch,
            config.sampling.max_new_tokens,
            config.sampling.top_k,
            config.sampling.disallowed_tokens == "end",
        ),
        eval_tasks=eval_tasks,
        eval_inputs=[encode_input(t, policy.tokenizer, encoding) for t in eval_tasks],
        executor=executor,
        progress=progress,
        paper=paper if paper is not None else load_paper_metric(config),
        held_out=validation_keys(config),
    )  # fmt: skip


def known_programs(config: ConfigDict) -> list[str]:
    """Ground-truth programs, when the data has them and a Hugging Face tokenizer will be used
    (its program mask is widened with them)."""
    training = data_dir(config) / "training"
    init_from = config.model.init_from
    if not (training.is_dir() and init_from and has_hf_tokenizer(init_from)):
        return []
    return [bare_program(t.program) for t in load_codeit_dir(training) if t.program]


def make_buffer(config: ConfigDict) -> ReplayBuffer:
    """An empty buffer with the config's capacity and priority weights (0 capacity: none)."""
    settings = config.buffer.to_dict()
    settings["capacity"] = settings["capacity"] or None
    return ReplayBuffer(BufferConfig.from_mapping(settings))


def initial_buffer(loop: Loop) -> ReplayBuffer:
    """The buffer a fresh run starts with: seed tasks and the mutated files' tasks, both in the
    mutated partition with the official priority inputs (`add_mutated_tasks`)."""
    config, tokenizer = loop.config, loop.policy.tokenizer
    buffer = make_buffer(config)
    seeds = seed_tasks(config, loop.executor, loop.progress)
    files = split_paths(config.data.mutated_files)
    load = load_mutated_files(
        files,
        tokenizer,
        loop.encoding.n_examples,
        config.data.max_mutated_tasks,
        held_out=loop.held_out,
    )
    if files:
        logging.info("mutated files %s: %s", ", ".join(map(str, files)), load.summary())
    mutated = load.tasks
    n_seeds = add_mutated_tasks(buffer, seeds, tokenizer, loop.encoding, 0, key_by_parent=False)
    n_mutated = add_mutated_tasks(buffer, mutated, tokenizer, loop.encoding, age=0)
    logging.info(
        "buffer starts with %d of %d seed tasks and %d of %d mutated tasks (longer programs "
        "left out)",
        n_seeds,
        len(seeds),
        n_mutated,
        len(mutated),
    )
    return buffer


def initial_state(loop: Loop) -> RunState:
    """A fresh run: the initial buffer and a new (or pretrained) train state."""
    buffer = initial_buffer(loop)
    train_state = loop.policy.trainer.init_state(loop.policy.pretrained_params)
    logging.info("%d parameters", count_params(train_state.params))
    return RunState(
        completed=0,
        train_state=train_state,
        buffer=buffer,
        scoreboard=Scoreboard([t.key for t in loop.eval_tasks]),
    )


def train_on_buffer(loop: Loop, state: RunState, i: int) -> tuple[TrainState, list[float]]:
    """Train the policy for ``train.epochs`` epochs (meta-iteration 0: ``train.first_epochs``
    when set) on a prioritized sample of the buffer;
    returns the new train state and each epoch's mean loss."""
    t = loop.config.train
    sample = state.buffer.sample(
        t.n_policy, t.n_mutated, stage_rng(loop.config.seed, i, "buffer_sample")
    )
    if len(sample) == 0:
        logging.warning("meta-iteration %d: the buffer is empty, nothing to train on", i)
        return state.train_state, []
    batcher = BucketBatcher(
        sample.input_ids,
        sample.label_ids,
        t.batch_size,
        input_buckets=tuple(t.input_buckets),
        label_buckets=tuple(t.label_buckets),
        seed=stage_seed(loop.config.seed, i, "batches"),
        truncate=True,
        micro_batches=t.grad_accum_steps if t.loss_on_padding else 0,
    )
    train_state = state.train_state
    if t.reset_optimizer:  # CodeIt: a new AdamW at every meta-iteration's trainer.fit
        train_state = loop.policy.trainer.reset_optimizer(train_state)
    losses = []
    # A first meta-iteration may train longer: the policy learns the DSL from the seed and
    # mutated tasks before it samples anything (meta-iteration 0 samples right after).
    epochs = t.first_epochs if i == 0 and t.first_epochs else t.epochs
    for epoch in range(epochs):
        train_state, metrics = loop.policy.trainer.train_epoch(
            train_state, batcher, epoch, progress=loop.progress
        )
        logging.info(
            "meta-iteration %d epoch %d: %d examples, loss %.4f",
            i,
            epoch,
            metrics.examples,
            metrics.loss,
        )
        losses.append(metrics.loss)
    return train_state, losses


def ensure_finite(train_state: TrainState, losses: Sequence[float], i: int) -> None:
    """Stop the run when training diverged: a NaN or infinite loss or parameter must not be
    sampled from, written or checkpointed (saving it would rotate the good checkpoints away)."""
    bad_loss = [loss for loss in losses if not math.isfinite(loss)]
    if bad_loss:
        what = f"the training loss is {bad_loss[0]}"
    elif not all_finite(train_state):
        what = "the train state holds NaN or infinite values"
    else:
        return
    kept = f"checkpoint step {i} stays the latest" if i else "no checkpoint was saved"
    raise RunError(
        f"meta-iteration {i}: {what}; stopped before saving, so {kept} (lower "
        "train.learning_rate or set train.max_grad_norm before running again)"
    )


def add_experience(loop: Loop, buffer: ReplayBuffer, result: InferenceResult, i: int) -> int:
    """The buffer's new entries of meta-iteration ``i``; returns how many were added.

    Normally every relabelled task goes into the policy partition with its demonstration
    performance as priority (A2: only the programs that solve their task). A1 adds no policy
    experience (its search tasks came before training, in `meta_iteration`).
    """
    config = loop.config
    tokenizer = loop.policy.tokenizer
    if not config.add_policy_experience:
        return 0
    tasks = result.relabelled
    if not config.relabel:
        tasks = [t for t in tasks if t.extra["demonstration_performance"] == 1.0]
    return add_tasks(
        buffer,
        "policy",
        tasks,
        tokenizer,
        loop.encoding,
        age=i,
        keys=[t.parent_key for t in tasks],
        performance=[t.extra["demonstration_performance"] for t in tasks],
        distance=[t.extra["distance"] for t in tasks],
    )


def meta_iteration(
    loop: Loop, state: RunState, i: int
) -> tuple[RunState, dict[str, Any], dict[str, Any]]:
    """Meta-iteration ``i``: returns the new state, its performance row and its sample log.

    The buffer and the scoreboard are updated in place and the old train state is donated to
    the trainer, so ``state`` must not be used afterwards; after a crash the checkpoint of
    ``i - 1`` is the truth and ``i`` is run again from it.
    """
    seed = loop.config.seed
    state.buffer.advance(i)
    added = 0
    if not loop.config.add_policy_experience:  # A1: this iteration's search tasks, then train
        added = add_search_tasks(
            state.buffer,
            loop.config.no_exit,
            i,
            loop.policy.tokenizer,
            loop.encoding,
            held_out=loop.held_out,
        )
    begin = time.perf_counter()
    train_state, losses = train_on_buffer(loop, state, i)
    ensure_finite(train_state, losses, i)
    train_seconds = time.perf_counter() - begin
    result = infer(
        loop.policy.sampler,
        train_state.params,
        loop.policy.tokenizer,
        loop.eval_tasks,
        loop.eval_inputs,
        sampling_key(seed, i),
        loop.sampling,
        loop.policy.allowed_tokens,
        loop.executor,
        i,
        loop.progress,
        shown=loop.encoding.n_examples,
        constraint=loop.policy.constraint,
    )
    state.scoreboard.add(result.solutions)
    known = {p for part in PARTITIONS for p in state.buffer.programs(part)}
    demonstrations = {t.key: len(t.train) for t in loop.eval_tasks}
    rates = sample_rates(result.log, demonstrations, known)
    added += add_experience(loop, state.buffer, result, i)
    row = {
        "meta_iteration": i,
        "cumulative_performance": state.scoreboard.cumulative_performance(i),
        "performance": state.scoreboard.performance(i),
        "step": int(jax.device_get(train_state.step)),
        "num_mutated_tasks": state.buffer.size("mutated"),
        "num_policy_tasks": state.buffer.size("policy"),
        "train_seconds": train_seconds,
        "sample_seconds": result.sample_seconds,
        "execute_seconds": result.execute_seconds,
        **loop.paper.row_fields(state.scoreboard, i),
        "train_loss": losses[-1] if losses else None,
        **rates,
    }
    log = {
        "meta_iteration": i,
        "train_losses": losses,
        "relabelled_tasks": len(result.relabelled),
        "added_to_buffer": added,
        "solution_records": len(result.solutions),
        "tasks": result.log,
    }
    new_state = RunState(
        completed=i + 1,
        train_state=train_state,
        buffer=state.buffer,
        scoreboard=state.scoreboard,
        performance_rows=[*state.performance_rows, row],
    )
    return new_state, row, log


def _summary(
    loop: Loop,
    state: RunState,
    workdir: Path,
    resumed_from: int,
    totals: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    last = state.completed - 1
    solved: Sequence[str] = state.scoreboard.solved_tasks(last) if last >= 0 else []
    final = state.performance_rows[-1] if state.performance_rows else {}
    return {
        "experiment": "codeit",
        "ablation": loop.config.ablation,
        "meta_iterations_completed": state.completed,
        "resumed_from": resumed_from,
        "inference_tasks": len(loop.eval_tasks),
        "tasks_solved": len(solved),
        "solved_task_keys": list(solved),
        "paper_cumulative_performance": final.get("paper_cumulative_performance"),
        "num_sampled_programs": final.get("num_sampled_programs"),
        "buffer_policy": state.buffer.size("policy"),
        "buffer_mutated": state.buffer.size("mutated"),
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
