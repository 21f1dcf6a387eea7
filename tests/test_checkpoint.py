"""Orbax checkpoint store: round trip, retention, bad input, resharding and crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from codeit_jax.loop.checkpoint import CheckpointStore
from codeit_jax.policy.mesh import make_mesh


def _state(mesh, scale: float = 1.0) -> dict:
    replicated = NamedSharding(mesh, PartitionSpec())
    tree = {
        "params": {"w": jnp.arange(24.0).reshape(4, 6) * scale, "b": jnp.ones(6) * scale},
        "step": jnp.int32(int(scale)),
    }
    return jax.device_put(tree, replicated)


def _template(mesh) -> dict:
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), _state(mesh)
    )


def test_round_trip_with_extra_state_and_meta(tmp_path: Path):
    mesh = make_mesh()
    extra = {"buffer": np.arange(10, dtype=np.int32), "rng": np.array([3, 4], np.uint32)}
    meta = {"meta_iteration": 2, "solutions": {"task": ["x = 1"]}}
    with CheckpointStore(tmp_path / "ckpt") as store:
        store.save(5, _state(mesh, 5.0), extra=extra, meta=meta)
        store.wait()
        restored = store.restore(_template(mesh))
    assert restored.step == 5 and restored.meta == meta
    np.testing.assert_array_equal(restored.state["params"]["w"], np.arange(24.0).reshape(4, 6) * 5)
    assert restored.state["params"]["w"].sharding.is_equivalent_to(
        NamedSharding(mesh, PartitionSpec()), 2
    )
    assert isinstance(restored.extra["buffer"], np.ndarray)
    np.testing.assert_array_equal(restored.extra["buffer"], extra["buffer"])
    assert restored.extra["rng"].dtype == np.uint32


def test_state_without_extra_restores_none(tmp_path: Path):
    mesh = make_mesh()
    with CheckpointStore(tmp_path) as store:
        store.save(1, _state(mesh))
        store.wait()
        restored = store.restore(_template(mesh))
    assert restored.extra is None and restored.meta == {}


def test_max_to_keep_and_choosing_a_step(tmp_path: Path):
    mesh = make_mesh()
    with CheckpointStore(tmp_path, max_to_keep=2) as store:
        for step in (1, 2, 3):
            store.save(step, _state(mesh, float(step)))
        store.wait()
        assert store.all_steps() == [2, 3] and store.latest_step() == 3
        older = store.restore(_template(mesh), step=2)
        assert int(older.state["step"]) == 2
        with pytest.raises(ValueError, match="no checkpoint step 1"):
            store.restore(_template(mesh), step=1)
        with pytest.raises(ValueError, match="already exists"):
            store.save(3, _state(mesh))


@pytest.mark.parametrize("n_devices", [1, 2])
def test_restore_onto_a_different_device_count(tmp_path: Path, n_devices: int):
    with CheckpointStore(tmp_path) as store:
        store.save(7, _state(make_mesh(), 7.0))
        store.wait()
    small = make_mesh(jax.devices()[:n_devices])
    with CheckpointStore(tmp_path, read_only=True) as store:
        restored = store.restore(_template(small))
    w = restored.state["params"]["w"]
    assert w.sharding.mesh.devices.size == n_devices
    np.testing.assert_array_equal(w, np.arange(24.0).reshape(4, 6) * 7)


def test_missing_or_empty_directory_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CheckpointStore(tmp_path / "nowhere", read_only=True)
    assert not (tmp_path / "nowhere").exists()
    with CheckpointStore(tmp_path / "empty") as store, pytest.raises(FileNotFoundError):
        store.restore(_template(make_mesh()))
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        CheckpointStore(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "not a directory"


_CRASHING_SAVE = """
import os, signal, sys
import jax, jax.numpy as jnp
from orbax.checkpoint._src.path import atomicity
from codeit_jax.loop.checkpoint import CheckpointStore

directory = sys.argv[1]
store = CheckpointStore(directory)
store.save(1, {"w": jnp.full((64, 64), 1.0)}, meta={"good": True})
store.wait()

async def die_before_commit(self):
    os.kill(os.getpid(), signal.SIGKILL)

# Step 2 is written completely, then the process dies just before it would be committed.
atomicity.AtomicRenameTemporaryPath.finalize = die_before_commit
store.save(2, {"w": jnp.full((64, 64), 2.0)}, meta={"good": False})
store.wait()
print("survived", flush=True)
"""


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path: Path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    directory = tmp_path / "ckpt"
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_SAVE, str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert "survived" not in child.stdout
    leftovers = [p.name for p in directory.iterdir() if p.name not in ("1",)]
    assert any("tmp" in name for name in leftovers), leftovers  # the interrupted write
    mesh = make_mesh()
    template = {
        "w": jax.ShapeDtypeStruct(
            (64, 64), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec())
        )
    }
    with CheckpointStore(directory) as store:
        assert store.all_steps() == [1]
        restored = store.restore(template)
        assert restored.meta == {"good": True}
        np.testing.assert_array_equal(restored.state["w"], np.ones((64, 64)))
        # The run can go on and save the step that was lost.
        store.save(2, {"w": jnp.full((64, 64), 2.0)})
        store.wait()
        assert store.all_steps() == [1, 2]
