"""How good a meta-iteration's policy samples are, as fractions of all samples.

A policy that learns writes more programs that parse, run, return grids and solve
demonstrations, and keeps writing programs it has not written before. These rates show that
(or its absence) long before a task is solved, so every meta-iteration records them
(`SAMPLE_COLUMNS` of performance.csv):

* ``parse_rate``: the sample is a program the interpreter accepts;
* ``run_rate``: it runs without error on every demonstration input;
* ``grid_rate``: it returns a valid ARC grid on every demonstration input;
* ``solve_rate``: it solves at least one demonstration of its task exactly;
* ``new_rate``: it parses and its program text is in neither buffer partition before this
  meta-iteration's experience is added (not a copy of a training, mutated or earlier policy
  program).

Each sample counts, repeats included (24 identical samples of a task count 24 times), so the
rates describe what the sampler spends its budget on. They are computed from the sample log of
`codeit_jax.loop.inference` (per task: the samples and, per distinct program, its outcomes).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

#: performance.csv columns of the sample rates (after the paper columns), in order.
SAMPLE_COLUMNS = ("samples", "parse_rate", "run_rate", "grid_rate", "solve_rate", "new_rate")

#: The sandbox's error kind of a text that does not parse.
_SYNTAX = "syntax"


def sample_rates(
    log: Mapping[str, Mapping[str, Any]],
    demonstrations: Mapping[str, int],
    known_programs: Container[str],
) -> dict[str, float]:
    """The `SAMPLE_COLUMNS` of one meta-iteration.

    ``log``: task key -> {"samples": [text, ...], "programs": [{"program", "valid_outputs",
    "solved", "errors"}, ...]} (every distinct sample has its entry); ``demonstrations``: task
    key -> number of demonstration examples; ``known_programs``: the buffer's programs.
    """
    counts = dict.fromkeys(SAMPLE_COLUMNS, 0)
    for key, entry in log.items():
        outcomes = {p["program"]: p for p in entry["programs"]}
        n_demos = demonstrations[key]
        for sample in entry["samples"]:
            program = outcomes[sample]
            errors = set(program["errors"])
            counts["samples"] += 1
            counts["parse_rate"] += _SYNTAX not in errors
            counts["run_rate"] += not errors
            counts["grid_rate"] += program["valid_outputs"] == n_demos
            counts["solve_rate"] += program["solved"] > 0
            counts["new_rate"] += _SYNTAX not in errors and sample not in known_programs
    total = counts["samples"]
    rates: dict[str, float] = {"samples": float(total)}
    for name in SAMPLE_COLUMNS[1:]:
        rates[name] = counts[name] / total if total else 0.0
    return rates


__all__ = ["SAMPLE_COLUMNS", "sample_rates"]
