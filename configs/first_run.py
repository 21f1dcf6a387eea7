"""The first run: CodeIt against the mutation baseline on the validation split, in minutes on CPU.

    python -m codeit_jax.main --config=configs/first_run.py

Two jobs in one command (``experiment = "comparison"``, `codeit_jax.jobs.comparison`), both on
CodeIt's validation split (seeds and mutants from the 311 ``train`` keys of split_keys.json,
inference on the 89 ``val`` keys):

1. the mutation baseline: 960 mutation samples, their mutated tasks and the validation tasks
   they solve (``runs/first_run/mutation``);
2. CodeIt with the ``tiny`` T5 (random init, built-in DSL tokenizer) and constrained decoding
   (every sample a well-typed program), its buffer started from the seed tasks and the
   baseline's mutated tasks, three meta-iterations of 24 samples per task
   (``runs/first_run/codeit``);

then the report, ``runs/first_run/report.html``: CodeIt's curve beside the baseline's, the
tasks solved as grids, the training loss and the samples' validity per meta-iteration.

What this scale shows: the loop working end to end, every sample a program that runs, and the
few validation tasks a 62k-parameter policy finds within minutes. It does not show CodeIt
beating the baseline: that needs the paper's pretrained 220M policy, 100 meta-iterations and an
accelerator (the README's "Evidence that it learns" has the CPU attempts). Needs the CodeIt data
(``$CODEIT_DATA`` or ``../shared/codeit-data``; ``bash data/fetch_codeit_data.sh`` fetches it).
"""

import runpy
from pathlib import Path

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    here = Path(__file__).parent
    mutation = runpy.run_path(str(here / "mutation.py"))["get_config"]()
    mutation.unlock()
    mutation.workdir = ""  # the comparison job writes <workdir>/mutation
    mutation.n_samples = 960
    mutation.save_chunk_size = 240  # four points on the baseline's curve
    mutation.eval_tasks = "validation"
    mutation.workers = 2
    mutation.save_search_tasks = False  # ablation A1's input, not needed here

    # CodeIt as configs/cpu_validation.py runs it (tiny T5, constrained decoding, our
    # settings), shorter: three meta-iterations, half the experiences, one label bucket.
    codeit = runpy.run_path(str(here / "cpu_validation.py"))["get_config"]()
    codeit.workdir = ""  # the comparison job writes <workdir>/codeit
    codeit.n_meta_iterations = 3
    # data.mutated_files and metric.mutation_solutions: set by the job to the baseline's files
    codeit.data.mutated_files = ""
    codeit.metric.mutation_solutions = ""
    codeit.train.n_policy = 1_000
    codeit.train.n_mutated = 1_000
    codeit.train.warmup_steps = 50
    codeit.train.label_buckets = (256,)  # one shape: one compilation

    config = ConfigDict()
    config.experiment = "comparison"
    config.workdir = "runs/first_run"
    config.mutation = mutation
    config.codeit = codeit
    return config
