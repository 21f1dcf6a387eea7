"""The device mesh shared by the trainer and the sampler.

Both stages are data parallel only: one mesh axis, ``data``, over every device (of every host),
parameters replicated, batches split along their leading axis. Keeping the mesh and the two
shardings in one place means the trainer and the sampler agree on what "the batch axis" is.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: Name of the single mesh axis; batches are split along it.
DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: all global devices)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def batch_spec() -> PartitionSpec:
    """Leading (batch) axis split over ``data``; other axes whole."""
    return PartitionSpec(DATA_AXIS)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding for arrays whose leading axis is the batch (size a multiple of the mesh)."""
    return NamedSharding(mesh, batch_spec())


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding for arrays every device holds whole: parameters, PRNG keys, masks."""
    return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
    """Number of shards along ``data``: batch sizes must be a multiple of it."""
    return int(mesh.shape[DATA_AXIS])


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """The smallest multiple of the data-parallel size that holds ``batch_size`` rows (>= 1)."""
    n = data_parallel_size(mesh)
    return max(1, -(-batch_size // n)) * n


def global_array(value, sharding: NamedSharding) -> jax.Array:
    """``value`` (the same on every process) as an array laid out by ``sharding``.

    On one process this is `jax.device_put`. On several it cannot be: a host value cannot be
    put on another host's devices, so each process builds its own shards from its copy
    (PRNG keys through their raw key data).
    """
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = global_array(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def host_array(array: jax.Array) -> np.ndarray:
    """The whole of a (possibly multi-host) array on this host: on several processes each
    holds only its own shards, and every process must call this together."""
    if array.is_fully_addressable or array.is_fully_replicated:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
