#!/usr/bin/env bash
# Run CodeIt on one machine with all its GPUs: a single process sees every GPU, and the data
# mesh spans them, so no jax.distributed setup is needed. A crashed run is restarted; it resumes
# from the last Orbax checkpoint in WORKDIR. See `launch/gpu.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/gpu.sh [install | run [EXTRA_FLAGS...] | --help]

  install   pip install JAX for CUDA and this package (editable) into the current Python
  run       run CodeIt (the default command); EXTRA_FLAGS are appended to the command line,
            e.g. launch/gpu.sh run --config.n_meta_iterations=20

Environment (defaults in brackets):
  CONFIG        config file [configs/codeit.py]
  WORKDIR       output directory; running again resumes it [runs/codeit]
  CONFIG_ARGS   extra flags, as one string [empty]
  GPUS          GPUs to use, as CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 [all]
  PYTHON        Python interpreter [python3]
  JAX_SPEC      pip requirement for JAX with CUDA ["jax[cuda12]"]
  MAX_RESTARTS  reruns after a failure (each resumes from the last checkpoint) [2]
  CODEIT_DATA   CodeIt data directory [../shared/codeit-data next to the checkout]

The console output is also appended to WORKDIR/console.log.
EOF
}

CONFIG=${CONFIG:-configs/codeit.py}
WORKDIR=${WORKDIR:-runs/codeit}
CONFIG_ARGS=${CONFIG_ARGS:-}
GPUS=${GPUS:-}
PYTHON=${PYTHON:-python3}
JAX_SPEC=${JAX_SPEC:-jax[cuda12]}
MAX_RESTARTS=${MAX_RESTARTS:-2}

log() { printf '[gpu %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cmd_install() {
  "$PYTHON" -m pip install --upgrade "$JAX_SPEC" -e .
  "$PYTHON" -c 'import jax; print("JAX devices:", jax.devices())'
}

cmd_run() {
  [[ -f "$CONFIG" ]] || { log "error: no config file $CONFIG (run from the repository root)"; exit 2; }
  [[ -n "$GPUS" ]] && export CUDA_VISIBLE_DEVICES="$GPUS"
  mkdir -p "$WORKDIR"
  local extra=()
  # CONFIG_ARGS is a list of flags in one string: split it on whitespace, on purpose.
  read -r -a extra <<<"$CONFIG_ARGS"
  local run=("$PYTHON" -m codeit_jax.main "--config=$CONFIG" "--workdir=$WORKDIR"
    "${extra[@]}" "$@")
  local attempt=0 status
  while true; do
    log "running: ${run[*]}"
    set +e
    "${run[@]}" 2>&1 | tee -a "$WORKDIR/console.log"
    status=${PIPESTATUS[0]}
    set -e
    if ((status == 0)); then
      log "finished; outputs in $WORKDIR (report: $PYTHON -m codeit_jax.report --workdir=$WORKDIR)"
      return 0
    fi
    if ((status == 130 || status == 143)); then
      log "interrupted (status $status); not restarting"
      return "$status"
    fi
    attempt=$((attempt + 1))
    if ((attempt > MAX_RESTARTS)); then
      log "error: the run failed with status $status, $attempt time(s); giving up"
      return "$status"
    fi
    log "the run failed with status $status; restart $attempt of $MAX_RESTARTS (it resumes)"
    sleep 5
  done
}

main() {
  local command=${1:-run}
  [[ $# -gt 0 ]] && shift
  case "$command" in
    -h | --help | help) usage ;;
    install) cmd_install ;;
    run) cmd_run "$@" ;;
    *) log "unknown command: $command"; usage >&2; exit 2 ;;
  esac
}

main "$@"
