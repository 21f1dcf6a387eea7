"""A5, one demonstration example: the policy sees only the first demonstration of a task.

    python -m codeit_jax.main --config=configs/a5_one_example.py --workdir=runs/a5_one_example

Everything else is configs/codeit.py (the ablation is defined in codeit_jax/config/ablations.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a5_one_example"
    config.workdir = "runs/a5_one_example"
    return config
