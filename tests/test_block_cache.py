"""The large-block cache (codeit_jax/block_cache.c): built, preloaded into a fresh interpreter
and exercised through libc's own entry points, then under numpy and JAX."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codeit_jax import block_cache
from codeit_jax.host_process import process_environment

GLIBC = ("glibc", "2.36")
MADVISE = "always defer [madvise] never\n"
MIB = 1 << 20
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which(os.environ.get("CC", "cc")) is None,
    reason="the cache is built with a C compiler on Linux",
)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    built = block_cache.build(tmp_path_factory.mktemp("cache"))
    assert built is not None and built.exists()
    return built


def run_preloaded(library: Path, script: str, **env: str) -> dict:
    """Run ``script`` in a fresh interpreter with the cache preloaded; its last line is JSON."""
    environ = {**os.environ, "LD_PRELOAD": str(library), **env}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


LIBC_CALLS = """
import ctypes, json
libc = ctypes.CDLL(None)
for name in ("malloc", "calloc", "realloc", "aligned_alloc"):
    getattr(libc, name).restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.aligned_alloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.malloc_usable_size.argtypes = [ctypes.c_void_p]
libc.malloc_usable_size.restype = ctypes.c_size_t
MIB = 1 << 20

def stats():
    out = (ctypes.c_ulong * 3)()
    libc.codeit_block_cache_stats(out)
    return {"mapped": out[0], "in_use": out[1], "free_bytes": out[2]}

r = {}
a = libc.malloc(100 * MIB)
r["aligned"] = a % (2 * MIB) == 0
r["usable"] = libc.malloc_usable_size(a)
ctypes.memset(a, 7, 100 * MIB)
r["after_malloc"] = stats()
libc.free(a)
r["after_free"] = stats()
b = libc.malloc(90 * MIB)  # within a quarter of the kept block: reused
r["reused"] = b == a
c = libc.malloc(100 * MIB)  # the kept block is taken: a new one
r["second_is_new"] = c != a
ctypes.memset(c, 9, 100 * MIB)
libc.free(c)
z = libc.calloc(100, MIB)  # reuses c's block, which holds data: must come back zeroed
r["calloc_reused"] = z == c
r["calloc_zero"] = ctypes.string_at(z, 100 * MIB).count(0) == 100 * MIB
libc.free(z)
fresh = libc.calloc(200, MIB)  # no kept block fits: a new mapping, zeros without a memset
r["calloc_fresh_zero"] = ctypes.string_at(fresh, 200 * MIB).count(0) == 200 * MIB
libc.free(fresh)
small = libc.malloc(1000)  # glibc's
r["small_not_ours"] = small % (2 * MIB) != 0 or stats()["in_use"] == 1
ctypes.memmove(small, b"abc", 3)
grown = libc.realloc(small, 80 * MIB)  # glibc's block grown by glibc
r["grown_keeps"] = ctypes.string_at(grown, 3) == b"abc"
libc.free(grown)
ctypes.memset(b, 5, 90 * MIB)
moved = libc.realloc(b, 300 * MIB)  # ours, grown: moved, contents kept
r["moved_keeps"] = ctypes.string_at(moved, 90 * MIB).count(5) == 90 * MIB
shrunk = libc.realloc(moved, 1000)  # below the threshold: back to glibc, prefix kept
r["shrunk_keeps"] = ctypes.string_at(shrunk, 1000).count(5) == 1000
libc.free(shrunk)
p = libc.aligned_alloc(4096, 70 * MIB)
r["aligned_alloc"] = p % 4096 == 0
libc.free(p)
r["before_release"] = stats()
from codeit_jax import block_cache
block_cache.release()
r["end"] = stats()
print(json.dumps(r))
"""


def test_blocks_are_kept_reused_zeroed_and_resized(library):
    r = run_preloaded(library, LIBC_CALLS)
    assert r["aligned"] and r["usable"] == 100 * MIB
    assert r["after_malloc"] == {"mapped": 1, "in_use": 1, "free_bytes": 0}
    assert r["after_free"] == {"mapped": 1, "in_use": 0, "free_bytes": 100 * MIB}
    assert r["reused"] and r["second_is_new"]
    assert r["calloc_reused"] and r["calloc_zero"] and r["calloc_fresh_zero"]
    assert r["small_not_ours"] and r["grown_keeps"]
    assert r["moved_keeps"] and r["shrunk_keeps"] and r["aligned_alloc"]
    assert r["before_release"]["in_use"] == 0 and r["before_release"]["free_bytes"] > 0
    assert r["end"] == {**r["before_release"], "free_bytes": 0}  # released, nothing in use


def test_the_cap_unmaps_the_least_recently_freed(library):
    script = (
        LIBC_CALLS.split("r = {}")[0]
        + """
a, b = libc.malloc(100 * MIB), libc.malloc(140 * MIB)
libc.free(a); libc.free(b)  # 240 MiB free over a 150 MiB cap: a (freed first) is unmapped
kept = stats()["free_bytes"]
# b is over a quarter larger than 100 MiB: a new mapping, and b is released first so that
# the kept and the new block stay within the cap
c = libc.malloc(100 * MIB)
print(json.dumps({"kept": kept, "end": stats()}))
"""
    )
    r = run_preloaded(library, script, CODEIT_BLOCK_CACHE_BYTES=str(150 * MIB))
    assert r["kept"] == 140 * MIB
    assert r["end"] == {"mapped": 3, "in_use": 1, "free_bytes": 0}


def test_numpy_and_jax_compute_the_same_under_the_cache(library):
    script = """
import json
import numpy as np
import jax, jax.numpy as jnp
x = np.arange(40_000_000, dtype=np.float32).reshape(4000, 10_000) % 7
f = jax.jit(lambda x: jnp.sum(jnp.exp(x * 0.01) * x, axis=0))  # temporaries of 160 MB
outs = [np.asarray(f(x)).tolist() for _ in range(3)]
print(json.dumps({"same": outs[0] == outs[1] == outs[2], "sum": float(np.sum(outs[0]))}))
"""
    cached = run_preloaded(library, script)
    plain = run_preloaded(library, script, LD_PRELOAD="")
    assert cached["same"] and cached == plain


def test_release_without_the_cache_does_nothing():
    block_cache.release()  # this test process has no cache preloaded


def test_the_build_is_reused_and_failures_leave_it_off(tmp_path, capsys):
    first = block_cache.build(tmp_path)
    assert first is not None and block_cache.build(tmp_path) == first
    assert block_cache.build(tmp_path / "other", compiler="no-such-compiler-here") is None
    assert "no C compiler" in capsys.readouterr().err


def test_settings_and_the_restart_environment(tmp_path):
    lib = tmp_path / "block_cache-x.so"
    env = process_environment({"PATH": "/bin"}, GLIBC, MADVISE, 2, lib)
    assert env["LD_PRELOAD"] == str(lib)
    assert "LD_PRELOAD" not in process_environment({"PATH": "/bin"}, GLIBC, MADVISE, 2, None)
    off = {"PATH": "/bin", block_cache.SWITCH: "0"}
    assert "LD_PRELOAD" not in process_environment(off, GLIBC, MADVISE, 2, lib)
    other = {"PATH": "/bin", "LD_PRELOAD": "/usr/lib/libtcmalloc.so"}
    assert process_environment(other, GLIBC, MADVISE, 2, lib)["LD_PRELOAD"] == other["LD_PRELOAD"]
    for name, value in ((block_cache.SWITCH, "yes"), (block_cache.CAP, "1GB")):
        with pytest.raises(ValueError, match=name):
            block_cache.check_settings({name: value})


def test_an_entry_point_restarts_with_the_cache_and_a_bad_cap_stops_it(tmp_path):
    script = (
        "import os\n"
        "from codeit_jax.host_process import prepare_process\n"
        "prepare_process()\n"
        "print(os.environ.get('LD_PRELOAD', ''))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(out) == 1 and Path(out[0]).parent == tmp_path / "codeit_jax"
    bad = subprocess.run(
        [sys.executable, "-c", script], env={**env, block_cache.CAP: "lots"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: {block_cache.CAP}='lots': expected a number of bytes"
    ]


def test_children_that_must_not_keep_memory_get_no_cache():
    assert block_cache.without_preload({"A": "1", "LD_PRELOAD": "/c/block_cache-ab12.so"}) == {
        "A": "1"
    }
    mixed = {"LD_PRELOAD": "/x/libfoo.so:/c/block_cache-ab12.so /y/libbar.so"}
    assert block_cache.without_preload(mixed) == {"LD_PRELOAD": "/x/libfoo.so /y/libbar.so"}
    assert block_cache.without_preload({"B": "2"}) == {"B": "2"}
    assert block_cache.is_loaded(mixed) and not block_cache.is_loaded({"LD_PRELOAD": "/x/a.so"})


def test_sandbox_workers_start_without_the_cache(library, monkeypatch):
    from codeit_jax.execution.sandbox import Sandbox

    monkeypatch.setenv("LD_PRELOAD", str(library))  # as in an entry point's process
    sandbox = Sandbox(workers=1)
    try:
        environ = Path(f"/proc/{sandbox.pids[0]}/environ").read_bytes().split(b"\0")
    finally:
        sandbox.close()
    assert not [e for e in environ if e.startswith(b"LD_PRELOAD=")]
