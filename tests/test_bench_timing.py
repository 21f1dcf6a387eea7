"""The benchmarks' shared timing: median, spread and the noise flag, on made-up timings."""

from __future__ import annotations

import itertools
import math

import pytest

from codeit_jax.bench import timing
from codeit_jax.bench.timing import MatmulPeak, Timings
from codeit_jax.policy.flops import peak_kernel_options


def test_median_spread_and_summary():
    t = Timings((3.0, 1.0, 2.0))
    assert (t.median, t.best, t.worst, len(t)) == (2.0, 1.0, 3.0, 3)
    assert t.spread == pytest.approx(1.0)  # (3 - 1) / 2
    assert Timings((4.0, 1.0, 2.0, 3.0)).median == 2.5  # even count: mean of the middle two
    assert t.summary() == {
        "median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "spread": 1.0, "repeats": 3,
    }  # fmt: skip
    assert "median of 3" in t.describe() and "spread 100.0%" in t.describe()


def test_spread_edge_cases():
    assert timing.spread([5.0]) == 0.0
    assert timing.spread([2.0, 2.0, 2.0]) == 0.0
    assert timing.spread([0.0, 0.0]) == 0.0
    assert math.isinf(timing.spread([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError):
        timing.spread([])
    with pytest.raises(ValueError):
        Timings(())


def test_repeat_times_each_call_with_the_given_clock():
    ticks = itertools.count()  # the clock advances one per reading
    calls = []
    result = timing.repeat(lambda: calls.append(next(ticks)), 3, clock=lambda: next(ticks))
    # Each call reads: start (n), the call itself (n + 1), end (n + 2) -> 2 ticks per timing.
    assert len(calls) == 3 and result.seconds == (2, 2, 2)
    steps = timing.repeat(lambda: None, 2, units=4, clock=lambda: next(ticks))
    assert steps.seconds == (0.25, 0.25)  # one tick over 4 units
    with pytest.raises(ValueError):
        timing.repeat(lambda: None, 0)


def test_noise_flag_names_the_sides_over_the_threshold():
    quiet, loud = Timings((1.0, 1.05, 1.1)), Timings((1.0, 1.2, 1.5))
    spreads = {"ours": quiet.spread, "reference": loud.spread}
    assert timing.noisy_sides(spreads) == ["reference"]
    fields = timing.noise_fields(spreads)
    assert fields["noisy"] is True and fields["noisy_sides"] == ["reference"]
    assert fields["spreads"] == {"ours": 0.0952, "reference": 0.4167}
    assert timing.noise_fields({"ours": quiet.spread})["noisy"] is False
    # The threshold itself is not noisy; just above it is.
    assert timing.noisy_sides({"a": 0.15, "b": 0.1501}) == ["b"]
    assert timing.noisy_sides({"a": 0.2}, threshold=0.25) == []


def test_matmul_peak_keeps_the_best_and_reports_the_spread():
    peak = MatmulPeak(size=64)
    with pytest.raises(ValueError):
        peak.best  # noqa: B018 (nothing measured yet)
    peak.add([80e9, 100e9, 90e9])
    assert peak.best == 100e9
    assert peak.spread == pytest.approx(20 / 90)
    summary = peak.summary()
    assert summary["peak_gflops_per_s"] == 100.0 and summary["peak_measurements"] == 3
    assert summary["peak_spread"] == pytest.approx(0.2222)


def test_matmul_peak_measures_rates():
    peak = MatmulPeak(size=64, repeats=2)
    peak.measure()
    peak.measure()
    kernels = len(peak_kernel_options())  # on the CPU each round times both kernel sets
    assert len(peak.rates) == 2 * 2 * kernels and all(rate > 0 for rate in peak.rates)


def test_load_average_is_a_number_here():
    load = timing.load_average()
    assert load is None or load >= 0
