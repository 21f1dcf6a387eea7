"""SHA-256 digests of a run's parameters and buffer: equal digests, equal contents.

A run's summary carries them, so two runs (or a run and its resumption after kill -9) can be
compared bit for bit without keeping their checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import numpy as np

from codeit_jax.replay.buffer import ReplayBuffer


def params_digest(params: Any) -> str:
    """SHA-256 of every parameter's bytes in tree order: equal digests, bitwise equal params."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        value = np.asarray(jax.device_get(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(value.dtype.str.encode() + str(value.shape).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def buffer_digest(buffer: ReplayBuffer) -> str:
    """SHA-256 of the buffer's serialised state: equal digests, equal contents."""
    state = buffer.state_dict()
    digest = hashlib.sha256(json.dumps(state["meta"], sort_keys=True).encode())
    for partition in sorted(state["arrays"]):
        for name, array in sorted(state["arrays"][partition].items()):
            digest.update(f"{partition}/{name}/{array.dtype.str}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
