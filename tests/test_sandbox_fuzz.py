"""Fuzz: random and edited programs, pathological ones and a worker stuck in C never hang the
sandbox, every outcome is well-formed, and the pool still runs normal programs afterwards."""

from __future__ import annotations

import random
import time

import pytest

from codeit_jax.bench.policy_like import (
    edited_text,
    pathological_texts,
    policy_like_workload,
    random_token_text,
)
from codeit_jax.execution.run import ERROR_KINDS
from codeit_jax.execution.sandbox import Outcome, Sandbox
from codeit_jax.programs.program import ProgramError, parse
from codeit_jax.tasks import load_codeit_dir

HOOKS = "sandbox_hooks:compile_with_hooks"
TIMEOUT_S = 0.05
HARD_FACTOR = 2.0
HARD_GRACE_S = 1.0
WORKERS = 2
STUCK = "hook:block_signals_and_sleep:3600"

GRIDS = [
    ((1, 2, 3), (4, 5, 6)),
    ((0, 0, 5, 0), (0, 5, 5, 0), (0, 0, 0, 0)),
    tuple(tuple((r * c) % 10 for c in range(12)) for r in range(9)),
    tuple(tuple((r + c) % 3 for c in range(30)) for r in range(30)),
]
SEED_PROGRAMS = [
    "x1 = rot90(I)\nx2 = hconcat(I, x1)\nO = vconcat(x2, x2)",
    "x1 = objects(I, T, F, T)\nx2 = argmax(x1, size)\nO = subgrid(x2, I)",
    "x1 = mostcolor(I)\nx2 = ofcolor(I, x1)\nx3 = fill(I, FIVE, x2)\nO = hmirror(x3)",
    "x1 = palette(I)\nx2 = size(x1)\nO = upscale(I, x2)",
    "x1 = compose(vmirror, hmirror)\nx2 = x1(I)\nO = cellwise(I, x2, ZERO)",
    "x1 = lbind(colorcount, I)\nx2 = palette(I)\nx3 = argmin(x2, x1)\nO = replace(I, x3, ONE)",
]


def hard_limit(text: str) -> float:
    """The watchdog's wall-clock promise for one run of ``text``."""
    try:
        lines = len(parse(text)) if not text.startswith("hook:") else 1
    except ProgramError:
        lines = 0
    return HARD_FACTOR * TIMEOUT_S * max(1, lines) + HARD_GRACE_S


def fuzz_sandbox() -> Sandbox:
    return Sandbox(
        workers=WORKERS,
        timeout_s=TIMEOUT_S,
        memory_mb=1024,
        hard_factor=HARD_FACTOR,
        hard_grace_s=HARD_GRACE_S,
        _compiler=HOOKS,
    )


def run_checked(sb: Sandbox, batch: list[tuple[str, list]]) -> list[list[Outcome]]:
    """Run a batch; every outcome well-formed, and the call back within 10x its limits."""
    bound = 10 * sum(hard_limit(text) * len(grids) for text, grids in batch) / WORKERS
    start = time.monotonic()
    outcomes = sb.run(batch)
    elapsed = time.monotonic() - start
    assert elapsed <= bound, f"{elapsed:.1f} s > {bound:.1f} s for {batch[0][0]!r:.60}..."
    assert [len(row) for row in outcomes] == [len(grids) for _, grids in batch]
    for row in outcomes:
        for outcome in row:
            assert isinstance(outcome, Outcome)
            assert outcome.ok == (outcome.error is None)
            assert outcome.error is None or outcome.error in ERROR_KINDS
            assert outcome.ok or outcome.value is None
    return outcomes


def check_still_works(sb: Sandbox) -> None:
    grid = GRIDS[1]
    expected = tuple(row[::-1] for row in grid)
    assert sb.run([("O = vmirror(I)", [grid])]) == [[Outcome(True, expected)]]


def fuzz(
    sb: Sandbox, programs, inputs, n_random: int, n_edited: int, seed: int, n_grids: int
) -> dict:
    rng = random.Random(seed)
    errors: dict[str | None, int] = {}
    for text in pathological_texts() + [STUCK]:  # one call each: each gets its own bound
        for outcome in run_checked(sb, [(text, GRIDS[:n_grids])])[0]:
            errors[outcome.error] = errors.get(outcome.error, 0) + 1
    random_batch = [(random_token_text(rng), [rng.choice(GRIDS)]) for _ in range(n_random)]
    edited = policy_like_workload(programs, inputs, n_edited, seed=seed)
    batch = random_batch + edited
    rng.shuffle(batch)
    batch.insert(len(batch) // 2, (STUCK, [GRIDS[0]]))
    for start in range(0, len(batch), 250):
        for row in run_checked(sb, batch[start : start + 250]):
            for outcome in row:
                errors[outcome.error] = errors.get(outcome.error, 0) + 1
    check_still_works(sb)
    return errors


def test_fuzz_small():
    programs = [parse(text) for text in SEED_PROGRAMS]
    inputs = [[GRIDS[k % len(GRIDS)], GRIDS[(k + 1) % len(GRIDS)]] for k in range(len(programs))]
    with fuzz_sandbox() as sb:
        errors = fuzz(sb, programs, inputs, n_random=150, n_edited=250, seed=1, n_grids=1)
    # The workload reached every interesting path, not just the parser.
    assert errors.get(None, 0) > 0 and errors.get("runtime", 0) > 0
    assert errors.get("syntax", 0) >= 150 and errors.get("timeout", 0) >= 3


def test_edits_mostly_parse():
    rng = random.Random(0)
    programs = [parse(text) for text in SEED_PROGRAMS]
    texts = [edited_text(rng.choice(programs), rng) for _ in range(500)]
    failed = 0
    for text in texts:
        try:
            parse(text)
        except ProgramError:
            failed += 1
    assert failed < 0.4 * len(texts)


@pytest.mark.slow
def test_fuzz_ground_truth_edits(codeit_data):
    tasks = [t for t in load_codeit_dir(codeit_data / "training") if t.program]
    programs = [parse(t.program) for t in tasks]
    inputs = [[x for x, _ in t.train] for t in tasks]
    with fuzz_sandbox() as sb:
        errors = fuzz(sb, programs, inputs, n_random=2000, n_edited=2500, seed=2, n_grids=3)
    assert sum(errors.values()) > 4500
    assert errors.get(None, 0) > 0 and errors.get("runtime", 0) > 1000
