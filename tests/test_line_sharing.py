"""Group evaluation with shared lines gives each program's own result (Program.run semantics,
CodeIt's per-line time limit), in process and through the sandbox."""

from __future__ import annotations

import random

import pytest

from codeit_jax.dsl import PRIMITIVES
from codeit_jax.execution.batch import match_in_process, run_in_process
from codeit_jax.execution.line_sharing import GroupMatches, ProgramGroup, _bounded_mapply, _TooLong
from codeit_jax.execution.sandbox import Sandbox
from codeit_jax.programs.program import parse
from codeit_jax.tasks import is_grid, load_codeit_dir

GRID = ((1, 2, 3), (4, 5, 6))
SQUARE = ((0, 1), (2, 3))

# Mutants of one parent: equal lines under other names, equivalent-valued changes, errors.
FAMILY = [
    "x1 = vmirror(I)\nO = hmirror(x1)",
    "x1 = vmirror(I)\nx2 = hmirror(x1)\nO = identity(x2)",
    "x1 = rot180(I)\nO = identity(x1)",  # the same grid as the first, computed otherwise
    "x1 = hmirror(I)\nO = vmirror(x1)",
    "x1 = vmirror(I)\nO = add(x1, ONE)",  # runtime error
    "x1 = remove(SIX, I)\nO = hmirror(x1)",  # remove on a grid: a tuple of rows (no 6 row)
    "x1 = lbind(add, ONE)\nx2 = compose(x1, x1)\nO = x2(TWO)",  # function values
    "x1 = lbind(add, ONE)\nx2 = compose(x1, x1)\nO = x2(THREE)",
    "O = vmirror(",  # does not parse
]


def own_matches(texts, grid, expected, max_state_size=1000):
    """Which programs return ``expected`` when each is run on its own."""
    rows = run_in_process([(text, [grid]) for text in texts], max_state_size=max_state_size)
    return tuple(i for i, row in enumerate(rows) if row[0].ok and row[0].value == expected)


@pytest.mark.parametrize("grid", [GRID, SQUARE])
def test_family_matches_each_program_run_alone(grid):
    candidates = {parse(t).run(grid) for t in FAMILY[:4]} | {grid}
    for expected in candidates:
        if not is_grid(expected):
            continue
        [found] = match_in_process([(FAMILY, grid, expected)])
        assert found.indices == own_matches(FAMILY, grid, expected)
        assert found.timeouts == 0
        assert found.failures == 2  # the runtime error and the syntax error


def test_identical_lines_under_other_names_are_one_node():
    group = ProgramGroup([parse(t) for t in FAMILY[:4]])
    assert group.lines == 2 + 3 + 2 + 2
    # vmirror(I), hmirror(that), identity(that), rot180(I), identity(that), hmirror(I),
    # vmirror(that): 7 distinct computations.
    assert group.distinct_lines == 7


def test_state_size_rule_matches_program_run():
    grid = tuple(tuple((i + j) % 10 for j in range(20)) for i in range(20))
    texts = [
        "x1 = upscale(I, TWO)\nx2 = asindices(x1)\nO = fill(I, ONE, x2)",  # reads 1,600 cells
        "x1 = upscale(I, TWO)\nx2 = asindices(x1)\nO = vmirror(I)",  # never reads them
        "x1 = asindices(I)\nO = vmirror(I)",
        "O = upscale(I, TWO)",  # an output of 40 rows: stored, just not the expected grid
    ]
    expected = parse("O = vmirror(I)").run(grid)
    for limit in (1000, None):
        [found] = match_in_process([(texts, grid, expected)], max_state_size=limit)
        assert found.indices == own_matches(texts, grid, expected, limit) == (1, 2)
    [found] = match_in_process([(texts, grid, expected)], max_state_size=1000)
    assert found.failures == 1
    [found] = match_in_process([(texts, grid, expected)], max_state_size=1601)
    assert found.failures == 0


def test_bounded_mapply_gives_up_only_where_the_value_would_be_dropped():
    grid = tuple(tuple((i * 7 + j) % 10 for j in range(30)) for i in range(30))
    # 900 single-cell objects. Each one's own cell: 900 cells, kept, and the program returns I.
    under = (
        "x1 = objects(I, T, F, F)\nx2 = fork(recolor, color, backdrop)\nx3 = mapply(x2, x1)\n"
        "O = paint(I, x3)"
    )
    # Each one's 4 neighbours in its colour: over 1000 (colour, cell) pairs, dropped.
    over = (
        "x1 = objects(I, T, F, F)\nx2 = compose(dneighbors, center)\n"
        "x3 = fork(recolor, color, x2)\nx4 = mapply(x3, x1)\nO = paint(I, x4)"
    )
    texts = [under, over]
    [found] = match_in_process([(texts, grid, grid)])
    assert found.indices == own_matches(texts, grid, grid) == (0,)
    assert run_in_process([(over, [grid])])[0][0].error == "state_size"
    objects = parse("O = objects(I, T, F, F)").run(grid)
    spread = parse("x1 = compose(dneighbors, center)\nO = fork(recolor, color, x1)").run(grid)
    with pytest.raises(_TooLong):
        _bounded_mapply(spread, objects, 1000)
    kept = parse("O = fork(recolor, color, backdrop)").run(grid)
    assert _bounded_mapply(kept, objects, 1000) == PRIMITIVES["mapply"](kept, objects)
    assert len(PRIMITIVES["mapply"](kept, objects)) == 900


# Some of the 400 programs run into the time limit on other tasks' inputs; when the first timer
# signal lands in a gc callback (hypothesis installs one) Python reports the swallowed
# RunTimeout, and the timer's repeat stops the run 0.05 s later, as designed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_training_programs_on_their_own_inputs(codeit_data):
    """All 400 ground-truth programs as one group, on a sample of training inputs: the same
    matches as running each alone (the matching programs are far from the time limit; one or
    two others time out on some of these inputs)."""
    tasks = load_codeit_dir(codeit_data / "training")
    texts = [parse(task.program).text for task in tasks]
    rng = random.Random(0)
    for task in rng.sample(tasks, 4):
        grid, expected = task.train[0]
        [found] = match_in_process([(texts, grid, expected)])
        assert found.indices == own_matches(texts, grid, expected)
        assert texts.index(parse(task.program).text) in found.indices or task.key in {"a64e4611"}


def test_sandbox_match_equals_in_process_and_handles_faults():
    units = [(FAMILY, g, parse(FAMILY[0]).run(g)) for g in (GRID, SQUARE)] * 3
    with Sandbox(workers=2, timeout_s=0.2, memory_mb=1024) as sandbox:
        assert sandbox.match(units) == match_in_process(units, timeout_s=0.2)
    hooks = ["hook:spin", "hook:segfault", "hook:block_signals_and_sleep"]
    with Sandbox(
        workers=2,
        timeout_s=0.2,
        memory_mb=1024,
        hard_factor=2.0,
        hard_grace_s=1.0,
        _compiler="sandbox_hooks:compile_with_hooks",
    ) as sandbox:
        found = sandbox.match([([h, "O = identity(I)"], GRID, GRID) for h in hooks])
    assert found[0] == GroupMatches((1,), 1, 0)  # the spin times out, identity still matches
    assert found[1] == GroupMatches((1,), 0, 1)  # a crash fails only the crashing program
    assert found[2] == GroupMatches((1,), 1, 0)  # the watchdog's kill is a timeout of that one


def test_bad_units_are_refused():
    with pytest.raises(TypeError, match="triples"):
        match_in_process("O = identity(I)")
    with pytest.raises(TypeError, match="list of str"):
        match_in_process([("O = identity(I)", GRID, GRID)])
    with pytest.raises(ValueError, match="expected output is not a valid grid"):
        match_in_process([(["O = identity(I)"], GRID, ((10,),))])
