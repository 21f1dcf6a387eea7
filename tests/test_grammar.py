"""The typed decoding automaton: never a dead end, EOS only after ``O = ...``, every program it
lets through parses and type-checks, and it allows exactly the one-call programs that do."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codeit_jax.dsl import CONSTANTS, PRIMITIVE_NAMES
from codeit_jax.policy.grammar import TypedGrammar
from codeit_jax.policy.tokenizer import DSLTokenizer
from codeit_jax.programs.program import ProgramError, parse
from codeit_jax.programs.types import TypeCheckError, check_types, signature_table

TOKENIZER = DSLTokenizer()


@pytest.fixture(scope="module", params=["training", "annotated"])
def setup(request):
    """(grammar, device tables, signature table) for the training table and the fallback."""
    data = request.getfixturevalue("codeit_data") if request.param == "training" else None
    table = signature_table(data)
    grammar = TypedGrammar(TOKENIZER, table)
    tables = {k: jnp.asarray(v) for k, v in grammar.tables().items()}
    return grammar, tables, table


@partial(jax.jit, static_argnums=(0, 2, 3))
def _walk(grammar, tables, n: int, max_new: int, key):
    """n uniform random walks: tokens [n, max_new] and, per step, the allowed mask [n, steps, V]."""
    candidates = jnp.arange(TOKENIZER.vocab_size)

    def body(step, carry):
        state, tokens, masks, finished = carry
        allowed = grammar.allowed(tables, state, max_new - step, candidates)
        noise = jax.random.uniform(jax.random.fold_in(key, step), allowed.shape)
        token = jnp.argmax(jnp.where(allowed, noise, -1.0), axis=1).astype(jnp.int32)
        token = jnp.where(finished, TOKENIZER.pad_id, token)
        moved = grammar.advance(tables, state, token)
        state = jax.tree_util.tree_map(
            lambda old, new: jnp.where(finished.reshape(-1, *(1,) * (old.ndim - 1)), old, new),
            state,
            moved,
        )
        masks = masks.at[:, step].set(allowed & ~finished[:, None])
        tokens = tokens.at[:, step].set(token)
        return state, tokens, masks, finished | (token == TOKENIZER.eos_id)

    carry = (
        grammar.init(tables, n, max_new),
        jnp.zeros((n, max_new), jnp.int32),
        jnp.zeros((n, max_new, TOKENIZER.vocab_size), bool),
        jnp.zeros((n,), bool),
    )
    return jax.lax.fori_loop(0, max_new, body, carry)[1:3]


def _is_complete(prefix_ids: list[int], table) -> bool:
    """Whether these tokens spell a whole program that ends with its O line."""
    text = TOKENIZER.decode(prefix_ids)
    try:
        program = parse(text)
    except ProgramError:
        return False
    check_types(program, table)
    return text.endswith(")") and program.lines[-1].target == "O"


@pytest.mark.parametrize("max_new", [64, 200])
def test_random_walks_never_dead_end_and_end_with_a_typed_program(setup, max_new):
    grammar, tables, table = setup
    n, eos, close = 128, TOKENIZER.eos_id, TOKENIZER.token_id(")")
    for seed in range(2):
        tokens, masks = map(np.asarray, _walk(grammar, tables, n, max_new, jax.random.key(seed)))
        for row in range(n):
            ids = tokens[row].tolist()
            assert eos in ids, f"row {row} did not finish within {max_new} tokens"
            end = ids.index(eos)
            for step in range(end + 1):
                allowed = masks[row, step]
                assert allowed.any(), f"dead end after {TOKENIZER.decode(ids[:step])!r}"
                assert allowed[ids[step]]
                if allowed[eos]:  # EOS only right after a complete O line, and then alone
                    assert _is_complete(ids[:step], table), TOKENIZER.decode(ids[:step])
                    assert allowed.sum() == 1 and ids[step - 1] == close
            program = parse(TOKENIZER.decode(ids))  # no repeated call, fresh targets in order
            check_types(program, table)
            targets = [line.target for line in program.lines]
            assert targets == [f"x{k}" for k in range(1, len(targets))] + ["O"]
            assert TOKENIZER.encode(program.text) == ids[:end]  # the canonical spelling


def test_tight_budgets_still_finish(setup):
    """Down to ``min_new_tokens``, every row reaches EOS in time."""
    grammar, tables, table = setup
    low = grammar.min_new_tokens()
    assert low == 2 * grammar.max_arity + 5
    for max_new in (low, low + 1, low + 7, 2 * low - 1, 2 * low + 3):
        tokens, masks = map(np.asarray, _walk(grammar, tables, 64, max_new, jax.random.key(3)))
        for row in tokens.tolist():
            assert TOKENIZER.eos_id in row, (max_new, TOKENIZER.decode(row))
            check_types(parse(TOKENIZER.decode(row)), table)


def test_every_state_to_depth_six_has_a_way_on(setup):
    """Exhaustive: every path of allowed tokens from the start up to 6 tokens (``O = f(a,``,
    ``x1 = f(a)`` and the like) reaches a state that allows some token."""
    grammar, tables, _ = setup
    candidates = jnp.arange(TOKENIZER.vocab_size)
    allowed_fn = jax.jit(lambda s: grammar.allowed(tables, s, 200, candidates))
    advance_fn = jax.jit(lambda s, t: grammar.advance(tables, s, t))
    state = grammar.init(tables, 1, 200)
    for depth in range(7):
        allowed = np.asarray(allowed_fn(state))
        assert allowed.any(axis=1).all(), f"a dead end at depth {depth}"
        if depth == 6:
            break
        rows, tokens = np.nonzero(allowed)
        state = jax.tree_util.tree_map(lambda x, rows=rows: x[rows], state)
        state = advance_fn(state, jnp.asarray(tokens, jnp.int32))
    assert state["phase"].shape[0] > 500  # the search really branched


def test_one_call_programs_are_allowed_exactly_when_they_type_check(setup):
    """``O = p(a)`` for every primitive p and term a (I, constants, primitives): the automaton
    lets it through iff it parses and passes check_types."""
    grammar, tables, table = setup
    candidates = jnp.arange(TOKENIZER.vocab_size)
    allowed_fn = jax.jit(lambda s: grammar.allowed(tables, s, 200, candidates))
    advance_fn = jax.jit(lambda s, t: grammar.advance(tables, s, t))
    terms = ["I", *CONSTANTS, *PRIMITIVE_NAMES]
    pairs = [(p, a) for p in PRIMITIVE_NAMES for a in terms]
    n = len(pairs)
    state = grammar.init(tables, n, 200)
    head = ["O", " =", None, "(", None, ")"]
    ok = np.ones(n, bool)
    for position, token in enumerate(head):
        if token is None:
            word = [(" " + p) if position == 2 else a for p, a in pairs]
            ids = np.array([TOKENIZER.token_id(w) for w in word], np.int32)
        else:
            ids = np.full(n, TOKENIZER.token_id(token), np.int32)
        allowed = np.asarray(allowed_fn(state))
        ok &= allowed[np.arange(n), ids]
        state = advance_fn(state, jnp.asarray(ids))
    expected = np.zeros(n, bool)
    for i, (p, a) in enumerate(pairs):
        try:
            check_types(f"O = {p}({a})", table)
            expected[i] = True
        except (TypeCheckError, ProgramError):
            pass
    assert expected.sum() >= 5
    wrong = [pairs[i] for i in np.flatnonzero(ok != expected)][:10]
    assert not wrong, f"automaton and check_types disagree on {wrong}"


def test_a_table_without_a_rich_grid_call_is_refused():
    from codeit_jax.programs.types import Arrow, SignatureTable

    table = SignatureTable.from_uses([("vmirror", Arrow(("Grid",), "Grid"))])
    with pytest.raises(ValueError, match="dead-end on the O line"):
        TypedGrammar(TOKENIZER, table)
