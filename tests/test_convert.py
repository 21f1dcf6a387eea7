"""Parity with transformers' PyTorch T5: conversion, logits, greedy decoding, round trip.

Tiny random T5s of both variants are built with transformers + torch and saved to tmp dirs:
v1.0 (ReLU, head tied to the embedding with output scaling) and v1.1 (gated-GELU, untied head).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codeit_jax.policy.convert import (
    hf_tensors_from_params,
    load_hf_checkpoint,
    save_hf_checkpoint,
)
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.t5 import T5
from tests.t5_testing import generate_greedy, sample_greedy, torch_logits

torch = pytest.importorskip(
    "torch", reason="the PyTorch parity tests need torch: pip install -e '.[reference]'"
)
transformers = pytest.importorskip("transformers")

VOCAB = 96
HF_VARIANTS = {
    "v1.0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


#: (torch seed, embedding scale, EOS head-row scale) per variant, picked so that greedy decoding
#: of the test batch stops some rows part-way (EOS handling is exercised) and runs others to
#: the end, with varied tokens.
_TWEAKS = {"v1.0": (1, 0.05, 1.0), "v1.1": (2, 1.0, 2.0)}


def _build_hf_model(variant: str):
    seed, embedding_scale, eos_scale = _TWEAKS[variant]
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
        num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
        dropout_rate=0.0, decoder_start_token_id=0, **HF_VARIANTS[variant],
    )  # fmt: skip
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        if variant == "v1.1":  # transformers 5 ties the head at init: give it its own weights
            model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32) * 32**-0.5)
        model.shared.weight.mul_(embedding_scale)
        head = model.lm_head.weight if variant == "v1.1" else model.shared.weight
        head[1] *= eos_scale
    return model


@pytest.fixture(scope="module", params=sorted(HF_VARIANTS))
def hf_checkpoint(request, tmp_path_factory):
    """(variant, transformers model, its saved directory, our (config, params))."""
    model = _build_hf_model(request.param)
    directory = tmp_path_factory.mktemp(f"hf_{request.param}")
    model.save_pretrained(directory)
    return request.param, model, directory, load_hf_checkpoint(directory)


def _padded_batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.array([11, 6, 2, 9])
    mask = (np.arange(11)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask, rng.integers(2, VOCAB, size=mask.shape), 0)
    ids[np.arange(4), lengths - 1] = 1  # inputs end with EOS, as tokenised text does
    return ids, mask


def test_config_is_read(hf_checkpoint):
    variant, model, _, (config, params) = hf_checkpoint
    assert (config.num_layers, config.num_decoder_layers) == (2, 3)
    assert config.vocab_size == VOCAB and config.relative_attention_max_distance == 16
    assert config.tie_word_embeddings == (variant == "v1.0")
    assert ("lm_head" in params) == (variant == "v1.1")


def test_encoder_outputs_match(hf_checkpoint):
    _, model, _, (config, params) = hf_checkpoint
    ids, mask = _padded_batch()
    with torch.no_grad():
        expected = model.encoder(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)
        ).last_hidden_state.numpy()
    ours = T5(config.replace(dtype="float32")).apply(
        {"params": params}, ids, mask, method=T5.encode
    )
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(ours)[real], expected[real], atol=1e-4, rtol=1e-4)


def test_decoder_logits_match(hf_checkpoint):
    _, model, _, (config, params) = hf_checkpoint
    ids, mask = _padded_batch(1)
    decoder_ids = np.random.default_rng(2).integers(0, VOCAB, size=(4, 7))
    decoder_ids[:, 0] = 0
    expected = torch_logits(model, ids, mask, decoder_ids)
    ours = T5(config.replace(dtype="float32")).apply({"params": params}, ids, mask, decoder_ids)
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)


def test_gradients_match(hf_checkpoint):
    """Training follows the same gradients, the relative position tables' included (their
    gradient is summed per encoder layer, `position_gradient_tap`)."""
    _, model, _, (config, params) = hf_checkpoint
    ids, mask = _padded_batch(3)
    rng = np.random.default_rng(4)
    decoder_ids = rng.integers(0, VOCAB, size=(4, 7))
    decoder_ids[:, 0] = 0
    weights = rng.standard_normal((4, 7, VOCAB)).astype(np.float32)
    model.zero_grad()
    logits = model(
        input_ids=torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        decoder_input_ids=torch.tensor(decoder_ids),
    ).logits
    (logits * torch.tensor(weights)).sum().backward()
    expected = {name: p.grad.numpy() for name, p in model.named_parameters()}
    t5 = T5(config.replace(dtype="float32"))

    def loss(p):
        return jnp.sum(t5.apply({"params": p}, ids, mask, decoder_ids) * weights)

    grads = jax.grad(loss)(params)
    ours = hf_tensors_from_params(config, grads)
    names = sorted(set(ours) & set(expected))
    assert "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" in names
    assert len(names) >= len(expected) - 1  # all but an alias of the shared embedding
    for name in names:
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(ours[name], expected[name], atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("devices", [1, 8])
def test_greedy_decoding_matches_generate(hf_checkpoint, devices):
    _, model, _, (config, params) = hf_checkpoint
    ids, mask = _padded_batch(3)
    max_new = 12
    expected = generate_greedy(model, ids, mask, max_new)
    tokens = sample_greedy(
        config.replace(dtype="float32"), params, ids, mask, max_new,
        mesh=make_mesh(jax.devices()[:devices]),
    )  # fmt: skip
    np.testing.assert_array_equal(tokens[:, 0], expected)
    np.testing.assert_array_equal(tokens[:, 1], expected)  # greedy: samples agree
    stopped = (expected == 1).any(1)
    assert stopped.any() and not stopped.all(), "test model should stop some rows, not all"


def test_round_trip_through_transformers(hf_checkpoint, tmp_path):
    variant, model, _, (config, params) = hf_checkpoint
    save_hf_checkpoint(config, params, tmp_path)
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    tied = reloaded.lm_head.weight.data_ptr() == reloaded.shared.weight.data_ptr()
    assert tied == (variant == "v1.0")
    ids, mask = _padded_batch(4)
    decoder_ids = np.array([[0, 5, 9, 3]] * 4)
    np.testing.assert_allclose(
        torch_logits(reloaded, ids, mask, decoder_ids),
        torch_logits(model, ids, mask, decoder_ids),
        atol=1e-5,
        rtol=1e-5,
    )
    config_again, params_again = load_hf_checkpoint(tmp_path)
    assert config_again == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_again, params)


def test_pytorch_bin_checkpoint_reads_like_safetensors(hf_checkpoint, tmp_path):
    _, model, directory, (_, params) = hf_checkpoint
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    _, from_bin = load_hf_checkpoint(tmp_path)
    jax.tree_util.tree_map(np.testing.assert_array_equal, from_bin, params)


def test_bad_checkpoints_name_the_problem(hf_checkpoint, tmp_path):
    _, _, directory, (config, params) = hf_checkpoint
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=f"no model weights in {tmp_path}"):
        load_hf_checkpoint(tmp_path)

    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(directory / "model.safetensors"))
    name = "decoder.block.2.layer.1.EncDecAttention.k.weight"
    save_file({k: v for k, v in tensors.items() if k != name}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_hf_checkpoint(tmp_path)

    tensors[name] = tensors[name][:, :-1].copy()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="shape"):
        load_hf_checkpoint(tmp_path)

    hf_config = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**hf_config, "model_type": "bart"}))
    with pytest.raises(ValueError, match="model_type"):
        load_hf_checkpoint(tmp_path)

    without_embedding = {k: v for k, v in params.items() if k != "shared"}
    with pytest.raises(ValueError, match="shared/embedding"):
        save_hf_checkpoint(config, without_embedding, tmp_path / "out")
