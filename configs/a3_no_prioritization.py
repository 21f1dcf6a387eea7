"""A3, no prioritization: the buffer is sampled uniformly (all priority weights zero).

    python -m codeit_jax.main --config=configs/a3_no_prioritization.py --workdir=runs/a3

Everything else is configs/codeit.py (the ablation is defined in codeit_jax/config/ablations.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a3_no_prioritization"
    config.workdir = "runs/a3_no_prioritization"
    return config
