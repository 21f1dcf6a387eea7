"""One run per working directory: the writing process holds a lock on ``<workdir>/.lock``.

Two runs on one workdir would overwrite each other's files and checkpoints (Orbax even deletes
the other run's unfinished saves as leftovers). The lock is an ``flock`` on the file, so the
kernel releases it when its holder dies, however it dies; the file names the holder (pid, host,
start time) for the message a second run stops with. A lock file whose process is gone is
stale: the next run takes it over and says so. On a file system without ``flock`` the pid in
the file is checked instead (on this host; a holder on another host is trusted to be alive).

Multi-host runs: every host runs the same command on a shared workdir, but only process 0
writes, so only process 0 takes the lock (``enabled=False`` elsewhere); the other hosts follow
process 0, which stops them too when it stops.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from absl import logging

from codeit_jax.errors import RunError

LOCK_FILE = ".lock"
_TRIES = 8


class WorkdirLock:
    """Context manager holding the workdir's lock (a no-op when not ``enabled``)."""

    def __init__(self, workdir: Path, *, enabled: bool = True) -> None:
        self.path = Path(workdir) / LOCK_FILE
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise `RunError` naming the process that holds it."""
        for _ in range(_TRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if self._lock(fd) and _same_file(fd, self.path):
                    self._take(fd)
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder released and removed the file meanwhile: try again
        raise RunError(f"{self.path}: could not take the workdir's lock")

    def _lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(_busy_message(self.path, _read(fd))) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            holder = _read(fd)
            if holder and holder.get("pid") != os.getpid() and _maybe_alive(holder):
                raise RunError(
                    _busy_message(self.path, holder)
                    + f" ({self.path.parent} has no file locks: remove {self.path} if that "
                    "process is gone)"
                ) from None
        return True

    def _take(self, fd: int) -> None:
        previous = _read(fd)
        if previous:
            logging.warning(
                "%s: taking over the lock of pid %s on %s, which is gone (a run that was killed)",
                self.path,
                previous.get("pid"),
                previous.get("host"),
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing holder unlinks it)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _read(fd: int) -> dict[str, Any]:
    """The holder record in the lock file ({} when empty or unreadable)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        record = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _maybe_alive(holder: dict[str, Any]) -> bool:
    """False only when the holder is known to be gone: a pid on this host that does not run."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _busy_message(path: Path, holder: dict[str, Any]) -> str:
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("started"):
        who += f", started {holder['started']}"
    return (
        f"{path.parent} is in use by another run ({who}); wait for it to end or stop it, or "
        "use another --workdir"
    )
