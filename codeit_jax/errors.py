"""Errors shared across jobs, kept import-light so the entry point can catch them cheaply.

The entry point turns them into one line on stderr and an exit status (README, "Errors"):
`InputError` (and so `ConfigError`) 2, `RunError` 1. Their messages name the field or file and
what is wrong, on one line.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input the user can fix: a config value, a flag, an input file or a working directory
    that holds another run; nothing has been written when it is raised at start."""


class ConfigError(InputError):
    """The config cannot be run as given; the message names the field and the problem."""


class RunError(RuntimeError):
    """A fault at run time that one line describes (a damaged checkpoint with no good one to
    fall back to, a working directory in use, a training that diverged)."""


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())
