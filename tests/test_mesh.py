"""The shared data-parallel mesh helper."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from codeit_jax.policy.mesh import (
    DATA_AXIS,
    batch_sharding,
    data_parallel_size,
    make_mesh,
    padded_batch_size,
    replicated_sharding,
)


def test_mesh_spans_all_devices_or_a_subset():
    assert data_parallel_size(make_mesh()) == jax.device_count() == 8
    subset = make_mesh(jax.devices()[:2])
    assert subset.axis_names == (DATA_AXIS,)
    assert data_parallel_size(subset) == 2
    with pytest.raises(ValueError, match="at least one device"):
        make_mesh([])


def test_batch_sharding_splits_rows_and_replicated_does_not():
    mesh = make_mesh()
    x = jax.device_put(np.arange(16 * 3).reshape(16, 3), batch_sharding(mesh))
    assert {s.data.shape for s in x.addressable_shards} == {(2, 3)}
    y = jax.device_put(np.arange(5), replicated_sharding(mesh))
    assert {s.data.shape for s in y.addressable_shards} == {(5,)}


def test_padding_to_the_mesh():
    mesh = make_mesh()
    assert [padded_batch_size(n, mesh) for n in (0, 1, 8, 9)] == [8, 8, 8, 16]
    assert padded_batch_size(3, make_mesh(jax.devices()[:1])) == 3
