#!/usr/bin/env bash
# Runs every benchmark, one after another: they compete for the same cores.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
status=0
for script in benchmarks/load/run.py benchmarks/serve/run.py benchmarks/train_checkpoint.py \
              benchmarks/runs_ui/run.py benchmarks/cluster/run.py benchmarks/formats/run.py; do
  if [ -f "$script" ]; then
    echo "== $script =="
    "$PY" "$script" "$@" || { echo "benchmark $script failed"; status=1; }
  fi
done
exit $status
