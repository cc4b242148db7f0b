#!/usr/bin/env bash
# Run a benchmark with a long-running ddkit job paused, so that it does not share the cores:
# SIGSTOP before, SIGCONT on every way out (normal end, error, Ctrl-C, kill). Nothing is killed.
#   benchmarks/quiet.sh .venv/bin/python benchmarks/bench_study.py
#   DDKIT_PAUSE="train --profile paper_shaped" benchmarks/quiet.sh CMD...   (the default pattern)
set -uo pipefail
PATTERN="${DDKIT_PAUSE:-train --profile paper_shaped}"
PIDS="$(pgrep -f -- "$PATTERN" | grep -vx "$$" || true)"
resume() {
  for pid in $PIDS; do kill -CONT "$pid" 2>/dev/null && echo "[quiet] resumed $pid" >&2; done
}
trap resume EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for pid in $PIDS; do
  kill -STOP "$pid" && echo "[quiet] paused $pid ($(tr '\0' ' ' < /proc/"$pid"/cmdline | cut -c1-80))" >&2
done
[ -n "$PIDS" ] || echo "[quiet] nothing matches '$PATTERN'; running as is" >&2
echo "[quiet] load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$@"
