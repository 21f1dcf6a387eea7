#!/usr/bin/env bash
# Run CodeIt on a Cloud TPU VM or pod slice: every worker runs the same command, joined by
# jax.distributed.initialize() (--config.distributed=True), and a watch loop re-creates the
# TPU after a preemption and reruns the same command, which resumes from the last Orbax
# checkpoint in WORKDIR. See `launch/tpu_vm.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh COMMAND

Commands (run from the repository root, with gcloud authenticated):
  up       create (if absent) + setup + start + watch: the whole run, surviving preemptions
  create   create the TPU VM / pod slice
  setup    copy this checkout to every worker, install it (and jax[tpu]), mount the bucket
  start    start the CodeIt command on every worker (in the background, logs in ~/codeit.log)
  watch    supervise: re-create and restart after a preemption, restart after a crash,
           stop when the run has finished
  logs     follow worker 0's log (WORKER=all shows every worker's tail)
  status   the TPU's state and, per worker, whether the run is alive or how it ended
  stop     stop the run on every worker
  delete   delete the TPU VM
  --help   this text

Environment (defaults in brackets):
  TPU_NAME          TPU VM name [codeit]
  ZONE              zone [us-central2-b]
  PROJECT           project [gcloud's configured project]
  ACCELERATOR_TYPE  e.g. v4-8 (one host), v4-32 (4 hosts), v5litepod-16 [v4-8]
  RUNTIME_VERSION   TPU software version [tpu-ubuntu2204-base]
  SPOT              1: spot capacity (preemptible, cheaper) [1]
  BUCKET            GCS bucket (no gs://) mounted with gcsfuse at /mnt/BUCKET on every worker;
                    needed to survive preemption (a re-created VM has a new disk) and, on a
                    pod slice, so that every host sees the same checkpoints [unset]
  WORKDIR           run directory on the workers [/mnt/BUCKET/runs/TPU_NAME, or
                    ~/runs/TPU_NAME without BUCKET]
  CONFIG            config file [configs/codeit.py]
  CONFIG_ARGS       extra flags, e.g. "--config.n_meta_iterations=20 --config.model.init_from=..."
  CODEIT_DATA       CodeIt data directory on the workers [/mnt/BUCKET/codeit-data when BUCKET
                    is set, else ~/codeit-data]
  DATA_FROM         local CodeIt data directory copied to CODEIT_DATA on every worker by setup
  JAX_SPEC          pip requirement for JAX on TPU ["jax[tpu]"]
  POLL_SECONDS      watch loop period [120]
  MAX_RESTARTS      restarts after crashes (not preemptions) before watch gives up [3]

Example:
  BUCKET=my-bucket ACCELERATOR_TYPE=v4-32 CONFIG_ARGS="--config.n_meta_iterations=100" \
    launch/tpu_vm.sh up
EOF
}

TPU_NAME=${TPU_NAME:-codeit}
ZONE=${ZONE:-us-central2-b}
PROJECT=${PROJECT:-}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
SPOT=${SPOT:-1}
BUCKET=${BUCKET:-}
CONFIG=${CONFIG:-configs/codeit.py}
CONFIG_ARGS=${CONFIG_ARGS:-}
DATA_FROM=${DATA_FROM:-}
JAX_SPEC=${JAX_SPEC:-jax[tpu]}
POLL_SECONDS=${POLL_SECONDS:-120}
MAX_RESTARTS=${MAX_RESTARTS:-3}
WORKER=${WORKER:-0}
if [[ -n "$BUCKET" ]]; then
  WORKDIR=${WORKDIR:-/mnt/$BUCKET/runs/$TPU_NAME}
  CODEIT_DATA=${CODEIT_DATA:-/mnt/$BUCKET/codeit-data}
else
  WORKDIR=${WORKDIR:-\$HOME/runs/$TPU_NAME}
  CODEIT_DATA=${CODEIT_DATA:-\$HOME/codeit-data}
fi

# Paths on the workers: $HOME is expanded there, not here.
# shellcheck disable=SC2016
REMOTE_REPO='$HOME/codeit_jax'
# shellcheck disable=SC2016
REMOTE_LOG='$HOME/codeit.log'
# shellcheck disable=SC2016
REMOTE_PID='$HOME/codeit.pid'
# shellcheck disable=SC2016
REMOTE_EXIT='$HOME/codeit.exit'

log() { printf '[tpu_vm %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

gcloud_tpu() {
  local args=(compute tpus tpu-vm "$@" --zone="$ZONE")
  [[ -n "$PROJECT" ]] && args+=(--project="$PROJECT")
  gcloud "${args[@]}"
}

# Run a shell command on the given workers ("all" or an index).
on_workers() {
  local workers=$1 command=$2
  gcloud_tpu ssh "$TPU_NAME" --worker="$workers" --command="$command"
}

tpu_state() {
  gcloud_tpu describe "$TPU_NAME" --format='value(state)' 2>/dev/null || echo ABSENT
}

cmd_create() {
  [[ "$(tpu_state)" == ABSENT ]] || { log "$TPU_NAME exists ($(tpu_state))"; return 0; }
  local extra=()
  [[ "$SPOT" == 1 ]] && extra+=(--spot)
  log "creating $TPU_NAME ($ACCELERATOR_TYPE, $RUNTIME_VERSION, spot=$SPOT) in $ZONE"
  gcloud_tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION" "${extra[@]}"
}

cmd_setup() {
  [[ -f setup.cfg && -d codeit_jax ]] || die "run from the repository root"
  local tarball
  tarball=$(mktemp /tmp/codeit_jax.XXXXXX.tar.gz)
  # The working tree as it is (committed or not), without outputs, caches or git history.
  tar --exclude=.git --exclude=./runs --exclude=./.venv --exclude=./venv \
    --exclude='__pycache__' --exclude='*.egg-info' --exclude=.pytest_cache \
    --exclude=.ruff_cache -czf "$tarball" .
  log "copying the checkout to every worker"
  gcloud_tpu scp "$tarball" "$TPU_NAME":codeit_jax.tar.gz --worker=all
  rm -f "$tarball"
  local install="set -e; rm -rf $REMOTE_REPO; mkdir -p $REMOTE_REPO;
    tar -xzf \$HOME/codeit_jax.tar.gz -C $REMOTE_REPO;
    python3 -m pip install -q --upgrade pip;
    python3 -m pip install -q '$JAX_SPEC' -e $REMOTE_REPO"
  if [[ -n "$BUCKET" ]]; then
    install+="; if ! command -v gcsfuse >/dev/null; then
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
        sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null;
      echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\" |
        sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null;
      sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi;
    sudo mkdir -p /mnt/$BUCKET && sudo chown \$USER /mnt/$BUCKET;
    mountpoint -q /mnt/$BUCKET ||
      gcsfuse --implicit-dirs --rename-dir-limit=1000000 $BUCKET /mnt/$BUCKET"
  fi
  log "installing on every worker"
  on_workers all "$install"
  if [[ -n "$DATA_FROM" ]]; then
    [[ -d "$DATA_FROM/training" ]] || die "DATA_FROM=$DATA_FROM has no training/ directory"
    log "copying CodeIt data from $DATA_FROM to $CODEIT_DATA"
    local data_tar
    data_tar=$(mktemp /tmp/codeit_data.XXXXXX.tar.gz)
    tar -C "$DATA_FROM" -czf "$data_tar" .
    gcloud_tpu scp "$data_tar" "$TPU_NAME":codeit_data.tar.gz --worker=all
    rm -f "$data_tar"
    on_workers all "set -e; mkdir -p $CODEIT_DATA; tar -xzf \$HOME/codeit_data.tar.gz -C $CODEIT_DATA"
  fi
}

run_command() {
  # The same command on every worker, written to a script there (so CONFIG_ARGS may hold any
  # quoting) and started in its own session; it records its pid and, at the end, its status.
  cat <<EOF
rm -f $REMOTE_EXIT; mkdir -p $WORKDIR
cat > \$HOME/codeit_run.sh <<'CODEIT_RUN'
cd $REMOTE_REPO
export CODEIT_DATA=$CODEIT_DATA
python3 -m codeit_jax.main --config=$CONFIG --workdir=$WORKDIR --config.distributed=True $CONFIG_ARGS
echo \$? > $REMOTE_EXIT
CODEIT_RUN
setsid nohup bash \$HOME/codeit_run.sh >> $REMOTE_LOG 2>&1 < /dev/null &
echo \$! > $REMOTE_PID
EOF
}

cmd_start() {
  log "starting on every worker: $CONFIG $CONFIG_ARGS -> $WORKDIR"
  on_workers all "$(run_command)"
}

# Worker 0's run state: running | exit:<status> | none
run_state() {
  on_workers 0 "if [ -f $REMOTE_EXIT ]; then echo exit:\$(cat $REMOTE_EXIT);
    elif [ -f $REMOTE_PID ] && kill -0 \$(cat $REMOTE_PID) 2>/dev/null; then echo running;
    else echo none; fi" 2>/dev/null | tail -n 1
}

cmd_stop() {
  on_workers all "[ -f $REMOTE_PID ] && kill -- -\$(cat $REMOTE_PID) 2>/dev/null; true"
}

cmd_watch() {
  local crashes=0 state run
  while true; do
    state=$(tpu_state)
    case "$state" in
      READY)
        run=$(run_state || echo unknown)
        case "$run" in
          running | unknown) ;;
          exit:0)
            log "the run finished; outputs in $WORKDIR"
            return 0
            ;;
          exit:*)
            crashes=$((crashes + 1))
            ((crashes > MAX_RESTARTS)) && die "the run failed $crashes times; see: launch/tpu_vm.sh logs"
            log "the run ended with ${run#exit:}; restart $crashes of $MAX_RESTARTS (resumes)"
            cmd_stop
            cmd_start
            ;;
          none)
            log "no run on the TPU; starting it"
            cmd_start
            ;;
        esac
        ;;
      PREEMPTED | TERMINATED | STOPPED | ABSENT)
        log "TPU is $state; re-creating it and restarting the run (it resumes from $WORKDIR)"
        [[ "$state" == ABSENT ]] || gcloud_tpu delete "$TPU_NAME" --quiet
        cmd_create
        cmd_setup
        cmd_start
        ;;
      *) log "TPU is $state; waiting" ;;
    esac
    sleep "$POLL_SECONDS"
  done
}

cmd_logs() {
  if [[ "$WORKER" == all ]]; then
    on_workers all "tail -n 20 $REMOTE_LOG"
  else
    on_workers "$WORKER" "tail -n 200 -F $REMOTE_LOG"
  fi
}

cmd_status() {
  log "TPU $TPU_NAME: $(tpu_state)"
  on_workers all "echo \"\$(hostname): \$(if [ -f $REMOTE_EXIT ]; then
    echo ended with \$(cat $REMOTE_EXIT); elif [ -f $REMOTE_PID ] &&
    kill -0 \$(cat $REMOTE_PID) 2>/dev/null; then echo running; else echo not running; fi)\""
}

main() {
  local command=${1:-}
  case "$command" in
    -h | --help | help) usage ;;
    up)
      if [[ -z "$BUCKET" ]]; then
        log "warning: no BUCKET; a preempted VM loses WORKDIR and the run starts over"
      fi
      cmd_create
      cmd_setup
      cmd_start
      cmd_watch
      ;;
    create) cmd_create ;;
    setup) cmd_setup ;;
    start) cmd_start ;;
    watch) cmd_watch ;;
    logs) cmd_logs ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    delete) gcloud_tpu delete "$TPU_NAME" --quiet ;;
    "") usage >&2; exit 2 ;;
    *) log "unknown command: $command"; usage >&2; exit 2 ;;
  esac
}

main "$@"
