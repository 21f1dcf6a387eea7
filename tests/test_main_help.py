"""Discoverable configuration: ``--help``/``--helpfull`` succeed, ``--print_config`` lists every
field with its value and meaning without running anything, docs/config.md stays generated.

The command-line tests run the entry point in an empty directory with the checkout on
PYTHONPATH, so that anything it wrote would be seen there.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from codeit_jax import config_table
from codeit_jax.errors import ConfigError
from codeit_jax.main import EXPERIMENTS
from codeit_jax.schema import leaf_fields

REPO = Path(__file__).resolve().parent.parent


def _main(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "codeit_jax.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _load(name: str):
    return runpy.run_path(str(REPO / "configs" / f"{name}.py"))["get_config"]()


def test_help_and_helpfull_exit_0_and_point_to_print_config(tmp_path):
    full = _main(tmp_path, "--helpfull")
    assert full.returncode == 0, full.stderr
    for flag in ("--config", "--workdir", "--print_config", "absl.logging"):
        assert flag in full.stdout
    short = _main(tmp_path, "--help")
    assert short.returncode == 0, short.stderr
    assert "--print_config" in short.stdout and "--helpfull" in short.stdout


def _printed(stdout: str) -> dict[str, tuple[str, str]]:
    """``field = value  # meaning`` lines -> {field: (value, meaning)}."""
    found = {}
    for line in stdout.splitlines():
        if not line.startswith("#"):
            match = re.fullmatch(r"(\S+) +=(.*?)  # (.*)", line)
            assert match, line
            found[match.group(1)] = (match.group(2).strip(), match.group(3))
    return found


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("tiny", {"seed": 3, "train.epochs": 5}), ("mutation", {"n_samples": 96})],
)
def test_print_config_lists_every_field_and_writes_nothing(tmp_path, name, overrides):
    cwd, workdir = tmp_path / "cwd", tmp_path / "workdir"
    cwd.mkdir()
    flags = [f"--config.{field}={value}" for field, value in overrides.items()]
    where = [f"--workdir={workdir}"] if name == "tiny" else []  # mutation: its relative default
    proc = _main(cwd, f"--config={REPO}/configs/{name}.py", *flags, *where, "--print_config")
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = _load(name)
    table = config_table.field_table(config.experiment)
    printed = _printed(proc.stdout)
    assert list(printed) == list(table)  # every field, in the table's order
    expected = {**leaf_fields(config), **overrides}
    for field, (value, meaning) in printed.items():
        assert value == repr(expected[field]), field
        assert meaning == table[field].meaning
    assert proc.stdout.startswith(f"# {REPO}/configs/{name}.py: {len(table)} fields")
    assert list(cwd.iterdir()) == [] and not workdir.exists()


def test_bad_values_and_unknown_fields_are_one_line_and_exit_2(tmp_path):
    mutation = f"--config={REPO}/configs/mutation.py"
    for flag, message in [
        ("--config.seed=-1", "error: invalid config: config.seed must be an integer in"),
        ("--config.n_sample=3", "config.n_sample is not a field of this config; did you mean"),
    ]:
        proc = _main(tmp_path, mutation, flag, "--print_config")
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_job_has_a_field_table():
    for experiment in EXPERIMENTS:
        assert config_table.field_table(experiment)
    with pytest.raises(ConfigError, match="config.experiment is 'nope'"):
        config_table.field_table("nope")


def test_the_ablation_is_applied_and_its_changes_marked():
    config = _load("a3_no_prioritization")
    config.buffer.age_penalty = 0.5
    lines = config_table.config_lines(config, "a3")
    assert lines[1].startswith("# ablation: a3_no_prioritization: A3: every priority")
    age = next(line for line in lines if line.startswith("buffer.age_penalty "))
    assert age.startswith("buffer.age_penalty          = 0.0  # [set by the ablation; the ")
    assert "config gives 0.5]" in age
    seed = next(line for line in lines if line.startswith("seed "))
    assert "ablation" not in seed


def test_a_comparison_config_lists_both_jobs_fields_under_their_group():
    config = _load("first_run")
    config.codeit.ablation = "a5_one_example"
    lines = config_table.config_lines(config, "first_run")
    assert lines[1].startswith("# codeit.ablation: a5_one_example: A5")
    names = [line.split(" ", 1)[0] for line in lines[2:]]
    assert names[:3] == ["experiment", "workdir", "mutation.experiment"]
    assert "mutation.n_samples" in names and "codeit.sampling.constrained" in names
    examples = next(line for line in lines if line.startswith("codeit.encoding.n_examples "))
    assert "= 1  # [set by the ablation; the config gives 10]" in examples
    config.codeit.sampling.temperature = -1.0
    with pytest.raises(ConfigError, match="config.sampling.temperature must be"):
        config_table.config_lines(config, "first_run")


def test_docs_config_md_is_generated_from_the_tables():
    """Regenerate with ``python -m codeit_jax.config_table > docs/config.md``."""
    assert (REPO / "docs" / "config.md").read_text() == config_table.markdown()
