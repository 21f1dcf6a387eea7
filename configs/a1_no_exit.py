"""A1, no expert iteration: the policy's samples are never added to the buffer; instead
the mutated partition grows by pre-computed mutated tasks each meta-iteration (set
config.no_exit.mutated_files to mutation baseline output).

    python -m codeit_jax.main --config=configs/a1_no_exit.py --workdir=runs/a1_no_exit

Everything else is configs/codeit.py (the ablation is applied in codeit_jax/codeit_config.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a1_no_exit"
    config.workdir = "runs/a1_no_exit"
    return config
