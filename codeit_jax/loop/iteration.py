"""One CodeIt meta-iteration, and what every meta-iteration shares (`Loop`).

Meta-iteration ``i``: sample the replay buffer and train the policy on it; sample programs for
every inference task, execute them and relabel the outcomes (`codeit_jax.loop.inference`); add
the experience to the buffer; score. The job (`codeit_jax.jobs.codeit`) writes the files and
checkpoints after each one. This module only wires the stages together.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
from absl import logging

from codeit_jax import block_cache
from codeit_jax.config import ModelConfig, RunConfig
from codeit_jax.errors import RunError
from codeit_jax.loop.inference import Executor, InferenceResult, infer
from codeit_jax.loop.integrity import all_finite
from codeit_jax.loop.policy import Policy, has_hf_tokenizer
from codeit_jax.loop.seeds import seed_tasks, validation_keys
from codeit_jax.loop.state import RunState
from codeit_jax.loop.streams import sampling_key, stage_rng, stage_seed
from codeit_jax.policy.batching import BucketBatcher
from codeit_jax.policy.encoding import bare_program
from codeit_jax.policy.t5 import count_params
from codeit_jax.policy.trainer import TrainState
from codeit_jax.replay.buffer import PARTITIONS, ReplayBuffer
from codeit_jax.replay.experience import add_experiences, encode_inputs
from codeit_jax.replay.metrics import Scoreboard
from codeit_jax.replay.mutated_tasks import add_mutated_tasks, add_search_tasks, load_mutated_files
from codeit_jax.replay.paper_metric import PaperMetric, load_paper_metric
from codeit_jax.replay.sample_stats import SAMPLE_COLUMNS, sample_rates
from codeit_jax.tasks import Task, load_codeit_dir

#: The rates of `codeit_jax.replay.sample_stats` in the order the progress line names them.
SAMPLE_RATES = SAMPLE_COLUMNS[1:]


@dataclasses.dataclass
class Loop:
    """What every meta-iteration uses and never changes."""

    config: RunConfig
    policy: Policy
    eval_tasks: list[Task]
    eval_inputs: list[list[int]]
    executor: Executor
    progress: bool
    paper: PaperMetric  # the paper's figure: the policy's solutions merged with the mutation's
    #: Validation task keys (``eval_tasks="validation"``): their descendants stay out of the
    #: mutated partition.
    held_out: frozenset[str] = frozenset()
    #: Inference tasks whose model input is cut to ``encoding.input_state_max`` per side: kept
    #: (as CodeIt keeps them), but the model sees only the start of each side.
    inputs_cut: int = 0


def pretraining_note(model: ModelConfig) -> str:
    """The start-up line of a run without ``model.init_from``: it is not the paper's CodeIt."""
    return (
        f"model.init_from is empty: the policy ({model.name}) starts from random weights, "
        "so this run has no pretraining (ablation A4), unlike the paper's CodeIt, which "
        "fine-tunes CodeT5+ 220M (--config.model.init_from=/path/to/codet5p-220m)"
    )


def make_loop(
    config: RunConfig,
    policy: Policy,
    eval_tasks: list[Task],
    executor: Executor,
    progress: bool,
    paper: PaperMetric | None = None,
) -> Loop:
    """The fixed parts of every meta-iteration (``paper``: the config's `load_paper_metric`,
    read here when not given)."""
    if paper is None:
        paper = load_paper_metric(config.metric, config.sampling.n_samples)
    eval_inputs, cut = encode_inputs(eval_tasks, policy.tokenizer, config.encoding)
    logging.info(
        "inference inputs: %d of %d tasks cut to encoding.input_state_max=%d tokens per side "
        "(kept: the model sees the start of each side, as in CodeIt)",
        cut,
        len(eval_tasks),
        config.encoding.input_state_max,
    )
    return Loop(
        config=config,
        policy=policy,
        eval_tasks=eval_tasks,
        eval_inputs=eval_inputs,
        executor=executor,
        progress=progress,
        paper=paper,
        held_out=validation_keys(config.data),
        inputs_cut=cut,
    )


def known_programs(config: RunConfig) -> list[str]:
    """Ground-truth programs, when the data has them and a Hugging Face tokenizer will be used
    (its program mask is widened with them)."""
    training = config.data.training
    init_from = config.model.init_from
    if not (training.is_dir() and init_from and has_hf_tokenizer(init_from)):
        return []
    return [bare_program(t.program) for t in load_codeit_dir(training) if t.program]


def initial_buffer(loop: Loop) -> ReplayBuffer:
    """The buffer a fresh run starts with: seed tasks and the mutated files' tasks, both in the
    mutated partition with the official priority inputs (`add_mutated_tasks`); the seeds are
    marked so that they are counted apart."""
    config, tokenizer = loop.config, loop.policy.tokenizer
    buffer = ReplayBuffer(config.buffer)
    seeds = seed_tasks(config.data, config.seed, loop.executor, loop.progress)
    files = list(config.data.mutated_files)
    load = load_mutated_files(
        files,
        tokenizer,
        config.encoding.n_examples,
        config.data.max_mutated_tasks,
        held_out=loop.held_out,
    )
    if files:
        logging.info("mutated files %s: %s", ", ".join(map(str, files)), load.summary())
    mutated = load.tasks
    encoding = config.encoding
    n_seeds = add_mutated_tasks(
        buffer, seeds, tokenizer, encoding, 0, key_by_parent=False, seed=True
    )
    n_mutated = add_mutated_tasks(buffer, mutated, tokenizer, encoding, age=0)
    counts = buffer.task_counts()
    logging.info(
        "buffer starts with %d seed tasks (%d of %d added) and %d mutated tasks (%d of %d "
        "added), together its mutated partition (longer programs left out; an entry added "
        "again with the same parent and program replaces the earlier one)",
        counts.seed,
        n_seeds,
        len(seeds),
        counts.mutated,
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
        input_buckets=t.input_buckets,
        label_buckets=t.label_buckets,
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
    experiences = result.relabelled
    if not config.relabel:
        experiences = [e for e in experiences if e.performance == 1.0]
    return add_experiences(buffer, "policy", experiences, tokenizer, config.encoding, age=i)


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
            loop.config.encoding,
            held_out=loop.held_out,
        )
    begin = time.perf_counter()
    train_state, losses = train_on_buffer(loop, state, i)
    ensure_finite(train_state, losses, i)
    train_seconds = time.perf_counter() - begin
    block_cache.release()  # the train step's kept temporaries: the sampler needs other sizes
    result = infer(
        loop.policy.sampler,
        train_state.params,
        loop.policy.tokenizer,
        loop.eval_tasks,
        loop.eval_inputs,
        sampling_key(seed, i),
        loop.config.sampling,
        loop.policy.allowed_tokens,
        loop.executor,
        i,
        loop.progress,
        shown=loop.config.encoding.n_examples,
        constraint=loop.policy.constraint,
    )
    state.scoreboard.add(result.solutions)
    known = {p for part in PARTITIONS for p in state.buffer.programs(part)}
    demonstrations = {t.key: len(t.train) for t in loop.eval_tasks}
    rates = sample_rates(result.log, demonstrations, known)
    added += add_experience(loop, state.buffer, result, i)
    counts = state.buffer.task_counts()
    row = {
        "meta_iteration": i,
        "cumulative_performance": state.scoreboard.cumulative_performance(i),
        "performance": state.scoreboard.performance(i),
        "step": int(jax.device_get(train_state.step)),
        "num_mutated_tasks": counts.mutated,  # without the seeds (with them: seed unknown)
        "num_policy_tasks": counts.policy,
        "train_seconds": train_seconds,
        "sample_seconds": result.sample_seconds,
        "execute_seconds": result.execute_seconds,
        **loop.paper.row_fields(state.scoreboard, i),
        "train_loss": losses[-1] if losses else None,
        **rates,
        "num_seed_tasks": counts.seed,
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
