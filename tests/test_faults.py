"""Fault injection (issue 19): corrupted checkpoints, bad inputs and config values, two runs on
one workdir, and the modes of the files a run writes.

Every bad input must stop the program with one line naming the file or field and what is
wrong, exit status 2 (bad input or config) or 1 (runtime fault), and nothing written. The
command-line cases run ``python -m codeit_jax.main`` as a user would.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from codeit_jax import config as codeit_config
from codeit_jax.config import prepare_run_config
from codeit_jax.errors import ConfigError, RunError
from codeit_jax.files import write_json_atomic, write_text_atomic
from codeit_jax.jobs import check_data, comparison
from codeit_jax.jobs import mutation as baseline
from codeit_jax.loop.checkpoint import (
    CheckpointStore,
    DamagedCheckpointError,
    NoUsableCheckpointError,
    StateMismatchError,
)
from codeit_jax.loop.inputs import read_inputs
from codeit_jax.loop.integrity import all_finite
from codeit_jax.loop.iteration import ensure_finite
from codeit_jax.loop.workdir_lock import LOCK_FILE, WorkdirLock
from codeit_jax.main import EXPERIMENTS
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.replay.metrics import PERFORMANCE_COLUMNS, write_performance_csv
from codeit_jax.report.inputs import ReportInputError, read_run
from codeit_jax.schema import check_fields, leaf_fields
from codeit_jax.tasks import Task, TaskFormatError, read_json, save_codeit_dir, save_codeit_file
from tests.codeit_testing import tiny_config

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- file modes


#: One performance.csv row.
ROW = dict.fromkeys(PERFORMANCE_COLUMNS, 0)


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    task = Task("t", train=[(((1,),), ((2,),))], test=[])
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    write_performance_csv(tmp_path / "performance.csv", [ROW])
    save_codeit_file([task], tmp_path / "mutated_tasks_train_1.json")
    save_codeit_dir([task], tmp_path / "tasks")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 5
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"old": True})
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "a lone surrogate cannot be written: \ud800")
    assert target.read_text() == '{\n "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# --------------------------------------------------------------------------- config values


def _config_files() -> list[Path]:
    return sorted((REPO / "configs").glob("*.py"))


def _field_tables() -> dict:
    tables = {
        "codeit": codeit_config.FIELDS,
        "mutation": baseline.FIELDS,
        "check_data": check_data.FIELDS,
        "comparison": comparison.FIELDS,
    }
    assert set(tables) == set(EXPERIMENTS)  # a new job brings its table
    return tables


def _leaf_fields_by_table(config) -> list[tuple[dict, dict]]:
    """(fields, table) for the config and, for a comparison, each of its two jobs' configs."""
    tables = _field_tables()
    if config.experiment != "comparison":
        return [(leaf_fields(config), tables[config.experiment])]
    parts = [(leaf_fields(comparison.own_fields(config)), comparison.FIELDS)]
    return parts + [
        (leaf_fields(config[p]), tables[config[p].experiment]) for p in comparison.PARTS
    ]


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: p.name)
def test_every_field_of_every_config_file_has_a_rule(path):
    config = runpy.run_path(str(path))["get_config"]()
    for fields, table in _leaf_fields_by_table(config):
        assert set(fields) == set(table)
        for name, value in fields.items():
            assert table[name].accepts(value), (name, value)


def test_every_rule_says_in_one_line_what_its_field_means():
    """--print_config and docs/config.md print these; a new field must come with its meaning."""
    for experiment, table in _field_tables().items():
        for name, rule in table.items():
            assert rule.meaning.strip(), f"{experiment}: config.{name} has no meaning"
            assert "\n" not in rule.meaning, f"{experiment}: config.{name}: one line"


#: (experiment's config file, field, a value its rule refuses)
BAD_VALUES = [
    ("tiny", "seed", 2**32),
    ("tiny", "seed", -1),
    ("tiny", "sandbox.memory_mb", -5),
    ("tiny", "sandbox.max_state_size", 0),
    ("tiny", "sandbox.timeout_s", float("nan")),
    ("tiny", "buffer.reduce_percentage", 1.0),
    ("tiny", "buffer.epsilon", 0.0),
    ("tiny", "model.dtype", "int8"),
    ("tiny", "checkpoint_max_to_keep", 0),
    ("tiny", "tensorboard", 1),
    ("tiny", "train.learning_rate", float("inf")),
    ("mutation", "seed", 2**32),
    ("mutation", "memory_mb", -5),
    ("mutation", "max_random_lines", 0),
    ("mutation", "eval_group_size", True),
    ("check_data", "max_state_size", 0),
    ("check_data", "n_examples", 0),
]


@pytest.mark.parametrize("name, field, value", BAD_VALUES)
def test_a_bad_value_is_refused_naming_its_field(name, field, value):
    config = runpy.run_path(str(REPO / "configs" / f"{name}.py"))["get_config"]()
    # ConfigDict keeps a field's type: a value of another type goes in through a plain dict.
    values = config.to_dict()
    node, _, last = field.rpartition(".")
    target = values
    for part in filter(None, node.split(".")):
        target = target[part]
    target[last] = value
    with pytest.raises(ConfigError, match=rf"^config\.{field} must be "):
        check_fields(ConfigDict(values), _field_tables()[config.experiment])


def test_an_unknown_field_in_a_config_file_names_the_closest_one():
    config = runpy.run_path(str(REPO / "configs" / "tiny.py"))["get_config"]()
    values = config.to_dict()
    values["sampling"]["tempreature"] = 1.0
    with pytest.raises(ConfigError) as error:
        check_fields(ConfigDict(values), _field_tables()["codeit"])
    assert str(error.value) == (
        "config.sampling.tempreature is not a field of this config; did you mean "
        "config.sampling.temperature?"
    )


# --------------------------------------------------------------------------- input files


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


#: Bad JSON files: name -> (content, what the one-line message says).
BAD_FILES = {
    "not_utf8": (b'{"task_key": "\xff\xfe"}', "not UTF-8 text (byte 0xff at offset 14)"),
    "nested": (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply to read"),
    "truncated": (b'{"a": [1, 2', "not valid JSON (Expecting"),
    "huge_int": (b"1" * 5000, "not valid JSON (Exceeds the limit"),
    "empty": (b"", "not valid JSON (Expecting value"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_bad_json_file_is_one_error_naming_it(tmp_path, kind):
    content, reason = BAD_FILES[kind]
    path = _write_bytes(tmp_path / f"{kind}.json", content)
    with pytest.raises(TaskFormatError) as error:
        read_json(path)
    assert str(error.value).startswith(f"{path}: {reason}")
    assert "\n" not in str(error.value)


@pytest.fixture
def bad_inputs(tmp_path, codeit_data) -> dict[str, Path]:
    """A data directory whose evaluation/ holds a file that is not UTF-8, plus bad mutated,
    A1 search and mutation solutions files."""
    data = tmp_path / "data"
    (data / "evaluation").mkdir(parents=True)
    (data / "training").symlink_to(codeit_data / "training")
    task = (codeit_data / "evaluation" / "00576224.json").read_bytes()
    _write_bytes(data / "evaluation" / "00576224.json", task)
    search = tmp_path / "search"
    save_codeit_file([], search / "mutated_tasks_search_10.json")
    return {
        "data": data,
        "eval_task": _write_bytes(tmp_path / "bad_eval" / "x.json", BAD_FILES["not_utf8"][0]),
        "nested": _write_bytes(tmp_path / "nested.json", BAD_FILES["nested"][0]),
        "list": _write_bytes(tmp_path / "list.json", b"[]"),
        "truncated": _write_bytes(tmp_path / "truncated.json", BAD_FILES["truncated"][0]),
        "search": search,
        "search_bad": _write_bytes(search / "mutated_tasks_search_20.json", b"[1, 2]"),
    }


def _codeit_case(bad_inputs: dict[str, Path], case: str) -> ConfigDict:
    config = tiny_config(bad_inputs["data"])
    if case == "eval_task":
        (bad_inputs["data"] / "evaluation" / "x.json").symlink_to(bad_inputs["eval_task"])
    elif case == "mutated_file":
        config.data.mutated_files = str(bad_inputs["nested"])
    elif case == "mutated_list":
        config.data.mutated_files = str(bad_inputs["list"])
    elif case == "mutation_solutions":
        config.metric.mutation_solutions = str(bad_inputs["truncated"])
    elif case == "a1_search_file":
        config.ablation = "a1_no_exit"
        config.n_meta_iterations = 2
        config.no_exit.update(search_dir=str(bad_inputs["search"]), start_samples=10, interval=10)
    return config


CODEIT_INPUT_CASES = {
    "eval_task": "evaluation/x.json: not UTF-8 text",
    "mutated_file": "nested.json: JSON nested too deeply to read",
    "mutated_list": "list.json: expected a JSON object keyed by task key",
    "mutation_solutions": "mutation solutions file .*truncated.json: not valid JSON",
    "a1_search_file": "mutated_tasks_search_20.json: expected a JSON object keyed by task key",
}


@pytest.mark.parametrize("case", sorted(CODEIT_INPUT_CASES))
def test_every_codeit_input_is_read_before_the_workdir_exists(tmp_path, bad_inputs, case):
    config = prepare_run_config(_codeit_case(bad_inputs, case))
    with pytest.raises((TaskFormatError, ConfigError), match=CODEIT_INPUT_CASES[case]):
        read_inputs(config)


def test_the_mutation_baseline_reads_its_inputs_before_writing(tmp_path, bad_inputs):
    config = runpy.run_path(str(REPO / "configs" / "mutation.py"))["get_config"]()
    config.unlock()
    config.update(data_dir=str(bad_inputs["data"]), eval_tasks="codeit", n_samples=20)
    config.save_chunk_size = 10
    (bad_inputs["data"] / "evaluation" / "x.json").symlink_to(bad_inputs["eval_task"])
    workdir = tmp_path / "run"
    with pytest.raises(TaskFormatError, match="evaluation/x.json: not UTF-8 text"):
        baseline.run(config, workdir, executor_factory=_no_executor)
    assert not workdir.exists()
    # A chunk file that a resumed run finds damaged stops it before anything new is written.
    config.evaluate = False
    workdir.mkdir()
    _write_bytes(workdir / "mutated_tasks_train_10.json", b'{"x": ')
    with pytest.raises(TaskFormatError, match="mutated_tasks_train_10.json: not valid JSON"):
        baseline.run(config, workdir, executor_factory=_no_executor)
    assert [p.name for p in workdir.iterdir()] == ["mutated_tasks_train_10.json"]


def _no_executor(config):
    raise AssertionError("the sandbox must not start for a refused input")


# --------------------------------------------------------------------------- the command line

_LOG_LINE = re.compile(r"^[IW]\d{4} ")  # absl INFO and WARNING lines


def run_main(args: list[str], timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -m codeit_jax.main ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "codeit_jax.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def failure_line(proc: subprocess.CompletedProcess, status: int) -> str:
    """The one error line of a failed run (every other stderr line is a log line)."""
    assert proc.returncode == status, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if not _LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert proc.stdout == ""
    return lines[0]


def _tiny_flags(data: Path) -> list[str]:
    return ["--config=configs/tiny.py", f"--config.data.data_dir={data}"]


#: id -> (command-line arguments after --workdir, a part of the one-line message); every case
#: exits 2 and writes nothing.
CLI_CASES: dict[str, tuple[list[str], str]] = {
    "unknown_field": (
        ["--config=configs/tiny.py", "--config.sampling.tempreature=1"],
        "error: invalid config: config.sampling.tempreature is not a field of this config; "
        "did you mean config.sampling.temperature?",
    ),
    "unknown_field_locked_config": (
        ["--config=configs/mutation.py", "--config.seedx=1"],
        "did you mean config.seed?",
    ),
    "field_of_a_value": (
        ["--config=configs/check_data.py", "--config.n_examples.x=1"],
        "config.n_examples is a value, not a group of fields",
    ),
    "value_of_another_type": (
        ["--config=configs/tiny.py", "--config.seed=abc"],
        "error: invalid config: flag --config.seed=abc: invalid literal for int()",
    ),
    "missing_config_file": (
        ["--config=configs/nope.py"],
        "error: invalid config: --config=configs/nope.py: cannot be loaded: [Errno 2]",
    ),
    "unknown_flag": (["--config=configs/tiny.py", "--wrkdir=x"], "Unknown command line flag"),
    "no_config": ([], "error: invalid config: --config=configs/<name>.py is required"),
    "memory_mb": (
        ["--config=configs/tiny.py", "--config.sandbox.memory_mb=-5"],
        "error: invalid config: config.sandbox.memory_mb must be an integer >= 1, got -5",
    ),
    "max_state_size": (
        ["--config=configs/tiny.py", "--config.sandbox.max_state_size=0"],
        "config.sandbox.max_state_size must be an integer >= 1, got 0",
    ),
    "seed_2_32": (
        ["--config=configs/tiny.py", "--config.seed=4294967296"],
        "config.seed must be an integer in [0, 4294967295], got 4294967296",
    ),
    "mutation_n_samples": (
        ["--config=configs/mutation.py", "--config.n_samples=0"],
        "error: invalid config: config.n_samples must be an integer >= 1, got 0",
    ),
    "mutation_weights": (
        ["--config=configs/mutation.py", "--config.phi_arg=0.9", "--config.phi_func=0.3"],
        "phi_arg + phi_func must be at most 1",
    ),
    "check_data_state_size": (
        ["--config=configs/check_data.py", "--config.max_state_size=0"],
        "config.max_state_size must be None or an integer >= 1, got 0",
    ),
}
#: Cases that fail while the command line is parsed (well under a second each).
FAST_CLI_CASES = {
    "unknown_field",
    "unknown_field_locked_config",
    "field_of_a_value",
    "value_of_another_type",
    "missing_config_file",
    "no_config",
    "memory_mb",
}


def _cli_params(cases):
    return [
        pytest.param(case, marks=() if case in FAST_CLI_CASES else pytest.mark.slow)
        for case in sorted(cases)
    ]


@pytest.mark.parametrize("case", _cli_params(CLI_CASES))
def test_bad_command_lines_stop_with_one_line(tmp_path, case):
    args, message = CLI_CASES[case]
    workdir = tmp_path / "run"
    if case != "no_config":
        args = [*args, f"--workdir={workdir}"]
    line = failure_line(run_main(args), status=2)
    assert message in line
    assert not workdir.exists()


def overrides(config: ConfigDict, name: str = "tiny") -> list[str]:
    """The command line that gives ``config`` from configs/<name>.py."""
    base = leaf_fields(runpy.run_path(str(REPO / "configs" / f"{name}.py"))["get_config"]())
    args = [f"--config=configs/{name}.py"]
    for field, value in leaf_fields(config).items():
        if value != base[field]:
            args.append(f"--config.{field}={value}")
    return args


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=() if case == "eval_task" else pytest.mark.slow)
        for case in sorted(CODEIT_INPUT_CASES)
    ],
)
def test_bad_input_files_stop_the_command_with_one_line(tmp_path, bad_inputs, case):
    args = overrides(_codeit_case(bad_inputs, case))
    workdir = tmp_path / "run"
    line = failure_line(run_main([*args, f"--workdir={workdir}"]), status=2)
    assert re.search(CODEIT_INPUT_CASES[case], line), line
    assert not workdir.exists()


_FAULTY_JOB = """
from codeit_jax import main
from codeit_jax.errors import RunError
from codeit_jax.tasks import TaskFormatError


def run(config, workdir):
    fault = config.fault
    if fault == "run_error":
        raise RunError("the checkpoint of step 3 is damaged")
    if fault == "os_error":
        raise OSError(28, "No space left on device", str(workdir / "log_3.json"))
    if fault == "interrupt":
        raise KeyboardInterrupt
    if fault == "input_error":
        raise TaskFormatError("/data/x.json: not UTF-8 text")
    return {"fine": True}


if __name__ == "__main__":
    main.EXPERIMENTS["faulty"] = "faulty_job:run"
    main.run()
"""
_FAULTY_CONFIG = """
from ml_collections import ConfigDict


def get_config():
    return ConfigDict({"experiment": "faulty", "workdir": "", "fault": "none"})
"""


@pytest.mark.parametrize(
    "fault, status, line",
    [
        ("run_error", 1, "error: the checkpoint of step 3 is damaged"),
        ("os_error", 1, "error: [Errno 28] No space left on device: '{workdir}/log_3.json'"),
        ("interrupt", 130, "error: interrupted: run the same command again to resume"),
        ("input_error", 2, "error: invalid input: /data/x.json: not UTF-8 text"),
    ],
)
def test_job_failures_are_one_line_with_their_exit_status(tmp_path, fault, status, line):
    (tmp_path / "faulty_job.py").write_text(_FAULTY_JOB)
    (tmp_path / "faulty.py").write_text(_FAULTY_CONFIG)
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "faulty_job.py"),
            f"--config={tmp_path / 'faulty.py'}",
            f"--config.fault={fault}",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path}"},
    )
    assert failure_line(proc, status) == line.format(workdir=tmp_path)


# --------------------------------------------------------------------------- one run per workdir

_HOLD_LOCK = """
import sys, time
from pathlib import Path
from codeit_jax.loop.workdir_lock import WorkdirLock

with WorkdirLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Starts a process holding tmp_path/run's lock; yields (workdir, process)."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(workdir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "locked\n"
    yield workdir, process
    if process.poll() is None:
        process.kill()
        process.wait(60)


def test_a_second_run_on_a_workdir_stops_naming_the_holder(lock_holder):
    workdir, holder = lock_holder
    with pytest.raises(RunError) as error, WorkdirLock(workdir):
        pass
    message = str(error.value)
    assert message.startswith(f"{workdir} is in use by another run (pid {holder.pid} on ")
    assert "use another --workdir" in message
    # Processes other than process 0 of a multi-host run do not lock, so they run on.
    with WorkdirLock(workdir, enabled=False):
        pass
    assert json.loads((workdir / LOCK_FILE).read_text())["pid"] == holder.pid


def test_the_lock_of_a_killed_run_is_taken_over(lock_holder, caplog):
    workdir, holder = lock_holder
    holder.kill()
    holder.wait(60)
    assert (workdir / LOCK_FILE).exists()  # SIGKILL leaves the file; the kernel drops the lock
    with caplog.at_level("WARNING"), WorkdirLock(workdir):
        assert json.loads((workdir / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {holder.pid}" in caplog.text
    assert not (workdir / LOCK_FILE).exists()  # released on exit


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ValueError, match="the run failed"), WorkdirLock(tmp_path):
        raise ValueError("the run failed")
    assert not (tmp_path / LOCK_FILE).exists()
    with WorkdirLock(tmp_path), pytest.raises(RunError, match=f"pid {os.getpid()} on "):
        WorkdirLock(tmp_path).acquire()


def test_the_command_refuses_a_workdir_in_use(lock_holder, codeit_data):
    workdir, holder = lock_holder
    proc = run_main(
        [
            "--config=configs/mutation.py",
            f"--config.data_dir={codeit_data}",
            "--config.n_samples=4",
            "--config.save_chunk_size=4",
            "--config.evaluate=False",
            f"--workdir={workdir}",
        ]
    )
    line = failure_line(proc, status=1)
    assert line.startswith(f"error: {workdir} is in use by another run (pid {holder.pid} on ")
    assert [p.name for p in workdir.iterdir()] == [LOCK_FILE]


@pytest.mark.slow
def test_a_second_codeit_run_on_a_workdir_in_use_stops(lock_holder, codeit_data):
    workdir, holder = lock_holder
    proc = run_main([*overrides(tiny_config(codeit_data)), f"--workdir={workdir}"])
    line = failure_line(proc, status=1)
    assert line.startswith(f"error: {workdir} is in use by another run (pid {holder.pid} on ")
    assert [p.name for p in workdir.iterdir()] == [LOCK_FILE]  # no checkpoints/ created


# --------------------------------------------------------------------------- damaged checkpoints


def _small_state(scale: float) -> dict:
    """A replicated pytree with incompressible values (zstd then stores them raw, so flipped
    bytes decompress into other numbers instead of failing to decompress)."""
    mesh = make_mesh()
    values = np.random.default_rng(int(scale)).normal(size=(64, 64)).astype(np.float32)
    tree = {"params": {"w": jnp.asarray(values) * scale, "b": jnp.ones(8) * scale}}
    tree["step"] = jnp.int32(int(scale))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def _template() -> dict:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), _small_state(1.0)
    )


@pytest.fixture
def three_steps(tmp_path) -> Path:
    """A checkpoint directory with steps 1, 2, 3 (extra state and metadata in each)."""
    directory = tmp_path / "checkpoints"
    with CheckpointStore(directory, max_to_keep=3) as store:
        for step in (1, 2, 3):
            extra = {"buffer": np.arange(100 * step, dtype=np.int32)}
            store.save(step, _small_state(float(step)), extra=extra, meta={"completed": step})
        store.wait()
    return directory


def _flip_bytes(step_dir: Path) -> None:
    """Overwrite bytes in the middle of every data file of a step, as a failing disk might."""
    for path in (step_dir / "state").rglob("d/*"):
        data = bytearray(path.read_bytes())
        if len(data) > 4096:
            for i in range(len(data) // 2, len(data) // 2 + 64, 4):
                data[i : i + 2] = b"\xff\xff"
            path.write_bytes(bytes(data))


def _edit_meta(step_dir: Path, change) -> None:
    path = step_dir / "meta" / "metadata"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(three_steps, caplog):
    _flip_bytes(three_steps / "3")
    with caplog.at_level("WARNING"), CheckpointStore(three_steps, max_to_keep=3) as store:
        restored = store.restore(_template())
        assert restored.step == 2 and restored.meta == {"completed": 2}
        np.testing.assert_array_equal(restored.state["params"]["b"], np.full(8, 2.0))
        assert [s for s, _ in restored.skipped] == [3]
        # The damaged step is kept aside, out of the way of the step the run saves again.
        assert store.all_steps() == [1, 2]
        store.save(3, _small_state(3.0))
        store.wait()
        assert store.all_steps() == [1, 2, 3]
    assert (three_steps / "damaged" / "3" / "state").is_dir()
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1
    assert re.fullmatch(
        rf"{three_steps}: checkpoint step 3 is damaged \((checksum mismatch in its train state"
        rf"|its arrays cannot be read: .*)\); restored step 2 instead, 3 moved to "
        rf"{three_steps}/damaged/3",
        lines[0],
    ), lines[0]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (
            lambda d: _edit_meta(d, lambda r: r["checksums"].update(state="0" * 64)),
            "checksum mismatch in its train state",
        ),
        (
            lambda d: _edit_meta(d, lambda r: r["checksums"].update(extra="0" * 64)),
            "checksum mismatch in its extra state",
        ),
        (
            lambda d: _edit_meta(d, lambda r: r["user"].update(completed=30)),
            "checksum mismatch in its metadata",
        ),
        (
            lambda d: (d / "meta" / "metadata").write_text('{"user": {"comp'),
            "its metadata cannot be read: Unterminated string",
        ),
        (
            lambda d: (d / "state" / "manifest.ocdbt").write_bytes(b"\0" * 10),
            "its arrays cannot be read: ",
        ),
    ],
    ids=["state", "extra", "meta", "meta_json", "manifest"],
)
def test_each_kind_of_damage_is_named(three_steps, damage, reason):
    damage(three_steps / "3")
    with CheckpointStore(three_steps, max_to_keep=3) as store:
        restored = store.restore(_template())
    assert restored.step == 2
    assert restored.skipped[0][0] == 3 and restored.skipped[0][1].startswith(reason)


def test_no_undamaged_checkpoint_is_one_error_and_moves_nothing(three_steps):
    for step in (1, 2, 3):
        _edit_meta(three_steps / str(step), lambda r: r["checksums"].update(state="0" * 64))
    with CheckpointStore(three_steps, max_to_keep=3) as store:
        with pytest.raises(NoUsableCheckpointError) as error:
            store.restore(_template())
        with pytest.raises(DamagedCheckpointError, match="step 2: checksum mismatch"):
            store.restore(_template(), step=2)
    assert str(error.value) == (
        f"no undamaged checkpoint in {three_steps} (step 3: checksum mismatch in its train "
        "state; step 2: checksum mismatch in its train state; step 1: checksum mismatch in its "
        "train state); move the directory aside to start the run over"
    )
    assert sorted(p.name for p in three_steps.iterdir()) == ["1", "2", "3"]


def test_a_template_of_another_shape_is_a_mismatch_not_damage(three_steps):
    template = _template()
    template["params"]["b"] = jax.ShapeDtypeStruct((9,), jnp.float32)
    with CheckpointStore(three_steps) as store, pytest.raises(StateMismatchError, match=r"\(9,\)"):
        store.restore(template)
    assert not (three_steps / "damaged").exists()


def test_a_checkpoint_without_checksums_restores_unchecked(three_steps):
    """Steps written before checksums existed still restore."""
    _edit_meta(three_steps / "3", lambda r: (r.pop("checksums"), r.pop("state_leaves")))
    with CheckpointStore(three_steps) as store:
        assert store.restore(_template()).step == 3


def test_a_refused_state_counts_as_damage(three_steps):
    def no_step_3(restored):
        return "its train state holds NaN" if restored.step == 3 else None

    with CheckpointStore(three_steps) as store:
        restored = store.restore(_template(), check=no_step_3)
    assert restored.step == 2 and restored.skipped == ((3, "its train state holds NaN"),)


def test_a_non_finite_loss_or_parameter_stops_the_run(tmp_path):
    state = {"w": jnp.ones(3)}
    ensure_finite(state, [1.5, 0.5], 3)  # finite: nothing happens
    with pytest.raises(RunError) as error:
        ensure_finite(state, [1.5, float("nan")], 3)
    assert str(error.value) == (
        "meta-iteration 3: the training loss is nan; stopped before saving, so checkpoint step 3 "
        "stays the latest (lower train.learning_rate or set train.max_grad_norm before running "
        "again)"
    )
    with pytest.raises(RunError, match="meta-iteration 0: the train state holds NaN or infinite"):
        ensure_finite({"w": jnp.array([1.0, jnp.inf])}, [], 0)
    assert all_finite({"w": jnp.ones(2), "step": jnp.int32(3)})


_NOISY_RESTORE = """
import os, sys, gc, time
import jax, jax.numpy as jnp
from codeit_jax.loop.checkpoint import CheckpointStore

directory = sys.argv[1]
state = {f"w{i}": jnp.full((16, 16), float(i)) for i in range(300)}
with CheckpointStore(directory) as store:
    store.save(1, state)
    store.save(2, state)
    store.wait()
manifest = os.path.join(directory, "2", "state", "manifest.ocdbt")
data = open(manifest, "rb").read()
open(manifest, "wb").write(data[: len(data) // 2])
template = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
)
with CheckpointStore(directory) as store:
    print("restored", store.restore(template).step, flush=True)
gc.collect()
time.sleep(1)
"""


def test_a_damaged_checkpoint_with_many_arrays_is_not_hundreds_of_tracebacks(tmp_path):
    """Orbax's failed reads left tensorstore callbacks on a closed event loop: about 1,700
    lines of "Event loop is closed" tracebacks for 300 arrays."""
    proc = subprocess.run(
        [sys.executable, "-c", _NOISY_RESTORE, str(tmp_path / "ckpt")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "restored 1\n"
    assert "Event loop is closed" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) <= 3, proc.stderr[-3000:]


class _NoSandbox:
    """An executor for runs that must stop before any program is executed."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def run(self, batch):
        raise AssertionError("no program should run")


def test_a_diverged_training_stops_the_run_before_it_writes(tmp_path, codeit_data, monkeypatch):
    from codeit_jax.jobs import codeit
    from codeit_jax.loop import iteration

    def diverged(loop, state, i):
        return state.train_state, [float("nan")]

    monkeypatch.setattr(iteration, "train_on_buffer", diverged)
    workdir = tmp_path / "run"
    with pytest.raises(RunError, match="meta-iteration 0: the training loss is nan; stopped"):
        codeit.run(tiny_config(codeit_data), workdir, executor_factory=lambda c: _NoSandbox())
    assert not any((workdir / "checkpoints").iterdir())
    assert sorted(p.name for p in workdir.iterdir()) == ["checkpoints"]  # lock released


def _summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_corrupted_checkpoint_resumes_from_the_previous_one_exactly(tmp_path, codeit_data):
    """The issue's scenario: bytes flipped in the latest checkpoint of a run keeping two gave
    NaN losses, exit 0, and rotated the good checkpoints away."""
    args = overrides(tiny_config(codeit_data))
    reference = _summary(
        run_main([*args, "--config.n_meta_iterations=3", f"--workdir={tmp_path / 'ref'}"])
    )
    workdir = tmp_path / "run"
    _summary(run_main([*args, "--config.n_meta_iterations=2", f"--workdir={workdir}"]))
    _flip_bytes(workdir / "checkpoints" / "2")
    proc = run_main([*args, "--config.n_meta_iterations=3", f"--workdir={workdir}"])
    resumed = _summary(proc)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("W")]
    assert len(warnings) == 1 and re.search(
        rf"{workdir}/checkpoints: checkpoint step 2 is damaged \(.+\); restored step 1 instead, "
        rf"2 moved to {workdir}/checkpoints/damaged/2$",
        warnings[0],
    ), proc.stderr[-3000:]
    assert resumed["resumed_from"] == 1 and resumed["meta_iterations_completed"] == 3
    for key in ("params_sha256", "buffer_sha256", "step", "tasks_solved"):
        assert resumed[key] == reference[key], key
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "3", "damaged"]


def test_the_report_names_a_damaged_run_file(tmp_path):
    write_performance_csv(tmp_path / "performance.csv", [ROW])
    solutions = _write_bytes(tmp_path / "solutions_0.json", b'{"num_tasks": "\xff"}')
    with pytest.raises(ReportInputError) as error:
        read_run(tmp_path)
    assert str(error.value) == f"{solutions}: not UTF-8 text (byte 0xff at offset 15)"
