"""Entry point: ``python -m codeit_jax.main --config=configs/<name>.py [--workdir=DIR]``.

Every experiment is a config file whose ``experiment`` field names the job to run; fields are
overridden on the command line (``--config.n_meta_iterations=3``). Every host of a TPU pod runs
the same command. The job's outputs go to ``--workdir`` (default: the config's ``workdir``);
its summary is printed as one compact JSON object on the last line of stdout.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from codeit_jax.errors import ConfigError

#: experiment name -> "module:function" taking (config, workdir) and returning a summary dict.
EXPERIMENTS: dict[str, str] = {
    "check_data": "codeit_jax.check_data:run",
    "mutation": "codeit_jax.mutation.baseline:run",
    "codeit": "codeit_jax.codeit:run",
}


class _Flags:
    """Command-line flags, defined only when this module is the program being run: absl flags
    are process-global, and other entry points (``codeit_jax.report``) define ``--workdir`` too,
    so defining them at import time would break any process that imports both modules."""

    config: flags.FlagHolder | None = None
    workdir: flags.FlagHolder | None = None

    @classmethod
    def define(cls) -> None:
        if cls.config is None:
            cls.config = config_flags.DEFINE_config_file(
                "config", None, "Experiment config file (configs/)."
            )
            cls.workdir = flags.DEFINE_string(
                "workdir", None, "Output directory (default: config.workdir)."
            )


def resolve_experiment(config: ConfigDict) -> Callable[[ConfigDict, Path], dict[str, Any]]:
    """The job function a config asks for, with a clear error for unknown names."""
    name = config.get("experiment")
    if name not in EXPERIMENTS:
        raise ConfigError(f"config.experiment is {name!r}; expected one of {sorted(EXPERIMENTS)}")
    module_name, func_name = EXPERIMENTS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def resolve_workdir(config: ConfigDict, override: str | None) -> Path:
    workdir = override or config.get("workdir")
    if not workdir:
        raise ConfigError("no output directory: pass --workdir=DIR or set config.workdir")
    return Path(workdir).expanduser().resolve()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _Flags.config.value
    if config is None:
        raise app.UsageError("--config=configs/<name>.py is required")
    try:
        job = resolve_experiment(config)
        workdir = resolve_workdir(config, _Flags.workdir.value)
        logging.info("experiment %s -> %s", config.experiment, workdir)
        # Jobs validate their config before they create the workdir, so a refused config
        # leaves nothing behind.
        summary = job(config, workdir)
    except ConfigError as e:
        logging.error("invalid config: %s", e)
        sys.exit(2)
    print(json.dumps(summary, default=str))  # one line, the last of stdout: easy to parse


def run() -> None:
    """Console-script entry point."""
    _Flags.define()
    app.run(main)


if __name__ == "__main__":
    run()
