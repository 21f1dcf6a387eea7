"""The meta-iteration profile: its stage accounting on a fake clock, and one real small run."""

from __future__ import annotations

import json

import pytest

from codeit_jax.bench import meta_iteration
from codeit_jax.bench.meta_iteration import ITERATION_STAGES, StageTimer
from tests.codeit_testing import tiny_config

TRACE = "/jax/core/compile/jaxpr_trace_duration"
BACKEND = "/jax/core/compile/backend_compile_duration"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stages_are_exclusive_and_compilation_is_counted_once():
    clock = FakeClock()
    timer = StageTimer(clock=clock)

    def inner() -> None:
        clock.now += 1.0
        timer.on_compile_span(TRACE, 100.0, 100.5)  # nested in the next span: counted once
        timer.on_compile_span(BACKEND, 100.0, 102.0)
        timer.on_compile_span("/jax/some/other_event", 0.0, 50.0)  # not a compile event
        clock.now += 3.0  # 2 s of these 3 were the compilation above

    def outer() -> None:
        clock.now += 1.0
        timed_inner()
        clock.now += 0.5

    timed_inner = timer.wrap(inner, "inner")
    timed_outer = timer.wrap(outer, "outer")
    begin = timer.wrap(lambda i: None, None, phase=lambda i: f"meta_iteration_{i}")

    clock.now = 10.0
    begin(0)
    timed_outer()  # 10 -> 15.5
    clock.now += 0.5  # 0.5 s that no stage covers
    begin(1)
    timed_inner()  # the compile spans were counted already: none is new
    timer.finish()

    assert timer.walls() == {"setup": 10.0, "meta_iteration_0": 6.0, "meta_iteration_1": 4.0}
    assert dict(timer.seconds["meta_iteration_0"]) == {"inner": 2.0, "compile": 2.0, "outer": 1.5}
    assert dict(timer.seconds["meta_iteration_1"]) == {"inner": 4.0, "compile": 0.0}
    assert dict(timer.compile_by_stage["meta_iteration_0"]) == {"inner": 2.0}

    report = meta_iteration.phase_report(timer, "meta_iteration_0", 6.0, peak=1e9)
    stages = report["stages"]
    assert set(stages) >= set(ITERATION_STAGES) | {"inner", "outer"}
    assert stages["other"]["seconds"] == 0.5
    assert sum(s["fraction"] for s in stages.values()) == pytest.approx(1.0, abs=1e-3)
    order = list(stages)  # slowest first
    assert set(order[:2]) == {"inner", "compile"} and order[2:4] == ["outer", "other"]
    assert report["peak_fraction"] == {"train": None, "sample": None}  # no FLOPs counted


def test_other_threads_are_not_timed():
    import threading

    timer = StageTimer(clock=FakeClock())
    calls = []
    timed = timer.wrap(lambda: calls.append(1), "stage")
    thread = threading.Thread(target=lambda: (timed(), timer.on_compile_span(BACKEND, 0, 2)))
    thread.start()
    thread.join()
    assert calls == [1] and dict(timer.seconds) == {}
    assert timer.other_thread_compile_s == 2


def test_benchmark_times_every_stage_of_a_small_run(codeit_data, capsys):
    figures = meta_iteration.benchmark(tiny_config(codeit_data), 2, "tiny_config")
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(figures))
    assert figures["meta_iterations"] == 2 and len(figures["row_seconds"]) == 2
    assert list(figures["phases"]) == ["setup", "meta_iteration_0", "meta_iteration_1", "teardown"]
    for name, phase in figures["phases"].items():
        stages = phase["stages"]
        if name.startswith("meta_iteration"):
            assert set(stages) >= set(ITERATION_STAGES)
            assert stages["train"]["seconds"] > 0 and stages["sample"]["seconds"] > 0
        assert all(s["seconds"] >= 0 for s in stages.values())  # "other" too: no overlap
        assert sum(s["fraction"] for s in stages.values()) <= 1 + 1e-3  # rounding
    assert {"read inputs", "initial buffer", "sandbox start"} <= set(
        figures["phases"]["setup"]["stages"]
    )
    assert "checkpoint wait" in figures["phases"]["teardown"]["stages"]
    first = figures["phases"]["meta_iteration_0"]
    assert first["stages"]["compile"]["seconds"] > 0
    assert {"train", "sample"} <= set(first["compile_by_stage"])
    assert figures["peak_fraction"]["train"] > 0 and figures["peak_fraction"]["sample"] > 0
    assert sum(s["fraction"] for s in figures["stages"].values()) <= 1 + 1e-3
    assert {"load_average_before", "load_average_after", "peak_spread"} <= set(figures)
