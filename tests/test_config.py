"""The typed run config: built once from the ConfigDict, frozen, and faithful to the command
line (`codeit_jax.config.prepare_run_config`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from absl import flags
from codeit_testing import CONFIGS, tiny_config
from ml_collections import config_flags

from codeit_jax.config import RunConfig, prepare_config, prepare_run_config, run_identity
from codeit_jax.errors import ConfigError


def command_line_config(*overrides: str):
    """The ConfigDict main.py would get from ``--config=configs/tiny.py`` and ``overrides``."""
    argv = ["main", f"--config={CONFIGS / 'tiny.py'}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


def test_every_section_is_frozen(tmp_path):
    run = prepare_run_config(tiny_config(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.seed = 1  # type: ignore[misc]
    for section in dataclasses.fields(RunConfig):
        value = getattr(run, section.name)
        if dataclasses.is_dataclass(value):
            assert value.__dataclass_params__.frozen, section.name  # type: ignore[attr-defined]
            first = dataclasses.fields(value)[0].name
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(value, first, getattr(value, first))


def test_command_line_fields_reach_their_typed_sections(tmp_path):
    config = command_line_config(
        f"--config.data.data_dir={tmp_path}",
        "--config.seed=5",
        "--config.sampling.top_k=7",
        "--config.sampling.temperature=0",
        "--config.train.learning_rate=0.01",
        "--config.train.n_mutated=33",
        "--config.buffer.capacity=0",
        "--config.sandbox.timeout_s=0.5",
        "--config.encoding.n_examples=3",
    )
    run = prepare_run_config(config)
    assert run.seed == run.train.seed == 5
    assert (run.sampling.top_k, run.sampling.temperature) == (7, 0.0)
    assert (run.train.learning_rate, run.train.n_mutated) == (0.01, 33)
    assert run.buffer.capacity is None  # 0: unbounded
    assert run.sandbox.timeout_s == 0.5
    assert run.encoding.n_examples == 3
    assert run.data.data_dir == tmp_path  # resolved once, here
    assert run.data.seeds == "random"  # "auto" resolved: no training/ in tmp_path


def test_ablation_and_data_paths_are_resolved_once(tmp_path):
    config = tiny_config(tmp_path)
    config.ablation = "a2_no_relabelling"
    (tmp_path / "m.json").write_text("{}")
    config.data.mutated_files = "{data_dir}/m.json"
    run = prepare_run_config(config)
    assert run.relabel is False and run.add_policy_experience is True
    assert run.data.mutated_files == (tmp_path / "m.json",)
    # The checkpoint identity is the one the ConfigDict gave before the typed config existed.
    assert json.loads(run.identity) == json.loads(json.dumps(run_identity(prepare_config(config))))


def test_the_default_data_directory_is_used_when_none_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("CODEIT_DATA", str(tmp_path / "data"))
    config = tiny_config("")
    assert prepare_run_config(config).data.data_dir == Path(tmp_path / "data")


def test_bad_fields_fail_before_the_typed_config(tmp_path):
    config = tiny_config(tmp_path)
    config.sampling.top_k = -1
    with pytest.raises(ConfigError, match=r"config\.sampling\.top_k must be"):
        prepare_run_config(config)
