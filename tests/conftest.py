"""Shared test setup.

Eight host CPU devices are forced before JAX is imported anywhere, so the data-parallel paths
really run on 8 devices in the tests. The official CodeIt data is read from
$CODEIT_DATA (default ../shared/codeit-data); tests that need it skip when it is absent.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from codeit_jax.files import codeit_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def codeit_data() -> Path:
    """The CodeIt data directory, or skip the test with the reason."""
    path = codeit_data_dir()
    if not (path / "training").is_dir():
        pytest.skip(f"CodeIt data not found at {path} (set CODEIT_DATA to its directory)")
    return path


@pytest.fixture(scope="session")
def dsl_vectors_path() -> Path:
    """shared/dsl/vectors.jsonl, or skip."""
    path = codeit_data_dir().parent / "dsl" / "vectors.jsonl"
    if not path.is_file():
        pytest.skip(f"DSL vectors not found at {path}")
    return path
