"""The policy of a CodeIt run: tokenizer, T5 shape, initial weights, trainer and sampler.

Everything here follows from the config alone, so a restarted run rebuilds the same policy and
then restores its weights from the checkpoint. A random init uses the built-in DSL tokenizer and
a named T5 shape; ``model.init_from`` takes the shape, the weights (unless ablation A4 asks for
a fresh init) and, when the directory has one, the tokenizer from a local Hugging Face
checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jax.sharding import Mesh

from codeit_jax.config import ModelConfig, RunConfig
from codeit_jax.errors import ConfigError, one_line
from codeit_jax.policy.convert import load_hf_checkpoint
from codeit_jax.policy.encoding import max_input_length
from codeit_jax.policy.grammar import TypedGrammar
from codeit_jax.policy.grammar_bpe import BPEGrammar
from codeit_jax.policy.mesh import padded_batch_size
from codeit_jax.policy.sampler import Constraint, Sampler
from codeit_jax.policy.t5 import T5, T5Config, named_config
from codeit_jax.policy.tokenizer import DSLTokenizer, HFTokenizer, Tokenizer
from codeit_jax.policy.trainer import Trainer
from codeit_jax.programs.types import SignatureTable, signature_table

#: Files whose presence marks a Hugging Face tokenizer directory.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model")


@dataclass
class Policy:
    tokenizer: Tokenizer
    model_config: T5Config
    trainer: Trainer
    sampler: Sampler
    allowed_tokens: np.ndarray  # bool [vocab]: what a sampled program may contain
    pretrained_params: Any | None  # weights to start from; None: random init from the seed
    constraint: Constraint | None = None  # constrained decoding (config.sampling.constrained)


def has_hf_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / name).is_file() for name in _TOKENIZER_FILES)


def make_tokenizer(model: ModelConfig, seed_programs: Sequence[str] = ()) -> Tokenizer:
    """The HF tokenizer of ``model.init_from`` when it has one, else the DSL tokenizer."""
    init_from = model.init_from
    if init_from and has_hf_tokenizer(init_from):
        with _init_from_errors(init_from, "its tokenizer"):
            return HFTokenizer(Path(init_from).expanduser(), extra_program_texts=seed_programs)
    return DSLTokenizer()


@contextlib.contextmanager
def _init_from_errors(init_from: str, what: str) -> Iterator[None]:
    """A checkpoint directory that cannot be read is bad input: one line naming it."""
    try:
        yield
    except ConfigError:
        raise
    except (OSError, ValueError) as e:  # missing or damaged files (JSON errors are ValueErrors)
        raise ConfigError(
            f"config.model.init_from {init_from}: cannot load {what} ({one_line(e)})"
        ) from None


def model_config_and_weights(
    model: ModelConfig, tokenizer: Tokenizer
) -> tuple[T5Config, Any | None]:
    """The T5 shape and, when the run starts from a checkpoint's weights, those weights."""
    overrides: dict[str, Any] = {"dropout_rate": model.dropout_rate}
    if model.dtype:
        overrides["dtype"] = model.dtype
    if model.init_from:
        with _init_from_errors(model.init_from, "the checkpoint"):
            shape, params = load_hf_checkpoint(Path(model.init_from).expanduser())
        model_config = shape.replace(**overrides)
        if not model.load_weights:
            params = None
    else:
        overrides["vocab_size"] = tokenizer.vocab_size
        model_config, params = named_config(model.name, **overrides), None
    if model_config.vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"config.model: the model's vocabulary ({model_config.vocab_size}) is smaller than "
            f"the tokenizer's ({tokenizer.vocab_size})"
        )
    if (tokenizer.pad_id, tokenizer.eos_id) != (
        model_config.pad_token_id,
        model_config.eos_token_id,
    ):
        raise ConfigError(
            f"config.model.init_from {model.init_from}: tokenizer and model disagree on "
            "the pad/eos ids"
        )
    return model_config, params


def allowed_tokens(tokenizer: Tokenizer, vocab_size: int, codeit_set: bool = False) -> np.ndarray:
    """The tokenizer's program mask (``codeit_set``: CodeIt's own allowed-token set), padded to
    the model's vocabulary (extra ids disallowed)."""
    mask = np.zeros(vocab_size, bool)
    program_mask = tokenizer.codeit_token_mask() if codeit_set else tokenizer.program_token_mask()
    mask[: len(program_mask)] = program_mask
    return mask


def make_constraint(
    tokenizer: Tokenizer, vocab_size: int, table: SignatureTable
) -> TypedGrammar | BPEGrammar:
    """The decoding constraint for a tokenizer: typed for the DSL tokenizer, the untyped
    grammar through a token trie for a Hugging Face one."""
    if isinstance(tokenizer, DSLTokenizer):
        return TypedGrammar(tokenizer, table, vocab_size)
    if isinstance(tokenizer, HFTokenizer):
        return BPEGrammar(tokenizer, vocab_size)
    raise TypeError(f"no decoding constraint for a {type(tokenizer).__name__}")


def build_policy(config: RunConfig, mesh: Mesh, seed_programs: Sequence[str] = ()) -> Policy:
    tokenizer = make_tokenizer(config.model, seed_programs)
    model_config, params = model_config_and_weights(config.model, tokenizer)
    t = config.train
    longest = max_input_length(tokenizer, config.encoding.input_state_max)
    if longest > t.input_buckets[-1]:
        raise ConfigError(
            f"config.train.input_buckets end at {t.input_buckets[-1]}, below the {longest} "
            f"tokens an input of encoding.input_state_max={config.encoding.input_state_max} "
            "per side can have with this tokenizer"
        )
    try:  # a micro-batch that does not split over this machine's devices
        trainer = Trainer(T5(model_config), t, mesh)
    except ValueError as e:
        raise ConfigError(f"config.train: {one_line(e)}") from None
    sampler = Sampler(
        model_config,
        mesh,
        length_buckets=t.input_buckets,
        task_batch=padded_batch_size(config.sampling.tasks_per_batch, mesh),
    )
    return Policy(
        tokenizer=tokenizer,
        model_config=model_config,
        trainer=trainer,
        sampler=sampler,
        allowed_tokens=allowed_tokens(
            tokenizer,
            model_config.vocab_size,
            codeit_set=config.sampling.end_on_disallowed,
        ),
        pretrained_params=params,
        constraint=_constraint(config, tokenizer, model_config.vocab_size),
    )


def _constraint(config: RunConfig, tokenizer: Tokenizer, vocab_size: int) -> Constraint | None:
    """The constraint ``sampling.constrained`` asks for, typed against the signature table
    random seeds use (training programs, else the annotations)."""
    if not config.sampling.constrained:
        return None
    return make_constraint(tokenizer, vocab_size, signature_table(config.data.data_dir))
