"""The matmul-shapes benchmark: its shapes are the model's weight matmuls, and small runs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from codeit_jax.bench import matmul_shapes
from codeit_jax.policy import flops
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.t5 import named_config

CONFIGS = ["tiny", "codet5_small", "codet5p_220m"]


@pytest.mark.parametrize("name", CONFIGS)
def test_sampler_shapes_are_the_decoders_weight_matmuls(name):
    """Per row and step, the shapes' FLOPs are the model's count of the weight matmuls."""
    config = named_config(name)
    shapes = matmul_shapes.sampler_shapes(config, rows=1)
    pieces = flops.decoder_token_flops_by_piece(config, position=0, source_length=8)
    weights = ("self_attention_projections", "cross_attention_projections", "feed_forward")
    expected = sum(pieces[p] for p in weights) + pieces["lm_head"]
    assert sum(s.count * s.flops for s in shapes) == pytest.approx(expected)
    assert shapes[-1].n == config.vocab_size and all(s.forms == ("forward",) for s in shapes)


@pytest.mark.parametrize("name", CONFIGS)
def test_trainer_shapes_are_the_steps_weight_matmuls(name):
    """Over their three forms, the shapes' FLOPs are the train step's count less attention."""
    config = named_config(name)
    shapes = matmul_shapes.trainer_shapes(config, batch=2, input_length=16, label_length=8)
    pieces = flops.train_step_flops_by_piece(config, 2, 16, 8)
    expected = sum(flops for piece, flops in pieces.items() if piece != "attention")
    assert sum(len(s.forms) * s.count * s.flops for s in shapes) == pytest.approx(expected)
    assert all(s.forms == matmul_shapes.FORMS for s in shapes)


@pytest.mark.parametrize("form", matmul_shapes.FORMS)
def test_each_form_multiplies_the_operands_it_names(form):
    """The timed products compute what their names say, on every device."""
    mesh = make_mesh()
    shape = matmul_shapes.Shape("x", rows=3, k=4, n=5, count=1)
    left, right, whole, product = matmul_shapes._form(shape, form)
    x = np.arange(np.prod(left), dtype=np.float32).reshape(left) / 7
    w = np.arange(np.prod(right), dtype=np.float32).reshape(right) / 11
    products = {
        "forward": lambda: x @ w,
        "input_gradient": lambda: x @ w.T,
        "weight_gradient": lambda: x.T @ w,
    }
    expected = products[form]()
    np.testing.assert_allclose(product(x, w).reshape(expected.shape), expected, rtol=1e-5)
    assert whole == (form != "weight_gradient")
    assert len(matmul_shapes.time_matmul(mesh, shape, form, 2, np.float32)) == 2


def test_a_small_sampler_run_reports_every_shape_and_a_ceiling(capsys):
    devices = jax.device_count()
    figures = matmul_shapes.sampler(
        named_config("tiny"),
        tasks=2,
        samples=devices,
        input_length=16,
        new_tokens=4,
        repeats=2,
        peak_size=256,
    )
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == json.loads(json.dumps(figures))
    rows = figures["matmuls"]
    assert [r["name"] for r in rows][-2:] == ["LM head", "LM head split by vocabulary"]
    assert [r["in_step"] for r in rows][-2:] == [True, False]
    assert all(r["gflops_per_s"] > 0 for r in rows) and rows[-1]["rows"] == 2 * devices
    # Other FLOPs at the peak lift the ceiling above the weight matmuls' own fraction, not to 1.
    assert 1 > figures["ceiling_peak_fraction"] > figures["weight_matmul_peak_fraction"] > 0
    assert {"load_average_before", "load_average_after", "noisy", "peak_gflops_per_s"} <= set(
        figures
    )


def test_a_small_trainer_run_times_three_forms_of_every_shape():
    devices = jax.device_count()
    figures = matmul_shapes.trainer(named_config("tiny"), devices, 8, 4, 1, peak_size=128)
    forms = [r["form"] for r in figures["matmuls"] if r["name"] == "LM head"]
    assert forms == list(matmul_shapes.FORMS)
    assert all(r["rows"] in (8, 4) for r in figures["matmuls"])
    assert 1 > figures["ceiling_peak_fraction"] > figures["weight_matmul_peak_fraction"] > 0


def test_rows_must_divide_over_the_devices():
    if jax.device_count() == 1:
        pytest.skip("needs several devices")
    with pytest.raises(ValueError, match="must divide"):
        matmul_shapes.sampler(named_config("tiny"), 1, 1, 16, 4, 1, peak_size=64)
    with pytest.raises(ValueError, match="must divide"):
        matmul_shapes.trainer(named_config("tiny"), 1, 16, 4, 1, peak_size=64)


@pytest.mark.parametrize(
    "argv",
    [["sampler", "--repeats", "0"], ["trainer", "--batch", "-1"], ["sampler", "--config", "nope"]],
)
def test_bad_arguments_exit_with_status_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        matmul_shapes.main(argv)
    assert exit_info.value.code == 2
