"""Errors shared across jobs, kept import-light so the entry point can catch them cheaply."""

from __future__ import annotations


class ConfigError(ValueError):
    """The config cannot be run as given; the message names the field and the problem."""
