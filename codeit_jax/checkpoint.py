"""Checkpoints of the train state plus the caller's extra state, with Orbax.

A checkpoint step holds up to three Orbax items:
  state  the train state pytree (params, optimizer state, step, RNG), jax arrays;
  extra  an optional pytree of numpy arrays the caller owns (the CodeIt loop's replay buffer,
         RNG state, ...), restored as numpy on every host;
  meta   JSON: the caller's metadata (solutions, meta-iteration, ...) and which items exist.

Orbax writes each step into a temporary directory and renames it into place only when every item
is written, so a crash during a save leaves the previous step as the latest usable one; leftover
temporary directories are ignored and cleaned up. Old steps beyond `max_to_keep` are deleted
only after a newer step is committed. The state is restored onto the shardings of the template
the caller passes, which may come from a mesh of a different size than the one that saved it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

_STATE = "state"
_EXTRA = "extra"
_META = "meta"


@dataclasses.dataclass(frozen=True)
class Restored:
    """What one checkpoint step gives back."""

    step: int
    state: Any
    extra: Any | None
    meta: dict[str, Any]


class CheckpointStore:
    """Saves and restores numbered checkpoint steps in one directory."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_to_keep: int | None = 3,
        async_save: bool = True,
        read_only: bool = False,
    ):
        """Args:
        directory: where the steps live; created unless `read_only`.
        max_to_keep: newest steps kept (None keeps all).
        async_save: write in a background thread after the arrays are copied off the devices;
            `wait()` (or the next save, or `close()`) blocks until the write is committed.
        read_only: only restore; a missing directory is an error instead of being created.
        """
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"checkpoint directory {self.directory} does not exist")
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"checkpoint path {self.directory} is not a directory")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE, _EXTRA, _META)
        )

    def all_steps(self) -> list[int]:
        """Committed steps, oldest first (interrupted saves are not listed)."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        state: Any,
        *,
        extra: Any | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Starts saving `step`; returns once the arrays are copied, before the write ends."""
        if step in self._manager.all_steps():
            raise ValueError(f"checkpoint step {step} already exists in {self.directory}")
        has_extra = extra is not None and bool(jax.tree.leaves(extra))
        items = {
            _STATE: ocp.args.StandardSave(state),
            _META: ocp.args.JsonSave({"user": meta or {}, "has_extra": has_extra}),
        }
        if has_extra:
            items[_EXTRA] = ocp.args.StandardSave(extra)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(self, state_template: Any, step: int | None = None) -> Restored:
        """Restores `step` (default: the latest) with the shardings of `state_template`.

        `state_template` is a pytree of the train state's structure whose leaves are arrays or
        `jax.ShapeDtypeStruct`s carrying the target shardings (e.g. from the current mesh).
        """
        available = self.all_steps()
        if not available:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        step = available[-1] if step is None else step
        if step not in available:
            raise ValueError(f"no checkpoint step {step} in {self.directory}; have {available}")
        meta = self._manager.restore(
            step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()})
        )[_META]
        items = {_STATE: ocp.args.StandardRestore(state_template)}
        if meta["has_extra"]:
            items[_EXTRA] = ocp.args.StandardRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        extra = restored[_EXTRA] if meta["has_extra"] else None
        return Restored(step=step, state=restored[_STATE], extra=extra, meta=meta["user"])

    def wait(self) -> None:
        """Blocks until any save in flight is committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for saves in flight and releases the manager's threads."""
        self._manager.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
