"""Progress events from training to whoever drives it.

A run started inside a notebook kernel cannot write to the terminal of ``./run_all.sh``; when
``$DDKIT_PROGRESS`` names a file, ``emit`` appends one JSON line per event to it (one ``write``
call per line, so worker processes may share the file) and the notebook pipeline relays them.
Without the variable ``emit`` does nothing.

Events and their fields (all carry ``event`` and ``time``, seconds since the epoch):

    plan      what a batch of runs will do: label, total, cached (already complete)
    run_start a run begins or resumes: run (its folder name), epochs, resumed_from (epoch or 0),
              global_batch and lr (the peak learning rate it implies)
    epoch     an epoch ended: run, epoch (1-based), epochs, acc1, elapsed_s
    run_done  a run finished: run, acc1 (final top-1), wall_s (its training time), cached
"""
from __future__ import annotations

import json
import os
import time

ENV = "DDKIT_PROGRESS"


def emit(event: str, **fields) -> None:
    """Append ``{"event": event, "time": now, **fields}`` to ``$DDKIT_PROGRESS`` if it is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"event": event, "time": round(time.time(), 2), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
