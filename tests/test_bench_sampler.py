"""The sampler benchmark runs end to end on a tiny model, with and without CodeIt's top-k, and
refuses a bad top-k with a one-line usage error."""

from __future__ import annotations

import json
import sys

import pytest

from codeit_jax.bench import sampler as bench_sampler

ARGV = ["--config", "tiny", "--tasks", "2", "--samples", "2", "--input-length", "16"]
ARGV += ["--new-tokens", "4", "--repeats", "1", "--no-reference"]


@pytest.mark.parametrize("top_k", [0, 5])
def test_benchmark_times_the_sampler_with_the_given_top_k(top_k, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sampler", *ARGV, "--top-k", str(top_k)])
    bench_sampler.main()
    figures = json.loads(capsys.readouterr().out.strip().split("\n")[-1])
    assert figures["top_k"] == top_k and figures["tokens"] > 0
    assert figures["run_s"] > 0 and figures["peak_fraction"] > 0


def test_a_negative_top_k_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sampler", *ARGV, "--top-k", "-1"])
    with pytest.raises(SystemExit) as exit_info:
        bench_sampler.main()
    assert exit_info.value.code == 2 and "--top-k must be >= 0" in capsys.readouterr().err
