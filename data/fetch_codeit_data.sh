#!/usr/bin/env bash
# Fetch the official CodeIt data files into a directory, default ./codeit-data: the 400 ARC
# training tasks with ground-truth DSL programs, the 400 evaluation tasks, split_keys.json,
# mutation_performance.csv, the mutation baseline's mutated_tasks_train_9600.json and
# mutated_tasks_train_19200.json (the paper config's seed files, configs/codeit.py) and its
# mutation_solutions_19200.json.
#
#   bash data/fetch_codeit_data.sh [DEST]                 # download the official repository
#   bash data/fetch_codeit_data.sh --from SRC_DIR [DEST]  # copy from a local checkout/copy
#
# Then point codeit_jax at it: export CODEIT_DATA=$PWD/codeit-data (or the config's data_dir).
# Nothing is committed to this repository; the data stay where you put them.
set -euo pipefail

REPO_URL="${CODEIT_REPO_URL:-https://github.com/Qualcomm-AI-research/codeit}"
REF="${CODEIT_REF:-main}"

src=""
if [[ "${1:-}" == "--from" ]]; then
  src="${2:?--from needs a directory}"
  shift 2
fi
dest="${1:-codeit-data}"

copy_data() {  # $1: a directory holding training/ and evaluation/
  local from="$1"
  for need in training evaluation; do
    [[ -d "$from/$need" ]] || { echo "error: $from/$need not found" >&2; exit 1; }
  done
  mkdir -p "$dest"
  cp -r "$from/training" "$from/evaluation" "$dest/"
  for f in "$from"/split_keys.json "$from"/mutation_performance.csv \
           "$from"/mutated_tasks_train_*.json "$from"/mutation_solutions_*.json; do
    if [[ -e "$f" ]]; then cp "$f" "$dest/"; fi
  done
  for f in mutated_tasks_train_9600.json mutated_tasks_train_19200.json; do
    if [[ ! -e "$dest/$f" ]]; then
      echo "warning: $f not found in $from; configs/codeit.py needs it (without the mutated" \
           "files: configs/a6_no_mutated.py or --config.data.mutated_files=)" >&2
    fi
  done
  if [[ ! -e "$dest/mutation_solutions_19200.json" ]]; then
    echo "warning: mutation_solutions_19200.json (official mutation baseline solutions) not" \
         "found in $from" >&2
  fi
  local n_train n_eval
  n_train=$(find "$dest/training" -name '*.json' | wc -l)
  n_eval=$(find "$dest/evaluation" -name '*.json' | wc -l)
  echo "CodeIt data in $dest: $n_train training tasks, $n_eval evaluation tasks"
  if [[ "$n_train" -ne 400 || "$n_eval" -ne 400 ]]; then
    echo "warning: expected 400 training and 400 evaluation tasks" >&2
  fi
}

if [[ -n "$src" ]]; then
  if [[ -d "$src/data/training" ]]; then src="$src/data"; fi
  copy_data "$src"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "Downloading $REPO_URL ($REF) ..."
if command -v git >/dev/null 2>&1; then
  git clone --depth 1 --branch "$REF" --filter=blob:none --sparse "$REPO_URL" "$tmp/codeit"
  git -C "$tmp/codeit" sparse-checkout set data
else
  mkdir -p "$tmp/codeit"
  curl -fsSL "$REPO_URL/archive/refs/heads/$REF.tar.gz" | tar -xz -C "$tmp/codeit" --strip-components=1
fi
copy_data "$tmp/codeit/data"
