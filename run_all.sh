#!/usr/bin/env bash
# ddkit's main job. First use sets everything up (virtual environment, packages, the Debian
# Fashion-MNIST package when root); later uses are quick.
#   ./run_all.sh [--profile smoke|default|paper_shaped|paper] [--only NN] [--from NN]
#                                   every notebook in order (papermill); figures to figures/
#   ./run_all.sh --retrain-teacher  retrain the default teacher and rewrite ddkit/shipped/ first
#   ./run_all.sh --setup-only       set-up alone, with the browser test's chromium and the Slurm
#                                   test's slurm-wlm and munge (tests/run.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${DDKIT_VENV:-$ROOT/.venv}"
PROFILE=default
SETUP_ONLY=0
NB_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a name: smoke, default or paper}"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    --only|--from) NB_ARGS+=("$1" "${2:?$1 needs a notebook number, e.g. 02}"); shift 2 ;;
    --retrain-teacher) RETRAIN=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "[ddkit] $*" >&2; }

setup_venv() {
  local stamp="$VENV/.ddkit-installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  say "setting up the virtual environment in $VENV (first use: a few minutes)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local log="$VENV/install.log"
  { "$VENV/bin/python" -m pip install --upgrade pip \
      && "$VENV/bin/python" -m pip install -e "$ROOT[test]"; } > "$log" 2>&1 \
    || { tail -n 30 "$log" >&2; say "package install failed; full log: $log"; exit 1; }
  echo "$want" > "$stamp"
}

setup_data() {
  local debian_dir=/usr/share/datasets/fashion-mnist
  [ -d "$debian_dir" ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's dataset-fashion-mnist"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
      || say "could not install dataset-fashion-mnist; ddkit will try a torchvision download"
  else
    say "Fashion-MNIST not in $debian_dir: run 'sudo apt-get install dataset-fashion-mnist', pass a path, or stay online for a torchvision download"
  fi
}

setup_browser() {
  # tests/faces/test_browser_lab.py drives Debian's chromium through Debian's chromedriver
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
     && grep -qs '^ID=debian' /etc/os-release; then
    say "installing Debian's chromium and chromium-driver (for the browser test; about 20 s)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; } \
      || say "could not install chromium and chromium-driver; the browser test will be skipped"
  else
    say "chromium or chromedriver not found: the browser test will be skipped; to run it, install them (Debian: 'sudo apt-get install chromium chromium-driver')"
  fi
}

setup_slurm() {
  # tests/runs/test_cluster.py starts a one-node Slurm on localhost from Debian's slurm-wlm and munge
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
     && grep -qs '^ID=debian' /etc/os-release; then
    say "installing Debian's slurm-wlm and munge (for the Slurm test; about 30 s)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1; }; } \
      || say "could not install slurm-wlm and munge; the Slurm test will be skipped"
  else
    say "slurmctld, slurmd or munged not found: the Slurm test will be skipped; to run it, install them as root (Debian: 'sudo apt-get install slurm-wlm munge')"
  fi
}

setup_venv
setup_data
if [ "$SETUP_ONLY" = 1 ]; then setup_browser; setup_slurm; exit 0; fi

cd "$ROOT"
export PYTHONUNBUFFERED=1
if [ "${RETRAIN:-0}" = 1 ]; then
  say "retraining the shipped teacher (profile default)"
  "$VENV/bin/python" -m ddkit.cli ship-teacher --profile default
fi
started=$(date +%s)
"$VENV/bin/python" -m ddkit.cli notebooks --profile "$PROFILE" "${NB_ARGS[@]}"
say "profile $PROFILE done in $(( $(date +%s) - started )) s"
