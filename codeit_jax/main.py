"""Entry point: ``python -m codeit_jax.main --config=configs/<name>.py [--workdir=DIR]``.

Every experiment is a config file whose ``experiment`` field names the job to run; fields are
overridden on the command line (``--config.n_meta_iterations=3``). Every host of a TPU pod runs
the same command. The job's outputs go to ``--workdir`` (default: the config's ``workdir``);
its summary is printed as one compact JSON object on the last line of stdout.

``--print_config`` lists every field of the ``--config`` file, one a line, with its value after
the overrides and what it means, then exits without running or writing anything
(docs/config.md has every job's fields). ``--helpfull`` lists every flag.

A failure ends with one line on stderr and an exit status: 2 for bad input (a flag, a config
field, an input file; nothing is written), 1 for a fault at run time, 130 when interrupted.
"""

from __future__ import annotations

import importlib
import json
import logging as std_logging
import os
import re
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from codeit_jax.errors import ConfigError, InputError, RunError, one_line
from codeit_jax.host_process import prepare_process
from codeit_jax.schema import unknown_field_message

#: experiment name -> "module:function" taking (config, workdir) and returning a summary dict.
EXPERIMENTS: dict[str, str] = {
    "check_data": "codeit_jax.jobs.check_data:run",
    "mutation": "codeit_jax.jobs.mutation:run",
    "codeit": "codeit_jax.jobs.codeit:run",
    "comparison": "codeit_jax.jobs.comparison:run",
}

#: Exit statuses.
EXIT_RUNTIME = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130  # as a shell reports a run stopped by Ctrl-C; launchers do not restart

_CONFIG_FLAG = re.compile(r"^--?config(=|$)")
_OVERRIDE_FLAG = re.compile(r"^--?(no)?config\.([^=]+)")


#: Defined at import: only this module defines absl flags for a process that runs jobs (the
#: report's flags live in ``codeit_jax.report.__main__``, run as its own program).
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: config.workdir).")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config",
    False,
    "Print every field of --config (after its overrides) with its value and meaning, then exit "
    "without running anything.",
)
_HELP_FLAG = re.compile(r"^--?(help|helpshort|helpfull|helpxml|\?)(=|$)")


def fail(prefix: str, message: object, status: int) -> NoReturn:
    """One line on stderr, then exit with ``status``.

    ``os._exit`` after flushing: once a run has failed, interpreter shutdown only adds noise
    (XLA or Orbax threads interrupted mid-call may crash or print), and every file the run
    keeps was already closed by the ``finally`` blocks that ran while the error unwound.
    """
    line = f"{prefix}: {one_line(message)}" if prefix else one_line(message)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    os._exit(status)


# --------------------------------------------------------------------------- command line


def config_path_argument(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``argv`` (``--config=X`` or ``--config X``)."""
    for i, arg in enumerate(argv):
        match = _CONFIG_FLAG.match(arg)
        if match:
            if match.group(1) == "=":
                return arg.split("=", 1)[1]
            return argv[i + 1] if i + 1 < len(argv) else None
    return None


def load_config_file(path: str) -> Any:
    """``get_config()`` of a config file (``file.py:arg`` passes ``arg``), as ml_collections
    loads it, to find which override failed."""
    file, _, arg = path.partition(":")
    get_config = runpy.run_path(file)["get_config"]
    return get_config(arg) if arg else get_config()


def override_problem(config: ConfigDict, dotted: str) -> str | None:
    """Why ``--config.<dotted>`` names no field of ``config`` (None when it does)."""
    node: Any = config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ConfigDict):
            return (
                f"--config.{dotted}: config.{'.'.join(parts[:i])} is a value, not a group of fields"
            )
        if part not in node:
            known = _dotted_names(config)
            return unknown_field_message(dotted, known)
        node = node[part]
    return None


def _dotted_names(config: ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for key in config:
        value = config[key]
        names.append(f"{prefix}{key}")
        if isinstance(value, ConfigDict):
            names.extend(_dotted_names(value, f"{prefix}{key}."))
    return names


def describe_flag_failure(argv: Sequence[str], error: BaseException) -> str:
    """One line for a failure while parsing the command line: which override names no field
    (the config file is loaded again to find it), else the error's own last line."""
    path = config_path_argument(argv)
    if path:
        try:
            config = load_config_file(path)
        except Exception as load_error:  # noqa: BLE001 - reported as the config file's problem
            return f"--config={path}: {type(load_error).__name__}: {_last_line(load_error)}"
        if isinstance(config, ConfigDict):
            for arg in argv:
                match = _OVERRIDE_FLAG.match(arg)
                if match:
                    problem = override_problem(config, match.group(2))
                    if problem:
                        return problem
    return _last_line(error)


def _last_line(error: BaseException) -> str:
    """The last non-empty line of an error's text (ml_collections and absl put tracebacks and
    attempted paths first), with the exception's type when it says nothing else."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with one-line errors and exit status 2 (absl prints a usage hint
    and exits 1; an unknown config field gave a 57-line traceback), and exit status 0 after
    the help that was asked for (absl's help flags exit 1, as for an error)."""
    try:
        return flags.FLAGS(argv)
    except SystemExit as e:  # raised by absl's help flags once the help is printed
        asked = any(_HELP_FLAG.match(arg) for arg in argv[1:])
        raise SystemExit(0 if asked and e.code == 1 else e.code) from None
    except Exception as e:  # noqa: BLE001 - a flag, a config file or an override naming no field
        problem = describe_flag_failure(argv, e)
        about_config = "--config" in problem or problem.startswith("config.")
        fail("invalid config" if about_config else "invalid command line", problem, EXIT_INPUT)


def load_config() -> ConfigDict:
    """The ``--config`` value; a file that could not be loaded is a `ConfigError` naming it."""
    holder = _CONFIG
    path = config_path_argument(sys.argv[1:])
    if holder is None or path is None:
        raise ConfigError("--config=configs/<name>.py is required")
    config = holder.value
    if config is None:
        raise ConfigError(f"--config={path}: get_config() returned None")
    if not isinstance(config, ConfigDict):
        try:  # ml_collections defers a loading error until the config is used
            config.get("experiment")
        except Exception as e:  # noqa: BLE001 - reported as the config file's problem
            raise ConfigError(f"--config={path}: cannot be loaded: {_last_line(e)}") from None
        raise ConfigError(f"--config={path}: get_config() returned {config!r}, not a ConfigDict")
    return config


# --------------------------------------------------------------------------- dispatch


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


def run_job(config: ConfigDict, workdir_flag: str | None) -> dict[str, Any]:
    """Dispatch to the config's job; errors as the module docstring says."""
    try:
        job = resolve_experiment(config)
        workdir = resolve_workdir(config, workdir_flag)
        logging.info("experiment %s -> %s", config.experiment, workdir)
        # Jobs validate their config and read their inputs before they create the workdir, so
        # a refused input leaves nothing behind.
        return job(config, workdir)
    except ConfigError as e:
        fail("invalid config", e, EXIT_INPUT)
    except InputError as e:
        fail("invalid input", e, EXIT_INPUT)
    except RunError as e:
        fail("", e, EXIT_RUNTIME)
    except OSError as e:  # a full disk, a permission: the message names the file
        fail("", e, EXIT_RUNTIME)
    except KeyboardInterrupt:
        fail("interrupted", "run the same command again to resume", EXIT_INTERRUPTED)


#: experiment -> the config field that makes a finished run go further, when there is one.
CONTINUE_FIELDS: dict[str, str] = {
    "codeit": "n_meta_iterations",
    "comparison": "codeit.n_meta_iterations",
}


def continue_command(config: ConfigDict, argv: Sequence[str]) -> str | None:
    """The command that continues a finished run: the same command with the experiment's
    `CONTINUE_FIELDS` entry doubled (a finished run resumes from its last checkpoint)."""
    field = CONTINUE_FIELDS.get(config.get("experiment"))
    if field is None:
        return None
    value: Any = config
    for part in field.split("."):
        value = value[part]
    kept = [a for a in argv[1:] if not a.startswith(f"--config.{field}=")]
    return " ".join(["python -m codeit_jax.main", *kept, f"--config.{field}={2 * value}"])


def quiet_backend_probe_logs() -> None:
    """JAX logs at INFO each accelerator plugin it could not start ("Unable to initialize
    backend 'tpu'") on every CPU-only machine; real problems come as warnings and still show."""
    std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


def print_config(config: ConfigDict) -> None:
    """``--print_config``: every field, its value and its meaning; a bad value is refused as a
    run would refuse it (exit 2). Nothing is created: the job is never called."""
    from codeit_jax.config_table import config_lines  # only now: the CodeIt table loads JAX

    try:
        lines = config_lines(config, config_path_argument(sys.argv[1:]) or "--config")
    except ConfigError as e:
        fail("invalid config", e, EXIT_INPUT)
    try:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `--print_config | head`: the reader has what it wanted
        os._exit(0)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail("invalid command line", f"unexpected arguments {argv[1:]}", EXIT_INPUT)
    quiet_backend_probe_logs()
    try:
        config = load_config()
    except ConfigError as e:
        fail("invalid config", e, EXIT_INPUT)
    if _PRINT_CONFIG.value:
        print_config(config)
        return
    summary = run_job(config, _WORKDIR.value)
    command = continue_command(config, sys.argv)
    if command:
        logging.info("to go further (the run resumes from its last checkpoint): %s", command)
    print(json.dumps(summary, default=str))  # one line, the last of stdout: easy to parse


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    prepare_process()  # before JAX starts
    run()
