"""CodeIt on the validation split against the mutation baseline, sized for 2 CPU cores.

First the mutation baseline on the same split (the 311 train tasks mutated, the 89 validation
tasks searched), which also gives this run its mutated tasks and its comparison curve:

    python -m codeit_jax.main --config=configs/mutation.py --workdir=runs/mutation_validation \
        --config.eval_tasks=validation --config.n_samples=38400
    python -m codeit_jax.main --config=configs/cpu_validation.py --workdir=runs/cpu_validation

The buffer starts with the 311 train tasks and the baseline's first 9,600 samples
(``mutated_tasks_train_9600.json``); CodeIt's curve merges the baseline's solutions at 9,600
samples (``mutation_solutions_9600.json``) with the policy's, at 9,600 + 89 x n_samples programs
per meta-iteration, and the report draws the baseline's whole curve beside it
(``python -m codeit_jax.report --workdir=runs/cpu_validation
--mutation_csv=runs/mutation_validation/mutation_performance.csv --tasks=...``).

13 meta-iterations end at 37,368 programs, inside the baseline's 38,400. The ``tiny`` T5
(62k parameters with the built-in tokenizer) from scratch, constrained decoding (every sample a
well-typed program), our optimisation settings, and a first meta-iteration that trains several
epochs on the seed and mutated tasks before the policy samples anything. The baseline takes
about an hour on 2 busy cores, this run about 80 minutes. See the README's "Evidence that it
learns" for what they measured.
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict

#: Where the baseline run above writes its files (relative to the working directory).
BASELINE = "runs/mutation_validation"


def get_config() -> ConfigDict:
    paper = runpy.run_path(str(Path(__file__).with_name("codeit.py")))
    config = paper["get_config"]()
    config.workdir = "runs/cpu_validation"
    config.seed = 0
    config.n_meta_iterations = 13  # 9,600 + 13 x 2,136 programs <= the baseline's 38,400
    config.data.seeds = "codeit"
    config.data.eval_tasks = "validation"
    config.data.mutated_files = f"{BASELINE}/mutated_tasks_train_9600.json"
    config.metric.mutation_solutions = f"{BASELINE}/mutation_solutions_9600.json"
    config.model.name = "tiny"  # small_cpu: ~16 s a training step here, too slow for 2 hours
    config.encoding.input_state_max = 128  # per side: inputs of at most 256 tokens
    config.encoding.max_program_tokens = 256
    config.train.n_policy = 2_000
    config.train.n_mutated = 2_000
    config.train.first_epochs = 3  # meta-iteration 0 learns the DSL from the seeds first
    config.train.batch_size = 32
    config.train.grad_accum_steps = 1
    config.train.learning_rate = 3e-3  # 62k parameters from scratch (5e-5 fine-tunes CodeT5)
    config.train.warmup_steps = 100
    config.train.input_buckets = (256,)
    config.train.label_buckets = (64, 128, 256)
    config.sampling.n_samples = 24
    config.sampling.temperature = 0.95
    config.sampling.tasks_per_batch = 32
    config.sampling.max_new_tokens = 128
    config.sampling.constrained = True
    config.sandbox.workers = 2
    paper["use_our_settings"](config)  # where configs/codeit.py reproduces the official code
    return config
