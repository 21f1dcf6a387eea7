"""Constrained decoding in the jitted sampler: typed programs from a random model, determinism
across devices, top-k, the HF token-trie grammar, and the config switch."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from codeit_jax.bench.constrained import bpe_tokenizer
from codeit_jax.loop.inference import sample_programs
from codeit_jax.loop.policy import make_constraint
from codeit_jax.policy.grammar import TypedGrammar
from codeit_jax.policy.grammar_bpe import BPEGrammar, line_automaton
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.sampler import Sampler, SamplingConfig
from codeit_jax.policy.t5 import init_params, named_config
from codeit_jax.policy.tokenizer import DSLTokenizer
from codeit_jax.programs.program import parse
from codeit_jax.programs.types import check_types, signature_table

TOKENIZER = DSLTokenizer()
CONFIG = named_config("tiny", vocab_size=TOKENIZER.vocab_size + 5, dtype="float32")
K, MAX_NEW = 6, 48
INPUTS = [[5, 6, 7, 1], [3, 4, 1], [9, 9, 9, 9, 9, 1], [2, 1], [7, 8, 9, 10, 1]]


@pytest.fixture(scope="module")
def table(codeit_data):
    return signature_table(codeit_data)


@pytest.fixture(scope="module")
def grammar(table):
    return TypedGrammar(TOKENIZER, table, CONFIG.vocab_size)  # extra model ids: never allowed


@pytest.fixture(scope="module")
def params():
    return init_params(CONFIG, jax.random.key(0))


@pytest.fixture(scope="module")
def sampler():
    return Sampler(CONFIG)  # 8 devices


def _sample(sampler, params, grammar, seed=1, **kwargs):
    kwargs = {"num_samples": K, "max_new_tokens": MAX_NEW, **kwargs}
    return sampler.sample(params, INPUTS, jax.random.key(seed), constraint=grammar, **kwargs)


def _check_all(out, table):
    for row, length in zip(out.tokens.reshape(-1, MAX_NEW), out.lengths.ravel()):
        assert row[length - 1] == TOKENIZER.eos_id, "every row ends with EOS in the budget"
        assert (row[length:] == TOKENIZER.pad_id).all()
        check_types(parse(TOKENIZER.decode(row)), table)


def test_every_sample_of_a_random_model_parses_and_type_checks(sampler, params, grammar, table):
    for seed in (1, 2):
        _check_all(_sample(sampler, params, grammar, seed=seed), table)
    greedy = _sample(sampler, params, grammar, greedy=True)
    _check_all(greedy, table)
    assert (greedy.tokens == greedy.tokens[:, :1]).all()


def test_top_k_with_the_constraint(sampler, params, grammar, table):
    """top-k among the allowed tokens: top_k=1 is greedy, a larger k still types."""
    greedy = _sample(sampler, params, grammar, greedy=True)
    np.testing.assert_array_equal(_sample(sampler, params, grammar, top_k=1).tokens, greedy.tokens)
    _check_all(_sample(sampler, params, grammar, top_k=5), table)


def test_deterministic_and_equal_on_one_and_eight_devices(sampler, params, grammar):
    one = Sampler(CONFIG, mesh=make_mesh(jax.devices()[:1]))
    a = _sample(sampler, params, grammar)
    np.testing.assert_array_equal(a.tokens, _sample(sampler, params, grammar).tokens)
    np.testing.assert_array_equal(a.tokens, _sample(one, params, grammar).tokens)
    assert not np.array_equal(a.tokens, _sample(sampler, params, grammar, seed=7).tokens)


def test_bad_combinations_are_refused(sampler, params, grammar):
    with pytest.raises(ValueError, match="pass neither"):
        _sample(sampler, params, grammar, end_on_disallowed=True)
    with pytest.raises(ValueError, match="pass neither"):
        _sample(sampler, params, grammar, allowed_tokens=np.ones(CONFIG.vocab_size, bool))
    with pytest.raises(ValueError, match="max_new_tokens=12"):
        _sample(sampler, params, grammar, max_new_tokens=grammar.min_new_tokens() - 1)


def test_sample_programs_passes_the_constraint(sampler, params, grammar, table):
    settings = SamplingConfig(n_samples=3, temperature=1.0, tasks_per_batch=8,
                                max_new_tokens=MAX_NEW)  # fmt: skip
    mask = TOKENIZER.program_token_mask()
    texts = sample_programs(sampler, params, TOKENIZER, INPUTS, jax.random.key(0), settings,
                            mask, progress=False, constraint=grammar)  # fmt: skip
    assert len(texts) == len(INPUTS) and all(len(t) == 3 for t in texts)
    for text in (t for task in texts for t in task):
        check_types(parse(text), table)
    with pytest.raises(ValueError, match="cannot end samples"):
        sample_programs(sampler, params, TOKENIZER, INPUTS, jax.random.key(0),
                        SamplingConfig(3, 1.0, 8, MAX_NEW, end_on_disallowed=True),
                        mask, progress=False, constraint=grammar)  # fmt: skip


# --------------------------------------------------------------------------- HF token trie

_PROGRAMS = [
    "x1 = vmirror(I)\nO = hconcat(I, x1)",
    "x1 = objects(I, T, F, T)\nx2 = argmax(x1, size)\nO = subgrid(x2, I)",
    "O = replace(I, FIVE, ZERO)",
]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer that frames texts as ``<s> ... </s>`` (CodeT5's way)."""
    path = tmp_path_factory.mktemp("hf_bos_tokenizer")
    return bpe_tokenizer(_PROGRAMS * 20, str(path), vocab_size=400)


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_LINE = rf"{{target}} = {_NAME}\({_NAME}(, {_NAME})*\)"
_GRAMMAR = re.compile(
    rf"({_LINE.format(target='x[1-9][0-9]?')}\n)*{_LINE.format(target='O')}\Z", re.ASCII
)


def test_the_character_automaton_accepts_the_grammar():
    chars, start, accept = line_automaton()

    def run(text: str) -> int:
        state = start
        for char in text:
            state = chars[state, ord(char)]
        return state

    for program in _PROGRAMS:
        assert run(program) == accept
    bad = ["O = hconcat(I, x1)\n", "x1 = vmirror(I)", "O = hconcat(I,x1)", "O = nope(I)",
           "x100 = vmirror(I)\nO = vmirror(x100)", "O = vmirror()", "I = vmirror(I)"]  # fmt: skip
    for text in bad:
        assert run(text) != accept, text


def test_hf_trie_samples_start_with_the_prefix_and_spell_the_grammar(hf_tokenizer):
    tok = hf_tokenizer
    config = named_config("tiny", vocab_size=tok.vocab_size, dtype="float32",
                          pad_token_id=tok.pad_id, eos_token_id=tok.eos_id)  # fmt: skip
    params = init_params(config, jax.random.key(1))
    trie = BPEGrammar(tok)
    assert trie.prefix_ids == (1,) and trie.min_new_tokens() >= 2
    sampler = Sampler(config, mesh=make_mesh(jax.devices()[:2]))
    max_new = 64
    out = sampler.sample(params, [[5, 6, 2], [7, 2]], jax.random.key(0), num_samples=16,
                         max_new_tokens=max_new, constraint=trie)  # fmt: skip
    for row, length in zip(out.tokens.reshape(-1, max_new), out.lengths.ravel()):
        assert row[0] == 1, "the label prefix <s> comes first"
        assert row[length - 1] == tok.eos_id
        assert _GRAMMAR.match(tok.decode(row)), tok.decode(row)
    # at the tightest budget every row still finishes
    low = trie.min_new_tokens()
    tight = sampler.sample(params, [[5, 6, 2]], jax.random.key(2), num_samples=16,
                           max_new_tokens=low, constraint=trie)  # fmt: skip
    assert (tight.lengths <= low).all() and (tight.tokens == tok.eos_id).any(axis=-1).all()
    assert isinstance(make_constraint(tok, config.vocab_size, None), BPEGrammar)


# --------------------------------------------------------------------------- config


def test_config_switch(tmp_path):
    import runpy
    from pathlib import Path

    from codeit_jax.config import prepare_config
    from codeit_jax.errors import ConfigError

    configs = Path(__file__).resolve().parent.parent / "configs"
    paper = runpy.run_path(str(configs / "codeit.py"))["get_config"]()
    assert paper.sampling.constrained is False  # the paper config stays faithful
    for name in ("tiny.py", "cpu_experiment.py"):
        assert runpy.run_path(str(configs / name))["get_config"]().sampling.constrained is False
    bad = ConfigDict(paper.to_dict())
    bad.sampling.constrained = True  # with CodeIt's "end" rule
    with pytest.raises(ConfigError, match="constrained"):
        prepare_config(bad)
    bad = ConfigDict(bad.to_dict(), type_safe=False)
    bad.sampling.constrained = "yes"
    bad.sampling.disallowed_tokens = "mask"
    with pytest.raises(ConfigError, match="sampling.constrained"):
        prepare_config(bad)


def test_a_constrained_meta_iteration_samples_typed_programs(tmp_path, codeit_data, table):
    """config.sampling.constrained=True end to end: the policy builds the typed grammar and
    every program the meta-iteration sampled parses and type-checks."""
    import json

    from codeit_jax.jobs.codeit import run
    from tests.codeit_testing import tiny_config

    config = tiny_config(codeit_data)
    config.sampling.constrained = True
    run(config, tmp_path / "run")
    log = json.loads((tmp_path / "run" / "log_0.json").read_text())
    samples = [text for task in log["tasks"].values() for text in task["samples"]]
    assert len(samples) == 4
    for text in samples:
        check_types(parse(text), table)
