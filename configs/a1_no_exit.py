"""A1, no expert iteration: the policy's samples are never added to the buffer; instead,
before each meta-iteration's training, the mutated partition grows by the mutation baseline's
search tasks, as the official ablation: meta-iteration i adds
``<no_exit.search_dir>/mutated_tasks_search_<n>.json`` with n = 38,400 + i * 9,600, so 100
meta-iterations need the baseline's files up to 988,800 samples:

    python -m codeit_jax.main --config=configs/mutation.py --workdir=runs/mutation \
        --config.n_samples=988800
    python -m codeit_jax.main --config=configs/a1_no_exit.py --workdir=runs/a1_no_exit \
        --config.no_exit.search_dir=runs/mutation

A missing file stops the run before anything is written, naming the first one.

Everything else is configs/codeit.py (the ablation is defined in codeit_jax/config/ablations.py).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("codeit.py")))["get_config"]()
    config.ablation = "a1_no_exit"
    config.workdir = "runs/a1_no_exit"
    return config
