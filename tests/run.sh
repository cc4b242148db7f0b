#!/usr/bin/env bash
# The whole test suite: set-up on first use (as ./run_all.sh), then pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/run_all.sh" --setup-only
cd "$ROOT"
exec "${DDKIT_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
