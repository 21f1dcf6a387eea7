"""Data-parallel trainer: device-count invariance, accumulation, resumption, overfitting."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from codeit_jax.loop.checkpoint import CheckpointStore
from codeit_jax.policy.batching import EOS_ID, BucketBatcher, pad_batch
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.t5 import T5, named_config
from codeit_jax.policy.trainer import (
    TrainConfig,
    Trainer,
    TrainState,
    learning_rate_schedule,
    make_optimizer,
    weight_decay_mask,
)

CHILD = Path(__file__).with_name("trainer_restart_child.py")


#: Adam's eps is raised from 1e-8 so that parameters whose gradient is ~1e-9 (float noise
#: around zero) do not turn that noise into a full-size update: the comparisons below are
#: about the gradient step, not about Adam's sign-like behaviour on vanishing gradients.
#: 1e-6 was not enough: where |g| ~ eps an update moves lr * eps / (|g| + eps)^2 ~ 750 per unit
#: of gradient, so 1-vs-8-device summation-order noise of ~1e-8 reached 1.3e-5 in the params
#: for some batches and dropout masks (4 batch pairs: up to 1.3e-5 at 1e-6, <= 4e-6 at 1e-5).
CONFIG = TrainConfig(learning_rate=3e-3, weight_decay=0.0, adam_eps=1e-5, batch_size=8)


@pytest.fixture(scope="module")
def model() -> T5:
    return T5(named_config("tiny", dtype="float32"))


@pytest.fixture(scope="module")
def params(model: T5):
    """One random initialisation shared by all trainers (each init would compile again)."""
    return jax.device_get(Trainer(model, CONFIG).random_params())


@pytest.fixture(scope="module")
def dropout_trainers(model: T5) -> dict[int, Trainer]:
    """Trainers with dropout on, over 8 devices and over 1 device."""
    return {
        8: Trainer(model, CONFIG, make_mesh()),
        1: Trainer(model, CONFIG, make_mesh(jax.devices()[:1])),
    }


@pytest.fixture(scope="module")
def trainer(model: T5) -> Trainer:
    """8 devices, dropout off."""
    return Trainer(model, dataclasses.replace(CONFIG, dropout=False))


def _examples(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random examples with very different label lengths (so loss normalisation matters)."""
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(2, 64, rng.integers(3, 16)) for _ in range(n)]
    labels = [np.append(rng.integers(2, 64, rng.integers(0, 15)), EOS_ID) for _ in range(n)]
    return inputs, labels


def _batch(n: int, seed: int):
    inputs, labels = _examples(n, seed)
    return pad_batch(inputs, labels, n, 16, 16)


def _assert_trees_close(a, b, atol: float) -> None:
    for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


def _run(trainer: Trainer, params, batches) -> tuple[TrainState, list[float]]:
    state, losses = trainer.init_state(params), []
    for batch in batches:
        state, metrics = trainer.step(state, batch)
        losses.append(float(metrics["loss"]))
    return state, losses


def test_eight_devices_match_one_device(dropout_trainers, params):
    assert len(jax.devices()) == 8, "conftest should force 8 host devices"
    batches = [_batch(8, seed) for seed in (0, 1)]
    state_1, losses_1 = _run(dropout_trainers[1], params, batches)
    state_8, losses_8 = _run(dropout_trainers[8], params, batches)
    assert state_8.params["shared"]["embedding"].sharding.mesh.devices.size == 8
    np.testing.assert_allclose(losses_8, losses_1, atol=1e-5, rtol=0)
    assert losses_1[0] != losses_1[1]
    _assert_trees_close(state_8.params, state_1.params, atol=1e-5)
    _assert_trees_close(state_8.opt_state, state_1.opt_state, atol=1e-5)
    # The steps really moved the parameters far beyond that tolerance.
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), state_1.params, params)
    assert max(jax.tree.leaves(moved)) > 1e-3


def test_four_micro_batches_equal_one_step_on_their_union(model: T5, trainer: Trainer, params):
    batch = _batch(8, seed=3)
    # Micro-batch i holds rows i and i + 4: their token counts differ, so averaging per
    # micro-batch instead of over the union would give a different step.
    counts = [batch.label_weights[i::4].sum() for i in range(4)]
    assert len(set(counts)) > 1
    accumulated = Trainer(
        model, dataclasses.replace(trainer.config, grad_accum_steps=4), make_mesh(jax.devices()[:2])
    )
    state_u, losses_u = _run(trainer, params, [batch, batch])
    state_a, losses_a = _run(accumulated, params, [batch, batch])
    np.testing.assert_allclose(losses_a, losses_u, atol=1e-5, rtol=0)
    _assert_trees_close(state_a.params, state_u.params, atol=1e-5)
    _assert_trees_close(state_a.opt_state, state_u.opt_state, atol=1e-5)


def test_zero_weight_fillers_do_not_change_the_step(trainer: Trainer, params):
    inputs, labels = _examples(8, seed=4)
    full = pad_batch(inputs, labels, 8, 16, 16)
    # Five real examples plus three fillers vs the same five with the other three zero-weighted.
    partial = pad_batch(inputs[:5], labels[:5], 8, 16, 16)
    reweighted = full._replace(label_weights=full.label_weights * (np.arange(8) < 5)[:, None])
    state_p, loss_p = _run(trainer, params, [partial])
    state_r, loss_r = _run(trainer, params, [reweighted])
    np.testing.assert_allclose(loss_p, loss_r, atol=1e-6)
    _assert_trees_close(state_p.params, state_r.params, atol=1e-6)


def _official_loss(model: T5, params, batch, n_micro: int) -> float:
    """CodeIt's loss by hand: per micro-batch (rows i, i + n_micro, ...), the mean cross-entropy
    over every label position up to its longest label (pad targets included), then the mean
    over micro-batches."""
    logits = model.apply(
        {"params": params}, batch.input_ids, batch.attention_mask, batch.decoder_input_ids
    )
    logp = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
    nll = -np.take_along_axis(np.asarray(logp), batch.labels[..., None], axis=-1)[..., 0]
    losses = []
    for m in range(n_micro):
        rows = np.arange(m, len(batch.labels), n_micro)
        lengths = batch.label_weights[rows].sum(-1)
        real = rows[lengths > 0]
        if len(real):
            longest = int(lengths.max())
            losses.append(nll[real, :longest].mean())
    return float(np.mean(losses))


@pytest.mark.parametrize("n_micro", [1, 2])
def test_loss_on_padding_is_codeits_loss(model: T5, trainer: Trainer, params, n_micro):
    config = dataclasses.replace(trainer.config, loss_on_padding=True, grad_accum_steps=n_micro)
    official = Trainer(model, config, make_mesh(jax.devices()[:2]))
    inputs, labels = _examples(8, seed=5)
    batch = pad_batch(inputs[:7], labels[:7], 8, 16, 16)  # one zero-weight filler row
    _, losses = _run(official, params, [batch])
    expected = _official_loss(model, jax.device_get(params), batch, n_micro)
    np.testing.assert_allclose(losses[0], expected, rtol=1e-5)
    _, ours = _run(trainer, params, [batch])
    assert abs(ours[0] - expected) > 1e-3  # the default counts real tokens only


def test_reset_optimizer_starts_adam_afresh(trainer: Trainer, params):
    state, _ = _run(trainer, params, [_batch(8, seed=6)])
    before = jax.device_get(state)
    fresh = jax.device_get(trainer.reset_optimizer(state))
    _assert_trees_close(fresh.params, before.params, atol=0)
    assert int(fresh.step) == int(before.step) == 1
    np.testing.assert_array_equal(fresh.rng, before.rng)
    expected = jax.device_get(trainer.tx.init(before.params))
    _assert_trees_close(fresh.opt_state, expected, atol=0)
    moments = [x for x in jax.tree.leaves(before.opt_state) if np.ndim(x) > 0]
    assert any(np.abs(x).max() > 0 for x in moments)  # there was something to reset


def test_clipping_off_and_decay_on_every_parameter(model: T5, params):
    """max_grad_norm 0 is plain AdamW; weight_decay_on="all" decays the layer-norm scales too,
    as torch's AdamW over every parameter does."""
    base = TrainConfig(learning_rate=1e-2, weight_decay=0.1, max_grad_norm=0.0, batch_size=8)
    grads = jax.tree.map(lambda p: np.full_like(p, 100.0), params)  # a norm far above 1
    for decay_on, scale_decayed in (("matrices", False), ("all", True)):
        tx = make_optimizer(dataclasses.replace(base, weight_decay_on=decay_on))
        updates, _ = tx.update(grads, tx.init(params), params)
        plain = optax.adamw(1e-2, weight_decay=0.1, mask=None if scale_decayed else
                            weight_decay_mask)  # fmt: skip
        expected, _ = plain.update(grads, plain.init(params), params)
        _assert_trees_close(updates, expected, atol=1e-7)
        scale = updates["encoder"]["final_norm"]["scale"]
        decay = -1e-2 * 0.1 * params["encoder"]["final_norm"]["scale"]
        assert np.allclose(scale - (-1e-2), decay, atol=1e-7) == scale_decayed
    clipped = make_optimizer(dataclasses.replace(base, max_grad_norm=1.0))
    updates, _ = clipped.update(grads, clipped.init(params), params)
    assert not np.allclose(jax.tree.leaves(updates)[0], jax.tree.leaves(expected)[0])


def test_restore_onto_a_different_device_count_and_continue(dropout_trainers, params, tmp_path):
    eight, one = dropout_trainers[8], dropout_trainers[1]
    state, _ = eight.step(eight.init_state(params), _batch(8, seed=5))
    with CheckpointStore(tmp_path) as store:
        store.save(1, state)
        store.wait()
        restored_8 = store.restore(eight.abstract_state()).state
        restored_1 = store.restore(one.abstract_state()).state
    assert restored_1.params["shared"]["embedding"].sharding.mesh.devices.size == 1
    assert int(restored_1.step) == 1
    _assert_trees_close(restored_1, state, atol=0)
    next_batch = _batch(8, seed=6)
    state_8, _ = eight.step(restored_8, next_batch)
    state_1, _ = one.step(restored_1, next_batch)
    _assert_trees_close(state_8.params, state_1.params, atol=1e-5)


def test_tiny_model_overfits_sixteen_examples(trainer: Trainer, params):
    inputs, labels = _examples(16, seed=7)
    batcher = BucketBatcher(inputs, labels, 8, input_buckets=(16,), label_buckets=(16,), seed=0)
    state = trainer.init_state(params)
    first = None
    for epoch in range(150):
        state, metrics = trainer.train_epoch(state, batcher, epoch, progress=False)
        first = metrics.loss if first is None else first
    assert metrics.examples == 16 and metrics.steps == 2 and metrics.tokens > 16
    assert metrics.last_step == 300
    assert first > 3.0
    assert metrics.loss < 0.05, metrics


def test_epoch_resumes_from_a_batch_and_reports_metrics(trainer: Trainer, params):
    inputs, labels = _examples(20, seed=8)
    batcher = BucketBatcher(inputs, labels, 8, input_buckets=(16,), label_buckets=(16,))
    state = trainer.init_state(params)
    state, metrics = trainer.train_epoch(state, batcher, 0, start=1, progress=False)
    assert metrics.steps == 2 and metrics.last_step == 2
    # Batch 0 of the epoch was skipped: the examples are those of batches 1 and 2 (the last one
    # partial and padded with zero-weight fillers).
    plan = batcher.epoch_plan(0)
    assert metrics.examples == len(plan[1]) + len(plan[2]) == 12
    assert metrics.tokens == sum(len(labels[i]) for i in np.concatenate(plan[1:]))
    assert np.isfinite(metrics.loss) and metrics.examples_per_s > 0
    assert set(metrics.as_dict()) >= {"loss", "examples", "examples_per_s", "seconds"}


def test_learning_rate_schedule_warms_up_then_stays():
    schedule = learning_rate_schedule(TrainConfig(learning_rate=1e-3, warmup_steps=10))
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(5)), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(10)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(110)), 1e-3, rtol=1e-6)
    assert float(learning_rate_schedule(TrainConfig())(1000)) == 5e-5


def test_bad_settings_are_clear_errors(model: T5, trainer: Trainer, params):
    with pytest.raises(ValueError, match="does not split over 8 devices"):
        Trainer(model, TrainConfig(batch_size=12))
    with pytest.raises(ValueError, match="multiple of grad_accum_steps"):
        TrainConfig(batch_size=8, grad_accum_steps=3)
    with pytest.raises(ValueError, match="expects 8"):
        trainer.step(trainer.init_state(params), _batch(16, seed=0))


def _child(workdir: Path, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        # The three runs share compiled executables instead of compiling the same step again.
        "JAX_COMPILATION_CACHE_DIR": str(workdir.parent / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(workdir), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen) -> str:
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 0, stderr[-3000:]
    return stdout


def test_sigkilled_run_resumes_bit_identically(tmp_path: Path):
    interrupted = _child(tmp_path / "run", "--steps", "1000", "--announce", "4")
    try:
        for line in interrupted.stdout:
            if line.strip() == "CHECKPOINT 4":
                interrupted.send_signal(signal.SIGKILL)
                break
        interrupted.wait(timeout=300)
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
    assert interrupted.returncode == -signal.SIGKILL, interrupted.stderr.read()[-3000:]

    with CheckpointStore(tmp_path / "run" / "ckpt", read_only=True) as store:
        resume_from = store.latest_step()
    assert resume_from is not None and 4 <= resume_from < 1000
    end = resume_from + 3
    resumed = _finish(
        _child(tmp_path / "run", "--steps", str(end), "--resume", "--out", str(tmp_path / "a.npz"))
    )
    assert f"DONE {end}" in resumed
    straight = _finish(
        _child(tmp_path / "straight", "--steps", str(end), "--out", str(tmp_path / "b.npz"))
    )
    assert f"DONE {end}" in straight
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert sorted(a.files) == sorted(b.files) and a.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
