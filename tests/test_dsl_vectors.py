"""Every recorded reference call in shared/dsl/vectors.jsonl agrees with our primitives."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from codeit_jax.dsl import CONSTANTS, PRIMITIVE_NAMES, PRIMITIVES, SIGNATURES


def _decode(v):
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_decode(x) for x in v["tuple"])
        if "frozenset" in v:
            return frozenset(_decode(x) for x in v["frozenset"])
        if "fn" in v:
            return PRIMITIVES[v["fn"]]
    return v


def _equal(a, b) -> bool:
    """Equal with types matching at every level (bool vs int, tuple vs frozenset).

    Tuples compare in order, frozensets as sets. We keep CPython's frozensets and the
    reference's build order, so ``order_sensitive`` lines are held to the same standard:
    their recorded values are what CPython gives for the decoded insertion order.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, frozenset):
        if a != b:
            return False
        rest = list(b)
        for x in a:
            match = next((i for i, y in enumerate(rest) if x == y), None)
            if match is None or not _equal(x, rest[match]):
                return False
            rest.pop(match)
        return True
    return a == b


def _load(path):
    by_primitive = defaultdict(list)
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            by_primitive[rec["primitive"]].append(rec)
    return by_primitive


@pytest.fixture(scope="module")
def vectors(dsl_vectors_path):
    return _load(dsl_vectors_path)


def test_registry_complete():
    assert len(PRIMITIVE_NAMES) == 160
    missing = [n for n in PRIMITIVE_NAMES if n not in PRIMITIVES]
    assert not missing, f"primitives not implemented: {missing}"
    assert list(PRIMITIVES) == list(PRIMITIVE_NAMES)
    assert set(SIGNATURES) == set(PRIMITIVES)
    assert len(CONSTANTS) == 28


def _call(rec):
    fn = PRIMITIVES[rec["primitive"]]
    out = fn(*map(_decode, rec["args"]))
    if "apply_to" in rec:
        out = out(*map(_decode, rec["apply_to"]))
    return out


@pytest.mark.parametrize("name", PRIMITIVE_NAMES)
def test_primitive_matches_vectors(name, vectors):
    if name not in PRIMITIVES:
        pytest.fail(f"{name} not implemented")
    failures = []
    for i, rec in enumerate(vectors[name]):
        try:
            out = _call(rec)
        except Exception as e:  # noqa: BLE001 - the reference's exception class is compared
            if "raises" not in rec:
                failures.append((i, f"raised {type(e).__name__}: {e}", rec))
            elif type(e).__name__ != rec["raises"]:
                failures.append((i, f"raised {type(e).__name__}, want {rec['raises']}", rec))
            continue
        if "raises" in rec:
            failures.append((i, f"returned {out!r}, want {rec['raises']}", rec))
            continue
        want = _decode(rec["result"])
        if not _equal(out, want):
            failures.append((i, f"returned {out!r}", rec))
    assert not failures, (
        f"{len(failures)} of {len(vectors[name])} vectors differ; first: "
        + repr(failures[0])[:2000]
    )
