"""A2, no hindsight relabelling: only sampled programs that solve their real task (every
demonstration example) are added to the buffer.

    python -m codeit_jax.main --config=configs/a2_no_relabelling.py --workdir=runs/a2_no_relabelling

Everything else is configs/codeit.py (the ablation is defined in codeit_jax/config/ablations.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a2_no_relabelling"
    config.workdir = "runs/a2_no_relabelling"
    return config
