"""Shared helpers of the CodeIt loop tests: a tiny config and a scripted sampler."""

from __future__ import annotations

import runpy
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ml_collections import ConfigDict

from codeit_jax.policy.sampler import SampleOutput, sequence_lengths
from codeit_jax.policy.tokenizer import Tokenizer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def load_config(name: str) -> ConfigDict:
    return runpy.run_path(str(CONFIGS / f"{name}.py"))["get_config"]()


def tiny_config(data_dir: Path | str, name: str = "tiny") -> ConfigDict:
    """configs/<name>.py shrunk so that a meta-iteration takes seconds once compiled.

    Every shape is fixed (one input bucket, one label bucket, 8 tasks per sampler call) so
    the trainer and the sampler compile once per policy.
    """
    config = load_config(name)
    config.n_meta_iterations = 1
    config.data.data_dir = str(data_dir)
    config.data.n_eval_tasks = 2
    config.data.n_random_seeds = 64
    config.encoding.input_state_max = 32
    config.encoding.max_program_tokens = 64
    config.train.n_policy = 8
    config.train.n_mutated = 16
    config.train.batch_size = 8
    config.train.epochs = 1
    config.train.input_buckets = (64,)
    config.train.label_buckets = (64,)
    config.sampling.n_samples = 2
    config.sampling.tasks_per_batch = 8
    config.sampling.max_new_tokens = 16
    config.sandbox.workers = 1
    config.tensorboard = False
    config.progress = False
    return config


class ScriptedSampler:
    """Stands in for `codeit_jax.policy.sampler.Sampler` where a test needs known programs: returns,
    for each task input, the scripted program texts (cycled to ``num_samples``)."""

    def __init__(self, tokenizer: Tokenizer, programs: Mapping[tuple[int, ...], Sequence[str]]):
        self.tokenizer = tokenizer
        self.programs = {key: list(texts) for key, texts in programs.items()}

    def sample(self, params, inputs, key, *, num_samples, max_new_tokens, **_) -> SampleOutput:
        del params, key
        tokens = np.zeros((len(inputs), num_samples, max_new_tokens), np.int32)
        for i, task_input in enumerate(inputs):
            texts = self.programs[tuple(task_input)]
            for k in range(num_samples):
                ids = self.tokenizer.encode(texts[k % len(texts)]) + [self.tokenizer.eos_id]
                if len(ids) > max_new_tokens:
                    raise ValueError("scripted program longer than max_new_tokens")
                tokens[i, k, : len(ids)] = ids
        return SampleOutput(tokens, sequence_lengths(tokens, self.tokenizer.eos_id))
