"""Check a CodeIt data directory: load its tasks and run every ground-truth program.

A quick way to see that the DSL, the interpreter and the data agree on a new machine before
spending hours on a run (``python -m codeit_jax.main --config=configs/check_data.py``). With
``--config.mutated_files=A,B`` it also loads mutated collection files as a CodeIt run does
(`codeit_jax.replay.mutated_tasks`) and reports how many tasks load and how many are skipped per
reason; the built-in DSL tokenizer decides what can be encoded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from absl import logging
from ml_collections import ConfigDict

from codeit_jax import schema
from codeit_jax.errors import ConfigError
from codeit_jax.files import resolve_data_dir, write_text_atomic
from codeit_jax.policy.tokenizer import DSLTokenizer
from codeit_jax.programs.program import ProgramError, StateSizeError, parse
from codeit_jax.progress import track
from codeit_jax.replay.mutated_tasks import MutatedLoad, load_mutated_files
from codeit_jax.tasks import Task, TaskFormatError, load_codeit_dir

#: Every field of configs/check_data.py, what it accepts and what it means.
FIELDS: dict[str, schema.Rule] = {
    "experiment": schema.choice(["check_data"]).means(
        "the job this config runs (main dispatches on it): check the CodeIt data"
    ),
    "workdir": schema.path().means("where check_data.json is written, unless --workdir is given"),
    "data_dir": schema.path().means(
        "CodeIt data directory; '': $CODEIT_DATA, else ../shared/codeit-data"
    ),
    "max_state_size": schema.optional(schema.integer(1)).means(
        "values this long or longer are not kept (CodeIt's executor rule); None: off"
    ),
    "mutated_files": schema.paths().means(
        "comma-separated mutated files to load as a CodeIt run does; '': none"
    ),
    "max_mutated_tasks": schema.integer(0).means(
        "keep the first this many mutated tasks that pass the filter; 0: all"
    ),
    "n_examples": schema.integer(1).means(
        "demonstration examples per task when deciding what can be encoded"
    ),
}


def check_task(task: Task, max_state_size: int | None) -> dict[str, Any]:
    """Run a task's program on all its inputs; report how many outputs it reproduces."""
    record: dict[str, Any] = {"task": task.key, "correct": 0, "total": 0, "error": None}
    try:
        program = parse(task.program or "")
    except ProgramError as e:
        record["error"] = f"syntax: {e}"
        return record
    for x, y in task.train + task.test:
        record["total"] += 1
        try:
            record["correct"] += program.run(x, max_state_size=max_state_size) == y
        except StateSizeError:
            record["error"] = "state_size"
        except Exception as e:  # noqa: BLE001 - a DSL error is a result to report
            record["error"] = f"runtime: {type(e).__name__}"
    return record


def load_mutated(config: ConfigDict) -> tuple[list[Path], MutatedLoad]:
    """The mutated files of ``config.mutated_files`` loaded as a run loads them, with the
    built-in tokenizer; a missing or unreadable file is a `ConfigError` naming it."""
    paths = [Path(p.strip()).expanduser() for p in config.mutated_files.split(",") if p.strip()]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"mutated_files: {path} is not a file")
    try:
        load = load_mutated_files(
            paths, DSLTokenizer(), config.n_examples, config.max_mutated_tasks
        )
    except TaskFormatError as e:
        raise ConfigError(f"mutated_files: {e}") from None
    if paths:
        logging.info(
            "mutated files %s: %s (encodability decided by the built-in DSL tokenizer)",
            ", ".join(map(str, paths)),
            load.summary(),
        )
    return paths, load


def run(config: ConfigDict, workdir: Path) -> dict[str, Any]:
    schema.check_fields(config, FIELDS)
    data_dir = resolve_data_dir(config.data_dir)
    if not (data_dir / "training").is_dir():
        raise ConfigError(f"data_dir: no training/ directory in {data_dir}")
    mutated_paths, mutated = load_mutated(config)
    tasks = [t for t in load_codeit_dir(data_dir / "training") if t.program]
    logging.info("loaded %d tasks with programs from %s", len(tasks), data_dir / "training")
    start = time.perf_counter()
    records = [check_task(t, config.max_state_size) for t in track(tasks, "programs", "program")]
    seconds = time.perf_counter() - start
    solved = [r["task"] for r in records if r["correct"] == r["total"]]
    failed = sorted(r["task"] for r in records if r["correct"] != r["total"])
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "check_data.json"
    write_text_atomic(out, json.dumps(records, indent=1))
    runs = sum(r["total"] for r in records)
    summary = {
        "data_dir": str(data_dir),
        "tasks": len(tasks),
        "programs_reproducing_all_outputs": len(solved),
        "failed_tasks": failed,
        "runs": runs,
        "seconds": round(seconds, 2),
        "runs_per_s": round(runs / seconds, 1) if seconds else None,
        "details": str(out),
        "mutated_files": [str(p) for p in mutated_paths],
        "mutated_loaded": len(mutated.tasks),
        "mutated_skipped": dict(mutated.skipped),
        "mutated_replaced": mutated.replaced,
    }
    logging.info(
        "%d/%d ground-truth programs reproduce all their outputs (%d runs in %.1f s); "
        "details in %s",
        len(solved),
        len(tasks),
        runs,
        seconds,
        out,
    )
    return summary
