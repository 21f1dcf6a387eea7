"""What an entry point's process restarts with (CPU devices, huge pages), and that the restart
carries it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from codeit_jax.host_process import (
    CPU_DEVICES,
    DEVICE_COUNT_FLAG,
    HUGE_PAGES,
    MAX_AUTO_CPU_DEVICES,
    THP_SETTING,
    TUNABLE,
    cpu_device_count,
    process_environment,
    usable_cores,
)

GLIBC = ("glibc", "2.36")
MADVISE = "always defer [madvise] never\n"


def test_one_cpu_device_per_core_up_to_the_cap():
    assert cpu_device_count({}, 2) == 2
    assert cpu_device_count({}, 1) == 1
    assert cpu_device_count({}, 64) == MAX_AUTO_CPU_DEVICES
    assert cpu_device_count({CPU_DEVICES: "auto"}, 4) == 4
    assert cpu_device_count({CPU_DEVICES: "3"}, 64) == 3
    assert cpu_device_count({CPU_DEVICES: "16"}, 2) == 16  # asked for: oversubscribed


@pytest.mark.parametrize("value", ["0", "-2", "two", ""])
def test_a_bad_device_count_names_the_variable(value):
    with pytest.raises(ValueError, match=CPU_DEVICES):
        cpu_device_count({CPU_DEVICES: value}, 2)


def test_the_restart_environment():
    env = process_environment({"PATH": "/bin"}, GLIBC, MADVISE, cores=2)
    assert env == {
        "PATH": "/bin",
        "GLIBC_TUNABLES": TUNABLE,
        "XLA_FLAGS": f"{DEVICE_COUNT_FLAG}=2",
    }
    kept = process_environment(
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "XLA_FLAGS": "--xla_dump_to=/tmp/d"},
        GLIBC,
        MADVISE,
        cores=4,
    )
    assert kept["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"
    assert kept["XLA_FLAGS"] == f"--xla_dump_to=/tmp/d {DEVICE_COUNT_FLAG}=4"


def test_no_restart_where_it_would_change_nothing():
    settled = {"GLIBC_TUNABLES": TUNABLE, "XLA_FLAGS": f"{DEVICE_COUNT_FLAG}=8"}
    assert process_environment(settled, GLIBC, MADVISE, cores=2) is None
    assert process_environment({HUGE_PAGES: "0"}, GLIBC, MADVISE, cores=1) is None
    single = {CPU_DEVICES: "1"}
    assert process_environment(single, ("glibc", "2.31"), MADVISE, 2) is None  # no such tunable
    assert process_environment(single, ("", ""), MADVISE, 2) is None  # musl, macOS
    assert process_environment(single, GLIBC, "[always] madvise never", 2) is None
    assert process_environment(single, GLIBC, "always madvise [never]", 2) is None
    assert process_environment(single, GLIBC, None, 2) is None


def test_an_entry_point_restarts_once_with_its_settings(tmp_path):
    script = (
        "import os\n"
        "from codeit_jax.host_process import prepare_process\n"
        "print('start', flush=True)\n"
        "prepare_process()\n"
        "print(os.environ.get('XLA_FLAGS', ''))\n"
        "import jax\n"
        "print(jax.local_device_count('cpu'))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GLIBC_TUNABLES", "XLA_FLAGS", HUGE_PAGES, CPU_DEVICES)
    }
    env[CPU_DEVICES] = "3"
    env["XDG_CACHE_HOME"] = str(tmp_path)  # where the large-block cache is built
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["start", "start", f"{DEVICE_COUNT_FLAG}=3", "3"]
    assert process_environment(env, *_platform(), usable_cores())["XLA_FLAGS"] == out[2]


def test_a_bad_device_count_stops_the_entry_point_with_one_line():
    env = {**os.environ, CPU_DEVICES: "many"}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, "-m", "codeit_jax.main", "--help"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {CPU_DEVICES}='many': expected 'auto' or a positive integer"
    ]


def _platform() -> tuple[tuple[str, str], str | None]:
    import platform

    try:
        thp = THP_SETTING.read_text()
    except OSError:
        thp = None
    return platform.libc_ver(), thp
