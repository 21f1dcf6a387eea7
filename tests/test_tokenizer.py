"""Built-in DSL tokenizer and the Hugging Face adapter (with a tiny locally built tokenizer)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeit_jax.bench.constrained import bpe_tokenizer
from codeit_jax.dsl.constants import CONSTANTS
from codeit_jax.dsl.signatures import PRIMITIVE_NAMES
from codeit_jax.policy.encoding import bare_program, grid_to_text, task_to_text
from codeit_jax.policy.tokenizer import DSLTokenizer, HFTokenizer, Tokenizer, program_words
from codeit_jax.tasks import load_codeit_dir

TOK = DSLTokenizer()


def _tokens(text: str) -> list[str]:
    return [TOK.vocab[i] for i in TOK.encode(text)]


def test_vocabulary_layout():
    assert (TOK.pad_id, TOK.eos_id, TOK.unk_id) == (0, 1, 2)
    assert len(set(TOK.vocab)) == TOK.vocab_size == len(TOK.vocab)
    for word in [*PRIMITIVE_NAMES, *CONSTANTS, "I", "O", "x1", "x99", "0", "30", "|", "bg", "\n"]:
        assert TOK.decode([TOK.token_id(word)]) == word
    assert isinstance(TOK, Tokenizer)


def test_a_program_line_merges_spaces_into_words():
    assert _tokens("x12 = fill(I, FIVE, x3)") == [
        "x12",
        " =",
        " fill",
        "(",
        "I",
        ",",
        " FIVE",
        ",",
        " x3",
        ")",
    ]


def test_grid_text_splits_the_size_and_coordinates():
    assert _tokens("3x14 bg=0 2=0,1 10,2") == [
        "3",
        "x",
        "14",
        " bg",
        "=",
        "0",
        " 2",
        "=",
        "0",
        ",",
        "1",
        " 10",
        ",",
        "2",
    ]


@pytest.mark.parametrize(
    "text",
    ["", " ", "  x1", "O = f(I) ", "a\n\n  b", "x1  =\tf", "123 4567", " \n ", "x100"],
)
def test_odd_spacing_and_numbers_round_trip(text):
    # \t and "f"/"a"/"b" are not words, so only texts made of known pieces are compared exactly
    ids = TOK.encode(text)
    if TOK.unk_id not in ids:
        assert TOK.decode(ids) == text


def test_numbers_outside_the_vocabulary_become_digits():
    assert _tokens("31 405") == ["3", "1", " ", "4", "0", "5"]


def test_unknown_words_are_unk_or_an_error_when_strict():
    ids = TOK.encode("x1 = frobnicate(I)")
    assert ids.count(TOK.unk_id) == 1
    assert TOK.decode(ids) == "x1 = <unk>(I)"  # the space survives
    with pytest.raises(ValueError, match="frobnicate"):
        TOK.encode("x1 = frobnicate(I)", strict=True)
    with pytest.raises(TypeError):
        TOK.encode(["x1"])  # type: ignore[arg-type]


def test_decode_stops_at_eos_and_skips_pads():
    ids = TOK.encode("O = vmirror(I)")
    assert TOK.decode([TOK.pad_id, *ids, TOK.eos_id, *TOK.encode("junk")]) == "O = vmirror(I)"
    assert TOK.decode(np.array(ids + [TOK.eos_id, TOK.pad_id])) == "O = vmirror(I)"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOK.decode([TOK.vocab_size])


_WORDS = [*program_words(), "0", "7", "30", "|", "x", "bg", "\n"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_WORDS), st.sampled_from(["", " ", "  ", "\n", ", ", "(", " = "])
        ),
        max_size=40,
    )
)
def test_texts_of_vocabulary_words_round_trip(pieces):
    # Separators always contain a non-identifier character except "", which may glue two
    # identifiers into an unknown one; such texts are skipped, not compared.
    text = "".join(word + sep for word, sep in pieces)
    ids = TOK.encode(text)
    if TOK.unk_id not in ids:
        assert TOK.decode(ids) == text


def test_program_mask_allows_program_words_only():
    mask = TOK.program_token_mask()
    assert mask.dtype == np.bool_ and mask.shape == (TOK.vocab_size,)
    for word in ["x1", " x1", " fill", "(", ",", " ZERO", "O", "\n", "</s>"]:
        assert mask[TOK.token_id(word)], word
    for word in ["<pad>", "<unk>", "0", " 12", "|", "bg", " bg", "x"]:
        assert not mask[TOK.token_id(word)], word


def test_training_programs_and_task_texts_round_trip(codeit_data):
    mask = TOK.program_token_mask()
    for task in load_codeit_dir(codeit_data / "training"):
        program = bare_program(task.program)
        ids = TOK.encode(program, strict=True)
        assert TOK.decode(ids) == program
        assert mask[ids].all()
        text = task_to_text(task, 10)
        assert TOK.decode(TOK.encode(text, strict=True)) == text
        for x, y in task.test:
            for grid in (x, y):
                assert TOK.decode(TOK.encode(grid_to_text(grid), strict=True)) == grid_to_text(grid)


# --------------------------------------------------------------------------- HF adapter

_PROGRAMS = [
    "x1 = vmirror(I)\nO = hconcat(I, x1)",
    "x1 = objects(I, T, F, T)\nx2 = argmax(x1, size)\nO = subgrid(x2, I)",
    "O = replace(I, FIVE, ZERO)",
]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer trained on a few programs, saved like a checkpoint's."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(_PROGRAMS * 20 + ["3x3 bg=0 1=0,1 2,2|2x2 bg=5"] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    path = tmp_path_factory.mktemp("hf_tokenizer")
    fast.save_pretrained(str(path))
    return path


def test_hf_adapter_round_trips_and_stops_at_eos(hf_dir):
    tok = HFTokenizer(hf_dir)
    assert isinstance(tok, Tokenizer)
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    text = _PROGRAMS[1] + "\n" + "3x3 bg=0 1=0,1 2,2"
    ids = tok.encode(text)
    assert tok.eos_id not in ids and tok.pad_id not in ids
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_id] + tok.encode("junk")) == text
    assert max(ids) < tok.vocab_size


def test_hf_adapter_program_mask_covers_programs(hf_dir):
    tok = HFTokenizer(hf_dir, extra_program_texts=_PROGRAMS)
    mask = tok.program_token_mask()
    assert mask.shape == (tok.vocab_size,) and mask[tok.eos_id]
    for program in _PROGRAMS:
        assert mask[tok.encode(program)].all()
    assert not mask[tok.pad_id]


def test_hf_adapter_reports_a_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="cannot load"):
        HFTokenizer(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def hf_bos_dir(tmp_path_factory):
    """A byte-level BPE tokenizer that frames texts as ``<s> ... </s>``, as CodeT5's does."""
    path = tmp_path_factory.mktemp("hf_bos_tokenizer")
    bpe_tokenizer(_PROGRAMS * 20, str(path), vocab_size=400)
    return path


def test_hf_prefix_starts_labels_and_inputs_as_codeit_encodes_them(hf_bos_dir, hf_dir):
    from codeit_jax.policy.encoding import encode_program

    tok = HFTokenizer(hf_bos_dir)
    assert (tok.pad_id, tok.eos_id, tok.prefix_ids) == (0, 2, (1,))
    program = _PROGRAMS[0]
    # CodeIt: tokenizer.encode(program, add_special_tokens=True) -> <s> program </s>
    assert encode_program(program, tok) == [1, *tok.encode(program), 2]
    assert tok.decode(encode_program(program, tok)) == program  # <s> is not program text
    assert tok.program_token_mask()[1]  # the sampler must be able to start a program with <s>
    assert HFTokenizer(hf_dir).prefix_ids == ()  # no template: nothing in front


def test_codeit_token_masks_hold_codeits_allowed_terms(hf_bos_dir):
    """CodeIt's allowed set: its terms tokenized alone (and after a space) with the special
    tokens, plus pad; our DSL tokenizer holds the terms that are words of its vocabulary."""
    from codeit_jax.policy.tokenizer import codeit_terms

    tok = HFTokenizer(hf_bos_dir)
    mask = tok.codeit_token_mask()
    assert mask[[0, 1, 2]].all()
    for term in ("vmirror", " x12", "\n", " 99", "x0"):
        assert mask[tok.encode(term)].all(), term
    dsl = TOK.codeit_token_mask()
    assert dsl[TOK.pad_id] and dsl[TOK.eos_id] and not dsl[TOK.unk_id]
    assert (dsl >= TOK.program_token_mask()).all()
    for term in codeit_terms():
        if term in TOK.vocab:
            assert dsl[TOK.token_id(term)], term
    assert dsl[TOK.token_id(" 12")] and not dsl[TOK.token_id("bg")]


def test_hf_adapter_rejects_a_tokenizer_that_loses_newlines(tmp_path):
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()  # whitespace is dropped, not encoded
    raw.train_from_iterator(
        _PROGRAMS, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"])
    )
    PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="does not reproduce program text"):
        HFTokenizer(tmp_path)


def test_token_benchmark_reports_both_tokenizers(codeit_data, hf_dir, capsys):
    import json

    from codeit_jax.bench.tokens import main

    figures = main([f"--data={codeit_data}", f"--hf_tokenizer={hf_dir}", "--input_state_max=64"])
    assert figures["tasks"] == 400
    for name in ("dsl", "hf"):
        stats = figures[name]
        assert stats["input_truncated"]["max"] <= 2 * 64 + 2 + (name == "hf") * 8
        assert stats["input_full"]["mean"] >= stats["input_truncated"]["mean"]
        assert 0 < stats["truncated_fraction"] <= 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures
