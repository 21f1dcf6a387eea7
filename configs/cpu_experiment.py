"""A CPU-sized CodeIt experiment (about an hour on a 2-core machine for a few meta-iterations).

    python -m codeit_jax.main --config=configs/cpu_experiment.py --workdir=runs/cpu \
        --config.data.mutated_files=runs/mutation/mutated_tasks_train_9600.json

A ~15M-parameter T5 (``small_cpu``) from scratch with the DSL tokenizer, all 400 ARC-AGI-1
evaluation tasks, the buffer seeded with the CodeIt training tasks and programs plus the mutated
tasks of ``data.mutated_files`` (comma-separated; e.g. the mutation baseline's 9,600-sample
file). Stop it whenever the hour is up: the completed meta-iterations are in performance.csv and
the same command resumes. Compare with the mutation baseline at the same number of executed
programs (400 tasks x n_samples per meta-iteration).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    paper = runpy.run_path(str(Path(__file__).with_name("codeit.py")))
    config = paper["get_config"]()
    config.workdir = "runs/cpu_experiment"
    config.seed = 0
    config.n_meta_iterations = 20
    config.data.seeds = "codeit"
    config.data.mutated_files = ""  # set on the command line: the mutation baseline's output
    config.model.name = "small_cpu"
    config.encoding.input_state_max = 128  # per side: inputs of at most 256 tokens
    config.encoding.max_program_tokens = 256
    config.train.n_policy = 1_000
    config.train.n_mutated = 1_000
    config.train.batch_size = 32
    config.train.grad_accum_steps = 1
    config.train.learning_rate = 3e-4  # from scratch: 5e-5 is for fine-tuning CodeT5
    config.train.warmup_steps = 50
    # Most task inputs reach the 256-token cap; two label lengths: two compiled train steps.
    config.train.input_buckets = (256,)
    config.train.label_buckets = (128, 256)
    config.sampling.n_samples = 8
    config.sampling.tasks_per_batch = 32
    config.sampling.max_new_tokens = 128
    config.sandbox.workers = 2
    paper["use_our_settings"](config)  # where configs/codeit.py reproduces the official code
    # The paper figure with our baseline's solutions: --config.metric.mutation_solutions=
    # runs/mutation/mutation_candidates.json --config.metric.mutation_samples=9600; "": policy.
    config.metric.mutation_solutions = ""
    return config
