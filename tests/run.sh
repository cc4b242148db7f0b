#!/usr/bin/env bash
# The whole test suite: set-up on first use (as ./run_all.sh), ruff (lint and import order, its
# settings in pyproject.toml), then pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/run_all.sh" --setup-only
cd "$ROOT"
VENV="${DDKIT_VENV:-$ROOT/.venv}"
"$VENV/bin/ruff" check ddkit tests
exec "$VENV/bin/python" -m pytest "$@"
