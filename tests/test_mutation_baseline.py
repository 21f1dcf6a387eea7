"""The mutation baseline: chunk files, resumption, evaluation curve and CodeIt's scoring rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from codeit_jax.errors import ConfigError
from codeit_jax.jobs import mutation as baseline
from codeit_jax.jobs import mutation_search
from codeit_jax.programs.program import parse
from codeit_jax.tasks import Task, load_codeit_file
from tests.mutation_standin import StandInExecutor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "configs"))
from mutation import get_config  # noqa: E402


def small_config(codeit_data, **overrides):
    config = get_config()
    config.unlock()
    config.data_dir = str(codeit_data)
    config.n_samples = 40
    config.save_chunk_size = 20
    config.evaluate = False
    config.eval_tasks = "codeit"
    for key, value in overrides.items():
        config[key] = value
    return config


def run(config, workdir):
    return baseline.run(config, workdir, executor_factory=lambda _: StandInExecutor())


def test_default_config_is_the_issue_s():
    config = get_config()
    assert config.experiment == "mutation"
    assert config.save_chunk_size == 9600
    assert (config.phi_arg, config.phi_func, config.phi_var) == (0.5, 0.25, 0.5)
    assert config.early_exit is False and config.seed_source == "codeit"


def test_validation_mode_searches_the_validation_tasks_with_mutants_of_the_others(codeit_data):
    config = small_config(codeit_data, eval_tasks="validation")
    baseline.check_config(config)
    split = json.loads((codeit_data / "split_keys.json").read_text())
    parents = {p.task.key for p in baseline.load_parents(config, need_programs=False)}
    assert parents == set(split["train"])
    assert {t.key for t in baseline.load_eval_tasks(config)} == set(split["val"])


def test_chunk_files_hold_valid_mutated_tasks(codeit_data, tmp_path):
    summary = run(small_config(codeit_data), tmp_path)
    assert sorted(p.name for p in tmp_path.glob("mutated_tasks_train_*.json")) == [
        "mutated_tasks_train_20.json",
        "mutated_tasks_train_40.json",
    ]
    tasks = load_codeit_file(tmp_path / "mutated_tasks_train_20.json")
    assert summary["generated_tasks"] >= len(tasks) > 10
    for task in tasks:
        assert 1 <= task.extra["sample"] <= 20
        assert task.key == f"{task.parent_key}_m{task.extra['sample']}"
        parent = json.loads((codeit_data / "training" / f"{task.parent_key}.json").read_text())
        assert parse(task.program).text != parse(parent["program"]).text
        program = parse(task.program)
        for x, y in task.train + task.test:
            assert program.run(x, max_state_size=1000) == y
        assert any(x != y for x, y in task.train + task.test)


def test_resumed_run_continues_from_its_last_chunk(codeit_data, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(small_config(codeit_data), whole)
    first = run(small_config(codeit_data, n_samples=20), parts)
    assert first["resumed_from"] == 0
    before = (parts / "mutated_tasks_train_20.json").read_bytes()
    second = run(small_config(codeit_data), parts)
    assert second["resumed_from"] == 20 and second["generated_samples"] == 20
    assert (parts / "mutated_tasks_train_20.json").read_bytes() == before
    for name in ("mutated_tasks_train_20.json", "mutated_tasks_train_40.json"):
        assert (parts / name).read_bytes() == (whole / name).read_bytes()
    third = run(small_config(codeit_data), parts)
    assert third["generated_samples"] == 0


def test_random_seed_source(codeit_data, tmp_path):
    run(small_config(codeit_data, seed_source="random", n_samples=20), tmp_path)
    tasks = load_codeit_file(tmp_path / "mutated_tasks_train_20.json")
    assert tasks and all(task.extra.get("random") for task in tasks)
    assert all("_r" in task.key for task in tasks)


def test_bad_settings_and_foreign_files_are_refused(codeit_data, tmp_path):
    with pytest.raises(ConfigError, match="seed_source"):
        run(small_config(codeit_data, seed_source="nope"), tmp_path)
    with pytest.raises(ConfigError, match="n_samples"):
        run(small_config(codeit_data, n_samples=0), tmp_path)
    with pytest.raises(ConfigError, match="phi_arg"):
        run(small_config(codeit_data, phi_arg=0.9, phi_func=0.3), tmp_path)
    with pytest.raises(ConfigError, match="training"):
        run(small_config(codeit_data, data_dir=str(tmp_path / "missing")), tmp_path)
    (tmp_path / "mutated_tasks_train_7.json").write_text("{}")
    with pytest.raises(ConfigError, match="chunk boundary"):
        run(small_config(codeit_data), tmp_path)


@pytest.mark.parametrize("early_exit", [False, True])
def test_evaluation_curve_solves_tasks_the_mutants_define(
    codeit_data, tmp_path, monkeypatch, early_exit
):
    config = small_config(codeit_data, n_samples=40, evaluate=True, early_exit=early_exit)
    run(small_config(codeit_data), tmp_path)  # generate only
    made = load_codeit_file(tmp_path / "mutated_tasks_train_40.json")
    # Evaluation tasks: two tasks made by mutants of the second chunk (each solved by its own
    # mutant, so by the second point of the curve) and one task no mutant solves.
    unsolvable = Task("unsolvable", [(((1,),), ((2, 2, 2),))], [(((3,),), ((4, 4, 4),))])
    eval_tasks = [made[0], made[1], unsolvable]
    monkeypatch.setattr(baseline, "load_eval_tasks", lambda _: eval_tasks)
    summary = run(config, tmp_path)
    lines = (tmp_path / "mutation_performance.csv").read_text().splitlines()
    assert lines[0].split(",")[0] == "20" and lines[1].split(",")[0] == "40"
    (first_n, first), (second_n, second) = summary["curve"]
    assert (first_n, second_n) == (20, 40)
    assert second == pytest.approx(2 / 3) and first <= second
    assert float(lines[1].split(",")[1]) == pytest.approx(2 / 3)
    solutions = json.loads((tmp_path / "mutation_solutions.json").read_text())
    assert set(solutions) == {made[0].key, made[1].key}
    for task in made[:2]:  # each task's own program is among the candidates, solving it all
        own = parse(task.program).text
        records = json.loads((tmp_path / "mutation_candidates.json").read_text())
        mine = [r for r in records if r["task_key"] == task.key and r["program"] == own]
        assert len(mine) == 1
        assert mine[0]["demonstration_performance"] == [1.0] * len(task.train)
        assert mine[0]["test_performance"] == [1.0] * len(task.test)


def test_official_search_and_solutions_files(codeit_data, tmp_path, monkeypatch):
    run(small_config(codeit_data), tmp_path)  # generate only
    made = load_codeit_file(tmp_path / "mutated_tasks_train_40.json")
    unsolvable = Task("unsolvable", [(((1,),), ((2, 2, 2),))], [(((3,),), ((4, 4, 4),))])
    eval_tasks = [made[0], made[1], unsolvable, made[2]]
    monkeypatch.setattr(baseline, "load_eval_tasks", lambda _: eval_tasks)
    summary = run(small_config(codeit_data, evaluate=True), tmp_path)
    mutants = {}
    for n in (20, 40):
        for task in load_codeit_file(tmp_path / f"mutated_tasks_train_{n}.json"):
            mutants[task.key] = (n, parse(task.program).text)
    searched: dict[int, set[str]] = {}
    for n in (20, 40):
        path = tmp_path / f"mutated_tasks_search_{n}.json"
        records = json.loads(path.read_text())
        assert summary["search_tasks"][str(n)] == len(records) > 0
        searched[n] = set()
        for key, record in records.items():
            mutant_key, index = key.rsplit("_", 1)
            target = eval_tasks[int(index)]
            chunk, text = mutants[mutant_key]
            assert chunk == n and record["task_key"] == key
            assert record["parent_key"] == target.key and record["test_examples"] == []
            assert record["program"].startswith(f"def solve_{key}(I):\n")
            program = parse(record["program"])
            assert program.text == text
            outputs = [run_or_none(program, x) for x, _ in target.train]
            assert record["training_examples"] == [
                {"input": [list(r) for r in x], "output": [list(r) for r in y]}
                for (x, _), y in zip(target.train, outputs)
                if y is not None and mutation_search.is_official_grid(y)
            ]
            right = [y == goal for (_, goal), y in zip(target.train, outputs)]
            tests = [run_or_none(program, x) == y for x, y in target.test]
            extra = record["extra_info"]
            assert extra["task_demonstration_performance"] == pytest.approx(sum(right) / len(right))
            assert extra["test_performance"] == pytest.approx(sum(tests) / len(tests))
            assert 0.0 <= extra["distance"] <= 1.0
            searched[n].add(text)
    # A program that gave a search task in chunk 20 gives none in chunk 40.
    assert not searched[20] & searched[40]
    # Seeded: evaluating again writes the same files.
    before = (tmp_path / "mutated_tasks_search_40.json").read_bytes()
    run(small_config(codeit_data, evaluate=True), tmp_path)
    assert (tmp_path / "mutated_tasks_search_40.json").read_bytes() == before
    # Solutions, cumulative: each task made by a mutant is solved by that mutant.
    at_20 = json.loads((tmp_path / "mutation_solutions_20.json").read_text())
    at_40 = json.loads((tmp_path / "mutation_solutions_40.json").read_text())
    for task in (made[0], made[1], made[2]):
        own = parse(task.program).text
        entry = at_40[task.key][own]
        assert entry == {
            "program": own,
            "task_demonstration_performance": 1.0,
            "test_performance": 1.0,
        }
    assert "unsolvable" not in at_40
    for key, programs in at_20.items():
        assert programs.items() <= at_40[key].items()
        assert all(mutants_first_seen(mutants, p) == 20 for p in programs)


def run_or_none(program, grid):
    try:
        return program.run(grid, max_state_size=1000)
    except Exception:  # noqa: BLE001 - any DSL failure is "no output" here
        return None


def mutants_first_seen(mutants: dict, text: str) -> int:
    return min(n for n, t in mutants.values() if t == text)


def test_early_exit_drops_programs_whose_first_demonstration_is_wrong(codeit_data):
    grid_a, grid_b = ((1, 2),), ((3, 4),)
    # vmirror solves the second demonstration only; rot90 solves neither; identity both.
    task = Task("t", [(grid_a, ((9, 9),)), (grid_b, ((4, 3),))], [(grid_a, ((2, 1),))])
    texts = ["O = vmirror(I)", "O = rot90(I)", "O = identity(I)"]
    solved_both = Task("u", [(grid_a, grid_a), (grid_b, grid_b)], [(grid_b, grid_b)])
    full = small_config(codeit_data, early_exit=False)
    early = small_config(codeit_data, early_exit=True)
    for groups in ([[0, 1, 2]], [[0], [1, 2]], [[2], [1], [0]]):
        programs = mutation_search.EvalPrograms(texts, [1, 1, 1], [1], groups)
        scores = mutation_search.demo_scores(programs, [task, solved_both], StandInExecutor(), full)
        assert scores == {(0, 0): 1, (2, 1): 2}
        scores = mutation_search.demo_scores(
            programs, [task, solved_both], StandInExecutor(), early
        )
        assert scores == {(2, 1): 2}
        tests = mutation_search.test_scores(
            [(0, 0), (2, 1)], programs, [task, solved_both], StandInExecutor()
        )
        assert tests == {(0, 0): (1.0,), (2, 1): (1.0,)}


def test_programs_are_grouped_by_parent_in_first_seen_order():
    parents = ["a", "b", "a", "c", "a", "b", "a"]
    assert mutation_search.group_programs(parents, 64) == [[0, 2, 4, 6], [1, 5], [3]]
    assert mutation_search.group_programs(parents, 3) == [[0, 2, 4], [6], [1, 5], [3]]
