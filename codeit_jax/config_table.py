"""Every config field with its value and meaning: ``--print_config`` and docs/config.md.

Each job's field table (`codeit_jax.config.fields`, `codeit_jax.jobs.mutation`,
`codeit_jax.jobs.check_data`) says what every field accepts and means; this module lays a
config's values beside them, so that a new user sees every setting without reading the code.

    python -m codeit_jax.main --config=configs/tiny.py --print_config
    python -m codeit_jax.config_table > docs/config.md

A job's table is imported only when asked for: the CodeIt table brings in JAX.
"""

from __future__ import annotations

import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from codeit_jax import schema
from codeit_jax.errors import ConfigError

#: The configs docs/config.md describes: (title, config file, what its value column holds).
DOCUMENTED = (
    ("CodeIt", "configs/codeit.py", "paper value"),
    ("Mutation baseline", "configs/mutation.py", "value"),
    ("Data check", "configs/check_data.py", "value"),
)
REPO = Path(__file__).resolve().parent.parent


def field_table(experiment: Any) -> Mapping[str, schema.Rule]:
    """The field table of the job ``config.experiment`` names (a `ConfigError` for none)."""
    if experiment == "codeit":
        from codeit_jax.config.fields import FIELDS as table
    elif experiment == "mutation":
        from codeit_jax.jobs.mutation import FIELDS as table
    elif experiment == "check_data":
        from codeit_jax.jobs.check_data import FIELDS as table
    elif experiment == "comparison":
        from codeit_jax.jobs.comparison import FIELDS as table
    else:
        known = ["check_data", "codeit", "comparison", "mutation"]
        raise ConfigError(f"config.experiment is {experiment!r}; expected one of {known}")
    return table


def run_values(config: ConfigDict) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every field's value as the job reads it, and the fields an ablation changed (with the
    value the config gave them); refuses a bad value as the job would, with a `ConfigError`.

    Only a CodeIt config has an ablation; its other start-up changes (``{data_dir}``, "auto"
    resolved) need the data and are left to the run.
    """
    table = field_table(config.get("experiment"))
    schema.check_fields(config, table)
    given = schema.leaf_fields(config)
    given = {name: given[name] for name in table}  # the table's order: the config file's
    if config.experiment != "codeit":
        return given, {}
    from codeit_jax.config.ablations import apply_ablation

    applied = schema.leaf_fields(apply_ablation(config))
    values = {name: applied[name] for name in given}
    return values, {name: given[name] for name in given if given[name] != values[name]}


#: Jobs whose config holds other jobs' configs as groups (each with its own table).
NESTED = {"comparison": ("mutation", "codeit")}


def config_lines(config: ConfigDict, source: str) -> list[str]:
    """``--print_config``: a header, then ``field = value  # meaning`` for every field (a
    sub-config's fields prefixed with its group's name)."""
    parts = NESTED.get(config.get("experiment"), ())
    if parts and not all(isinstance(config.get(p), ConfigDict) for p in parts):
        raise ConfigError(f"config.experiment {config.experiment!r} needs groups {list(parts)}")
    own = ConfigDict({k: config[k] for k in config if k not in parts})
    sections = [("", own)] + [(f"{p}.", config[p]) for p in parts]
    rows, notes = [], []
    for prefix, part in sections:
        values, changed = run_values(part)
        table = field_table(part.experiment)
        if "ablation" in values:
            notes.append(f"# {prefix}ablation: {part.ablation}{_ablation_summary(part.ablation)}")
        for name, value in values.items():
            note = (
                f"[set by the ablation; the config gives {changed[name]!r}] "
                if name in changed
                else ""
            )
            rows.append((prefix + name, value, note + table[name].meaning))
    header = [f"# {source}: {len(rows)} fields, values after command-line overrides", *notes]
    width = max(len(name) for name, _, _ in rows)
    return header + [f"{name:<{width}} = {value!r}  # {meaning}" for name, value, meaning in rows]


def _ablation_summary(name: str) -> str:
    """What the ablation changes, from its docstring."""
    from codeit_jax.config.ablations import ABLATIONS

    change = ABLATIONS[name]
    if change is None:
        return " (CodeIt itself)"
    return ": " + " ".join((change.__doc__ or "").replace("``", "").split())


# --------------------------------------------------------------------------- docs/config.md


def _cell(text: str) -> str:
    """Table-cell text: a pipe would end the cell, ``<n>`` would read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    """A table cell in backticks (where ``&lt;`` would be shown as it is written)."""
    return "`" + text.replace("|", "\\|") + "`"


def markdown_table(config: ConfigDict, value_column: str) -> list[str]:
    """One row per field: name, value, what it accepts, what it means."""
    table = field_table(config.experiment)
    schema.check_fields(config, table)
    rows = [
        f"| field | {value_column} | accepted values | meaning |",
        "|---|---|---|---|",
    ]
    values = schema.leaf_fields(config)
    for name, rule in table.items():
        cells = [_code(name), _code(repr(values[name])), _cell(rule.expected), _cell(rule.meaning)]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def markdown() -> str:
    """docs/config.md: the fields of every documented config (a test keeps the file equal)."""
    lines = [
        "# Config fields",
        "",
        "Generated by `python -m codeit_jax.config_table > docs/config.md` from the field tables",
        "(`codeit_jax/config/fields.py`, `codeit_jax/jobs/mutation.py`,",
        "`codeit_jax/jobs/check_data.py`), which check every field before a run starts; a test",
        "fails when this file differs from them. For any config, after command-line overrides:",
        "`python -m codeit_jax.main --config=configs/<name>.py --print_config`.",
        "",
        "The paper value is the one in `configs/codeit.py`: the paper's setting as the official",
        "code runs it. The other CodeIt configs change some of them; the ablation configs set",
        "`ablation` only (`codeit_jax/config/ablations.py` says what each one changes).",
    ]
    for title, path, value_column in DOCUMENTED:
        config = runpy.run_path(str(REPO / path))["get_config"]()
        lines += ["", f"## {title}: `{path}`", "", *markdown_table(config, value_column)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
