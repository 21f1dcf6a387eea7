"""Files the package reads and writes: where the CodeIt data lives, and whole-file writes.

The CodeIt data directory is read in place, never copied into the repo; a config names it once
(``data.data_dir``, else ``$CODEIT_DATA``, else ../shared/codeit-data) and `resolve_data_path`
expands ``{data_dir}`` in path fields.

Writes never leave half a file: a temporary file in the same directory, then a rename over
the target.

The temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the user's
umask as it does for any other tool's output (``tempfile.mkstemp`` would make it 0600 whatever
the umask, and the rename would carry that mode to the result). ``O_EXCL`` and a random name
keep concurrent writers from sharing a temporary file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

#: Mode asked for new files; the process umask takes its bits away (0644 under umask 022).
FILE_MODE = 0o666
_TRIES = 16


def _open_temporary(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, open for writing: (descriptor, its path)."""
    for _ in range(_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through a temporary file and a
    rename; missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> None:
    """``obj`` as JSON (``indent`` None: one line, no trailing newline; else indented with a
    trailing newline), written atomically."""
    text = json.dumps(obj) if indent is None else json.dumps(obj, indent=indent) + "\n"
    write_text_atomic(path, text)


#: Environment variable naming the CodeIt data directory (training/, evaluation/, ...).
DATA_ENV = "CODEIT_DATA"


def codeit_data_dir() -> Path:
    """The CodeIt data directory: $CODEIT_DATA, else ../shared/codeit-data next to the repo."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "codeit-data"


def resolve_data_dir(given: str | Path | None) -> Path:
    """The data directory a config names (``~`` expanded), or `codeit_data_dir` when it names
    none. Each job calls it once at start-up and passes the result down."""
    return Path(given).expanduser() if given else codeit_data_dir()


#: Stands for the data directory in a config's path fields (``{data_dir}/mutated_...json``).
DATA_DIR_PLACEHOLDER = "{data_dir}"


def resolve_data_path(text: str, data_dir: Path) -> str:
    """A path field with `DATA_DIR_PLACEHOLDER` replaced by ``data_dir`` ('' stays '')."""
    text = str(text).strip()
    if not text:
        return ""
    return str(Path(text.replace(DATA_DIR_PLACEHOLDER, str(data_dir))).expanduser())
