"""Rewards, the top-3 submission rule, per-iteration/cumulative scores, and the output files."""

from __future__ import annotations

import json

import pytest

from codeit_jax.replay.metrics import (
    LEARNING_COLUMNS,
    LEGACY_PERFORMANCE_COLUMNS,
    PAPER_COLUMNS,
    PERFORMANCE_COLUMNS,
    SEED_COLUMNS,
    Scoreboard,
    SolutionRecord,
    example_reward,
    read_performance_csv,
    submission,
    task_solved,
    write_performance_csv,
    write_solutions_json,
)


def rec(task: str, program: str, demo: tuple[float, ...], test: tuple[float, ...], it: int = 0):
    return SolutionRecord(task, program, it, demo, test)


def lines(n: int, tag: str = "") -> str:
    """A program of n lines (only its length matters for ranking)."""
    return "\n".join([f"x{k} = f{tag}(I)" for k in range(1, n)] + [f"O = g{tag}(I)"])


def test_example_reward():
    target = ((1, 2), (3, 4))
    assert example_reward(target, target) == 1.0
    assert example_reward(((1, 2), (3, 0)), target) == 0.75
    assert example_reward(((0, 0), (0, 0)), target) == 0.0
    assert example_reward(((1, 2),), target) == 0.0  # shape mismatch
    assert example_reward(((1, 2, 0), (3, 4, 0)), target) == 0.0
    for invalid in (None, [[1, 2], [3, 4]], ((True, 2), (3, 4)), ((1, 2), (3, 14))):
        assert example_reward(invalid, target) == 0.0


def test_shorter_means_fewer_characters_not_fewer_lines():
    long_line = "O = fork(combine, identity, hmirror)"
    two_short = "x1 = vmirror(I)\nO = hmirror(x1)"
    assert len(two_short) < len(long_line)
    records = [rec("t", long_line, (1.0,), (0.0,)), rec("t", two_short, (1.0,), (1.0,))]
    assert [r.program for r in submission(records, k=1)] == [two_short]


def test_submission_ranks_by_demonstration_performance_then_length():
    records = [
        rec("t", lines(2, "a"), (1.0, 0.0), (1.0,)),  # mean 0.5, solves the test
        rec("t", lines(5, "b"), (1.0, 1.0), (0.0,)),
        rec("t", lines(3, "c"), (1.0, 1.0), (0.0,)),
        rec("t", lines(1, "d"), (1.0, 0.0), (0.0,)),  # mean 0.5 but shorter than "a"
    ]
    top = submission(records)
    assert [r.program for r in top] == [lines(3, "c"), lines(5, "b"), lines(1, "d")]
    assert not task_solved(records)  # the test-solving program is fourth
    assert task_solved(records[:3])
    assert task_solved(records, k=4)


def test_a_program_found_twice_counts_once():
    records = [
        rec("t", lines(1, "a"), (1.0,), (0.0,), it=0),
        rec("t", lines(1, "a"), (1.0,), (0.0,), it=2),
        rec("t", lines(2, "b"), (1.0,), (0.0,)),
        rec("t", lines(3, "c"), (1.0,), (1.0,)),
    ]
    assert [r.meta_iteration for r in submission(records)] == [0, 0, 0]
    assert task_solved(records)


def test_a_task_without_test_examples_is_never_solved():
    assert not task_solved([rec("t", "O = f(I)", (1.0,), ())])


def test_scores_per_meta_iteration_and_cumulative():
    board = Scoreboard(["a", "b", "c", "d"])
    board.add(
        [rec("a", "O = f(I)", (1.0,), (1.0,), it=0), rec("c", "O = f(I)", (0.5,), (1.0,), it=0)]
    )
    board.add([rec("b", "O = g(I)", (1.0,), (1.0,), it=1)])
    # In iteration 2, three better-looking programs push c's only solver out of its top 3.
    board.add([rec("c", lines(1, x), (1.0,), (0.0,), it=2) for x in "xyz"])

    assert board.performance(0) == 0.5 and board.cumulative_performance(0) == 0.5
    assert board.performance(1) == 0.25 and board.cumulative_performance(1) == 0.75
    assert board.performance(2) == 0.0 and board.cumulative_performance(2) == 0.5
    assert board.solved_tasks(1) == ["a", "b", "c"]
    assert board.solved_tasks(1, cumulative=False) == ["b"]
    assert board.solved_tasks() == ["a", "b"]


def test_scoreboard_rejects_unknown_tasks_without_storing_anything():
    board = Scoreboard(["a"])
    with pytest.raises(ValueError, match="unknown task 'z'"):
        board.add([rec("a", "O = f(I)", (1.0,), (1.0,)), rec("z", "O = f(I)", (1.0,), (1.0,))])
    assert board.records("a") == []
    with pytest.raises(ValueError):
        Scoreboard([])
    with pytest.raises(ValueError, match="unique"):
        Scoreboard(["a", "a"])


def test_scoreboard_state_round_trips_through_json():
    board = Scoreboard(["a", "b"])
    board.add([rec("a", "x1 = f(I)\nO = g(x1)", (1.0, 0.0), (1.0, 0.0), it=4)])
    state = json.loads(json.dumps(board.state_dict()))
    restored = Scoreboard.from_state_dict(state)
    assert restored.state_dict() == board.state_dict()
    assert restored.records("a") == board.records("a")
    with pytest.raises(ValueError, match="not a scoreboard state"):
        Scoreboard.from_state_dict({"k": 3})
    with pytest.raises(ValueError, match="not a solution record"):
        SolutionRecord.from_json({"task_key": "a"})


def test_solutions_json(tmp_path):
    board = Scoreboard(["a", "b", "c"])
    board.add([rec("a", lines(2), (1.0,), (1.0,), it=0), rec("a", lines(1), (1.0,), (0.0,), it=1)])
    board.add([rec("b", lines(1), (1.0,), (0.0,), it=1)])
    path = tmp_path / "out" / "solutions_1.json"
    write_solutions_json(path, board.solutions_document(1))
    doc = json.loads(path.read_text())
    assert (doc["meta_iteration"], doc["num_tasks"], doc["num_solved"]) == (1, 3, 1)
    assert set(doc["tasks"]) == {"a", "b"}
    assert doc["tasks"]["a"]["solved"] is True
    assert doc["tasks"]["a"]["submitted"] == [lines(1), lines(2)]
    assert [s["meta_iteration"] for s in doc["tasks"]["a"]["solutions"]] == [1, 0]
    assert board.solutions_document(0)["tasks"]["a"]["submitted"] == [lines(2)]


def _row(it: int) -> dict:
    return {
        "meta_iteration": it,
        "cumulative_performance": 0.25,
        "performance": 0.125,
        "step": 100 * it,
        "num_mutated_tasks": 9600,
        "num_policy_tasks": 12 * it,
        "train_seconds": 1.5,
        "sample_seconds": 2.25,
        "execute_seconds": 0.5,
        "num_sampled_programs": 19_200 + 9_600 * (it + 1),
        "paper_cumulative_performance": 0.375,
        "train_loss": 1.25,
        "samples": 96.0,
        "parse_rate": 0.75,
        "run_rate": 0.5,
        "grid_rate": 0.25,
        "solve_rate": 0.125,
        "new_rate": 0.5,
        "num_seed_tasks": 400,
    }


def test_performance_csv_round_trip(tmp_path):
    path = tmp_path / "performance.csv"
    write_performance_csv(path, [_row(0), _row(1)])
    assert path.read_text().splitlines()[0] == ",".join(PERFORMANCE_COLUMNS)
    assert read_performance_csv(path) == [_row(0), _row(1)]
    write_performance_csv(path, [_row(0)])  # rewritten whole: a resumed run repeats nothing
    assert read_performance_csv(path) == [_row(0)]


def test_performance_csv_rejects_bad_rows_and_files(tmp_path):
    path = tmp_path / "performance.csv"
    write_performance_csv(path, [_row(0)])
    bad = _row(1)
    del bad["step"]
    bad["loss"] = 1.0
    with pytest.raises(ValueError, match=r"missing columns \['step'\], unknown columns \['loss'\]"):
        write_performance_csv(path, [_row(0), bad])
    assert read_performance_csv(path) == [_row(0)]  # the old file is intact
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        read_performance_csv(tmp_path / "other.csv")
    path.write_text(path.read_text() + "x,1,1,1,1,1,1,1,1,1,1\n")
    with pytest.raises(ValueError, match=":3:"):
        read_performance_csv(path)


def test_performance_csv_written_before_the_paper_columns_is_read(tmp_path):
    """Runs written before num_sampled_programs / paper_cumulative_performance existed: their
    rows come back without those keys; a file with the new header but a missing value is bad."""
    old = [{k: v for k, v in _row(i).items() if k in LEGACY_PERFORMANCE_COLUMNS} for i in range(2)]
    path = tmp_path / "performance.csv"
    header = ",".join(LEGACY_PERFORMANCE_COLUMNS)
    path.write_text(header + "\n" + "".join(",".join(map(str, r.values())) + "\n" for r in old))
    assert read_performance_csv(path) == old
    with pytest.raises(ValueError, match="missing columns"):
        write_performance_csv(path, old)  # the writer insists on every column
    assert PERFORMANCE_COLUMNS[: len(LEGACY_PERFORMANCE_COLUMNS)] == LEGACY_PERFORMANCE_COLUMNS
    paper_only = tmp_path / "paper.csv"  # written between the paper and the learning columns
    header = ",".join(LEGACY_PERFORMANCE_COLUMNS + PAPER_COLUMNS)
    rows = [
        {k: v for k, v in _row(i).items() if k not in LEARNING_COLUMNS + SEED_COLUMNS}
        for i in range(2)
    ]
    paper_only.write_text(
        header + "\n" + "".join(",".join(map(str, r.values())) + "\n" for r in rows)
    )
    assert read_performance_csv(paper_only) == rows
    new = tmp_path / "new.csv"
    unknown = {**_row(0), **dict.fromkeys(LEARNING_COLUMNS)}  # restored from an older run
    write_performance_csv(new, [unknown])
    assert read_performance_csv(new) == [unknown]
    cells = new.read_text().splitlines()[1].split(",")
    cells[PERFORMANCE_COLUMNS.index("paper_cumulative_performance")] = ""
    new.write_text(new.read_text().splitlines()[0] + "\n" + ",".join(cells) + "\n")
    with pytest.raises(ValueError, match="new.csv:2"):
        read_performance_csv(new)


def test_performance_csv_written_before_the_seed_column_is_read(tmp_path):
    """num_seed_tasks came last, so every older column keeps its position; files without it
    read back without the key (their num_mutated_tasks counted the seeds too), and an empty
    cell (a run resumed from a checkpoint older than the seed marks) reads as unknown."""
    assert PERFORMANCE_COLUMNS[-1] == "num_seed_tasks"
    before = PERFORMANCE_COLUMNS[: -len(SEED_COLUMNS)]
    assert before == LEGACY_PERFORMANCE_COLUMNS + PAPER_COLUMNS + LEARNING_COLUMNS
    rows = [{k: v for k, v in _row(i).items() if k in before} for i in range(2)]
    path = tmp_path / "performance.csv"
    path.write_text(
        ",".join(before) + "\n" + "".join(",".join(map(str, r.values())) + "\n" for r in rows)
    )
    assert read_performance_csv(path) == rows
    unknown = {**_row(0), "num_seed_tasks": None}
    write_performance_csv(path, [unknown, _row(1)])
    assert path.read_text().splitlines()[1].endswith(",")  # an empty last cell
    assert read_performance_csv(path) == [unknown, _row(1)]
    assert isinstance(read_performance_csv(path)[1]["num_seed_tasks"], int)
