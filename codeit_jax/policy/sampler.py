"""Jitted, batched sampling of programs from the T5 policy.

One call samples K programs for each of B tasks:

* the encoder runs once per task, and the cross-attention keys/values of every decoder layer are
  projected once per task; the task's K decoder rows attend to them in groups (no copies);
* the decoder runs one token per step for all B*K rows at once, with a fixed-size self-attention
  KV cache updated in place (``lax.dynamic_update_slice``), inside a ``lax.while_loop`` that
  stops as soon as every row has emitted EOS (or after ``max_new_tokens``);
* the task batch is split over the ``data`` axis of the mesh with ``shard_map``; each device
  runs its own loop, so a device whose tasks are done stops early.

Token conventions are T5's: pad = 0 is also the decoder start token, EOS = 1. A finished row
emits pad. The allowed-token mask (bool [V]) is used in one of two ways:

* ``end_on_disallowed=False`` (ours): the logits of disallowed tokens are set to -inf before
  sampling, so they are never produced. EOS is always allowed, whatever the mask says, so that
  every row can finish; pad is treated like any other token (a program-vocabulary mask normally
  leaves it out; without a mask everything is allowed, as in transformers' ``generate``).
* ``end_on_disallowed=True`` (CodeIt's ``BadTokenEnforcedEndLogitsProcessor``): every token can
  be sampled, but a row whose previous token is not allowed emits EOS next.

With a ``constraint`` (constrained decoding, e.g. `codeit_jax.policy.grammar.TypedGrammar`), the
mask is per row and per step instead: a small automaton state per row rides in the loop carry,
``constraint.allowed`` picks the tokens that keep the row inside the program grammar (EOS only
where a program may end) and ``constraint.advance`` moves the state on with the sampled token,
all inside the jitted loop. The static ``allowed_tokens`` mask and ``end_on_disallowed`` do
not apply then; the candidates are the tokens the constraint can ever allow.

``top_k`` > 0 keeps only the ``top_k`` largest logits of a step (ties at the k-th value kept,
as transformers' top-k warper does; among the allowed tokens in the first mode), before
temperature sampling: CodeIt samples with ``generate``'s default top-k of 50.

When the allowed tokens are a small part of the vocabulary (CodeIt's program vocabulary), the
decoder computes only their logits (``T5.decode(head=...)``), skipping most of the LM
head, which is the largest matmul of a step at codet5 sizes; the samples are the same as with
the full head and a mask (see ``Sampler.candidates``).

Shapes: inputs are padded to the smallest length bucket that holds the longest one (default:
powers of two from 32 to 2048), the task batch to a multiple of the device count (or to the
fixed ``task_batch`` given to ``Sampler``, splitting larger calls into chunks), so a run compiles
a handful of programs. ``temperature`` is a traced value and does not trigger recompiles.

Randomness and what is guaranteed:

* Same params, inputs, key, settings and mesh -> bitwise the same samples.
* Sample k of the task at position i of the call draws its randomness from
  ``fold_in(key, i)`` split K ways per step, and from nothing else. So a task's samples do not
  depend on the other tasks in the call, on the task batch padding or chunking, or on the number
  of devices — except through floating-point reassociation of the model's arithmetic, which can
  in principle flip a near-tie (tests check equality between 1 and 8 CPU devices on a tiny
  model).
* Greedy mode ignores the key and picks the first maximal allowed logit.

Sampling is by inverse CDF and top-k finds its threshold without sorting
(`codeit_jax.policy.sampling`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from codeit_jax.policy.batching import bucket_length, pad_inputs
from codeit_jax.policy.mesh import (
    batch_sharding,
    batch_spec,
    data_parallel_size,
    global_array,
    host_array,
    make_mesh,
    padded_batch_size,
    replicated_sharding,
)
from codeit_jax.policy.sampling import kth_largest, sample_from_logits
from codeit_jax.policy.t5 import T5, T5Config, init_cache, lm_head_matrix

#: Default input length buckets: powers of two from 32.
DEFAULT_LENGTH_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048)

#: Positions per segment of the decode loop (`cache_segments`): a step attends to the cache
#: chunks of its segment and the ones before, not to the whole cache.
DEFAULT_CACHE_CHUNK = 32

#: Opt-in XLA options for the sampling program on CPU (``Sampler(compiler_options=...)``):
#: matmuls without a fused reduction go to XLA's own (Eigen) kernels instead of the YNNPACK
#: library, reductions stay with YNNPACK. On one core Eigen runs the decoder's small-batch
#: matmuls faster; with two threads on a shared machine it burned more CPU time and was slower,
#: so XLA's defaults stay the default (docs/benchmarks.md). Per program: the trainer is not
#: affected either way.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How many programs per task and how they are drawn (``config.sampling``)."""

    n_samples: int
    temperature: float  # 0: greedy
    tasks_per_batch: int
    max_new_tokens: int
    top_k: int = 0  # 0: off; CodeIt samples with transformers' default of 50
    end_on_disallowed: bool = False  # CodeIt: a disallowed token ends the sample (else masked)
    constrained: bool = False  # sample only well-formed, well-typed programs (a `Constraint`)


class Constraint(Protocol):
    """A token automaton run per row inside the decode loop (see the module docstring).

    ``tables`` are numpy arrays, passed to the jitted program as arguments; the object itself
    is a static argument (hashed by identity), so keep one per policy. ``allowed`` must never
    return an all-False row for a state reached through allowed tokens with at least
    ``min_new_tokens()`` tokens in all, and must allow EOS within ``max_new_tokens``. It never
    allows pad, and ``advance`` leaves a row whose token is pad (a finished row) unchanged.
    """

    token_mask: np.ndarray  # bool [vocab]: the tokens it can ever allow

    def tables(self) -> dict[str, np.ndarray]: ...

    def min_new_tokens(self) -> int: ...

    def init(self, tables: dict, n: int, max_new_tokens: int) -> Any: ...

    def allowed(self, tables: dict, state: Any, remaining: jax.Array, candidates: jax.Array
                ) -> jax.Array: ...  # fmt: skip

    def advance(self, tables: dict, state: Any, token: jax.Array) -> Any: ...


def _sample_shard(
    model: T5,
    params: dict,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    task_index: jax.Array,
    active: jax.Array,
    key: jax.Array,
    candidates: jax.Array,
    candidate_ok: jax.Array,
    continue_ok: jax.Array,
    temperature: jax.Array,
    grammar_tables: dict,
    *,
    num_samples: int,
    max_new_tokens: int,
    greedy: bool,
    full_head: bool,
    top_k: int,
    end_on_disallowed: bool,
    constraint: Constraint | None,
    cache_chunk: int | None = None,
) -> jax.Array:
    """Tokens [b, K, max_new_tokens] for the b tasks of one shard (pad after EOS).

    ``candidates`` [A]: the token ids that may be produced, ascending, where ``candidate_ok``
    (padding entries are not); with ``full_head`` they are the whole vocabulary in order and the
    decoder computes every logit, otherwise only the candidates' logits. With
    ``end_on_disallowed``, ``continue_ok`` [V] says which previous tokens a row may go on after.
    With a ``constraint``, its per-row mask over the candidates applies too (``grammar_tables``:
    its arrays).
    """
    config = model.config
    variables = {"params": params}
    b = input_ids.shape[0]
    n = b * num_samples
    encoded = model.apply(variables, input_ids, attention_mask, method=T5.encode)
    cross_kv = model.apply(variables, encoded, method=T5.cross_kv)
    task_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, task_index)
    # The head's columns for the candidates, laid out once for all steps.
    head = lm_head_matrix(config, params, None if full_head else candidates)

    def next_tokens(logits: jax.Array, step: jax.Array, allowed: jax.Array) -> jax.Array:
        logits = jnp.where(candidate_ok & allowed, logits, -jnp.inf)
        if greedy:
            return candidates[jnp.argmax(logits, axis=-1)]
        if 0 < top_k < logits.shape[-1]:
            logits = jnp.where(logits < kth_largest(logits, top_k)[:, None], -jnp.inf, logits)
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(task_keys, step)
        row_keys = jax.vmap(lambda k: jax.random.split(k, num_samples))(step_keys).reshape(n)
        return candidates[sample_from_logits(row_keys, logits / temperature)]

    def unfinished(stop: int) -> Callable[[tuple], jax.Array]:
        def cond(state: tuple) -> jax.Array:
            step, _, _, finished, _, _ = state
            return (step < stop) & ~jnp.all(finished)

        return cond

    def step_fn(state: tuple) -> tuple:
        step, tokens, last, finished, cache, grammar = state
        logits, cache = model.apply(
            variables,
            last[:, None],
            cross_kv,
            attention_mask,
            cache,
            step,
            head=head,
            method=T5.decode,
        )
        allowed = True
        if constraint is not None:
            allowed = constraint.allowed(grammar_tables, grammar, max_new_tokens - step, candidates)
            # Materialise the mask once: fused into the sampler's several passes over the
            # logits, XLA would recompute it in each of them.
            allowed = jax.lax.optimization_barrier(allowed)
        token = next_tokens(logits[:, 0], step, allowed)
        if end_on_disallowed:  # the start token (step 0) is never a reason to stop
            token = jnp.where((step > 0) & ~continue_ok[last], config.eos_token_id, token)
        token = jnp.where(finished, config.pad_token_id, token)
        if constraint is not None:  # finished rows emit pad, which leaves their state alone
            grammar = constraint.advance(grammar_tables, grammar, token)
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, step))
        return step + 1, tokens, token, finished | (token == config.eos_token_id), cache, grammar

    state = (
        jnp.int32(0),
        jnp.full((n, max_new_tokens), config.pad_token_id, jnp.int32),
        jnp.full((n,), config.decoder_start_token_id, jnp.int32),
        ~jnp.repeat(active, num_samples),  # padding tasks start finished
        tuple(((), ()) for _ in range(config.num_decoder_layers)),
        None if constraint is None else constraint.init(grammar_tables, n, max_new_tokens),
    )
    for start, stop in cache_segments(max_new_tokens, cache_chunk):
        step, tokens, last, finished, cache, grammar = state
        chunk = init_cache(config, n, stop - start)  # the positions this segment writes
        cache = tuple((k + (ck,), v + (cv,)) for (k, v), (ck, cv) in zip(cache, chunk, strict=True))
        state = (step, tokens, last, finished, cache, grammar)
        state = jax.lax.while_loop(unfinished(stop), step_fn, state)
    return state[1].reshape(b, num_samples, max_new_tokens)


def cache_segments(max_new_tokens: int, chunk: int | None) -> list[tuple[int, int]]:
    """[start, stop) of the decode loop's segments: ``chunk`` positions each (the last may be
    shorter); one segment for a ``chunk`` of None or 0."""
    if not chunk or chunk >= max_new_tokens:
        return [(0, max_new_tokens)]
    return [(s, min(s + chunk, max_new_tokens)) for s in range(0, max_new_tokens, chunk)]


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    """``tokens`` [B, K, max_new_tokens] (pad after EOS); ``lengths`` [B, K]: tokens up to and
    including EOS, or ``max_new_tokens`` for a row that never emitted EOS."""

    tokens: np.ndarray
    lengths: np.ndarray


def sequence_lengths(tokens: np.ndarray, eos_id: int = 1) -> np.ndarray:
    """Tokens up to and including the first EOS along the last axis (all of them if none)."""
    is_eos = tokens == eos_id
    return np.where(is_eos.any(-1), is_eos.argmax(-1) + 1, tokens.shape[-1])


class Sampler:
    """Samples K programs per task from a T5 policy on all devices of a mesh.

    Holds the jitted program (compiled once per input-length bucket, task batch, K,
    ``max_new_tokens`` and greedy flag); parameters are passed per call, so a trainer can hand
    over fresh weights every meta-iteration without recompiling.
    """

    def __init__(
        self,
        config: T5Config,
        mesh: Mesh | None = None,
        length_buckets: Sequence[int] = DEFAULT_LENGTH_BUCKETS,
        task_batch: int | None = None,
        restrict_head: bool = True,
        cache_chunk: int | None = DEFAULT_CACHE_CHUNK,
        compiler_options: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.restrict_head = restrict_head
        self.cache_chunk = cache_chunk
        self.model = T5(config)
        self.mesh = make_mesh() if mesh is None else mesh
        self.length_buckets = tuple(sorted(length_buckets))
        devices = data_parallel_size(self.mesh)
        if task_batch is not None and (task_batch <= 0 or task_batch % devices):
            raise ValueError(
                f"task_batch={task_batch} must be a positive multiple of the {devices} devices"
            )
        self.task_batch = task_batch
        self.compiler_options = dict(compiler_options or {})  # {}: XLA's defaults
        self._sample = jax.jit(
            self._sharded,
            static_argnames=(
                "num_samples", "max_new_tokens", "greedy", "full_head", "top_k",
                "end_on_disallowed", "constraint",
            ),
            compiler_options=self.compiler_options or None,
        )  # fmt: skip

    def _sharded(self, params, input_ids, mask, task_index, active, key, candidates,
                 candidate_ok, continue_ok, temperature, grammar_tables, *, num_samples: int,
                 max_new_tokens: int, greedy: bool, full_head: bool, top_k: int,
                 end_on_disallowed: bool, constraint: Constraint | None):  # fmt: skip
        shard = partial(
            _sample_shard,
            self.model,
            num_samples=num_samples,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            full_head=full_head,
            top_k=top_k,
            end_on_disallowed=end_on_disallowed,
            constraint=constraint,
            cache_chunk=self.cache_chunk,
        )
        rows, whole = batch_spec(), PartitionSpec()
        return jax.shard_map(
            shard,
            mesh=self.mesh,
            in_specs=(whole, rows, rows, rows, rows, whole, whole, whole, whole, whole, whole),
            out_specs=rows,
            check_vma=False,
        )(params, input_ids, mask, task_index, active, key, candidates, candidate_ok,
          continue_ok, temperature, grammar_tables)  # fmt: skip

    def _check_mask(self, allowed_tokens: np.ndarray | None) -> np.ndarray:
        """The mask as a bool [V] copy (all True for None)."""
        vocab = self.config.vocab_size
        if allowed_tokens is None:
            return np.ones(vocab, bool)
        allowed_tokens = np.asarray(allowed_tokens)
        if allowed_tokens.shape != (vocab,) or allowed_tokens.dtype != bool:
            raise ValueError(
                f"allowed_tokens must be a bool array of shape ({vocab},), "
                f"got {allowed_tokens.dtype} {allowed_tokens.shape}"
            )
        return allowed_tokens.copy()

    def _constraint_mask(self, constraint: Constraint) -> np.ndarray:
        """The constraint's token set as a mask over the model's vocabulary."""
        mask = np.asarray(constraint.token_mask, bool)
        if mask.shape[0] > self.config.vocab_size:
            raise ValueError(
                f"the constraint's vocabulary ({mask.shape[0]}) exceeds the model's "
                f"({self.config.vocab_size})"
            )
        return np.pad(mask, (0, self.config.vocab_size - mask.shape[0]))

    def candidates(
        self, allowed_tokens: np.ndarray | None, end_on_disallowed: bool = False
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """(candidate ids, which are real, full_head) for an allowed-token mask.

        EOS is added to the mask. When the allowed tokens, padded to a multiple of 32, are at
        most half the vocabulary (and ``restrict_head``), only their logits are computed;
        otherwise all are, and the mask is applied to them. Either way the candidates are in
        ascending id order, so the two paths sample the same tokens from the same key (up to
        float rounding) and greedy ties go to the lowest id. With ``end_on_disallowed`` every
        token is a candidate (the mask only decides where a sample ends).
        """
        vocab = self.config.vocab_size
        allowed_tokens = self._check_mask(allowed_tokens)
        if end_on_disallowed:
            return np.arange(vocab, dtype=np.int32), np.ones(vocab, bool), True
        allowed_tokens[self.config.eos_token_id] = True
        ids = np.flatnonzero(allowed_tokens).astype(np.int32)
        padded = -(-len(ids) // 32) * 32
        if not self.restrict_head or 2 * padded > vocab:
            return np.arange(vocab, dtype=np.int32), allowed_tokens, True
        ok = np.arange(padded) < len(ids)
        return np.pad(ids, (0, padded - len(ids))), ok, False

    def calls(
        self,
        params: dict,
        inputs: Sequence[Sequence[int]],
        key: jax.Array,
        *,
        num_samples: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        allowed_tokens: np.ndarray | None = None,
        top_k: int = 0,
        end_on_disallowed: bool = False,
        constraint: Constraint | None = None,
    ) -> Iterator[tuple[int, tuple, dict[str, Any]]]:
        """The calls of the jitted program that sample K = ``num_samples`` programs for each
        task's encoder input tokens (unpadded lists), one per chunk of tasks: (number of real
        tasks, arguments, static keywords), validated, padded and placed. Multi-host: every
        process passes the same values. `sample` and `lower` take these keywords.

        ``top_k`` > 0 samples from the ``top_k`` largest logits of each step only;
        ``end_on_disallowed`` switches the mask from "never sample" to CodeIt's "end the sample
        after a disallowed token" (see the module docstring). A ``constraint`` replaces both
        (pass neither with it) and needs ``max_new_tokens >= constraint.min_new_tokens()``.
        """
        if num_samples <= 0 or max_new_tokens <= 0:
            raise ValueError("num_samples and max_new_tokens must be positive")
        if constraint is not None and max_new_tokens < constraint.min_new_tokens():
            raise ValueError(
                f"max_new_tokens={max_new_tokens} is below the {constraint.min_new_tokens()} "
                "tokens constrained decoding needs to guarantee a complete program"
            )
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
        if not inputs:
            raise ValueError("no tasks to sample")
        if not greedy and not temperature > 0:
            raise ValueError(f"temperature must be > 0 (use greedy=True), got {temperature}")
        grammar_tables: dict = {}
        if constraint is not None:
            if end_on_disallowed or allowed_tokens is not None:
                raise ValueError(
                    "a constraint replaces allowed_tokens and end_on_disallowed: pass neither"
                )
            allowed_tokens = self._constraint_mask(constraint)
            grammar_tables = constraint.tables()
        candidates, candidate_ok, full_head = self.candidates(allowed_tokens, end_on_disallowed)
        continue_ok = self._check_mask(allowed_tokens)
        length = bucket_length(max(1, max(len(s) for s in inputs)), self.length_buckets)
        chunk = self.task_batch or padded_batch_size(len(inputs), self.mesh)
        replicated, rows = replicated_sharding(self.mesh), batch_sharding(self.mesh)
        params = jax.tree_util.tree_map(lambda x: global_array(x, replicated), params)
        shared = [
            global_array(x, replicated)
            for x in (key, candidates, candidate_ok, continue_ok, np.float32(temperature))
        ]
        shared.append(jax.tree_util.tree_map(lambda x: global_array(x, replicated), grammar_tables))
        for start in range(0, len(inputs), chunk):
            part = inputs[start : start + chunk]
            ids, mask = pad_inputs(part, length, self.config.pad_token_id)
            padding = chunk - len(part)
            ids = np.pad(ids, ((0, padding), (0, 0)), constant_values=self.config.pad_token_id)
            mask = np.pad(mask, ((0, padding), (0, 0)))
            index = np.arange(start, start + chunk, dtype=np.int32)
            active = np.arange(chunk) < len(part)
            batch = [global_array(x, rows) for x in (ids, mask, index, active)]
            static = {
                "num_samples": num_samples,
                "max_new_tokens": max_new_tokens,
                "greedy": greedy,
                "full_head": full_head,
                "top_k": top_k,
                "end_on_disallowed": end_on_disallowed,
                "constraint": constraint,
            }
            yield len(part), (params, *batch, *shared), static

    def lower(
        self, params: dict, inputs: Sequence[Sequence[int]], key: jax.Array, **settings: Any
    ) -> jax.stages.Lowered:
        """The lowered program `sample` runs for the first chunk of these arguments (to compile
        ahead of time, time the compile, or read its HLO and cost analysis)."""
        _, args, static = next(self.calls(params, inputs, key, **settings))
        return self._sample.lower(*args, **static)

    def sample(
        self, params: dict, inputs: Sequence[Sequence[int]], key: jax.Array, **settings: Any
    ) -> SampleOutput:
        """K samples for each task's encoder input tokens (the keywords are `calls`')."""
        outputs = [
            host_array(self._sample(*args, **static))[:n_tasks]
            for n_tasks, args, static in self.calls(params, inputs, key, **settings)
        ]
        tokens = np.concatenate(outputs)
        return SampleOutput(tokens, sequence_lengths(tokens, self.config.eos_token_id))
