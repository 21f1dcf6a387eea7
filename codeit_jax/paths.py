"""Where the official CodeIt data lives (read, never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the CodeIt data directory (training/, evaluation/, ...).
DATA_ENV = "CODEIT_DATA"


def codeit_data_dir() -> Path:
    """The CodeIt data directory: $CODEIT_DATA, else ../shared/codeit-data next to the repo."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "codeit-data"


#: Stands for the data directory in a config's path fields (``{data_dir}/mutated_...json``).
DATA_DIR_PLACEHOLDER = "{data_dir}"


def resolve_data_path(text: str, data_dir: Path) -> str:
    """A path field with `DATA_DIR_PLACEHOLDER` replaced by ``data_dir`` ('' stays '')."""
    text = str(text).strip()
    if not text:
        return ""
    return str(Path(text.replace(DATA_DIR_PLACEHOLDER, str(data_dir))).expanduser())
