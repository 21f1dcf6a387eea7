"""The depth-one mutation operator: every kept mutant is valid, reproducible and new."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from codeit_jax.programs.mutate import (
    MutationError,
    MutationWeights,
    Mutator,
    _Line,
    _render,
    accept_outputs,
)
from codeit_jax.programs.program import parse
from codeit_jax.programs.types import infer_types, training_signature_table
from codeit_jax.tasks import is_grid, load_codeit_dir
from tests.mutation_standin import StandInExecutor, StandInOutcome


@pytest.fixture(scope="module")
def table(codeit_data):
    return training_signature_table(codeit_data)


@pytest.fixture(scope="module")
def parents(codeit_data):
    tasks = load_codeit_dir(codeit_data / "training")
    return [(task, infer_types(task.program, task.train[0][0])) for task in tasks]


def test_weights_are_validated():
    assert MutationWeights().operation_weights == (0.5, 0.25, 0.25)
    with pytest.raises(ValueError, match="phi_arg \\+ phi_func"):
        MutationWeights(phi_arg=0.8, phi_func=0.5)
    with pytest.raises(ValueError, match="phi_var"):
        MutationWeights(phi_var=1.5)


def test_render_prunes_merges_and_renumbers():
    lines = [
        _Line("vmirror", ["I"]),
        _Line("hmirror", ["I"]),  # feeds nothing: dropped
        _Line("vmirror", ["I"]),  # same call as line 0: merged into it
        _Line("hconcat", [2, 0]),
    ]
    assert _render(lines) == "x1 = vmirror(I)\nO = hconcat(x1, x1)"
    assert _render([_Line("vmirror", ["I"]), _Line("vmirror", ["I"])]) == "O = vmirror(I)"
    with pytest.raises(MutationError, match="later line"):
        _render([_Line("vmirror", [1]), _Line("hmirror", [0])])


def test_accept_outputs_rules():
    grid, other = ((1, 2),), ((2, 1),)
    ok = StandInOutcome(True, other)
    assert accept_outputs([grid], [ok]) == [other]
    assert accept_outputs([grid], [StandInOutcome(True, grid)]) is None  # identity
    assert accept_outputs([grid, grid], [ok, StandInOutcome(True, grid)]) == [other, grid]
    assert accept_outputs([grid], [StandInOutcome(True, 3)]) is None  # not a grid
    assert accept_outputs([grid], [StandInOutcome(False, None, "runtime")]) is None


def test_mutants_are_valid_reproducible_and_new(table, parents):
    mutator = Mutator(table)
    executor = StandInExecutor()
    rng = random.Random(1234)
    kinds: Counter[str] = Counter()
    kept = 0
    for _ in range(400):
        task, types = rng.choice(parents)
        try:
            program, mutation = mutator.mutate(types, rng)
        except MutationError:
            continue
        kinds[mutation.kind] += 1
        assert program.text != types.program.text
        assert parse(program.text).text == program.text  # normalised
        targets = [line.target for line in program.lines]
        assert targets == [f"x{i}" for i in range(1, len(targets))] + ["O"]
        inputs = [x for x, _ in task.train + task.test]
        [row] = executor.run([(program.text, inputs)])
        outputs = accept_outputs(inputs, row)
        if outputs is None:
            continue
        kept += 1
        assert all(is_grid(out) for out in outputs)
        assert any(out != grid for out, grid in zip(outputs, inputs))
        # the stored function form re-executes to the recorded outputs
        again = parse(program.to_function_text(f"solve_{task.key}_m"))
        assert [again.run(x, max_state_size=1000) for x in inputs] == outputs
    assert set(kinds) == {"arg", "func", "rhs"}
    assert kinds["arg"] > kinds["rhs"]  # weights 0.5 vs 0.25
    assert kept > 100


def test_mutation_is_deterministic_given_the_stream(table, parents):
    mutator = Mutator(table)
    _, types = parents[7]

    def draw(seed: int) -> list[str]:
        rng = random.Random(seed)
        texts = []
        for _ in range(20):
            try:
                texts.append(mutator.mutate(types, rng)[0].text)
            except MutationError as error:
                texts.append(f"error: {error}")
        return texts

    assert draw(5) == draw(5)
    assert draw(5) != draw(6)


def test_new_variable_is_inserted_before_the_edited_line(table):
    types = infer_types("x1 = vmirror(I)\nx2 = hmirror(x1)\nO = hconcat(x1, x2)", ((1, 2),))
    mutator = Mutator(table, MutationWeights(phi_arg=1.0, phi_func=0.0, phi_var=1.0))
    rng = random.Random(0)
    made = 0
    for _ in range(50):
        try:
            program, mutation = mutator.mutate(types, rng)
        except MutationError:
            continue
        made += 1
        assert mutation.kind == "arg" and " -> new " in mutation.after
        assert len(program) >= 2
    assert made > 10


def test_function_replacement_keeps_the_concrete_signature(table):
    types = infer_types("x1 = vmirror(I)\nO = hconcat(I, x1)", ((1, 2),))
    mutator = Mutator(table, MutationWeights(phi_arg=0.0, phi_func=1.0, phi_var=0.0))
    rng = random.Random(3)
    for _ in range(30):
        try:
            program, mutation = mutator.mutate(types, rng)
        except MutationError:
            continue
        assert mutation.kind == "func"
        line = program.lines[mutation.line - 1]
        assert line.callee == mutation.after
        arrow = types.lines[mutation.line - 1].arrow
        assert arrow in table.by_primitive[line.callee]
