"""Grammar-constrained decoding for a Hugging Face BPE tokenizer (CodeT5's), without types.

A BPE token can hold any run of characters (``x1 =``, ``(I``, ``)\\n``), so the grammar is
written over characters and lifted to tokens: a character automaton (`line_automaton`) for

    (x<k> = <primitive>(<arg>, ..., <arg>)\\n)* O = <primitive>(<arg>, ..., <arg>)

(``<k>`` 1..99; ``<arg>``: ``I``, ``x<k>``, a constant or a primitive name) is run over every
token's characters from every state once on the host, giving a table ``next[state, token]``
(the precomputed token trie). In the decode loop a row's state is one integer: the allowed
tokens are those whose ``next`` is a live state that can still reach the end within the tokens
left (a shortest-path table, counted in tokens), EOS only in the accepting state.

Unlike `codeit_jax.policy.grammar.TypedGrammar`, this does not track variables or types: a sample is
syntactically a program, but may use an undefined variable, repeat a target or a call, or call
a primitive with the wrong arity or types, which the parser or the type check then refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from codeit_jax.dsl import CONSTANTS, PRIMITIVE_NAMES
from codeit_jax.policy.tokenizer import VARIABLES, HFTokenizer

#: Characters the automaton reads; a token with any other character is never allowed.
ALPHABET = 128


class _Builder:
    """A deterministic character automaton under construction (state 0 is the dead state)."""

    def __init__(self) -> None:
        self.edges: list[dict[int, int]] = [{}]

    def state(self) -> int:
        self.edges.append({})
        return len(self.edges) - 1

    def edge(self, source: int, char: str, target: int) -> None:
        if self.edges[source].get(ord(char), target) != target:
            raise RuntimeError(f"ambiguous automaton edge on {char!r}")
        self.edges[source][ord(char)] = target

    def text(self, source: int, text: str, target: int) -> None:
        """A chain of states spelling ``text`` from ``source`` to ``target``."""
        for char in text[:-1]:
            following = self.edges[source].get(ord(char))
            if following is None:
                following = self.state()
                self.edge(source, char, following)
            source = following
        self.edge(source, text[-1], target)

    def words(self, source: int, words: Iterable[str], follow: dict[str, int]) -> None:
        """A trie of ``words`` from ``source``; after a whole word, a character of ``follow``
        leads to its state (word characters and follow characters never overlap)."""
        for word in words:
            node = source
            for char in word:
                following = self.edges[node].get(ord(char))
                if following is None:
                    following = self.state()
                    self.edge(node, char, following)
                node = following
            for char, target in follow.items():
                self.edge(node, char, target)

    def table(self) -> np.ndarray:
        """int32 [states, ALPHABET]: the next state per character (0: dead)."""
        table = np.zeros((len(self.edges), ALPHABET), np.int32)
        for source, edges in enumerate(self.edges):
            for char, target in edges.items():
                table[source, char] = target
        return table


def line_automaton() -> tuple[np.ndarray, int, int]:
    """(character table, start state, accepting state) of the untyped program grammar."""
    b = _Builder()
    start = b.state()
    arguments = ("I", *VARIABLES, *CONSTANTS, *PRIMITIVE_NAMES)
    branches = {}
    for kind in ("x", "O"):
        equals, callee, argument, comma, end = (b.state() for _ in range(5))
        b.text(equals, "= ", callee)
        b.words(callee, PRIMITIVE_NAMES, {"(": argument})
        b.words(argument, arguments, {",": comma, ")": end})
        b.text(comma, " ", argument)
        branches[kind] = (equals, end)
    b.words(start, VARIABLES, {" ": branches["x"][0]})
    b.words(start, ("O",), {" ": branches["O"][0]})
    b.edge(branches["x"][1], "\n", start)
    return b.table(), start, branches["O"][1]


class BPEGrammar:
    """The untyped program grammar over an `HFTokenizer`'s tokens (see the module docstring).

    ``vocab_size``: the model's vocabulary. Hashable by identity (a static argument of the
    jitted sampler); its arrays travel as `tables`.
    """

    def __init__(self, tokenizer: HFTokenizer, vocab_size: int | None = None) -> None:
        vocab_size = tokenizer.vocab_size if vocab_size is None else vocab_size
        self.vocab_size = vocab_size
        self.eos_id = tokenizer.eos_id
        self.pad_id = tokenizer.pad_id
        self.prefix_ids = tuple(int(i) for i in tokenizer.prefix_ids)
        chars, self.start, accept = line_automaton()
        n_states = chars.shape[0]
        special = set(tokenizer._tok.all_special_ids)
        ids, texts = [], []
        for token_id in range(tokenizer.vocab_size):
            if token_id in special:
                continue
            text = tokenizer._tok.decode([token_id], clean_up_tokenization_spaces=False)
            if text and text.isascii():
                ids.append(token_id)
                texts.append(text)
        # next state of every (state, token): the token's characters run from every state.
        moves = np.empty((n_states, len(ids)), np.int32)
        every = np.arange(n_states)
        for column, text in enumerate(texts):
            state = every
            for char in text:
                state = chars[state, ord(char)]
            moves[:, column] = state
        # Tokens to the end (EOS included) from each state, by relaxing over the token moves.
        unreachable = np.iinfo(np.int32).max // 2
        to_end = np.full(n_states, unreachable, np.int64)
        to_end[accept] = 1
        while True:
            better = np.minimum(to_end, 1 + to_end[moves].min(axis=1, initial=unreachable))
            better[0] = unreachable
            if (better == to_end).all():
                break
            to_end = better
        if to_end[self.start] >= unreachable:
            raise ValueError("this tokenizer cannot spell a program (no path to the end)")
        live = (to_end[moves] < unreachable).any(axis=0)
        self.token_ids = np.asarray(ids, np.int32)[live]
        moves = moves[:, live]
        column_of_token = np.full(vocab_size, -1, np.int32)
        column_of_token[self.token_ids] = np.arange(len(self.token_ids))
        self._start_cost = int(to_end[self.start])
        self._tables = {
            "moves": moves.astype(np.int16 if n_states <= np.iinfo(np.int16).max else np.int32),
            "to_end": np.minimum(to_end, unreachable).astype(np.int32),
            "accepting": np.arange(n_states) == accept,
            "column_of_token": column_of_token,
            "prefix": np.array(self.prefix_ids or (0,), np.int32),
        }
        self.token_mask = np.zeros(vocab_size, bool)
        self.token_mask[self.token_ids] = True
        self.token_mask[[self.eos_id, *self.prefix_ids]] = True

    def tables(self) -> dict[str, np.ndarray]:
        """The numpy arrays `allowed` and `advance` index."""
        return dict(self._tables)

    def min_new_tokens(self) -> int:
        """The smallest ``max_new_tokens`` with which every row is sure to reach EOS."""
        return len(self.prefix_ids) + self._start_cost

    def init(self, tables: dict, n: int, max_new_tokens: int) -> dict[str, jax.Array]:
        """Start state of ``n`` rows: the prefix position and the automaton state."""
        del tables, max_new_tokens
        return {
            "pos": jnp.zeros((n,), jnp.int32),
            "state": jnp.full((n,), self.start, jnp.int32),
        }

    def allowed(
        self, tables: dict, state: dict, remaining: jax.Array, candidates: jax.Array
    ) -> jax.Array:
        """bool [n, C] over the ``candidates``; ``remaining``: tokens left including this one."""
        following = tables["moves"][state["state"]]  # [n, live tokens]
        ok = (following > 0) & (1 + tables["to_end"][following] <= remaining)
        column = tables["column_of_token"][candidates]
        mask = jnp.where(column >= 0, ok[:, jnp.maximum(column, 0)], False)
        mask |= (candidates == self.eos_id)[None, :] & tables["accepting"][state["state"]][:, None]
        if self.prefix_ids:
            pos = state["pos"]
            wanted = tables["prefix"][jnp.minimum(pos, len(self.prefix_ids) - 1)]
            in_prefix = (pos < len(self.prefix_ids))[:, None]
            mask = jnp.where(in_prefix, candidates[None, :] == wanted[:, None], mask)
        return mask

    def advance(self, tables: dict, state: dict, token: jax.Array) -> dict[str, jax.Array]:
        """The state after each row's (allowed) ``token``; pad (a finished row) moves nothing."""
        in_prefix = (state["pos"] < len(self.prefix_ids)) & (token != self.pad_id)
        column = tables["column_of_token"][token]
        moved = tables["moves"][state["state"], jnp.maximum(column, 0)]
        keep = in_prefix | (column < 0)  # prefix tokens and EOS leave the automaton alone
        return {
            "pos": state["pos"] + in_prefix,
            "state": jnp.where(keep, state["state"], moved),
        }


__all__: Sequence[str] = ["BPEGrammar", "line_automaton"]
