"""Hindsight relabelling with small hand-made tasks and outcomes (no sandbox needed)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from codeit_jax.replay.relabel import needs_test_run, output_grid, relabel, unique_programs
from codeit_jax.tasks import Task


@dataclass
class Out:
    """Stand-in for a sandbox outcome (same duck type)."""

    ok: bool
    value: object = None
    error: str | None = None
    detail: str | None = None


def ok(grid) -> Out:
    return Out(True, grid)


def failed(error: str = "runtime") -> Out:
    return Out(False, None, error, "boom")


A_IN, A_OUT = ((1, 2),), ((2, 1),)
B_IN, B_OUT = ((3, 0),), ((0, 3),)
T_IN, T_OUT = ((5, 6),), ((6, 5),)
TASK = Task(key="abc", train=[(A_IN, A_OUT), (B_IN, B_OUT)], test=[(T_IN, T_OUT)])

MIRROR = "O = vmirror(I)"
HALF = "x1 = hmirror(I)\nO = vmirror(x1)"
BROKEN = "O = rot90(I)"
NOTHING = "O = rot180(I)"


def test_a_correct_program_is_relabelled_and_recorded():
    result = relabel(TASK, [MIRROR], [[ok(A_OUT), ok(B_OUT)]], [[ok(T_OUT)]], meta_iteration=3)
    (task,) = result.tasks
    assert task.key == "abc_it3__0"
    assert task.parent_key == "abc" and task.program == MIRROR
    assert task.train == [(A_IN, A_OUT), (B_IN, B_OUT)]
    assert task.test == [(T_IN, T_OUT)]
    assert task.extra == {
        "rewards": [1.0, 1.0],
        "distance": 0.0,
        "demonstration_performance": 1.0,
        "meta_iteration": 3,
    }
    (record,) = result.solutions
    assert (record.task_key, record.program, record.meta_iteration) == ("abc", MIRROR, 3)
    assert record.demonstration_performance == (1.0, 1.0)
    assert record.test_performance == (1.0,)
    assert record.solves_test


def test_partial_program_gets_rewards_and_its_own_outputs():
    wrong = ((2, 2),)  # one of two cells differs from A_OUT
    result = relabel(TASK, [HALF], [[ok(wrong), ok(B_OUT)]], [[ok(((6, 6),))]], meta_iteration=0)
    (task,) = result.tasks
    assert task.train == [(A_IN, wrong), (B_IN, B_OUT)]  # hindsight: what the program did
    assert task.test == [(T_IN, ((6, 6),))]
    assert task.extra["rewards"] == [0.5, 1.0]
    assert task.extra["distance"] == pytest.approx(0.25)
    assert task.extra["demonstration_performance"] == 0.5
    (record,) = result.solutions
    assert record.demonstration_performance == (0.0, 1.0)
    assert record.test_performance == (0.0,)
    assert not record.solves_test


def test_invalid_outputs_are_dropped_and_score_zero():
    tall = ((1,),) * 31  # over the size cap
    outcomes = [failed("timeout"), ok(((0, 3), (0, 3)))]  # second: valid grid, wrong shape
    result = relabel(TASK, [BROKEN, NOTHING], [outcomes, [ok(tall), ok([[0, 3]])]], [None, None], 1)
    (task,) = result.tasks  # NOTHING had no valid output at all: no task
    assert task.key == "abc_it1__0"
    assert task.train == [(B_IN, ((0, 3), (0, 3)))]
    assert task.test == []  # not run on the test inputs
    assert task.extra["rewards"] == [0.0, 0.0]
    assert task.extra["distance"] == 1.0
    assert task.extra["demonstration_performance"] == 0.0
    assert result.solutions == []


def test_keys_use_the_index_in_the_deduplicated_list():
    programs = unique_programs([MIRROR, HALF, MIRROR, BROKEN, HALF])
    assert programs == [MIRROR, HALF, BROKEN]
    demos = [[ok(A_OUT), ok(B_OUT)], [failed(), failed()], [ok(A_OUT), failed()]]
    tests = [[ok(T_OUT)], None, [failed()]]
    result = relabel(TASK, programs, demos, tests, meta_iteration=7)
    assert [t.key for t in result.tasks] == ["abc_it7__0", "abc_it7__2"]
    assert [r.program for r in result.solutions] == [MIRROR, BROKEN]
    assert result.solutions[1].test_performance == (0.0,)


def test_needs_test_run_only_for_programs_solving_a_demonstration():
    assert needs_test_run(TASK, [failed(), ok(B_OUT)])
    assert not needs_test_run(TASK, [ok(B_OUT), ok(A_OUT)])
    assert not needs_test_run(TASK, [Out(False, A_OUT), failed()])  # value ignored when not ok
    with pytest.raises(ValueError, match="1 demonstration outcomes for 2"):
        needs_test_run(TASK, [ok(A_OUT)])


def test_only_the_shown_demonstrations_are_relabelled_and_can_earn_a_solution():
    """CodeIt's inference with n_examples below the task's demonstrations (ablation A5): the
    relabelled task, its rewards and distance come from the shown demonstrations; a solution
    needs one of them solved; its performance is still over all demonstrations."""
    second_only = [[failed(), ok(B_OUT)]]  # solves demonstration 2 of 2, not the shown one
    assert not needs_test_run(TASK, second_only[0], shown=1)
    assert needs_test_run(TASK, second_only[0])
    result = relabel(TASK, [HALF], second_only, [None], meta_iteration=0, shown=1)
    assert result.tasks == [] and result.solutions == []  # no valid output among the shown
    wrong = ((2, 2),)
    result = relabel(TASK, [HALF], [[ok(wrong), ok(B_OUT)]], [None], meta_iteration=0, shown=1)
    (task,) = result.tasks
    assert task.train == [(A_IN, wrong)]
    assert task.extra["rewards"] == [0.5] and task.extra["distance"] == 0.5
    assert task.extra["demonstration_performance"] == 0.0  # the shown one is not solved
    assert result.solutions == []
    first_only = [[ok(A_OUT), ok(wrong)]]
    result = relabel(TASK, [MIRROR], first_only, [[ok(T_OUT)]], meta_iteration=0, shown=1)
    (task,) = result.tasks
    assert task.train == [(A_IN, A_OUT)]
    assert task.extra["demonstration_performance"] == 0.5  # over both demonstrations
    (record,) = result.solutions
    assert record.demonstration_performance == (1.0, 0.0)


def test_output_grid_accepts_only_valid_grids():
    assert output_grid(ok(A_OUT)) == A_OUT
    for value in (None, [[1]], frozenset({(1, (0, 0))}), ((True,),), ()):
        assert output_grid(ok(value)) is None
    assert output_grid(Out(False, A_OUT, "crash")) is None


@pytest.mark.parametrize(
    "programs, demos, tests, message",
    [
        ([MIRROR, MIRROR], [[failed()] * 2] * 2, [None, None], "deduplicated"),
        ([MIRROR], [[failed()] * 2], [None, None], "1 programs but 1 demonstration and 2 test"),
        ([MIRROR], [[failed()]], [None], "1 demonstration outcomes for 2"),
        ([MIRROR], [[ok(A_OUT), failed()]], [None], "no test outcomes"),
        ([MIRROR], [[ok(A_OUT), failed()]], [[]], "0 test outcomes for 1"),
    ],
)
def test_inconsistent_input_is_an_error(programs, demos, tests, message):
    with pytest.raises(ValueError, match=message):
        relabel(TASK, programs, demos, tests, 0)


def test_relabelled_tasks_flow_into_the_buffer():
    """The pieces fit: relabelled task -> model input and label ids -> buffer -> sample."""
    import numpy as np

    from codeit_jax.policy.encoding import encode_program, encode_task, task_to_text
    from codeit_jax.policy.tokenizer import DSLTokenizer
    from codeit_jax.replay.buffer import ReplayBuffer

    tok = DSLTokenizer()
    demos = [[ok(A_OUT), ok(B_OUT)], [ok(((2, 2),)), ok(B_OUT)]]
    result = relabel(TASK, [MIRROR, HALF], demos, [[ok(T_OUT)], [failed()]], meta_iteration=2)
    buffer = ReplayBuffer()
    for task in result.tasks:
        buffer.add(
            "policy",
            task.parent_key,
            task.program,
            encode_task(task, tok, n_examples=10, input_state_max=512),
            encode_program(task.program, tok),
            task.extra["demonstration_performance"],
            task.extra["meta_iteration"],
            task.extra["distance"],
        )
    batch = buffer.sample(10, 0, np.random.default_rng(0))
    decoded = {
        tok.decode(labels): tok.decode(inputs)
        for inputs, labels in zip(batch.input_ids, batch.label_ids)
    }
    assert decoded == {t.program: task_to_text(t, 10) for t in result.tasks}
    assert buffer.get("policy", "abc", HALF).performance == 0.5


def test_program_text_cuts_a_sample_at_a_hash_as_codeit_decodes():
    from codeit_jax.loop.inference import program_text

    assert (
        program_text("x1 = vmirror(I)\nO = hconcat(I, x1)#")
        == "x1 = vmirror(I)\nO = hconcat(I, x1)"
    )
    assert program_text("O = vmirror(I)") == "O = vmirror(I)"
    assert program_text("#O = vmirror(I)") == ""
