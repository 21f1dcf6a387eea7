"""Content checksums and finiteness of pytrees, for checkpoints that must restore as saved.

A checksum covers every leaf's path, dtype, shape and bytes, so two trees have the same one
exactly when they hold the same values in the same structure; it is computed from the values
themselves, not from files, so it does not depend on how Orbax lays them out on disk. Arrays
are fetched to the host leaf by leaf: the train state is replicated (`codeit_jax.policy.trainer`),
so
every host hashes the same full arrays.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ALGORITHM = "sha256"


def _host(leaf: Any) -> np.ndarray:
    return np.asarray(jax.device_get(leaf))


def tree_checksum(tree: Any) -> str:
    """SHA-256 over every leaf of ``tree`` in tree order (path, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = _host(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def json_checksum(document: Any) -> str:
    """SHA-256 of a JSON document's canonical text (keys sorted)."""
    text = json.dumps(document, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def leaf_signature(tree: Any) -> list[str]:
    """``"<path> <dtype> <shape>"`` of every leaf: what a restore target must match (leaves may
    be arrays or `jax.ShapeDtypeStruct`s)."""
    return [
        f"{jax.tree_util.keystr(path)} {np.dtype(leaf.dtype).str} {tuple(leaf.shape)}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


@jax.jit
def _finite(leaves: list[jax.Array]) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(tree: Any) -> bool:
    """Whether every floating-point value in ``tree`` is finite (no NaN, no infinity)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(_dtype(x), jnp.inexact)]
    return not leaves or bool(_finite(leaves))


def _dtype(leaf: Any) -> np.dtype:
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
