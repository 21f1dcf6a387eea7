"""GPU parity check: our Flax T5, sampler and trainer on a GPU against transformers on CUDA.

Skipped unless JAX's default backend is a GPU (tests/conftest.py pins JAX to the CPU unless
JAX_PLATFORMS is set). On a GPU machine: ``JAX_PLATFORMS=cuda python -m pytest -q
tests/test_gpu.py``, or ``launch/gpu_check.sh``, which runs it with the benchmarks.

codet5-small shape, random weights written with ``save_hf_checkpoint`` and loaded by
``T5ForConditionalGeneration`` on the GPU:

* float32 (forced through the config's ``dtype``, matmuls at ``highest`` precision: JAX would
  otherwise use TF32 on the GPU, torch does not): logits agree closely, and greedy decoding
  with our sampler equals ``generate(do_sample=False)`` -- except where a row's first
  difference is a near-tie of the reference's own logits (random weights give flat
  distributions over 32,100 tokens, and float32 summation order alone may flip those);
* bfloat16 (our GPU default): logits close to float32 transformers within a loose tolerance;
* the trainer (default compute dtype): its first loss equals transformers' loss on the batch,
  and a few steps on that repeated batch lower it.

``CODEIT_GPU_TEST_ANY_BACKEND=1`` runs it on whatever backend JAX has (torch on CUDA if it
sees a GPU, else the CPU): a dry run of the checks themselves on a CPU machine, with
``CODEIT_GPU_TEST_CONFIG=tiny`` for a shape that runs in seconds.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest


def _jax_backend() -> str:
    try:
        return jax.default_backend()  # starts JAX's backend before torch touches CUDA
    except RuntimeError as error:  # e.g. JAX_PLATFORMS=cuda without a usable GPU
        return f"unavailable ({error})"


BACKEND = _jax_backend()
ANY_BACKEND = os.environ.get("CODEIT_GPU_TEST_ANY_BACKEND") == "1"
CONFIG_NAME = os.environ.get("CODEIT_GPU_TEST_CONFIG", "codet5_small")

pytestmark = pytest.mark.skipif(
    BACKEND != "gpu" and not ANY_BACKEND,
    reason=f"needs a GPU: JAX's default backend is {BACKEND} (on a GPU machine run "
    "`JAX_PLATFORMS=cuda python -m pytest tests/test_gpu.py` or launch/gpu_check.sh)",
)

#: A float32 greedy difference is accepted as a near-tie when the reference's own logit of our
#: token is within this of its choice (float32 noise on ~6 layers is ~1e-5).
TIE_MARGIN = 1e-3
MAX_NEW = 24


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip(
        "torch", reason="the PyTorch parity tests need torch: pip install -e '.[reference]'"
    )
    pytest.importorskip("transformers")
    return torch


@pytest.fixture(scope="module")
def device(torch) -> str:
    if torch.cuda.is_available():
        return "cuda"
    if ANY_BACKEND:
        return "cpu"
    pytest.skip("torch sees no GPU")


@pytest.fixture(scope="module")
def config():
    from codeit_jax.policy.t5 import named_config

    return named_config(CONFIG_NAME, dtype="float32", dropout_rate=0.0)


@pytest.fixture(scope="module")
def params(config):
    from codeit_jax.policy.t5 import init_params

    return jax.device_get(init_params(config, jax.random.key(0)))


@pytest.fixture(scope="module")
def hf_model(torch, device, config, params, tmp_path_factory):
    """transformers' T5 with our weights, float32, on ``device``."""
    import transformers

    from codeit_jax.policy.convert import save_hf_checkpoint

    matmul = torch.backends.cuda.matmul  # plain float32 matmuls (TF32 is off by default; say so)
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = "ieee"
    else:
        matmul.allow_tf32 = False
    directory = tmp_path_factory.mktemp("hf")
    save_hf_checkpoint(config, params, directory)
    model = transformers.T5ForConditionalGeneration.from_pretrained(directory)
    return model.to(device, torch.float32).eval()


@pytest.fixture(scope="module")
def batch(config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input ids, mask, decoder ids): 4 inputs of different lengths ending with EOS."""
    rng = np.random.default_rng(0)
    lengths = np.array([64, 37, 12, 3])
    mask = (np.arange(64)[None, :] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask, rng.integers(2, config.vocab_size, size=mask.shape), 0)
    ids[np.arange(4), lengths - 1] = 1
    decoder_ids = rng.integers(2, config.vocab_size, size=(4, 16))
    decoder_ids[:, 0] = 0
    return ids, mask, decoder_ids


def _our_logits(config, params, ids, mask, decoder_ids) -> np.ndarray:
    from codeit_jax.policy.t5 import T5

    forward = jax.jit(lambda p, i, m, d: T5(config).apply({"params": p}, i, m, d))
    return np.asarray(forward(params, ids, mask, decoder_ids))


def _report(name: str, ours: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(max abs difference, that over the reference's largest |logit|), printed."""
    diff = float(np.abs(ours - expected).max())
    relative = diff / float(np.abs(expected).max())
    top1 = float((ours.argmax(-1) == expected.argmax(-1)).mean())
    print(f"{name}: max |diff| {diff:.2e} ({relative:.2e} of max |logit|), top-1 agree {top1:.3f}")
    return diff, relative


def test_backend_and_devices(device):
    print(f"JAX {jax.__version__}: {jax.devices()}; torch device {device}")
    if not ANY_BACKEND:
        assert jax.devices()[0].platform == "gpu"


def test_float32_logits_match_transformers(config, params, hf_model, batch):
    from tests.t5_testing import torch_logits

    ids, mask, decoder_ids = batch
    expected = torch_logits(hf_model, ids, mask, decoder_ids)
    with jax.default_matmul_precision("highest"):
        ours = _our_logits(config, params, ids, mask, decoder_ids)
    _, relative = _report("float32 logits", ours, expected)
    np.testing.assert_allclose(ours, expected, atol=2e-4 * np.abs(expected).max(), rtol=1e-3)
    assert relative < 1e-4


def test_bfloat16_logits_are_close_to_float32_transformers(config, params, hf_model, batch):
    from tests.t5_testing import torch_logits

    ids, mask, decoder_ids = batch
    expected = torch_logits(hf_model, ids, mask, decoder_ids)
    ours = _our_logits(config.replace(dtype="bfloat16"), params, ids, mask, decoder_ids)
    assert ours.dtype == np.float32 and np.isfinite(ours).all()
    _, relative = _report("bfloat16 logits", ours, expected)
    # bfloat16 keeps ~3 significant digits; over ~12 layers the logits drift by about 1%.
    assert relative < 0.05
    correlation = np.corrcoef(ours.ravel(), expected.ravel())[0, 1]
    print(f"bfloat16 logits: correlation with float32 {correlation:.5f}")
    assert correlation > 0.99


def test_float32_greedy_decoding_matches_generate(config, params, hf_model, batch):
    from tests.t5_testing import generate_greedy, sample_greedy, torch_logits

    ids, mask, _ = batch
    expected = generate_greedy(hf_model, ids, mask, MAX_NEW)
    with jax.default_matmul_precision("highest"):
        tokens = sample_greedy(config, params, ids, mask, MAX_NEW)
    np.testing.assert_array_equal(tokens[:, 0], tokens[:, 1])  # greedy: samples agree
    ours = tokens[:, 0]
    # The reference's logits along its own greedy path, to judge any difference.
    decoder_ids = np.concatenate([np.zeros((len(ids), 1), np.int64), expected[:, :-1]], 1)
    logits = torch_logits(hf_model, ids, mask, decoder_ids)
    logits[..., 0] = -np.inf  # suppressed on both sides
    ties = 0
    for row in range(len(ids)):
        differ = np.flatnonzero(ours[row] != expected[row])
        if differ.size == 0:
            continue
        step = differ[0]
        margin = logits[row, step, expected[row, step]] - logits[row, step, ours[row, step]]
        print(
            f"row {row}: first difference at step {step}: reference {expected[row, step]}, "
            f"ours {ours[row, step]}, reference logit margin {margin:.2e}"
        )
        assert margin <= TIE_MARGIN, f"row {row} differs at step {step} beyond a near-tie"
        ties += 1
    same = len(ids) - ties
    print(f"greedy: {same}/{len(ids)} rows identical over {MAX_NEW} tokens, {ties} near-ties")
    assert same >= len(ids) // 2


def test_trainer_loss_matches_transformers_and_falls(torch, config, params, hf_model):
    from codeit_jax.policy.batching import EOS_ID, pad_batch
    from codeit_jax.policy.t5 import T5
    from codeit_jax.policy.trainer import TrainConfig, Trainer

    rng = np.random.default_rng(1)
    vocab = config.vocab_size
    inputs = [rng.integers(2, vocab, n) for n in rng.integers(8, 64, size=8)]
    labels = [np.append(rng.integers(2, vocab, n), EOS_ID) for n in rng.integers(4, 31, size=8)]
    batch = pad_batch(inputs, labels, 8, 64, 32)
    with torch.no_grad():

        def tensor(x):
            return torch.as_tensor(np.asarray(x, np.int64), device=hf_model.device)

        expected = hf_model(
            input_ids=tensor(batch.input_ids),
            attention_mask=tensor(batch.attention_mask),
            labels=tensor(np.where(batch.label_weights > 0, batch.labels, -100)),
        ).loss.item()
    model = T5(config.replace(dtype=None))  # the backend's default compute dtype
    trainer = Trainer(model, TrainConfig(learning_rate=1e-3, batch_size=8, dropout=False))
    state = trainer.init_state(jax.tree.map(np.array, params))
    losses = []
    for _ in range(4):
        state, metrics = trainer.step(state, batch)
        losses.append(float(metrics["loss"]))
    print(
        f"trainer ({model.config.compute_dtype}): losses {[round(x, 4) for x in losses]}; "
        f"transformers float32 loss {expected:.4f}"
    )
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(losses[0], expected, rtol=1e-2)
    assert losses[-1] < losses[0] - 0.1
