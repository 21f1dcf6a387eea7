"""Data-parallel training of the seq2seq policy on bucketed batches.

One jitted step per effective batch: the batch is split into micro-batches whose gradients are
summed in a `lax.scan` (gradient accumulation), then (optionally) clipped and applied by AdamW.
The loss is the sum of the token cross-entropies divided by the number of real label tokens of
the *whole* effective batch, so accumulating k micro-batches is the same step as one batch of
their union. ``loss_on_padding`` reproduces CodeIt's loss instead: its collate pads labels with
the pad id rather than -100, so transformers' T5 loss also counts the pad positions after eos,
up to the longest label of each micro-batch, as a mean over those positions; Lightning then
averages the micro-batch losses of an accumulated step.

Parallelism is `jax.jit` over the global mesh's `data` axis: the train state is replicated, the
batch is split along its leading axis, and XLA inserts the all-reduce that sums the gradients
across devices (and hosts). The code is the same for 1 device, 8 CPU devices or many hosts; on
many hosts every process builds the same global batch and hands over its own rows.

Precision: the model computes in its configured dtype; parameters, gradients, optimizer state and
the loss are float32.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from codeit_jax.policy.batching import Batch, BucketBatcher, num_real_examples
from codeit_jax.policy.mesh import DATA_AXIS, batch_sharding, data_parallel_size, make_mesh
from codeit_jax.progress import progress_bar

WEIGHT_DECAY_ON = ("matrices", "all")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (``config.train``); defaults follow CodeIt (AdamW, lr 5e-5)."""

    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    #: Linear warm-up from 0 over this many optimizer steps.
    warmup_steps: int = 0
    #: Clip the global gradient norm of the effective batch (None or 0: no clipping).
    max_grad_norm: float | None = 1.0
    #: Which parameters weight decay applies to: "matrices" (layer-norm scales exempt, usual
    #: for T5) or "all" (torch's AdamW over ``model.parameters()``, as CodeIt).
    weight_decay_on: str = "matrices"
    #: CodeIt's loss: pad positions after eos count, mean per micro-batch (module docstring).
    loss_on_padding: bool = False
    #: Examples per optimizer step over all devices and hosts (the effective batch).
    batch_size: int = 8
    #: Micro-batches per optimizer step; batch_size / grad_accum_steps rows go through the model
    #: at once and must split evenly over the devices.
    grad_accum_steps: int = 1
    #: Train with dropout (the model's rates); False runs the model deterministically.
    dropout: bool = True
    #: Seeds parameter initialisation and the dropout keys.
    seed: int = 0
    # What a CodeIt meta-iteration trains on (read by the loop, not by the `Trainer`):
    n_policy: int = 0  # experiences sampled from the policy partition
    n_mutated: int = 0  # and from the mutated partition
    epochs: int = 1
    first_epochs: int = 0  # epochs of meta-iteration 0 (0: ``epochs``)
    reset_optimizer: bool = False  # a new optimizer state each meta-iteration (CodeIt)
    input_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024)  # padded lengths (batching)
    label_buckets: tuple[int, ...] = (32, 64, 128, 256, 512)

    def __post_init__(self):
        if self.weight_decay_on not in WEIGHT_DECAY_ON:
            raise ValueError(
                f"weight_decay_on must be one of {WEIGHT_DECAY_ON}, got {self.weight_decay_on!r}"
            )
        if self.batch_size <= 0 or self.grad_accum_steps <= 0:
            raise ValueError("batch_size and grad_accum_steps must be positive")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of grad_accum_steps "
                f"{self.grad_accum_steps}"
            )


class TrainState(struct.PyTreeNode):
    """Everything a step changes; a pytree, so Orbax saves and restores it as is."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32[2] raw PRNG key; dropout keys are derived from (rng, step)


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up over ``warmup_steps`` optimizer steps, then constant (CodeIt's schedule;
    a run's length is open-ended, so no decay would know where to end)."""
    lr, warmup = config.learning_rate, config.warmup_steps
    after = optax.constant_schedule(lr)
    if warmup <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def weight_decay_mask(params: Any) -> Any:
    """Decay matrices only: layer-norm scales (vectors) are left alone, as is usual for T5."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping (unless off) then AdamW with the configured schedule."""
    adamw = optax.adamw(
        learning_rate_schedule(config),
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        mask=weight_decay_mask if config.weight_decay_on == "matrices" else None,
    )
    if not config.max_grad_norm:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adamw)


def token_loss_sum(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Sum over tokens of weight x cross-entropy, in float32 whatever the compute dtype."""
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return jnp.sum(nll * weights)


def split_micro_batches(batch: Batch, n_micro: int) -> Batch:
    """[B, T] -> [n_micro, B / n_micro, T], micro-batch i = rows i, i + n_micro, ...

    Interleaving keeps every micro-batch spread over all devices: each device's contiguous block
    of rows splits into n_micro local pieces, so no data moves between devices.
    """

    def split(x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0] // n_micro, n_micro, *x.shape[1:]).swapaxes(0, 1)

    return jax.tree.map(split, batch)


def loss_weights(micro: Batch, loss_on_padding: bool) -> tuple[jax.Array, jax.Array]:
    """(token weights [n_micro, b, T], loss scale per micro-batch [n_micro]) of a split batch.

    Default: the real label tokens, each scaled by 1 / (real tokens of the whole batch).
    ``loss_on_padding`` (CodeIt): in each micro-batch every position up to its longest label,
    pad included, of each real row, scaled so that the step loss is the mean over micro-batches
    of the mean over their positions (micro-batches holding only filler rows count for nothing).
    """
    weights = micro.label_weights
    if not loss_on_padding:
        total = jnp.maximum(jnp.sum(weights), 1.0)
        return weights, jnp.full((weights.shape[0],), 1.0 / total, jnp.float32)
    lengths = jnp.sum(weights, axis=-1)  # [n_micro, b], 0 for filler rows
    longest = jnp.max(lengths, axis=-1)  # [n_micro]
    positions = jnp.arange(weights.shape[-1])
    weights = (
        (positions[None, None, :] < longest[:, None, None]) & (lengths[:, :, None] > 0)
    ).astype(jnp.float32)
    counts = jnp.sum(weights, axis=(1, 2))
    real = counts > 0
    n_real = jnp.maximum(jnp.sum(real), 1)
    scale = jnp.where(real, 1.0 / (jnp.maximum(counts, 1.0) * n_real), 0.0)
    return weights, scale.astype(jnp.float32)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    apply_fn: Callable[..., jax.Array],
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    n_micro: int,
    deterministic: bool,
    loss_on_padding: bool = False,
    micro_sharding: NamedSharding | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on an effective batch (pure; jitted by `Trainer`)."""
    micro = split_micro_batches(batch, n_micro)
    if micro_sharding is not None:
        micro = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, micro_sharding), micro)
    weights, scales = loss_weights(micro, loss_on_padding)
    step_key = jax.random.fold_in(state.rng, state.step)

    def loss_fn(
        params: Any, mb: Batch, w: jax.Array, scale: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        logits = apply_fn(
            {"params": params},
            mb.input_ids,
            mb.attention_mask,
            mb.decoder_input_ids,
            deterministic=deterministic,
            rngs={"dropout": key},
        )
        loss = token_loss_sum(logits, mb.labels, w) * scale
        return loss, loss

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def accumulate(carry, xs):
        grads, loss = carry
        mb, w, scale, index = xs
        g, part = grad_fn(state.params, mb, w, scale, jax.random.fold_in(step_key, index))
        return (jax.tree.map(jnp.add, grads, g), loss + part), None

    if n_micro == 1:
        grads, loss = grad_fn(
            state.params,
            jax.tree.map(lambda x: x[0], micro),
            weights[0],
            scales[0],
            jax.random.fold_in(step_key, 0),
        )
    else:
        zeros = jax.tree.map(jnp.zeros_like, state.params)
        (grads, loss), _ = jax.lax.scan(
            accumulate,
            (zeros, jnp.zeros((), jnp.float32)),
            (micro, weights, scales, jnp.arange(n_micro)),
        )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "tokens": jnp.sum(batch.label_weights),
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics


@dataclasses.dataclass(frozen=True)
class EpochMetrics:
    """Summary of one epoch (or of the part of it that was run)."""

    loss: float  # mean over all real label tokens of the epoch
    step_losses: list[float]
    steps: int
    examples: int
    tokens: int
    seconds: float
    examples_per_s: float
    last_step: int

    def as_dict(self) -> dict[str, float]:
        """Scalars for logs and CSV (the per-step losses left out)."""
        summary = dataclasses.asdict(self)
        del summary["step_losses"]
        return summary


def initialize_distributed(enabled: bool) -> None:
    """`jax.distributed.initialize()` when asked; must run before anything touches devices.

    Cluster details (coordinator, process count and id) come from the environment, as on TPU
    VMs, SLURM or with JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID. JAX reads
    the first of these three itself but not the other two, so they are passed on here.
    """
    if enabled and not jax.distributed.is_initialized():
        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(
            num_processes=int(count) if count else None,
            process_id=int(index) if index else None,
        )


class Trainer:
    """Builds, shards and steps the train state of one Flax seq2seq model on one mesh."""

    def __init__(self, model: nn.Module, config: TrainConfig, mesh: Mesh | None = None):
        """Args:
        model: a Linen module called as model(input_ids, attention_mask, decoder_input_ids,
            deterministic=...) -> logits [B, T, V].
        config: optimisation and batch settings.
        mesh: a mesh with a `data` axis (default: every device of every host).
        """
        self.model = model
        self.config = config
        self.mesh = make_mesh() if mesh is None else mesh
        devices = data_parallel_size(self.mesh)
        self.n_micro = config.grad_accum_steps
        micro = config.batch_size // self.n_micro
        if micro % devices:
            raise ValueError(
                f"micro-batch of {micro} examples (batch_size {config.batch_size} / "
                f"grad_accum_steps {self.n_micro}) does not split over {devices} devices; "
                f"use a micro-batch that is a multiple of {devices}"
            )
        self.tx = make_optimizer(config)
        self.schedule = learning_rate_schedule(config)
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self._batch_sharding = batch_sharding(self.mesh)
        step = functools.partial(
            train_step,
            apply_fn=model.apply,
            tx=self.tx,
            schedule=self.schedule,
            n_micro=self.n_micro,
            deterministic=not config.dropout,
            loss_on_padding=config.loss_on_padding,
            micro_sharding=NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS)),
        )
        self._step = jax.jit(
            step,
            in_shardings=(self._replicated, self._batch_sharding),
            out_shardings=(self._replicated, self._replicated),
            donate_argnums=0,
        )
        self._init_params = jax.jit(self._model_params, out_shardings=self._replicated)
        self._new_state = jax.jit(self._state_from_params, out_shardings=self._replicated)
        self._fresh_optimizer = jax.jit(
            lambda state: state.replace(opt_state=self.tx.init(state.params)),
            out_shardings=self._replicated,
            donate_argnums=0,
        )

    def _model_params(self, key: jax.Array) -> Any:
        tokens = jnp.ones((1, 8), jnp.int32)
        variables = self.model.init(key, tokens, tokens, tokens, deterministic=True)
        return jax.tree.map(lambda p: p.astype(jnp.float32), variables["params"])

    def _state_from_params(self, params: Any, rng: jax.Array) -> TrainState:
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params), rng=rng
        )

    def _keys(self) -> tuple[jax.Array, jax.Array]:
        """(parameter init key, training key) from the configured seed."""
        init_key, train_key = jax.random.split(jax.random.PRNGKey(self.config.seed))
        return init_key, train_key

    def random_params(self) -> Any:
        """The random initial parameters of `config.seed`, replicated over the mesh."""
        return self._init_params(self._keys()[0])

    def init_state(self, params: Any | None = None) -> TrainState:
        """A fresh state at step 0, replicated over the mesh, from `config.seed`.

        `params` (e.g. converted from a pretrained checkpoint, or shared between trainers)
        replace the random initialisation; they are copied as float32.
        """
        params = self.random_params() if params is None else params
        return self._new_state(params, self._keys()[1])

    def reset_optimizer(self, state: TrainState) -> TrainState:
        """The state with a freshly initialised optimizer (moments and its step count zero);
        params, step and key kept. CodeIt's Lightning module builds a new AdamW at every
        ``trainer.fit``, i.e. every meta-iteration. ``state`` is donated."""
        return self._fresh_optimizer(state)

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state on this mesh (the target of a restore)."""
        init_key, train_key = self._keys()
        shapes = jax.eval_shape(
            lambda k, r: self._state_from_params(self._model_params(k), r), init_key, train_key
        )
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self._replicated), shapes
        )

    def shard_batch(self, batch: Batch) -> Batch:
        """The global host batch as arrays split over the mesh; each host sends its own rows."""
        rows = batch.input_ids.shape[0]
        if rows != self.config.batch_size:
            raise ValueError(f"batch has {rows} rows, the trainer expects {self.config.batch_size}")
        index_map = self._batch_sharding.addressable_devices_indices_map(batch.input_ids.shape)
        starts = [idx[0].start or 0 for idx in index_map.values()]
        stops = [rows if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
        local = slice(min(starts), max(stops))
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(
                self._batch_sharding, np.asarray(x)[local], x.shape
            ),
            batch,
        )

    def step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimizer step; `state` is donated (do not use it afterwards).

        The metrics are device scalars: reading them waits for the step to finish.
        """
        return self._step(state, self.shard_batch(batch))

    def train_epoch(
        self,
        state: TrainState,
        batcher: BucketBatcher,
        epoch: int,
        *,
        start: int = 0,
        progress: bool = True,
    ) -> tuple[TrainState, EpochMetrics]:
        """Runs the batches of `epoch` from batch `start` on, with a progress bar.

        Each step's metrics are read one step late, so the host prepares and dispatches the
        next batch while the devices still work on the current one.
        """
        if batcher.batch_size != self.config.batch_size:
            raise ValueError(
                f"batcher makes batches of {batcher.batch_size}, the trainer expects "
                f"{self.config.batch_size}"
            )
        bar = progress_bar(
            max(0, len(batcher) - start),
            f"epoch {epoch}",
            "step",
            enabled=progress and jax.process_index() == 0,
        )
        losses: list[float] = []
        loss_total, tokens, examples = 0.0, 0, 0
        begin = time.perf_counter()
        pending: tuple[dict[str, jax.Array], int] | None = None

        def record(metrics: dict[str, jax.Array], n_examples: int) -> None:
            nonlocal loss_total, tokens, examples
            values = jax.device_get(metrics)
            losses.append(float(values["loss"]))
            loss_total += float(values["loss"]) * float(values["tokens"])
            tokens += int(values["tokens"])
            examples += n_examples
            elapsed = time.perf_counter() - begin
            bar.set_postfix(loss=f"{losses[-1]:.4f}", ex_per_s=f"{examples / elapsed:.2f}")
            bar.update(1)

        try:
            for batch in batcher.epoch(epoch, start):
                n_examples = num_real_examples(batch)
                state, metrics = self.step(state, batch)
                if pending is not None:
                    record(*pending)
                pending = (metrics, n_examples)
            if pending is not None:
                record(*pending)
        finally:
            bar.close()
        seconds = time.perf_counter() - begin
        result = EpochMetrics(
            loss=loss_total / max(tokens, 1),
            step_losses=losses,
            steps=len(losses),
            examples=examples,
            tokens=tokens,
            seconds=seconds,
            examples_per_s=examples / seconds if seconds > 0 else 0.0,
            last_step=int(jax.device_get(state.step)),
        )
        return state, result
