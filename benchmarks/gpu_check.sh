#!/usr/bin/env bash
# The GPU check, one command (within 8 minutes on one GPU; benchmarks/gpu_check.py says what it
# runs): CUDA metrics against the CPU's, a DDP step over every visible GPU, bench_metrics,
# bench_distill_step and bench_study with --device cuda, and the paper path's dry run on CUDA;
# writes the GPU block of docs/benchmarks.md.
#   benchmarks/gpu_check.sh                       # on a GPU box
#   benchmarks/gpu_check.sh --device cpu          # the same steps at smoke size (the suite runs it)
# Extra arguments go to gpu_check.py (--skip STEP ..., --out FILE, --workdir DIR, --no-docs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${DDKIT_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "${DDKIT_VENV:-$ROOT/.venv}/bin/python" ]; then PYTHON="${DDKIT_VENV:-$ROOT/.venv}/bin/python"
  else PYTHON="$(command -v python3)"; fi
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
status=0
"$PYTHON" benchmarks/gpu_check.py "$@" || status=$?
echo "[ddkit] gpu_check: $(( $(date +%s) - started )) s wall, exit $status" >&2
exit $status
