"""Where a CodeIt meta-iteration's time goes: the real loop, run once, each stage timed.

    python -m codeit_jax.bench.meta_iteration [--config configs/tiny.py] [--meta-iterations 2]

Runs the CodeIt job (`codeit_jax.jobs.codeit.run`) of a config -- by default configs/tiny.py,
a tiny T5 on 16 tasks -- for ``--meta-iterations`` meta-iterations in a temporary workdir, with
the loop's stage functions wrapped by a timer for the length of the run (`stage_patches`):
nothing is re-implemented, so the figures are those of the code a run executes. The first
meta-iteration pays for compiling the train step and the sampler; the second shows the steady
state, so the default runs two.

Each stage's time is exclusive: a stage inside another (the buffer sample inside training, the
sandbox runs inside relabelling) is taken out of the outer one, and so is compilation, which
is its own stage ``compile`` (JAX's trace, lowering and backend-compile events, counted once
where they nest). The stages of a meta-iteration are those of `ITERATION_STAGES`; ``other`` is
what no stage covers (the loop's own bookkeeping). A meta-iteration's wall time runs from the
start of `meta_iteration` to the start of the next one, so it includes writing the iteration's
files and starting its checkpoint save (Orbax writes in the background; the last wait is in
``teardown``). Setup (reading inputs, building the policy, the initial buffer, the first
train state) and teardown are reported apart.

Peak fraction, for train and sample: model FLOPs (`codeit_jax.policy.flops`) over the stage's
time, as a fraction of the matmul peak measured in the same run before and after (best of
them; `codeit_jax.bench.timing.MatmulPeak`). Training counts every step's padded batch shape
(the work the steps do; the share of real tokens is reported beside it) over the ``train``
stage, host-side batching included; sampling counts the useful work of each task's real input
length and the decoder steps the call ran over ``sample`` (the sampler calls; decoding the
tokens to text is ``decode``).

Prints one table per phase, slowest stage first, then one JSON line: per phase its wall time
and each stage's seconds and fraction, ``peak_fraction`` for train and sample over all
meta-iterations (compilation excluded), the per-stage seconds the loop itself records in its
performance row, and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import runpy
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import jax
import numpy as np

from codeit_jax.bench.timing import MatmulPeak, host_fields, load_average
from codeit_jax.execution.sandbox import Sandbox
from codeit_jax.host_process import prepare_process
from codeit_jax.jobs import codeit as job
from codeit_jax.loop import inference, iteration
from codeit_jax.loop.outputs import RunOutputs
from codeit_jax.loop.run_checkpoints import RunCheckpoints
from codeit_jax.policy.flops import sampling_flops, train_step_flops
from codeit_jax.policy.sampler import Sampler
from codeit_jax.policy.trainer import Trainer
from codeit_jax.replay.buffer import ReplayBuffer
from codeit_jax.replay.metrics import Scoreboard

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.py"

#: JAX's compile events (tracing, lowering to MLIR, backend compile).
COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)

#: The stages every meta-iteration reports (0 where one did not run), in the loop's order.
ITERATION_STAGES = (
    "buffer sample", "train", "integrity check", "sample", "decode", "execute", "relabel",
    "score", "sample stats", "buffer add", "write outputs", "checkpoint save", "compile",
    "other",
)  # fmt: skip
SETUP, TEARDOWN = "setup", "teardown"


@dataclasses.dataclass
class _Frame:
    stage: str
    start: float
    inner: float = 0.0  # seconds of nested stages and compilation


class StageTimer:
    """Exclusive seconds per (phase, stage) of wrapped functions, compilation apart.

    Only the thread that built the timer is timed (the loop's); what other threads compile is
    summed in ``other_thread_compile_s``. A phase begins when a wrapper marked with one is
    entered and lasts until the next phase begins (`finish` ends the last).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.phases: list[tuple[str, float]] = [(SETUP, clock())]
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.flops: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.tokens: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        #: Compile seconds per phase by the stage that triggered them ("" outside any).
        self.compile_by_stage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.rows: list[dict[str, Any]] = []  # the loop's performance rows
        self.other_thread_compile_s = 0.0
        self.end: float | None = None
        self._stack: list[_Frame] = []
        self._thread = threading.get_ident()
        self._compiled: list[tuple[float, float]] = []  # union of compile spans, sorted

    @property
    def phase(self) -> str:
        return self.phases[-1][0]

    def begin_phase(self, name: str) -> None:
        self.phases.append((name, self.clock()))

    def finish(self) -> None:
        self.end = self.clock()

    def walls(self) -> dict[str, float]:
        """Wall seconds of each phase, in order."""
        if self.end is None:
            raise ValueError("finish() the timer first")
        ends = [start for _, start in self.phases[1:]] + [self.end]
        return {name: end - start for (name, start), end in zip(self.phases, ends)}

    def wrap(
        self,
        fn: Callable[..., Any],
        stage: str | None,
        phase: Callable[..., str] | None = None,
    ) -> Callable[..., Any]:
        """``fn`` timed as ``stage`` (None: not timed); ``phase(*args)`` names the phase that
        begins when it is called."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self._thread:
                return fn(*args, **kwargs)
            if phase is not None:
                self.begin_phase(phase(*args, **kwargs))
            if stage is None:
                return fn(*args, **kwargs)
            frame = _Frame(stage, self.clock())
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                elapsed = self.clock() - frame.start
                self.seconds[self.phase][stage] += elapsed - frame.inner
                if self._stack:
                    self._stack[-1].inner += elapsed

        return timed

    def on_compile_span(self, event: str, start: float, end: float, **_: Any) -> None:
        """A `jax.monitoring` time-span listener: the part of a compile event's span not yet
        counted (nested events overlap) goes to ``compile``, out of the running stage."""
        if event not in COMPILE_EVENTS:
            return
        if threading.get_ident() != self._thread:
            self.other_thread_compile_s += end - start
            return
        new = self._add_span(start, end)
        self.seconds[self.phase]["compile"] += new
        self.compile_by_stage[self.phase][self._stack[-1].stage if self._stack else ""] += new
        if self._stack:
            self._stack[-1].inner += new

    def _add_span(self, start: float, end: float) -> float:
        """Merge [start, end] into the counted union; returns the seconds it adds."""
        covered = sum(max(0.0, min(end, b) - max(start, a)) for a, b in self._compiled)
        spans = [*self._compiled, (start, end)]
        spans.sort()
        merged = [spans[0]]
        for a, b in spans[1:]:
            if a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._compiled = merged
        return (end - start) - covered

    def count(self, what: str, flops: float, real: float = 0.0, padded: float = 0.0) -> None:
        """Model FLOPs (and real / padded token counts) of ``what`` in the current phase."""
        self.flops[self.phase][what] += flops
        self.tokens[self.phase][f"{what}_real"] += real
        self.tokens[self.phase][f"{what}_padded"] += padded


def _counting_step(timer: StageTimer, step: Callable[..., Any]) -> Callable[..., Any]:
    """`Trainer.step` that counts the model FLOPs of the padded batch it is given."""

    @functools.wraps(step)
    def counted(self: Trainer, state: Any, batch: Any) -> Any:
        rows, inputs = batch.input_ids.shape
        labels = batch.labels.shape[1]
        real = int(np.count_nonzero(batch.attention_mask)) + int(
            np.count_nonzero(batch.label_weights)
        )
        flops = train_step_flops(self.model.config, rows, inputs, labels)
        timer.count("train", flops, real, rows * (inputs + labels))
        return step(self, state, batch)

    return counted


def _counting_sample(timer: StageTimer, sample: Callable[..., Any]) -> Callable[..., Any]:
    """`Sampler.sample` that counts each task's useful model FLOPs (its real input length, the
    decoder steps the call ran, the head over the candidate tokens)."""

    @functools.wraps(sample)
    def counted(self: Sampler, params: Any, inputs: Any, key: Any, **settings: Any) -> Any:
        out = sample(self, params, inputs, key, **settings)
        config = self.config
        if settings.get("constraint") is None:
            _, ok, full_head = self.candidates(
                settings.get("allowed_tokens"), settings.get("end_on_disallowed", False)
            )
            if not full_head:
                config = config.replace(vocab_size=int(ok.sum()))
        steps, samples = int(out.lengths.max()), settings["num_samples"]
        flops = sum(sampling_flops(config, 1, samples, len(x), steps) for x in inputs)
        timer.count("sample", flops)
        return out

    return counted


def _capture_row(timer: StageTimer, meta_iteration: Callable[..., Any]) -> Callable[..., Any]:
    """`meta_iteration` that keeps the performance row it returns (the loop's own timings)."""

    @functools.wraps(meta_iteration)
    def capture(*args: Any, **kwargs: Any) -> Any:
        result = meta_iteration(*args, **kwargs)
        timer.rows.append(dict(result[1]))
        return result

    return capture


def stage_patches(timer: StageTimer) -> list[tuple[Any, str, Callable[..., Any]]]:
    """(owner, attribute, replacement) for every stage the timer times: module functions where
    their caller looks them up, methods on their class."""

    def timed(owner: Any, name: str, stage: str | None, phase=None) -> tuple:
        return owner, name, timer.wrap(getattr(owner, name), stage, phase)

    return [
        # Setup.
        timed(job, "prepare_run_config", "prepare config"),
        timed(job, "read_inputs", "read inputs"),
        timed(job, "known_programs", "known programs"),
        timed(job, "make_mesh", "make mesh"),
        timed(job, "build_policy", "build policy"),
        timed(job, "make_loop", "make loop"),
        timed(job, "initial_state", "init train state"),
        timed(iteration, "initial_buffer", "initial buffer"),
        timed(RunCheckpoints, "__init__", "checkpoint open"),
        timed(RunCheckpoints, "restore", "checkpoint restore"),
        timed(RunOutputs, "__init__", "open outputs"),
        # A meta-iteration (the phase begins with `meta_iteration`).
        (
            job,
            "meta_iteration",
            timer.wrap(
                _capture_row(timer, job.meta_iteration),
                None,
                lambda loop, state, i: f"meta_iteration_{i}",
            ),
        ),
        timed(ReplayBuffer, "sample", "buffer sample"),
        timed(iteration, "train_on_buffer", "train"),
        timed(iteration, "ensure_finite", "integrity check"),
        (Trainer, "step", _counting_step(timer, Trainer.step)),
        (Sampler, "sample", _counting_sample(timer, timer.wrap(Sampler.sample, "sample"))),
        timed(inference, "sample_programs", "decode"),  # the sampler calls are ``sample``
        timed(inference, "run_batched", "execute"),
        timed(inference, "execute_and_relabel", "relabel"),  # the sandbox runs are ``execute``
        timed(Scoreboard, "add", "score"),
        timed(iteration, "sample_rates", "sample stats"),
        timed(iteration, "add_experience", "buffer add"),
        timed(iteration, "add_search_tasks", "buffer add"),
        timed(RunOutputs, "write_iteration", "write outputs"),
        timed(RunCheckpoints, "save", "checkpoint save"),
        # Teardown (begins with the wait for the last checkpoint).
        timed(RunCheckpoints, "wait", "checkpoint wait", lambda self: TEARDOWN),
        timed(Sandbox, "close", "sandbox close"),
        timed(job, "_summary", "summary digests"),
    ]


@contextlib.contextmanager
def timing_stages(timer: StageTimer) -> Iterator[None]:
    """The stage wrappers and the compile listener, in place for the ``with`` block only."""
    jax.monitoring.register_event_time_span_listener(timer.on_compile_span)
    try:
        with contextlib.ExitStack() as stack:
            for owner, name, replacement in stage_patches(timer):
                stack.enter_context(mock.patch.object(owner, name, replacement))
            yield
    finally:
        jax.monitoring.unregister_event_time_span_listener(timer.on_compile_span)


def profile(config: Any, workdir: Path) -> tuple[StageTimer, dict[str, Any]]:
    """Run the CodeIt job of ``config`` (a ConfigDict) in ``workdir`` with every stage timed;
    (the finished timer, the job's summary)."""
    timer = StageTimer()
    with timing_stages(timer):
        factory = timer.wrap(job.open_sandbox, "sandbox start")
        summary = job.run(config, workdir, executor_factory=factory)
    timer.finish()
    return timer, summary


def phase_report(timer: StageTimer, phase: str, wall: float, peak: float) -> dict[str, Any]:
    """A phase's wall time and its stages (slowest first), each with seconds and fraction; for
    a meta-iteration also the train and sample model FLOPs as fractions of ``peak``."""
    seconds = dict(timer.seconds[phase])
    if phase.startswith("meta_iteration"):
        seconds = {stage: seconds.get(stage, 0.0) for stage in ITERATION_STAGES} | seconds
    seconds["other"] = wall - sum(v for k, v in seconds.items() if k != "other")
    report: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "stages": {
            stage: {"seconds": round(s, 3), "fraction": round(s / wall, 4) if wall else 0.0}
            for stage, s in sorted(seconds.items(), key=lambda item: -item[1])
        },
    }
    compiled = timer.compile_by_stage[phase]
    if compiled:
        report["compile_by_stage"] = {
            stage or "none": round(s, 3)
            for stage, s in sorted(compiled.items(), key=lambda item: -item[1])
        }
    if phase.startswith("meta_iteration"):
        report["peak_fraction"] = peak_fractions([timer], [phase], peak)
        tokens = timer.tokens[phase]
        if tokens["train_padded"]:
            report["train_real_token_fraction"] = round(
                tokens["train_real"] / tokens["train_padded"], 4
            )
    return report


def peak_fractions(timers: list[StageTimer], phases: list[str], peak: float) -> dict[str, Any]:
    """Model FLOPs per second of train and sample over ``phases``, as fractions of ``peak``."""
    result: dict[str, Any] = {}
    for what in ("train", "sample"):
        flops = sum(t.flops[p][what] for t in timers for p in phases)
        seconds = sum(t.seconds[p][what] for t in timers for p in phases)
        result[what] = round(flops / seconds / peak, 4) if seconds > 0 and flops else None
    return result


def report(timer: StageTimer, summary: dict[str, Any], peak: MatmulPeak) -> dict[str, Any]:
    """The benchmark's figures (the JSON line) from a finished timer."""
    walls = timer.walls()
    iterations = [p for p in walls if p.startswith("meta_iteration")]
    phases = {p: phase_report(timer, p, wall, peak.best) for p, wall in walls.items()}
    iteration_wall = sum(walls[p] for p in iterations)
    stages: dict[str, float] = defaultdict(float)
    for p in iterations:
        for stage, figures in phases[p]["stages"].items():
            stages[stage] += figures["seconds"]
    row_fields = ("train_seconds", "sample_seconds", "execute_seconds")
    return {
        "meta_iterations": len(iterations),
        "total_s": round(sum(walls.values()), 3),
        "meta_iterations_s": round(iteration_wall, 3),
        "phases": phases,
        "stages": {
            stage: {
                "seconds": round(s, 3),
                "fraction": round(s / iteration_wall, 4) if iteration_wall else 0.0,
            }
            for stage, s in sorted(stages.items(), key=lambda item: -item[1])
        },
        "peak_fraction": peak_fractions([timer], iterations, peak.best),
        "row_seconds": [{k: round(row[k], 3) for k in row_fields} for row in timer.rows],
        "other_thread_compile_s": round(timer.other_thread_compile_s, 3),
        "tasks_solved": summary.get("tasks_solved"),
        **peak.summary(),
    }


def print_tables(figures: dict[str, Any]) -> None:
    for phase, p in figures["phases"].items():
        print(f"\n{phase}: {p['wall_s']:.2f} s")
        for stage, s in p["stages"].items():
            print(f"  {stage:<20} {s['seconds']:9.3f} s {s['fraction']:7.1%}")
        if p.get("compile_by_stage"):
            where = ", ".join(f"{k} {v:.2f} s" for k, v in p["compile_by_stage"].items())
            print(f"  compiled in: {where}")
        fractions = p.get("peak_fraction", {})
        shown = {k: v for k, v in fractions.items() if v is not None}
        if shown:
            print("  of the matmul peak: " + ", ".join(f"{k} {v:.1%}" for k, v in shown.items()))
    print(f"\nall {figures['meta_iterations']} meta-iterations: {figures['meta_iterations_s']} s")
    for stage, s in figures["stages"].items():
        print(f"  {stage:<20} {s['seconds']:9.3f} s {s['fraction']:7.1%}")


def load_config(path: Path) -> Any:
    return runpy.run_path(str(path))["get_config"]()


def benchmark(config: Any, meta_iterations: int, name: str) -> dict[str, Any]:
    """Profile ``meta_iterations`` meta-iterations of ``config`` (a codeit ConfigDict, changed
    in place), print the tables and the JSON line; returns the figures."""
    config.n_meta_iterations = meta_iterations
    config.progress = False  # no progress bars in the benchmark's output
    load_before = load_average()
    print(
        f"backend {jax.default_backend()}, {jax.device_count()} devices, load average "
        f"{load_before} before; {name}: model {config.model.name}, "
        f"{meta_iterations} meta-iteration(s)",
        flush=True,
    )
    peak = MatmulPeak()
    peak.measure()
    with tempfile.TemporaryDirectory(prefix="codeit-meta-iteration-") as directory:
        timer, summary = profile(config, Path(directory) / "run")
    peak.measure()
    figures = {"config": name, "model": config.model.name}
    figures |= report(timer, summary, peak)
    figures |= host_fields()
    figures |= {"load_average_before": load_before, "load_average_after": load_average()}
    print_tables(figures)
    fractions = figures["peak_fraction"]
    print(
        f"matmul peak {peak.describe()}; model FLOPs over all meta-iterations: train "
        f"{_percent(fractions['train'])}, sample {_percent(fractions['sample'])} of it; "
        f"load average {load_before} before, {figures['load_average_after']} after"
    )
    print(json.dumps(figures))
    return figures


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a codeit config")
    parser.add_argument(
        "--meta-iterations",
        type=int,
        default=2,
        help="meta-iterations to run (the first compiles; later ones show the steady state)",
    )
    args = parser.parse_args(argv)
    if args.meta_iterations < 1:
        parser.error("--meta-iterations must be at least 1")
    return benchmark(load_config(args.config), args.meta_iterations, str(args.config))


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    prepare_process()  # before JAX starts
    main(sys.argv[1:])
