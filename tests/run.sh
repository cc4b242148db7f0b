#!/usr/bin/env bash
# The whole test suite: set-up on first use (as ./run_all.sh), ruff (lint and import order, its
# settings in pyproject.toml), then pytest on every core (pytest-xdist: -n auto --dist loadgroup;
# tests/conftest.py keeps each notebook's cells, the browser test and the Slurm tests on one
# worker). Extra arguments go to pytest (-n 0 runs it in one process). Prints the suite's own
# wall time at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/run_all.sh" --setup-only
cd "$ROOT"
VENV="${DDKIT_VENV:-$ROOT/.venv}"
"$VENV/bin/ruff" check ddkit tests benchmarks
started=$(date +%s)
status=0
if [ $# -gt 0 ]; then
  "$VENV/bin/python" -m pytest -n "${DDKIT_TEST_WORKERS:-auto}" --dist loadgroup "$@" || status=$?
else
  # tests/ on every core; the notebooks' nbval cells in one process (one kernel per notebook runs
  # its cells in order: the xdist groups of tests/conftest.py do not reach notebooks/ yet)
  "$VENV/bin/python" -m pytest -n "${DDKIT_TEST_WORKERS:-auto}" --dist loadgroup tests || status=$?
  "$VENV/bin/python" -m pytest -n 0 notebooks || status=$?
fi
wall=$(( $(date +%s) - started ))
echo "[ddkit] test suite: ${wall} s wall ($(( wall / 60 )) min $(( wall % 60 )) s), exit ${status}"
exit $status
