"""Checkpoints of the train state plus the caller's extra state, with Orbax, checked on restore.

A checkpoint step holds up to three Orbax items:
  state  the train state pytree (params, optimizer state, step, RNG), jax arrays;
  extra  an optional pytree of numpy arrays the caller owns (the CodeIt loop's replay buffer,
         RNG state, ...), restored as numpy on every host;
  meta   JSON: the caller's metadata (solutions, meta-iteration, ...), which items exist, the
         checksums of the three (`codeit_jax.loop.integrity`) and the state's leaf signature.

Orbax writes each step into a temporary directory and renames it into place only when every item
is written, so a crash during a save leaves the previous step as the latest usable one; leftover
temporary directories are ignored and cleaned up. Old steps beyond `max_to_keep` are deleted
only after a newer step is committed. The state is restored onto the shardings of the template
the caller passes, which may come from a mesh of a different size than the one that saved it.

Integrity: the checksums are computed in `save` from the very values handed to Orbax, before the
asynchronous write starts, and go into the meta item, which Orbax commits together with the
arrays; so they describe what was committed, whenever the write ends. `restore` recomputes them
from what it read. A step that cannot be read or does not match its checksums is damaged:
restoring the latest step falls back to the newest undamaged one, logs one line saying which
steps were skipped and why, and moves the damaged ones into ``<directory>/damaged/`` (kept for
inspection, out of the way of the steps the run will save again). Steps written before checksums
existed restore unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import logging as std_logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from codeit_jax.errors import one_line
from codeit_jax.loop.integrity import ALGORITHM, json_checksum, leaf_signature, tree_checksum

_STATE = "state"
_EXTRA = "extra"
_META = "meta"
#: Where damaged steps are moved, inside the checkpoint directory (Orbax ignores it).
DAMAGED_DIR = "damaged"


@dataclasses.dataclass(frozen=True)
class Restored:
    """What one checkpoint step gives back (``skipped``: newer damaged steps passed over, as
    (step, reason))."""

    step: int
    state: Any
    extra: Any | None
    meta: dict[str, Any]
    skipped: tuple[tuple[int, str], ...] = ()


class DamagedCheckpointError(Exception):
    """A step that cannot be restored as it was saved; ``reason`` says why in a few words."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"checkpoint step {step}: {reason}")
        self.step = step
        self.reason = reason


class NoUsableCheckpointError(Exception):
    """Every step of the directory is damaged."""


class StateMismatchError(ValueError):
    """The saved state's leaves differ from the template's: the model or optimizer settings
    are not those of the run that saved it."""


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
        read_only: only restore; a missing directory is an error instead of being created,
            and damaged steps are left where they are.
        """
        self.directory = Path(directory).absolute()
        self.read_only = read_only
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
        """Starts saving `step`; returns once the arrays are copied and their checksums taken,
        before the write ends."""
        if step in self._manager.all_steps():
            raise ValueError(f"checkpoint step {step} already exists in {self.directory}")
        has_extra = extra is not None and bool(jax.tree.leaves(extra))
        user = json.loads(json.dumps(meta or {}))  # as it will read back
        record = {
            "user": user,
            "has_extra": has_extra,
            "checksums": {
                "algorithm": ALGORITHM,
                _STATE: tree_checksum(state),
                _EXTRA: tree_checksum(extra) if has_extra else None,
                "user": json_checksum(user),
            },
            "state_leaves": leaf_signature(state),
        }
        items = {
            _STATE: ocp.args.StandardSave(state),
            _META: ocp.args.JsonSave(record),
        }
        if has_extra:
            items[_EXTRA] = ocp.args.StandardSave(extra)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(
        self,
        state_template: Any,
        step: int | None = None,
        *,
        check: Callable[[Restored], str | None] | None = None,
    ) -> Restored:
        """Restores `step`, or the newest undamaged step, with the shardings of `state_template`.

        `state_template` is a pytree of the train state's structure whose leaves are arrays or
        `jax.ShapeDtypeStruct`s carrying the target shardings (e.g. from the current mesh).
        ``check`` may refuse a restored step that passed its checksums (it returns the reason).
        A given `step` that is damaged raises `DamagedCheckpointError`; without one, damaged
        steps are skipped (module docstring) and `NoUsableCheckpointError` says when all are.
        A template that does not fit the saved state raises `StateMismatchError`.
        """
        available = self.all_steps()
        if not available:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        _ignore_failed_read_leftovers(self.directory)
        if step is not None:
            if step not in available:
                raise ValueError(f"no checkpoint step {step} in {self.directory}; have {available}")
            return self._restore_step(state_template, step, check)
        skipped: list[tuple[int, str]] = []
        restored = None
        for candidate in reversed(available):
            try:
                restored = self._restore_step(state_template, candidate, check)
                break
            except DamagedCheckpointError as e:
                skipped.append((e.step, e.reason))
        _agree_across_processes(None if restored is None else restored.step)
        if restored is None:
            reasons = "; ".join(f"step {s}: {reason}" for s, reason in skipped)
            raise NoUsableCheckpointError(
                f"no undamaged checkpoint in {self.directory} ({reasons}); move the directory "
                "aside to start the run over"
            )
        if skipped:
            moved = self._set_aside([s for s, _ in skipped])
            logging.warning(_fallback_line(self.directory, skipped, restored.step, moved))
        return dataclasses.replace(restored, skipped=tuple(skipped))

    @property
    def damaged_dir(self) -> Path:
        return self.directory / DAMAGED_DIR

    def _restore_step(
        self,
        state_template: Any,
        step: int,
        check: Callable[[Restored], str | None] | None,
    ) -> Restored:
        """One step, verified; `DamagedCheckpointError` when it is not what was saved."""
        try:
            record = self._manager.restore(
                step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()})
            )[_META]
        except (MemoryError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001 - whatever Orbax meets in a damaged file
            raise DamagedCheckpointError(step, f"its metadata cannot be read: {_short(e)}") from e
        if not isinstance(record, dict) or not isinstance(record.get("user"), dict):
            raise DamagedCheckpointError(step, "its metadata is not a checkpoint record")
        saved_leaves = record.get("state_leaves")
        if saved_leaves is not None and saved_leaves != leaf_signature(state_template):
            raise StateMismatchError(_leaf_difference(saved_leaves, state_template))
        items = {_STATE: ocp.args.StandardRestore(state_template)}
        if record.get("has_extra"):
            items[_EXTRA] = ocp.args.StandardRestore()
        try:
            arrays = self._manager.restore(step, args=ocp.args.Composite(**items))
        except (MemoryError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001 - whatever Orbax meets in a damaged file
            raise DamagedCheckpointError(step, f"its arrays cannot be read: {_short(e)}") from e
        extra = arrays[_EXTRA] if record.get("has_extra") else None
        restored = Restored(step=step, state=arrays[_STATE], extra=extra, meta=record["user"])
        checksums = record.get("checksums")
        if checksums is not None:
            _verify(step, restored, checksums)
        reason = check(restored) if check is not None else None
        if reason is not None:
            raise DamagedCheckpointError(step, reason)
        return restored

    def _set_aside(self, steps: list[int]) -> list[Path]:
        """Move damaged steps into ``damaged/`` (process 0; the others wait, then re-list);
        returns where they went."""
        if self.read_only:
            return []
        moved = []
        for step in steps:
            target = self.damaged_dir / str(step)
            n = 1
            while target.exists():
                target = self.damaged_dir / f"{step}.{n}"
                n += 1
            moved.append(target)
            if jax.process_index() == 0:
                target.parent.mkdir(exist_ok=True)
                (self.directory / str(step)).rename(target)
        _barrier("codeit_jax checkpoint: damaged steps moved")
        self._manager.reload()
        return moved

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


def _fallback_line(
    directory: Path, skipped: list[tuple[int, str]], step: int, moved: list[Path]
) -> str:
    """The one log line of a restore that passed over damaged steps: which, why, and where
    they went."""
    if len(skipped) == 1:
        what = f"step {skipped[0][0]} is damaged ({skipped[0][1]})"
    else:
        steps = ", ".join(str(s) for s, _ in skipped)
        what = f"steps {steps} are damaged ({'; '.join(f'step {s}: {r}' for s, r in skipped)})"
    where = "".join(f", {s} moved to {target}" for (s, _), target in zip(skipped, moved))
    return f"{directory}: checkpoint {what}; restored step {step} instead{where}"


def _verify(step: int, restored: Restored, checksums: dict[str, Any]) -> None:
    if checksums.get("algorithm") != ALGORITHM:
        raise DamagedCheckpointError(
            step, f"unknown checksum algorithm {checksums.get('algorithm')!r}"
        )
    parts = [
        ("train state", checksums.get(_STATE), lambda: tree_checksum(restored.state)),
        ("metadata", checksums.get("user"), lambda: json_checksum(restored.meta)),
    ]
    if restored.extra is not None:
        parts.append(("extra state", checksums.get(_EXTRA), lambda: tree_checksum(restored.extra)))
    for what, expected, actual in parts:
        if expected != actual():
            raise DamagedCheckpointError(step, f"checksum mismatch in its {what}")


def _leaf_difference(saved: list[str], template: Any) -> str:
    """The first leaves that differ between a saved state and a template, in one line."""
    wanted = leaf_signature(template)
    only_saved = [leaf for leaf in saved if leaf not in wanted]
    only_wanted = [leaf for leaf in wanted if leaf not in saved]
    shown = [f"saved {leaf}" for leaf in only_saved[:1]]
    shown += [f"expected {leaf}" for leaf in only_wanted[:1]]
    return (
        f"{len(only_saved)} of its {len(saved)} arrays are not among the {len(wanted)} this run "
        f"expects (first: {'; '.join(shown)})"
    )


def _short(error: BaseException) -> str:
    """An Orbax or tensorstore error in one short line (they quote whole specs)."""
    text = one_line(error) or type(error).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _agree_across_processes(step: int | None) -> None:
    """Every process of a multi-host run must resume from the same step."""
    if jax.process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    mine = np.int64(-1 if step is None else step)
    first = int(multihost_utils.broadcast_one_to_all(mine))
    if first != int(mine):
        raise NoUsableCheckpointError(
            f"process {jax.process_index()} can resume from checkpoint step {step}, process 0 "
            f"from step {first}: the hosts do not see the same checkpoint files"
        )


_EVENT_LOOP_CLOSED = "Event loop is closed"


class _OrphanedReads(std_logging.Filter):
    """Drops asyncio's "Task/Future exception was never retrieved" reports about the checkpoint
    directories being restored: a failed restore leaves Orbax's other reads behind, and each
    reports the damage the restore already dealt with once more."""

    directories: set[str] = set()

    def filter(self, record: std_logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(("Task exception was never", "Future exception was never")):
            return True
        return not any(directory in message for directory in self.directories)


def _ignore_failed_read_leftovers(directory: Path) -> None:
    """Silence the leftovers of a restore of ``directory`` that failed: tensorstore callbacks
    scheduled on Orbax's event loop after it was closed each report "RuntimeError: Event loop
    is closed" as unraisable (hundreds of tracebacks for one damaged step), and the reads still
    running report their error through asyncio's logger. Other reports pass."""
    _OrphanedReads.directories.add(str(directory))
    asyncio_logger = std_logging.getLogger("asyncio")
    if not any(isinstance(f, _OrphanedReads) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_OrphanedReads())
    previous = sys.unraisablehook
    if getattr(previous, "ignores_closed_loop", False):
        return

    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == _EVENT_LOOP_CLOSED:
            return
        previous(unraisable)

    hook.ignores_closed_loop = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


__all__ = [
    "DAMAGED_DIR",
    "CheckpointStore",
    "DamagedCheckpointError",
    "NoUsableCheckpointError",
    "Restored",
    "StateMismatchError",
]
