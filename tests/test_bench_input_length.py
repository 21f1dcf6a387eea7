"""The input-length benchmark: its cut rule per side and its figures on the tiny config."""

from codeit_jax.bench import input_length
from codeit_jax.policy.encoding import SIDE_SEPARATOR, task_sides
from codeit_jax.policy.tokenizer import DSLTokenizer
from codeit_jax.tasks import Task


def _row(cells: int) -> tuple[tuple[int, ...]]:
    return (tuple(i % 10 for i in range(cells)),)


def _task(input_cells: int, output_cells: int) -> Task:
    return Task(key="t", train=[(_row(input_cells), _row(output_cells))], test=[])


def _side_lengths(task: Task, tokenizer: DSLTokenizer) -> tuple[int, int]:
    return tuple(len(tokenizer.encode(side)) for side in task_sides(task, 1))


def test_cut_fractions_cut_each_side_on_its_own():
    tokenizer = DSLTokenizer()
    short, long_input, long_output = _task(2, 2), _task(29, 2), _task(2, 29)
    long_side = _side_lengths(long_input, tokenizer)[0]
    short_side = max(_side_lengths(short, tokenizer))
    assert _side_lengths(long_output, tokenizer)[1] == long_side > short_side + 2
    tasks = [short, long_input, long_output]
    fixed = len(tokenizer.encode(SIDE_SEPARATOR)) + 1
    # A cap between the short and the long side cuts the two long tasks under both rules.
    cap = short_side + 1
    old, new = input_length.cut_fractions(tasks, tokenizer, 1, 2 * cap + fixed, cap + 1)
    assert (old, new) == (2 / 3, 2 / 3)
    # The same whole-input cap cuts them; CodeIt's per-side cap at the long side does not.
    old, new = input_length.cut_fractions(tasks, tokenizer, 1, 2 * cap + fixed, long_side + 1)
    assert (old, new) == (2 / 3, 0.0)


def test_main_times_the_rows_asked_for(capsys):
    figures = input_length.main(["--configs", "tiny", "--steps", "1", "--rows", "8"])
    tiny = figures["configs"]["tiny"]
    assert tiny["micro_batch"] == 8
    assert tiny["input_length_new"] == 256 and tiny["input_length_old"] == 256
    assert tiny["step_s_new"] > 0 and tiny["peak_fraction_new"] > 0
    assert 0.0 <= tiny["cut_fraction_new"] <= tiny["cut_fraction_old"] <= 1.0
    assert capsys.readouterr().out.splitlines()[-1].startswith("{")
