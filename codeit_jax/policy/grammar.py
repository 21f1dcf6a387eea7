"""Grammar- and type-constrained decoding for the built-in DSL tokenizer.

`TypedGrammar` is a token automaton that the jitted sampler runs per row inside its decode
loop: ``allowed(tables, state, remaining, candidates)`` says which candidate tokens may come
next, ``advance(tables, state, token)`` moves on. Both are pure JAX functions of small numpy
tables computed once per (tokenizer, signature table) on the host; nothing calls back to the
host per token.

What every sample then is (the canonical token spelling of a normalised program):

* lines ``x<k> = <primitive>(<arg>, <arg>, ...)`` with targets ``x1``, ``x2``, ... in order and
  a last line ``O = ...``; EOS only right after that line's ``)``;
* each argument is ``I``, a variable defined above, a constant, or a primitive name (a
  ``Callable`` value); the callee is a primitive (never a variable);
* arity and argument types fit one of the callee's signatures in the table
  (`SignatureTable.signatures`, functional ones included), tracked as in `check_types`: a
  variable has the *set* of output types of the signatures its arguments left possible;
  ``O``'s call only uses signatures that return a Grid;
* no call text repeats an earlier line's (the parser refuses that).

No dead end: a token is allowed only if the automaton can still finish from the state it
leads to. For the types, a signature stays usable while each of its remaining argument
positions has a term of its type. For repeated calls, each row keeps the calls of its lines;
a signature may be continued from a call prefix ``P`` only while the number of distinct
completions (the product of the counts of terms of its remaining argument types, capped) is
larger than the number of earlier lines whose call starts with ``P``; by pigeonhole some next
argument then keeps that true, so the condition carries on to ``)``. For length, a line of at
most ``2 * max_arity + 5`` tokens is started only when it and a following ``O`` line of that
length still fit in the tokens left, so every row ends with EOS within ``max_new_tokens``
(`TypedGrammar.min_new_tokens` is the least budget). At table build time the table must offer
a Grid-returning call on ``I`` and constants with more distinct argument choices than a
program can have lines, which makes ``O = ...`` possible after any history.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from codeit_jax.dsl import CONSTANTS, PRIMITIVE_NAMES
from codeit_jax.policy.tokenizer import EOS, NEWLINE, SPACE, VARIABLES, DSLTokenizer
from codeit_jax.programs.types import (
    BASE_TYPES,
    CALLABLE,
    CONSTANT_TYPE,
    SignatureTable,
)

#: Type names in bit order: a type set is an int32 bitmask over them.
TYPE_NAMES: tuple[str, ...] = (*sorted(BASE_TYPES), CALLABLE)
#: Counts of terms of a type are capped here (above any line count), so that the product over
#: four argument positions stays within int32.
COUNT_CAP = 128
#: Most lines a program can have: the variables ``x1``..``x99`` and ``O``.
MAX_VARIABLES = len(VARIABLES)

# Phases of the line grammar (per row).
PREFIX, START, EQUALS, CALLEE, OPEN, ARG, SEP, END, DONE = range(9)

# Non-argument token units: 0 never, 1..99 target x<k>, then these, then one per callee.
_U_O, _U_EQ, _U_OPEN, _U_COMMA, _U_CLOSE, _U_NEWLINE, _U_EOS = range(100, 107)
_U_CALLEE = 107

State = dict[str, jax.Array]
Tables = dict[str, jax.Array]


def terms() -> tuple[str, ...]:
    """Argument terms in index order: ``I``, constants, primitive names, ``x1``..``x99`` (the
    variables last, so that a row's first variables are a prefix of the term range)."""
    return ("I", *CONSTANTS, *PRIMITIVE_NAMES, *VARIABLES)


class TypedGrammar:
    """The typed line automaton over a `DSLTokenizer` vocabulary (see the module docstring).

    ``vocab_size``: the model's vocabulary (at least the tokenizer's; extra ids are never
    allowed). Instances are hashable by identity, so one can be a static argument of a jitted
    function; its arrays travel separately as `tables`.
    """

    def __init__(
        self, tokenizer: DSLTokenizer, table: SignatureTable, vocab_size: int | None = None
    ) -> None:
        vocab_size = tokenizer.vocab_size if vocab_size is None else vocab_size
        if vocab_size < tokenizer.vocab_size:
            raise ValueError(f"vocab_size {vocab_size} < tokenizer's {tokenizer.vocab_size}")
        self.vocab_size = vocab_size
        self.prefix_ids = tuple(int(i) for i in tokenizer.prefix_ids)
        self.pad_id = tokenizer.pad_id
        term_names = terms()
        self.n_terms = len(term_names)
        self.n_fixed = self.n_terms - MAX_VARIABLES  # I, constants, primitives
        self.n_callees = len(PRIMITIVE_NAMES)

        # Signatures on a grid [callee, slot]: callee c's signatures are its first slots.
        per_callee = [
            [arrow for arrow in table.signatures(name) if arrow.inputs] for name in PRIMITIVE_NAMES
        ]
        if not any(per_callee):
            raise ValueError("the signature table is empty")
        self.max_arity = max(len(a.inputs) for arrows in per_callee for a in arrows)
        if COUNT_CAP**self.max_arity >= 2**31:
            raise ValueError(f"arity {self.max_arity} is too large for int32 choice counts")
        self.max_signatures = max(len(arrows) for arrows in per_callee)
        if self.max_signatures > 31:
            raise ValueError("a primitive has more than 31 signatures (bitmask overflow)")
        grid_shape = (self.n_callees, self.max_signatures)
        sig_inputs = np.full((*grid_shape, self.max_arity), -1, np.int32)
        sig_arity = np.zeros(grid_shape, np.int32)  # 0: an empty slot
        sig_output = np.zeros(grid_shape, np.int32)
        for c, arrows in enumerate(per_callee):
            for slot, arrow in enumerate(arrows):
                sig_inputs[c, slot, : len(arrow.inputs)] = [TYPE_NAMES.index(t) for t in
                                                            arrow.inputs]  # fmt: skip
                sig_arity[c, slot] = len(arrow.inputs)
                sig_output[c, slot] = TYPE_NAMES.index(arrow.output)
        sig_real = sig_arity > 0
        sig_grid = sig_real & (sig_output == TYPE_NAMES.index("Grid"))
        sig_types = np.where(sig_inputs >= 0, 1 << np.maximum(sig_inputs, 0), 0)
        sig_types = np.bitwise_or.reduce(sig_types, axis=-1).astype(np.int32)  # input type set
        slot_bits = 1 << np.arange(self.max_signatures)
        callee_any = (sig_real * slot_bits).sum(1).astype(np.int32)
        callee_grid = (sig_grid * slot_bits).sum(1).astype(np.int32)

        term_index = {name: i for i, name in enumerate(term_names)}
        fixed_type = np.zeros(self.n_fixed, np.int32)  # each fixed term has a single type
        fixed_type[term_index["I"]] = TYPE_NAMES.index("Grid")
        for name in CONSTANTS:
            fixed_type[term_index[name]] = TYPE_NAMES.index(CONSTANT_TYPE[name])
        for name in PRIMITIVE_NAMES:
            fixed_type[term_index[name]] = TYPE_NAMES.index(CALLABLE)
        counts = np.bincount(fixed_type, minlength=len(TYPE_NAMES)).astype(np.int32)
        self._check_output_always_possible(sig_inputs[sig_grid], counts)

        unit_of_token = np.zeros(vocab_size, np.int32)
        argcol_of_token = np.zeros(vocab_size, np.int32)
        for k, name in enumerate(VARIABLES, start=1):
            unit_of_token[tokenizer.token_id(name)] = k
        fixed_units = {"O": _U_O, SPACE + "=": _U_EQ, "(": _U_OPEN, ",": _U_COMMA,
                       ")": _U_CLOSE, NEWLINE: _U_NEWLINE, EOS: _U_EOS}  # fmt: skip
        for token, unit in fixed_units.items():
            unit_of_token[tokenizer.token_id(token)] = unit
        for c, name in enumerate(PRIMITIVE_NAMES):
            unit_of_token[tokenizer.token_id(SPACE + name)] = _U_CALLEE + c
        for a, name in enumerate(term_names):
            argcol_of_token[tokenizer.token_id(name)] = 1 + a
            argcol_of_token[tokenizer.token_id(SPACE + name)] = 1 + self.n_terms + a

        self.line_tokens = 2 * self.max_arity + 5
        self._tables = {
            "sig_inputs": sig_inputs, "sig_arity": sig_arity, "sig_output": sig_output,
            "sig_real": sig_real, "sig_grid": sig_grid, "sig_types": sig_types,
            "callee_start": np.stack([callee_any, callee_grid], axis=1),
            "token_meaning": np.stack([unit_of_token, argcol_of_token], axis=1),
            "fixed_type": fixed_type, "counts": counts,
            "prefix": np.array(self.prefix_ids or (0,), np.int32),
        }  # fmt: skip
        self.token_mask = (unit_of_token > 0) | (argcol_of_token > 0)
        self.token_mask[list(self.prefix_ids)] = True

    @staticmethod
    def _check_output_always_possible(grid_inputs: np.ndarray, counts: np.ndarray) -> None:
        """Some Grid call on ``I``, constants and primitives alone has more argument choices
        than a program has lines, so ``O = ...`` always has a call no line used before."""
        per_position = np.where(
            grid_inputs >= 0, np.minimum(counts[np.maximum(grid_inputs, 0)], COUNT_CAP), 1
        )
        if not (per_position.prod(axis=1) > MAX_VARIABLES).any():
            raise ValueError(
                "the signature table has no Grid-returning call with enough argument choices on "
                "I and constants alone; constrained decoding could dead-end on the O line"
            )

    # ------------------------------------------------------------------ host side

    def tables(self) -> dict[str, np.ndarray]:
        """The numpy arrays `allowed` and `advance` index (pass them, as arrays, to jit)."""
        return dict(self._tables)

    def min_new_tokens(self) -> int:
        """The smallest ``max_new_tokens`` with which every row is sure to reach EOS."""
        return len(self.prefix_ids) + self.line_tokens

    def max_lines(self, max_new_tokens: int) -> int:
        """Variables a row can define within ``max_new_tokens`` (a line takes at least 7
        tokens, and the ``O`` line must fit after them), capped at 99."""
        return max(1, min(MAX_VARIABLES, (max_new_tokens - len(self.prefix_ids)) // 7))

    # ------------------------------------------------------------------ JAX side

    def init(self, tables: Tables, n: int, max_new_tokens: int) -> State:
        """The start state of ``n`` rows."""
        lines = self.max_lines(max_new_tokens)
        width = self.max_arity + 2  # callee, arguments, and a column that is always -1
        zeros = jnp.zeros((n,), jnp.int32)
        return {
            "phase": jnp.full((n,), PREFIX if self.prefix_ids else START, jnp.int32),
            "pos": zeros,
            "is_o": jnp.zeros((n,), bool),
            "n_vars": zeros,
            "var_types": jnp.zeros((n, lines), jnp.int32),  # type bitmask per variable
            "counts": jnp.broadcast_to(jnp.asarray(tables["counts"]), (n, len(TYPE_NAMES))),
            "callee": zeros,
            "sigs": zeros,  # bitmask over the callee's signature slots still possible
            "argi": zeros,
            "call": jnp.full((n, width), -1, jnp.int32),
            "lines": jnp.full((n, lines, width), -1, jnp.int32),
            "uses": jnp.zeros((n, self.n_callees + 1), jnp.int32),  # lines per callee
            "prefix": jnp.zeros((n, lines), bool),  # lines whose call starts like this one
        }

    def _call_view(self, tables: Tables, state: State) -> dict[str, jax.Array]:
        """The current callee's signature slots [n, S]: which are still possible, their arity,
        the type at the current argument position (-1 past the end), and the distinct ways to
        fill their positions after it (see `COUNT_CAP`)."""
        callee = state["callee"]
        slots = jnp.arange(self.max_signatures)
        valid = ((state["sigs"][:, None] >> slots) & 1) > 0
        argi = state["argi"][:, None]
        inputs = tables["sig_inputs"][callee]  # [n, S, A]
        positions = jnp.arange(self.max_arity)
        in_type = jnp.max(jnp.where(positions == argi[:, :, None], inputs, -1), axis=2)
        capped = jnp.minimum(state["counts"], COUNT_CAP)
        per_position = jnp.take_along_axis(capped[:, None, :], jnp.maximum(inputs, 0), axis=2)
        later = (inputs >= 0) & (positions > argi[:, :, None])
        rest = jnp.prod(jnp.where(later, per_position, 1), axis=2)
        return {"valid": valid, "in_type": in_type, "arity": tables["sig_arity"][callee],
                "output": tables["sig_output"][callee], "rest": rest}  # fmt: skip

    def allowed(
        self, tables: Tables, state: State, remaining: jax.Array, candidates: jax.Array
    ) -> jax.Array:
        """bool [n, C]: which of the ``candidates`` (token ids) may come next; ``remaining``:
        tokens left to the row including this one."""
        n, n_lines = state["var_types"].shape
        rows = jnp.arange(n)[:, None]
        phase, argi, lines = state["phase"], state["argi"], state["lines"]
        at = phase[:, None]

        # Callees: a signature (one returning a Grid on the O line) is usable while its argument
        # choices (the product of the term counts of its input types) outnumber the lines that
        # called the same primitive. For a primitive no line called, that is: every input type
        # has a term; the primitives the lines called are then corrected with their exact counts.
        counts = state["counts"]
        types = jnp.arange(len(TYPE_NAMES))
        available = jnp.sum(jnp.where(counts > 0, 1 << types, 0), axis=1)
        is_o = state["is_o"]
        kinds = jnp.where(is_o[:, None, None], tables["sig_grid"], tables["sig_real"])
        fillable = (tables["sig_types"] & ~available[:, None, None]) == 0  # [n, callee, slot]
        callee_ok = jnp.any(fillable & kinds, axis=2)
        used = lines[:, :, 0]  # [n, lines]: the callee of each line, -1 past the last
        callee = jnp.maximum(used, 0)
        inputs = tables["sig_inputs"][callee]  # [n, lines, slot, A]
        capped = jnp.minimum(counts, COUNT_CAP)[:, None, None, :]
        per_position = jnp.take_along_axis(capped, jnp.maximum(inputs, 0).reshape(n, 1, 1, -1),
                                           axis=3).reshape(inputs.shape)  # fmt: skip
        choices = jnp.prod(jnp.where(inputs >= 0, per_position, 1), axis=3)
        enough = choices > state["uses"][rows, callee][:, :, None]  # [n, lines, slot]
        line_kinds = jnp.where(is_o[:, None, None], tables["sig_grid"][callee],
                               tables["sig_real"][callee])  # fmt: skip
        short = ~jnp.any(enough & line_kinds, axis=2)  # [n, lines]
        line_callee = used[:, :, None] == jnp.arange(self.n_callees)  # [n, lines, callee]
        callee_ok &= ~jnp.any(line_callee & short[:, :, None], axis=1)
        # Some usable callee always exists (checked on the table when it is built), so a line
        # may start whenever it fits in the tokens left.
        remaining = jnp.broadcast_to(jnp.asarray(remaining), (n,))
        start_x = (remaining >= 2 * self.line_tokens) & (state["n_vars"] < n_lines)
        start_o = remaining >= self.line_tokens

        # Arguments: term a may come if a signature taking its type here can still close the
        # call without repeating a line, or go on with more choices than lines share the call
        # so far. Worked out per type, then spread over the terms.
        view = self._call_view(tables, state)
        valid, arity, rest = view["valid"], view["arity"], view["rest"]
        takes = (view["in_type"][:, :, None] == jnp.arange(len(TYPE_NAMES))) & valid[:, :, None]
        closes = (arity == argi[:, None] + 1)[:, :, None]
        close_type = jnp.any(takes & closes, axis=1)  # [n, types]
        goes_on = (arity > argi[:, None] + 1)[:, :, None]
        best_type = jnp.max(jnp.where(takes & goes_on, rest[:, :, None], 0), axis=1)
        var_bits = ((state["var_types"][:, :, None] >> jnp.arange(len(TYPE_NAMES))) & 1) > 0
        close_term = jnp.concatenate(
            [close_type[:, tables["fixed_type"]], jnp.any(var_bits & close_type[:, None], 2)], 1
        )
        best_term = jnp.concatenate(
            [
                best_type[:, tables["fixed_type"]],
                jnp.max(jnp.where(var_bits, best_type[:, None], 0), axis=2),
            ],
            axis=1,
        )  # [n, n_fixed + n_lines]
        width = self.max_arity + 1
        column = jnp.take_along_axis(lines, jnp.minimum(argi + 1, width)[:, None, None], 2)[..., 0]
        after = jnp.take_along_axis(lines, jnp.minimum(argi + 2, width)[:, None, None], 2)[..., 0]
        prefix = state["prefix"]
        n_active = self.n_fixed + n_lines
        hits = (column[:, :, None] == jnp.arange(n_active)) & prefix[:, :, None]  # [n, lines, T]
        same = jnp.sum(hits, axis=1)
        repeat = jnp.sum(hits & (after < 0)[:, :, None], axis=1)
        arg_ok = ((close_term & (repeat == 0)) | (best_term > same)) & (at == ARG)

        # After an argument: ',' if a longer signature can still finish, ')' if not a repeat.
        matching = jnp.sum(prefix, axis=1)
        repeats = jnp.sum(prefix & (after < 0), axis=1)
        comma_ok = jnp.any(valid & (arity > argi[:, None] + 1) & (rest > matching[:, None]), 1)
        close_ok = jnp.any(valid & (arity == argi[:, None] + 1), axis=1) & (repeats == 0)

        targets = (jnp.arange(1, MAX_VARIABLES + 1) == state["n_vars"][:, None] + 1) & (
            start_x[:, None] & (at == START)
        )
        units = jnp.concatenate(
            [
                jnp.zeros((n, 1), bool),
                targets,
                start_o[:, None] & (at == START),
                at == EQUALS,
                at == OPEN,
                comma_ok[:, None] & (at == SEP),
                close_ok[:, None] & (at == SEP),
                (at == END) & ~state["is_o"][:, None],
                (at == END) & state["is_o"][:, None],
                callee_ok & (at == CALLEE),
            ],
            axis=1,
        )
        first = (argi == 0)[:, None]
        unused = jnp.zeros((n, MAX_VARIABLES - n_lines), bool)
        argcols = jnp.concatenate(
            [jnp.zeros((n, 1), bool), arg_ok & first, unused, arg_ok & ~first, unused], axis=1
        )
        # Materialised once: fused into the per-token gathers below, XLA would recompute them.
        units, argcols = jax.lax.optimization_barrier((units, argcols))
        meaning = tables["token_meaning"][candidates]  # [C, 2]: (unit, argument column)
        mask = units[:, meaning[:, 0]] | argcols[:, meaning[:, 1]]
        if self.prefix_ids:
            wanted = tables["prefix"][jnp.minimum(state["pos"], len(self.prefix_ids) - 1)]
            mask = jnp.where(at == PREFIX, candidates[None, :] == wanted[:, None], mask)
        return mask

    def advance(self, tables: Tables, state: State, token: jax.Array) -> State:
        """The state after each row's ``token`` (one that `allowed` allowed); a row whose
        token is pad (a finished row) stays as it is."""
        n, n_lines = state["var_types"].shape
        rows = jnp.arange(n)
        # A pad token moves nothing: such a row is treated as DONE, which no branch handles.
        phase = jnp.where(token == self.pad_id, DONE, state["phase"])
        argi = state["argi"]
        meaning = tables["token_meaning"][token]  # [n, 2]: (unit, argument column)
        unit, col = meaning[:, 0], meaning[:, 1]
        term = jnp.where(col > self.n_terms, col - 1 - self.n_terms, col - 1)
        slot_bits = 1 << jnp.arange(self.max_signatures)
        width = self.max_arity + 1
        new = dict(state)

        pos = state["pos"] + (phase == PREFIX)
        new["pos"] = pos
        is_o = jnp.where(phase == START, unit == _U_O, state["is_o"])
        new["is_o"] = is_o

        # CALLEE: its signatures (Grid-returning ones on the O line), the lines it matches.
        at_callee = phase == CALLEE
        callee = jnp.clip(unit - _U_CALLEE, 0, self.n_callees - 1)
        new["callee"] = jnp.where(at_callee, callee, state["callee"])
        start_sets = tables["callee_start"][callee]  # [n, 2]: all signatures, Grid ones
        sigs_start = jnp.where(is_o, start_sets[:, 1], start_sets[:, 0])
        prefix = jnp.where(
            at_callee[:, None], state["lines"][:, :, 0] == callee[:, None], state["prefix"]
        )
        # ARG: keep the signatures taking the term's type here; record the term.
        at_arg = phase == ARG
        view = self._call_view(tables, state)
        var_index = jnp.clip(term - self.n_fixed, 0, n_lines - 1)
        term_types = jnp.where(
            term >= self.n_fixed,
            state["var_types"][rows, var_index],
            1 << tables["fixed_type"][jnp.clip(term, 0, self.n_fixed - 1)],
        )
        takes = ((term_types[:, None] >> jnp.maximum(view["in_type"], 0)) & 1) > 0
        takes &= view["valid"] & (view["in_type"] >= 0)
        sigs_arg = jnp.sum(jnp.where(takes, slot_bits, 0), axis=1)
        column = jnp.take_along_axis(
            state["lines"], jnp.minimum(argi + 1, width)[:, None, None], axis=2
        )[:, :, 0]
        new["prefix"] = jnp.where(at_arg[:, None], prefix & (column == term[:, None]), prefix)
        call_column = jnp.arange(width + 1)
        call = jnp.where(at_callee[:, None], jnp.where(call_column == 0, callee[:, None], -1),
                         state["call"])  # fmt: skip
        new["call"] = jnp.where(
            at_arg[:, None] & (call_column == argi[:, None] + 1), term[:, None], call
        )
        # SEP: ',' keeps the longer signatures, ')' those of this arity and ends the call.
        at_sep = phase == SEP
        comma = at_sep & (unit == _U_COMMA)
        close = at_sep & (unit == _U_CLOSE)
        longer = jnp.sum(jnp.where(view["arity"] > argi[:, None] + 1, slot_bits, 0), axis=1)
        exact = jnp.sum(jnp.where(view["arity"] == argi[:, None] + 1, slot_bits, 0), axis=1)
        sigs = jnp.where(at_callee, sigs_start, state["sigs"])
        sigs = jnp.where(at_arg, sigs_arg, sigs)
        sigs = jnp.where(comma, sigs & longer, sigs)
        sigs = jnp.where(close, sigs & exact, sigs)
        new["sigs"] = sigs
        new["argi"] = jnp.where(phase == OPEN, 0, argi + comma)
        # ')' of an x line defines a variable: its type set, the type counts, its call.
        out_bits = jnp.where(
            ((sigs[:, None] >> jnp.arange(self.max_signatures)) & 1) > 0,
            1 << view["output"],
            0,
        )
        out = jax.lax.reduce(out_bits, jnp.int32(0), jax.lax.bitwise_or, (1,))
        define = close & ~is_o
        here = define[:, None] & (jnp.arange(n_lines) == state["n_vars"][:, None])  # [n, lines]
        new["var_types"] = jnp.where(here, out[:, None], state["var_types"])
        has_type = ((out[:, None] >> jnp.arange(len(TYPE_NAMES))) & 1) * define[:, None]
        new["counts"] = state["counts"] + has_type
        new["lines"] = jnp.where(here[:, :, None], state["call"][:, None, :], state["lines"])
        new["uses"] = state["uses"] + (
            define[:, None] & (jnp.arange(self.n_callees + 1) == state["callee"][:, None])
        )
        new["n_vars"] = state["n_vars"] + define
        # START..ARG lead to the next phase in order; the others depend on the token.
        phase_next = jnp.where(
            phase == SEP,
            jnp.where(comma, ARG, END),
            jnp.where(
                phase == END,
                jnp.where(unit == _U_NEWLINE, START, DONE),
                jnp.where(
                    phase == PREFIX,
                    jnp.where(pos >= len(self.prefix_ids), START, PREFIX),
                    jnp.where(phase == DONE, state["phase"], phase + 1),
                ),
            ),
        )
        new["phase"] = phase_next.astype(jnp.int32)
        return new


__all__: Sequence[str] = ["TYPE_NAMES", "TypedGrammar", "terms"]
