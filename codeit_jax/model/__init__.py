"""The policy: a Flax T5 and conversion from/to local Hugging Face checkpoints."""

from codeit_jax.model.convert import load_hf_checkpoint, save_hf_checkpoint
from codeit_jax.model.t5 import (
    CONFIGS,
    T5,
    T5Config,
    count_params,
    default_compute_dtype,
    init_cache,
    init_params,
    named_config,
    shift_right,
)

__all__ = [
    "CONFIGS",
    "T5",
    "T5Config",
    "count_params",
    "default_compute_dtype",
    "init_cache",
    "init_params",
    "load_hf_checkpoint",
    "named_config",
    "save_hf_checkpoint",
    "shift_right",
]
