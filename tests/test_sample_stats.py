"""The per-meta-iteration sample rates, on a hand-made sample log."""

from __future__ import annotations

import pytest

from codeit_jax.replay.sample_stats import SAMPLE_COLUMNS, sample_rates


def _program(text: str, valid: int, solved: int, errors: list[str]) -> dict:
    return {"program": text, "valid_outputs": valid, "solved": solved, "errors": errors}


def test_rates_count_every_sample_repeats_included():
    log = {
        "t1": {  # 3 demonstrations
            "samples": ["A", "A", "B", "junk"],
            "programs": [
                _program("A", 3, 1, []),  # runs, grids everywhere, solves one
                _program("B", 2, 0, ["runtime"]),  # parses, fails on one input
                _program("junk", 0, 0, ["syntax"]),
            ],
        },
        "t2": {  # 2 demonstrations
            "samples": ["C", "D", "D", "D"],
            "programs": [_program("C", 1, 0, []), _program("D", 2, 2, [])],
        },
    }
    rates = sample_rates(log, {"t1": 3, "t2": 2}, known_programs={"A", "D"})
    assert tuple(rates) == SAMPLE_COLUMNS
    assert rates["samples"] == 8
    assert rates["parse_rate"] == 7 / 8
    assert rates["run_rate"] == 6 / 8  # A, A, C, D, D, D
    assert rates["grid_rate"] == 5 / 8  # A, A, D, D, D (C has one grid of two)
    assert rates["solve_rate"] == 5 / 8  # A, A, D, D, D
    assert rates["new_rate"] == 2 / 8  # B and C: parse and are not in the buffer


def test_no_samples_give_zero_rates():
    assert sample_rates({}, {}, set()) == pytest.approx(dict.fromkeys(SAMPLE_COLUMNS, 0.0))
