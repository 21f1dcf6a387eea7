"""When entry points restart with glibc's huge-page tunable, and that the restart carries it."""

from __future__ import annotations

import os
import subprocess
import sys

from codeit_jax.policy.host_memory import OPT_OUT, TUNABLE, huge_page_environment

GLIBC = ("glibc", "2.36")
MADVISE = "always defer [madvise] never\n"


def test_the_restart_environment():
    env = huge_page_environment({"PATH": "/bin"}, GLIBC, MADVISE)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": TUNABLE}
    kept = huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, MADVISE)
    assert kept["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"


def test_no_restart_where_it_would_change_nothing():
    assert huge_page_environment({"GLIBC_TUNABLES": TUNABLE}, GLIBC, MADVISE) is None
    assert huge_page_environment({OPT_OUT: "0"}, GLIBC, MADVISE) is None
    assert huge_page_environment({}, ("glibc", "2.31"), MADVISE) is None  # no such tunable
    assert huge_page_environment({}, ("", ""), MADVISE) is None  # musl, macOS
    assert huge_page_environment({}, GLIBC, "[always] madvise never") is None
    assert huge_page_environment({}, GLIBC, "always madvise [never]") is None
    assert huge_page_environment({}, GLIBC, None) is None


def test_an_entry_point_restarts_once_with_the_tunable():
    script = (
        "import os\n"
        "from codeit_jax.policy.host_memory import reexec_with_huge_pages\n"
        "print('start', flush=True)\n"
        "reexec_with_huge_pages()\n"
        "print(os.environ.get('GLIBC_TUNABLES', ''))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", OPT_OUT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    expected = huge_page_environment(env, *_platform())
    if expected is None:  # this machine would not restart
        assert out == ["start", ""]
    else:
        assert out == ["start", "start", expected["GLIBC_TUNABLES"]]


def _platform() -> tuple[tuple[str, str], str | None]:
    import platform

    from codeit_jax.policy.host_memory import THP_SETTING

    try:
        thp = THP_SETTING.read_text()
    except OSError:
        thp = None
    return platform.libc_ver(), thp
