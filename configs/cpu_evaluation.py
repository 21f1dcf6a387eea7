"""The CPU comparison of ``cpu_validation.py`` moved to the 400 ARC-AGI-1 evaluation tasks.

Same policy, sampling and training as ``cpu_validation.py``; the seeds are all 400 training
tasks and the policy searches the 400 evaluation tasks of the CodeIt data. The buffer starts
with the validation baseline's 9,600 mutated tasks (mutants of the 311 train-split tasks, which
are training tasks here too), so run the validation baseline of ``cpu_validation.py`` first:

    python -m codeit_jax.main --config=configs/cpu_evaluation.py --workdir=runs/cpu_evaluation

No mutation solutions on the evaluation tasks are given (computing them takes as long as the
run itself on 2 cores), so the curve is the policy's alone, drawn against the official mutation
baseline's curve (``<data_dir>/mutation_performance.csv``) at the same number of programs:
9,600 mutation samples plus 400 x n_samples per meta-iteration.
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = runpy.run_path(str(Path(__file__).with_name("cpu_validation.py")))["get_config"]()
    config.workdir = "runs/cpu_evaluation"
    config.n_meta_iterations = 6  # about 90 minutes on 2 busy cores
    config.data.eval_tasks = "codeit"
    config.metric.mutation_solutions = ""
    config.metric.mutation_samples = 9_600  # the mutated file's samples count as programs
    return config
