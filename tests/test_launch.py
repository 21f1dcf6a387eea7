"""The launch scripts: syntax, shellcheck, --help, and their logic against stand-ins for the
cloud and cluster tools (a fake gcloud with TPU workers as local directories, a fake srun and
scontrol, a fake Python), so the preemption loop, the restart loop and the coordinator set-up
are exercised without a cloud account or a cluster."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = [
    REPO / "launch" / name for name in ("tpu_vm.sh", "gpu.sh", "slurm.sbatch", "gpu_check.sh")
]


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    assert _run(["bash", "-n", str(script)], dict(os.environ)).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    done = _run(["shellcheck", str(script)], dict(os.environ))
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("script", "variables"),
    [
        ("tpu_vm.sh", ["TPU_NAME", "ZONE", "ACCELERATOR_TYPE", "BUCKET", "CONFIG_ARGS"]),
        ("gpu.sh", ["CONFIG", "WORKDIR", "GPUS", "MAX_RESTARTS"]),
        ("slurm.sbatch", ["CONFIG", "WORKDIR", "COORDINATOR_PORT", "GPUS_PER_NODE"]),
        ("gpu_check.sh", ["OUT", "GPU_CHECK_BUDGET", "GPU_CHECK_QUICK", "JAX_PLATFORMS"]),
    ],
)
def test_help_lists_the_settings(script: str, variables: list[str]) -> None:
    done = _run(["bash", str(REPO / "launch" / script), "--help"], dict(os.environ))
    assert done.returncode == 0
    for name in variables:
        assert name in done.stdout


# --------------------------------------------------------------------------- gpu.sh

FAKE_PYTHON = """#!/usr/bin/env bash
# Fails while $FAKE_ROOT/failures holds a positive count, then succeeds; records each call.
echo "$*" >> "$FAKE_ROOT/calls"
n=$(cat "$FAKE_ROOT/failures" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$FAKE_ROOT/failures"; echo "crash"; exit 3; fi
echo "done"
"""


def test_gpu_script_restarts_a_failed_run_with_the_same_command(tmp_path: Path) -> None:
    python = _executable(tmp_path / "python", FAKE_PYTHON)
    (tmp_path / "failures").write_text("1")
    workdir = tmp_path / "run"
    env = dict(
        os.environ, FAKE_ROOT=str(tmp_path), PYTHON=str(python), WORKDIR=str(workdir),
        CONFIG="configs/tiny.py", CONFIG_ARGS="--config.seed=3 --config.progress=False",
        GPUS="0,1",
    )  # fmt: skip
    done = _run(["bash", "launch/gpu.sh", "run", "--config.n_meta_iterations=2"], env)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    expected = (
        f"-m codeit_jax.main --config=configs/tiny.py --workdir={workdir} --config.seed=3 "
        "--config.progress=False --config.n_meta_iterations=2"
    )
    assert calls == [expected, expected]  # the crash, then the resumed run
    assert "restart 1 of 2" in done.stderr
    assert (workdir / "console.log").read_text().splitlines() == ["crash", "done"]

    (tmp_path / "failures").write_text("5")
    env["MAX_RESTARTS"] = "1"
    done = _run(["bash", "launch/gpu.sh", "run"], env)
    assert done.returncode == 3
    assert "giving up" in done.stderr

    env["CONFIG"] = "configs/no_such_config.py"
    done = _run(["bash", "launch/gpu.sh"], env)
    assert done.returncode == 2 and "no config file" in done.stderr


# --------------------------------------------------------------------------- gpu_check.sh

FAKE_CHECK_PYTHON = """#!/usr/bin/env bash
# The parity step fails, the trainer steps hang, the others print a JSON line.
echo "$*" >> "$FAKE_ROOT/calls"
case "$*" in
  *pytest*) echo "1 failed"; exit 3 ;;
  *bench.trainer*) sleep 60 ;;
  *) echo '{"fake": 1}' ;;
esac
"""


def test_gpu_check_goes_on_after_failures_and_stops_at_its_budget(tmp_path: Path) -> None:
    python = _executable(tmp_path / "python", FAKE_CHECK_PYTHON)
    out = tmp_path / "out"
    env = dict(
        os.environ, FAKE_ROOT=str(tmp_path), PYTHON=str(python), OUT=str(out),
        GPU_CHECK_BUDGET="8", GPU_CHECK_MIN_STEP="2",
    )  # fmt: skip
    done = _run(["bash", "launch/gpu_check.sh"], env)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (out / "summary.txt").read_text()
    assert re.search(r"^env +ok", summary, re.M)
    assert re.search(r"^parity +FAILED \(exit 3\)", summary, re.M)
    assert re.search(r"^sampler +ok", summary, re.M)
    assert re.search(r"^trainer +TIMEOUT", summary, re.M)  # cut at the budget's end
    assert re.search(r"^trainer32 +SKIPPED", summary, re.M)
    assert 'sampler: {"fake": 1}' in summary
    assert (out / "parity.log").read_text() == "1 failed\n"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("-c ")  # the environment report
    assert [call for call in calls if call.startswith("-m ")] == [
        "-m pytest -q -rs -s -p no:cacheprovider tests/test_gpu.py",
        "-m codeit_jax.bench.sampler --program-vocab 512",
        "-m codeit_jax.bench.trainer",
    ]


# --------------------------------------------------------------------------- slurm.sbatch

FAKE_SRUN = """#!/usr/bin/env bash
{ echo "coordinator=$JAX_COORDINATOR_ADDRESS"; echo "local=${JAX_LOCAL_DEVICE_IDS:-unset}";
  echo "args=$*"; } > "$FAKE_ROOT/srun"
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] && printf 'gpu-a07\\ngpu-a08\\n'
"""


@pytest.mark.parametrize(("tasks_per_node", "local"), [("1", "0,1,2,3"), ("4", "unset")])
def test_slurm_script_sets_the_coordinator_and_devices(
    tmp_path: Path, tasks_per_node: str, local: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "srun", FAKE_SRUN)
    _executable(bin_dir / "scontrol", FAKE_SCONTROL)
    env = dict(
        os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_ROOT=str(tmp_path),
        SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="gpu-a[07-08]", SLURM_JOB_NUM_NODES="2",
        SLURM_NTASKS_PER_NODE=tasks_per_node, SLURM_GPUS_ON_NODE="4",
        WORKDIR=str(tmp_path / "run"), CONFIG_ARGS="--config.seed=1",
    )  # fmt: skip
    done = _run(["bash", "launch/slurm.sbatch", "--config.n_meta_iterations=5"], env)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in (tmp_path / "srun").read_text().splitlines())
    assert lines["coordinator"] == "gpu-a07:24242"  # first node, port 20000 + job id % 10000
    assert lines["local"] == local
    assert lines["args"] == (
        f"--kill-on-bad-exit=1 python3 -m codeit_jax.main --config=configs/codeit.py "
        f"--workdir={tmp_path / 'run'} --config.distributed=True --config.seed=1 "
        "--config.n_meta_iterations=5"
    )


def test_slurm_script_outside_a_job_says_how_to_submit() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = _run(["bash", "launch/slurm.sbatch"], env)
    assert done.returncode == 2 and "sbatch launch/slurm.sbatch" in done.stderr


# --------------------------------------------------------------------------- tpu_vm.sh

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Stand-in for `gcloud compute tpus tpu-vm ...`: the TPU is $FAKE_ROOT/state, worker k is the
# directory $FAKE_ROOT/w<k> (its home); ssh runs the command there with the fake bin first.
set -u
shift 3  # compute tpus tpu-vm
verb=$1; shift
echo "$verb" >> "$FAKE_ROOT/gcloud_calls"
workers() {
  case "$1" in all) seq 0 $((FAKE_WORKERS - 1)) ;; *) echo "$1" ;; esac
}
worker=all command=""
for arg in "$@"; do
  case "$arg" in
    --worker=*) worker=${arg#--worker=} ;;
    --command=*) command=${arg#--command=} ;;
  esac
done
case "$verb" in
  describe)
    [ -f "$FAKE_ROOT/state" ] || exit 1
    # An existing TPU takes the next state of $FAKE_ROOT/events (e.g. PREEMPTED), if any.
    if [ -s "$FAKE_ROOT/events" ]; then
      head -n 1 "$FAKE_ROOT/events" > "$FAKE_ROOT/state"
      sed -i 1d "$FAKE_ROOT/events"
    fi
    cat "$FAKE_ROOT/state" ;;
  create)
    echo READY > "$FAKE_ROOT/state"
    for k in $(workers all); do rm -rf "$FAKE_ROOT/w$k"; mkdir -p "$FAKE_ROOT/w$k"; done ;;
  delete) rm -f "$FAKE_ROOT/state" ;;
  scp)
    src=$1; dest=${2#*:}
    for k in $(workers "$worker"); do cp "$src" "$FAKE_ROOT/w$k/$dest"; done ;;
  ssh)
    for k in $(workers "$worker"); do
      HOME="$FAKE_ROOT/w$k" PATH="$FAKE_ROOT/bin:$PATH" FAKE_WORKER=$k bash -c "$command"
    done ;;
  *) echo "fake gcloud: unexpected $verb" >&2; exit 2 ;;
esac
"""

FAKE_WORKER_PYTHON = r"""#!/usr/bin/env bash
# python3 on a fake TPU worker: pip succeeds; the CodeIt command is recorded and succeeds.
case "$*" in
  *"-m pip"*) exit 0 ;;
  *"-m codeit_jax.main"*) echo "w$FAKE_WORKER $PWD $CODEIT_DATA $*" >> "$FAKE_ROOT/runs"; exit 0 ;;
esac
exit 1
"""


def test_tpu_script_recreates_after_preemption_and_reruns_the_same_command(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "gcloud", FAKE_GCLOUD)
    _executable(bin_dir / "python3", FAKE_WORKER_PYTHON)
    (tmp_path / "events").write_text("PREEMPTED\n")  # seen by the watch loop's first look
    env = dict(
        os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_ROOT=str(tmp_path),
        FAKE_WORKERS="2", TPU_NAME="t1", ZONE="z1", POLL_SECONDS="1", WORKDIR="/shared/run",
        CODEIT_DATA="/shared/data", CONFIG_ARGS="--config.n_meta_iterations=4",
    )  # fmt: skip
    done = _run(["bash", "launch/tpu_vm.sh", "up"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "re-creating it and restarting the run" in done.stderr
    assert "the run finished" in done.stderr

    calls = (tmp_path / "gcloud_calls").read_text().split()
    assert calls.count("create") == 2 and calls.count("delete") == 1
    # Both workers ran the same command, once before the preemption and once after the
    # re-created TPU got the code again.
    runs = (tmp_path / "runs").read_text().splitlines()
    command = (
        "/shared/data -m codeit_jax.main --config=configs/codeit.py --workdir=/shared/run "
        "--config.distributed=True --config.n_meta_iterations=4"
    )
    assert sorted(line.split(" ", 1)[0] for line in runs) == ["w0", "w0", "w1", "w1"]
    for line in runs:
        worker, cwd, rest = line.split(" ", 2)
        assert cwd == str(tmp_path / worker / "codeit_jax") and rest == command
    assert (tmp_path / "w1" / "codeit_jax" / "codeit_jax" / "report" / "page.py").is_file()
