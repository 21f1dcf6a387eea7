"""Tokenizers: a built-in DSL tokenizer (no download) and an adapter for a local HF tokenizer.

Both give the same small interface (`Tokenizer`): ``encode(text) -> list[int]`` without special
tokens, ``decode(ids) -> str`` (stops at the first eos, drops pads), ``vocab_size``, ``pad_id``,
``eos_id``, ``prefix_ids`` (the special tokens the tokenizer puts before a text, e.g. CodeT5's
``<s>``; CodeIt's inputs and labels start with them) and ``program_token_mask()``, the ids a
program may contain (the sampler's mask).

The built-in vocabulary is fixed: ``<pad>``=0, ``</s>``=1, ``<unk>``=2, then every *word* in a
fixed order — the primitives (registry order), the constants, ``I``, ``O``, ``x1``..``x99``,
the integers 0..30, punctuation (``= ( ) , |``), the grid-text words ``x`` and ``bg`` — each
word twice, bare and with one leading space (`` x1``), and finally a newline and a lone space.
Merging the space into the next word, as BPE tokenizers do, makes ``x1 = f(a, b)`` eight
tokens (``x1`` `` =`` `` f`` ``(`` ``a`` ``,`` `` b`` ``)``) instead of eleven.

Text is cut into pieces by one regular expression (an identifier, a number, or one other
character, each with an optional leading space; an identifier never starts right after a digit,
so the grid size ``3x4`` is ``3``, ``x``, ``4``). A piece not in the vocabulary is split: a
leading space becomes the lone-space token, a number becomes its digits, anything else becomes
``<unk>`` (the only lossy case; ``encode(..., strict=True)`` raises instead). Hence
``decode(encode(t)) == t`` for every text made of vocabulary words, spaces and newlines — every
normalised program and every encoded task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Protocol, runtime_checkable

import numpy as np

from codeit_jax.dsl.constants import CONSTANTS
from codeit_jax.dsl.signatures import PRIMITIVE_NAMES

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)
#: Program variables ``x1``..``x99``.
VARIABLES = tuple(f"x{k}" for k in range(1, 100))
#: Integers the grid text needs: sizes 1..30, coordinates 0..29, colours 0..9.
INTEGERS = tuple(str(n) for n in range(31))
PROGRAM_PUNCTUATION = ("=", "(", ")", ",")
GRID_WORDS = ("|", "x", "bg")
NEWLINE, SPACE = "\n", " "

_PIECE = re.compile(r" ?(?:(?<![0-9])[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[A-Za-z_]|[^ ])| ")


@runtime_checkable
class Tokenizer(Protocol):
    """What the encoder, sampler and trainer need from a tokenizer."""

    vocab_size: int
    pad_id: int
    eos_id: int
    prefix_ids: tuple[int, ...]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def program_token_mask(self) -> np.ndarray: ...

    def codeit_token_mask(self) -> np.ndarray: ...


#: The terms whose tokens CodeIt's sampler lets a program continue with (``get_allowed_tokens``
#: of its inference code): after any other token it forces the end of the sample.
def codeit_terms() -> tuple[str, ...]:
    """CodeIt's allowed terms: every primitive and constant, the punctuation, ``I``, ``O``, a
    newline, a space, ``x0``..``x99`` and the numbers 0..99; each also after a space (but the
    newline)."""
    terms = [
        *PRIMITIVE_NAMES, *CONSTANTS, "(", ")", ",", "I", "O", "=", NEWLINE, SPACE,
        *(f"x{k}" for k in range(100)), *(str(k) for k in range(100)),
    ]  # fmt: skip
    return (*terms, *(SPACE + term for term in terms if term != NEWLINE))


def program_words() -> tuple[str, ...]:
    """Every word a normalised program may contain (without spaces and newlines)."""
    return (*PRIMITIVE_NAMES, *CONSTANTS, "I", "O", *VARIABLES, *PROGRAM_PUNCTUATION)


class DSLTokenizer:
    """Fixed-vocabulary tokenizer for DSL programs and grid text (see the module docstring)."""

    def __init__(self) -> None:
        words = [*program_words(), *INTEGERS, *GRID_WORDS]
        if len(set(words)) != len(words):
            raise RuntimeError("DSL vocabulary has a repeated word; check the registry names")
        vocab = list(SPECIAL_TOKENS)
        for word in words:
            vocab += [word, SPACE + word]
        vocab += [NEWLINE, SPACE]
        self._vocab: tuple[str, ...] = tuple(vocab)
        self._ids: dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self.vocab_size: int = len(vocab)
        self.pad_id: int = self._ids[PAD]
        self.eos_id: int = self._ids[EOS]
        self.unk_id: int = self._ids[UNK]
        self.prefix_ids: tuple[int, ...] = ()
        self._space_id = self._ids[SPACE]

    @property
    def vocab(self) -> tuple[str, ...]:
        """Token strings by id (saved with a run so that ids stay meaningful)."""
        return self._vocab

    def token_id(self, token: str) -> int:
        """Id of one vocabulary token; KeyError for a string that is not a token."""
        return self._ids[token]

    def encode(self, text: str, strict: bool = False) -> list[int]:
        """Text -> ids, without eos. ``strict``: raise ValueError on a piece outside the
        vocabulary instead of emitting ``<unk>``."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for piece in _PIECE.findall(text):
            token_id = self._ids.get(piece)
            if token_id is not None:
                ids.append(token_id)
                continue
            if piece.startswith(SPACE):
                ids.append(self._space_id)
                piece = piece[1:]
                token_id = self._ids.get(piece)
                if token_id is not None:
                    ids.append(token_id)
                    continue
            if piece.isdigit() and piece.isascii():
                ids += [self._ids[digit] for digit in piece]
            elif strict:
                raise ValueError(f"{piece!r} is not in the DSL tokenizer's vocabulary")
            else:
                ids.append(self.unk_id)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text: stops at the first eos, skips pads; ``<unk>`` shows as itself."""
        parts = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            if token_id == self.pad_id:
                continue
            if not 0 <= token_id < self.vocab_size:
                raise ValueError(
                    f"token id {token_id} outside the vocabulary (0..{self.vocab_size - 1})"
                )
            parts.append(self._vocab[token_id])
        return "".join(parts)

    def program_token_mask(self) -> np.ndarray:
        """Bool [vocab_size]: the program words (bare and spaced), newline, space and eos."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        for word in program_words():
            mask[self._ids[word]] = True
            mask[self._ids[SPACE + word]] = True
        for token in (NEWLINE, SPACE, EOS):
            mask[self._ids[token]] = True
        return mask

    def codeit_token_mask(self) -> np.ndarray:
        """Bool [vocab_size]: the tokens of `codeit_terms` that are words of this vocabulary
        (``x0`` and numbers above 30 are not), plus pad and eos, as CodeIt's set holds them."""
        mask = self.program_token_mask()
        for term in codeit_terms():
            token_id = self._ids.get(term)
            if token_id is not None:
                mask[token_id] = True
        mask[self.pad_id] = True
        return mask


class HFTokenizer:
    """The `Tokenizer` interface around a Hugging Face tokenizer in a local directory.

    The tokenizer must reproduce program text exactly (byte-level BPE such as CodeT5's does; a
    SentencePiece tokenizer that drops newlines does not), which is checked on loading.

    ``encode`` adds no special tokens (callers append eos, as with `DSLTokenizer`), ``decode``
    stops at the first eos and drops special tokens. The program mask is an approximation: the
    ids that occur when tokenizing every program word alone, after a space, after ``(`` and
    followed by ``,`` / ``)``, plus newline, eos and any ``extra_program_texts`` (e.g. the
    training programs). A BPE merge that only arises in some other context would be masked out;
    pass representative programs to cover such cases.
    """

    def __init__(self, path: str | PathLike[str], extra_program_texts: Sequence[str] = ()) -> None:
        from transformers import AutoTokenizer  # heavy import, only when an HF tokenizer is used

        try:
            self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load a Hugging Face tokenizer from {path}: {e}") from e
        if self._tok.eos_token_id is None:
            raise ValueError(f"tokenizer at {path} defines no eos token")
        self.eos_id: int = int(self._tok.eos_token_id)
        pad = self._tok.pad_token_id
        self.pad_id: int = int(pad) if pad is not None else self.eos_id
        self.vocab_size: int = len(self._tok)
        self.prefix_ids: tuple[int, ...] = self._special_prefix()
        self._extra_program_texts = tuple(extra_program_texts)
        probe = "x1 = vmirror(I)\nO = hconcat(I, x1)"
        if self.decode(self.encode(probe)) != probe:
            raise ValueError(
                f"tokenizer at {path} does not reproduce program text exactly (newlines or spaces "
                f"are lost: {self.decode(self.encode(probe))!r}); programs cannot be decoded"
            )

    def _special_prefix(self) -> tuple[int, ...]:
        """The ids ``encode(text, add_special_tokens=True)`` puts before the text (CodeT5: bos)."""
        sentinel = self.encode("I")
        framed = list(self._tok.encode("I", add_special_tokens=True))
        for start in range(len(framed) - len(sentinel) + 1):
            if framed[start : start + len(sentinel)] == sentinel:
                return tuple(int(i) for i in framed[:start])
        return ()

    def encode(self, text: str) -> list[int]:
        """Text -> ids without special tokens."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, up to the first eos, special tokens dropped, spaces left as they are."""
        kept = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            kept.append(token_id)
        return self._tok.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def program_token_mask(self) -> np.ndarray:
        """Bool [vocab_size] of ids seen when tokenizing program vocabulary (see the class)."""
        texts = [NEWLINE, *self._extra_program_texts]
        for word in program_words():
            texts += [word, SPACE + word, "(" + word, word + ",", word + ")", " = " + word + "("]
        mask = np.zeros(self.vocab_size, dtype=bool)
        for text in texts:
            mask[self.encode(text)] = True
        mask[self.eos_id] = True
        mask[list(self.prefix_ids)] = True  # a CodeIt label starts with them
        return mask

    def codeit_token_mask(self) -> np.ndarray:
        """Bool [vocab_size]: the ids of `codeit_terms` each tokenized alone with special tokens,
        and pad (CodeIt pads that batch), as CodeIt's ``get_allowed_tokens`` collects them."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        for term in codeit_terms():
            mask[self._tok.encode(term, add_special_tokens=True)] = True
        mask[[self.pad_id, self.eos_id, *self.prefix_ids]] = True
        return mask


__all__ = ["DSLTokenizer", "HFTokenizer", "Tokenizer", "codeit_terms", "program_words"]
