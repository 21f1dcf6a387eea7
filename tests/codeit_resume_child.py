"""Child process of tests/test_resume.py: one CodeIt run of the tiny test config.

    python tests/codeit_resume_child.py DATA_DIR WORKDIR N_META_ITERATIONS [--pause]

With ``--pause`` the sandbox calls of meta-iteration 1 and later (recognised by log_0.json
being written) first create WORKDIR/../paused and sleep, so that the test can SIGKILL the run
at a known point in the middle of a meta-iteration. The outcomes are not changed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codeit_jax.codeit import open_sandbox, run  # noqa: E402
from tests.codeit_testing import tiny_config  # noqa: E402

PAUSE_S = 120


class PausingSandbox:
    """The real sandbox, pausing before each call once meta-iteration 0 is complete."""

    def __init__(self, config, workdir: Path):
        self.sandbox = open_sandbox(config)
        self.workdir = workdir

    def run(self, batch):
        if (self.workdir / "log_0.json").exists():
            (self.workdir.parent / "paused").touch()
            time.sleep(PAUSE_S)
        return self.sandbox.run(batch)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sandbox.close()


def main() -> None:
    data_dir, workdir, n_meta_iterations = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    config = tiny_config(data_dir)
    config.n_meta_iterations = n_meta_iterations
    if "--pause" in sys.argv[4:]:
        run(config, workdir, executor_factory=lambda c: PausingSandbox(c, workdir))
    else:
        run(config, workdir)


if __name__ == "__main__":
    main()
