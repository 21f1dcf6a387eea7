"""The decode-shapes benchmark: its shapes are the decoder's weight matmuls, and a small run."""

from __future__ import annotations

import json

import jax
import pytest

from codeit_jax.bench import decode_shapes
from codeit_jax.policy import flops
from codeit_jax.policy.t5 import named_config


@pytest.mark.parametrize("name", ["tiny", "codet5_small", "codet5p_220m"])
def test_shapes_are_the_decoders_weight_matmuls(name):
    """Per row and step, the shapes' FLOPs are the model's count of the weight matmuls."""
    config = named_config(name)
    shapes = decode_shapes.decode_shapes(config, rows=1)
    pieces = flops.decoder_token_flops_by_piece(config, position=0, source_length=8)
    weights = ("self_attention_projections", "cross_attention_projections", "feed_forward")
    expected = sum(pieces[p] for p in weights) + pieces["lm_head"]
    assert sum(s.per_step * s.flops for s in shapes) == pytest.approx(expected)
    assert shapes[-1].n == config.vocab_size and all(s.rows == 1 for s in shapes)


def test_a_small_run_reports_every_shape_and_a_ceiling(capsys):
    devices = jax.device_count()
    figures = decode_shapes.benchmark(
        named_config("tiny"),
        tasks=2,
        samples=devices,
        input_length=16,
        new_tokens=4,
        repeats=2,
        peak_size=256,
    )
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == json.loads(json.dumps(figures))
    assert [row["name"] for row in figures["shapes"]][-1] == "LM head"
    assert all(row["rows"] == 2 and row["gflops_per_s"] > 0 for row in figures["shapes"])
    assert figures["lm_head_split_by_vocabulary"]["rows"] == 2 * devices
    assert figures["weight_matmul_peak_fraction"] > 0
    # The ceiling counts the whole workload's FLOPs against the weight matmuls' time only.
    assert figures["sampler_ceiling_peak_fraction"] > figures["weight_matmul_peak_fraction"]
    assert {"load_average_before", "load_average_after", "noisy", "peak_gflops_per_s"} <= set(
        figures
    )


def test_rows_must_divide_over_the_devices():
    if jax.device_count() == 1:
        pytest.skip("needs several devices")
    with pytest.raises(ValueError, match="must divide"):
        decode_shapes.benchmark(named_config("tiny"), 1, 1, 16, 4, 1, peak_size=64)


def test_bad_arguments_exit_with_status_2():
    with pytest.raises(SystemExit) as exit_info:
        decode_shapes.main(["--repeats", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        decode_shapes.main(["--config", "no_such_model"])
    assert exit_info.value.code == 2
