"""Every field of a CodeIt config file and what it accepts, checked before anything is loaded
or written; checks across fields and against files follow in `codeit_jax.config`.

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
#: False): inference on the split_keys.json "val" training tasks, seeds from the "train" ones.
EVAL_SOURCES = ("auto", "codeit", "arc1", "validation")
#: Compute dtypes; "" picks float32 on CPU and bfloat16 elsewhere.
MODEL_DTYPES = ("", "float32", "bfloat16", "float16")


#: Every field of configs/codeit.py (and so of every CodeIt config file) and what it accepts;
#: fields that must agree with each other or with files are checked after, in
#: `codeit_jax.config`.
FIELDS: dict[str, schema.Rule] = {
    "experiment": schema.choice(["codeit"]),
    "workdir": schema.path(),
    "seed": schema.seed(),
    "n_meta_iterations": schema.integer(1),
    "ablation": schema.choice(ABLATIONS),
    "data.data_dir": schema.path(),
    "data.seeds": schema.choice(SEED_SOURCES),
    "data.n_random_seeds": schema.integer(0),
    "data.mutated_files": schema.paths(),
    "data.max_mutated_tasks": schema.integer(0),
    "data.eval_tasks": schema.choice(EVAL_SOURCES),
    "data.n_eval_tasks": schema.integer(0),
    "model.name": schema.text(),
    "model.init_from": schema.path(),
    "model.dtype": schema.choice(MODEL_DTYPES),
    "model.dropout_rate": schema.number(0.0, 1.0, high_open=True),
    "encoding.n_examples": schema.integer(1),
    "encoding.input_state_max": schema.integer(2),
    "encoding.max_program_tokens": schema.integer(1),
    "train.n_policy": schema.integer(0),
    "train.n_mutated": schema.integer(0),
    "train.epochs": schema.integer(1),
    "train.first_epochs": schema.integer(0),
    "train.batch_size": schema.integer(1),
    "train.grad_accum_steps": schema.integer(1),
    "train.learning_rate": schema.number(0.0, 1.0, low_open=True),
    "train.weight_decay": schema.number(0.0, 1.0),
    "train.weight_decay_on": schema.choice(WEIGHT_DECAY_ON),
    "train.warmup_steps": schema.integer(0),
    "train.max_grad_norm": schema.optional(schema.number(0.0)),
    "train.reset_optimizer": schema.boolean(),
    "train.loss_on_padding": schema.boolean(),
    "train.input_buckets": schema.lengths(),
    "train.label_buckets": schema.lengths(),
    "sampling.n_samples": schema.integer(1),
    "sampling.temperature": schema.number(0.0),
    "sampling.top_k": schema.integer(0),
    "sampling.disallowed_tokens": schema.choice(DISALLOWED_TOKENS),
    "sampling.tasks_per_batch": schema.integer(1),
    "sampling.max_new_tokens": schema.integer(1),
    "sampling.constrained": schema.boolean(),
    "buffer.capacity": schema.integer(0),
    "buffer.reduce_percentage": schema.number(0.0, 1.0, high_open=True),
    "buffer.performance_penalty": schema.number(0.0),
    "buffer.length_penalty": schema.number(0.0),
    "buffer.age_penalty": schema.number(0.0),
    "buffer.distance_penalty": schema.number(0.0),
    "buffer.epsilon": schema.number(0.0, low_open=True),
    "buffer.priority_in_mutated": schema.boolean(),
    "sandbox.workers": schema.integer(0),
    "sandbox.timeout_s": schema.number(0.0, low_open=True),
    "sandbox.memory_mb": schema.integer(1),
    "sandbox.max_state_size": schema.integer(1),
    "no_exit.search_dir": schema.path(),
    "no_exit.start_samples": schema.integer(0),
    "no_exit.interval": schema.integer(1),
    "metric.mutation_solutions": schema.path(),
    "metric.mutation_samples": schema.integer(AUTO_SAMPLES),
    "checkpoint_max_to_keep": schema.integer(1),
    "tensorboard": schema.boolean(),
    "progress": schema.boolean(),
    "distributed": schema.boolean(),
}
