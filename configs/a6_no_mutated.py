"""A6, no mutated tasks: the buffer starts with the training tasks and their programs only.

    python -m codeit_jax.main --config=configs/a6_no_mutated.py --workdir=runs/a6_no_mutated

Everything else is configs/codeit.py (the ablation is defined in codeit_jax/config/ablations.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a6_no_mutated"
    config.workdir = "runs/a6_no_mutated"
    return config
