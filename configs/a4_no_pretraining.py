"""A4, no pretraining: the shape and tokenizer of model.init_from, but randomly initialised
weights.

    python -m codeit_jax.main --config=configs/a4_no_pretraining.py --workdir=runs/a4_no_pretraining

Everything else is configs/codeit.py (the ablation is defined in codeit_jax/config/ablations.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a4_no_pretraining"
    config.workdir = "runs/a4_no_pretraining"
    return config
