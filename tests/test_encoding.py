"""Sparse grid text, task -> model input, and program target text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeit_jax.policy.encoding import (
    GridTextError,
    background_colour,
    bare_program,
    encode_program,
    encode_task,
    encode_task_cut,
    grid_to_text,
    max_input_length,
    task_sides,
    task_to_text,
    text_to_grid,
)
from codeit_jax.policy.tokenizer import DSLTokenizer
from codeit_jax.tasks import Task, load_codeit_dir


@st.composite
def grids(draw: st.DrawFn) -> tuple[tuple[int, ...], ...]:
    """Any valid ARC grid; half the time with few colours, as real grids have."""
    height = draw(st.integers(1, 30))
    width = draw(st.integers(1, 30))
    palette = draw(st.lists(st.integers(0, 9), min_size=1, max_size=10, unique=True))
    cells = draw(
        st.lists(st.sampled_from(palette), min_size=height * width, max_size=height * width)
    )
    return tuple(tuple(cells[i * width : (i + 1) * width]) for i in range(height))


@settings(max_examples=300, deadline=None)
@given(grids())
def test_grid_text_round_trips_every_grid(grid):
    text = grid_to_text(grid)
    assert text_to_grid(text) == grid
    assert grid_to_text(text_to_grid(text)) == text


def test_grid_text_format_is_canonical():
    grid = ((0, 7, 0, 0), (0, 7, 0, 0), (0, 0, 0, 2))
    assert grid_to_text(grid) == "3x4 bg=0 2=2,3 7=0,1 1,1"
    assert grid_to_text(((5,),)) == "1x1 bg=5"


def test_background_tie_goes_to_the_smallest_colour():
    assert background_colour(((3, 1), (1, 3))) == 1
    assert background_colour(((9, 4, 4), (9, 2, 2))) == 2
    assert grid_to_text(((3, 1), (1, 3))) == "2x2 bg=1 3=0,0 1,1"


@pytest.mark.parametrize("value", [[[1]], ((1, 2), (3,)), ((True,),), ((1.0,),), (((1,),),), 3])
def test_grid_to_text_rejects_what_is_not_a_rectangular_grid_of_ints(value):
    with pytest.raises(ValueError, match="not a"):
        grid_to_text(value)


@pytest.mark.parametrize(
    "grid, text",
    [
        ((), "0x0"),
        (((),), "1x0"),
        (((), (), ()), "3x0"),
        (((12, 12, 3),), "1x3 bg=12 3=0,2"),
        (((0,) * 30 + (4,),), "1x31 bg=0 4=0,30"),
        (tuple(((5,),) * 40) + ((107,),), "41x1 bg=5 107=40,0"),
        (((-1, 0, 0),), "1x3 bg=0 -1=0,0"),
    ],
)
def test_non_arc_grids_of_the_mutated_files_get_a_text(grid, text):
    assert grid_to_text(grid) == text


def test_non_arc_grid_texts_use_vocabulary_words_or_digits_only():
    tokenizer = DSLTokenizer()
    for grid in [(), ((),), ((12, 3),), tuple(((0,),) * 31) + ((250,),)]:
        text = grid_to_text(grid)
        assert tokenizer.decode(tokenizer.encode(text, strict=True)) == text
    with pytest.raises(ValueError, match="'-'"):
        tokenizer.encode(grid_to_text(((-1, 0),)), strict=True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3x3",
        "3x3 bg=10",
        "0x3 bg=0",
        "31x2 bg=0",
        "2x2 bg=0 1=2,0",  # outside the grid
        "2x2 bg=0 1=0,0 0,0",  # repeated cell
        "2x2 bg=0 0=1,1",  # colour equal to the background
        "2x2 bg=0 1=0,0 1=1,1",  # colour listed twice
        "2x2 bg=0 0,1",  # cell before any colour
        "2x2 bg=0 1=0,0  1,1",  # double space
        "2x2 bg=0 1=a,b",
    ],
)
def test_text_to_grid_rejects_malformed_text(text):
    with pytest.raises(GridTextError):
        text_to_grid(text)


def test_every_training_grid_round_trips(codeit_data):
    tasks = load_codeit_dir(codeit_data / "training")
    assert len(tasks) == 400
    for task in tasks:
        for x, y in task.train + task.test:
            for grid in (x, y):
                assert text_to_grid(grid_to_text(grid)) == grid


def _task() -> Task:
    a = ((1, 0), (0, 0))
    b = ((0, 0), (0, 2))
    c = ((3, 3, 3),)
    return Task(key="t", train=[(a, b), (b, a), (c, c)], test=[(a, a)])


def test_task_text_joins_inputs_then_outputs():
    task = _task()
    assert task_sides(task, 2) == (
        "2x2 bg=0 1=0,0|2x2 bg=0 2=1,1",
        "2x2 bg=0 2=1,1|2x2 bg=0 1=0,0",
    )
    assert task_to_text(task, 1) == "2x2 bg=0 1=0,0\n2x2 bg=0 2=1,1"
    assert task_to_text(task, 10).count("|") == 4  # all three examples, two separators a side


def test_task_text_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_examples"):
        task_to_text(_task(), 0)
    with pytest.raises(ValueError, match="no demonstration"):
        task_to_text(Task(key="empty", train=[], test=[]), 3)
    with pytest.raises(ValueError, match="input_state_max"):
        encode_task(_task(), DSLTokenizer(), 3, 1)


def test_encode_task_truncates_each_side_in_tokens():
    tok = DSLTokenizer()
    task = _task()
    inputs, outputs = task_sides(task, 3)
    full = encode_task(task, tok, 3, 10_000)
    assert full == tok.encode(inputs) + tok.encode("\n") + tok.encode(outputs)  # no eos
    assert tok.decode(full) == task_to_text(task, 3)

    limit = 5  # CodeIt: inputs side cut to the limit, outputs side to the limit - 1
    cut = encode_task(task, tok, 3, limit)
    assert cut == tok.encode(inputs)[:limit] + tok.encode("\n") + tok.encode(outputs)[: limit - 1]
    assert len(cut) == 2 * limit == max_input_length(tok, limit)
    text_in, text_out = tok.decode(cut).split("\n")
    assert inputs.startswith(text_in) and len(text_in) < len(inputs)
    assert outputs.startswith(text_out) and len(text_out) < len(outputs)
    # encode_task_cut says whether a side was cut: exactly at the limit nothing is.
    assert encode_task_cut(task, tok, 3, limit) == (cut, True)
    assert encode_task_cut(task, tok, 3, 10_000) == (full, False)
    exact = max(len(tok.encode(inputs)), len(tok.encode(outputs)) + 1)
    assert encode_task_cut(task, tok, 3, exact) == (full, False)
    assert encode_task_cut(task, tok, 3, exact - 1)[1]


class _PrefixTokenizer(DSLTokenizer):
    """The DSL tokenizer with a leading special token, as CodeT5's ``<s>``."""

    def __init__(self) -> None:
        super().__init__()
        self.prefix_ids = (self.unk_id,)


def test_special_prefix_counts_against_the_inputs_side_and_starts_labels():
    tok = _PrefixTokenizer()
    task = _task()
    inputs, outputs = task_sides(task, 3)
    cut = encode_task(task, tok, 3, 5)
    assert cut == [tok.unk_id, *tok.encode(inputs)[:4], *tok.encode("\n"), *tok.encode(outputs)[:4]]
    assert encode_program("O = vmirror(I)", tok) == [
        tok.unk_id,
        *tok.encode("O = vmirror(I)"),
        tok.eos_id,
    ]


def test_encode_program_appends_eos():
    tok = DSLTokenizer()
    ids = encode_program("O = vmirror(I)", tok)
    assert ids[-1] == tok.eos_id
    assert tok.decode(ids) == "O = vmirror(I)"


def test_bare_program_strips_def_return_and_indent():
    stored = "def solve_x(I):\n    x1 = vmirror(I)\n    O = hconcat(I, x1)\n    return O\n"
    assert bare_program(stored) == "x1 = vmirror(I)\nO = hconcat(I, x1)"
    assert bare_program("x1 = vmirror(I)\nO = hconcat(I, x1)\n") == (
        "x1 = vmirror(I)\nO = hconcat(I, x1)"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("def solve(I)\n    O = f(I)\n    return O", "does not end with"),
        ("def solve(I):\n    O = f(I)", "return O"),
        ("def solve(I):\n  O = f(I)\n    return O", "indented"),
        ("def solve(I):\n    return O", "no statements"),
    ],
)
def test_bare_program_rejects_malformed_functions(text, message):
    with pytest.raises(ValueError, match=message):
        bare_program(text)


def test_bare_program_agrees_with_the_program_parser(codeit_data):
    program = pytest.importorskip("codeit_jax.programs.program")
    for task in load_codeit_dir(codeit_data / "training"):
        assert bare_program(task.program) == program.parse(task.program).text
