"""The CodeIt loop alone at the smallest size: a few meta-iterations on a CPU in minutes.

    python -m codeit_jax.main --config=configs/tiny.py --workdir=runs/tiny

A tiny T5 with the built-in DSL tokenizer, 16 evaluation tasks, 8 samples per task, four
meta-iterations of two epochs (about 4.5 minutes on a busy 2-core machine). The buffer starts
from the CodeIt training tasks and programs when the data is present (data.data_dir,
$CODEIT_DATA or ../shared/codeit-data), else from random programs on ARC training inputs. The
loss falls from about 6 to about 2, but a model this small writes no program that runs within
four meta-iterations: this run shows the whole loop, not CodeIt's results. Tests, launch checks
and ``bench.meta_iteration`` use it; a new user's first run is configs/first_run.py.
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    paper = runpy.run_path(str(Path(__file__).with_name("codeit.py")))
    config = paper["get_config"]()
    config.workdir = "runs/tiny"
    config.seed = 0
    config.n_meta_iterations = 4
    config.data.n_eval_tasks = 16
    config.data.n_random_seeds = 1_000
    config.data.mutated_files = ""  # the official mutated files are not needed here
    config.model.name = "tiny"
    config.encoding.input_state_max = 128  # per side: inputs of at most 256 tokens
    config.encoding.max_program_tokens = 256
    config.train.n_policy = 400
    config.train.n_mutated = 400
    config.train.batch_size = 16
    config.train.grad_accum_steps = 1
    config.train.epochs = 2
    config.train.learning_rate = 3e-3
    # One bucket each: on a CPU compiling a shape costs more than padding a tiny model's batch.
    config.train.input_buckets = (256,)
    config.train.label_buckets = (256,)
    config.sampling.n_samples = 8
    config.sampling.tasks_per_batch = 16
    config.sampling.max_new_tokens = 128
    config.sandbox.workers = 2
    paper["use_our_settings"](config)  # where configs/codeit.py reproduces the official code
    config.metric.mutation_solutions = ""  # the policy alone (no official mutation file needed)
    return config
