"""The random program sampler only emits programs that parse and type-check."""

from __future__ import annotations

import random

import pytest

from codeit_jax.programs.mutate import accept_outputs
from codeit_jax.programs.program import parse
from codeit_jax.programs.random_programs import RandomProgramSampler
from codeit_jax.programs.types import SignatureTable, check_types, training_signature_table
from tests.mutation_standin import StandInExecutor


@pytest.fixture(scope="module")
def table(codeit_data):
    return training_signature_table(codeit_data)


def test_samples_parse_type_check_and_respect_the_length(table):
    sampler = RandomProgramSampler(table, max_lines=5)
    rng = random.Random(0)
    lengths = set()
    for _ in range(500):
        program = sampler.sample(rng)
        assert parse(program.text).text == program.text
        assert "Grid" in check_types(program, table)["O"]
        assert 1 <= len(program) <= 5
        lengths.add(len(program))
    assert {1, 2, 3} <= lengths


def test_sampling_is_deterministic(table):
    sampler = RandomProgramSampler(table)
    first = [sampler.sample(random.Random(9)).text for _ in range(3)]
    assert len(set(first)) == 1
    texts = {sampler.sample(random.Random(seed)).text for seed in range(50)}
    assert len(texts) > 30


def test_some_random_programs_make_new_grids(table):
    sampler = RandomProgramSampler(table)
    rng = random.Random(4)
    grid = ((0, 1, 2), (3, 4, 5))
    batch = [(sampler.sample(rng).text, [grid]) for _ in range(200)]
    rows = StandInExecutor().run(batch)
    made = sum(accept_outputs([grid], row) is not None for row in rows)
    assert made > 20


def test_bad_settings_are_refused(table):
    with pytest.raises(ValueError, match="max_lines"):
        RandomProgramSampler(table, max_lines=0)
    with pytest.raises(ValueError, match="Grid"):
        RandomProgramSampler(SignatureTable.from_uses([]))
