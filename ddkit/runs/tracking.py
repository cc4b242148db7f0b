"""Experiment tracking beside a run's own log: TensorBoard events (on by default) and, when the
optional ``wandb`` package is installed and a project is named, a Weights & Biases run.

``metrics.jsonl`` stays the record (it matches the official logs); the trackers get the same
numbers, one point per epoch under the log's own keys (``train_loss``, ``test_acc1``,
``train_loss_feat/0-0``, ...), written by rank 0 only. The events lie in the run folder, so

    tensorboard --logdir runs/        # or: ddkit tb

shows every run under its folder name. A resumed run starts a new events file that drops what
the interrupted one wrote from the resumed epoch on (TensorBoard's ``purge_step``). Neither
tracker is part of a run's identity (``tensorboard: false`` and ``wandb: PROJECT`` in a profile or
a run config, ``--no-tensorboard`` / ``--log-wandb PROJECT`` on the command line).
"""
from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

EVENTS_GLOB = "events.out.tfevents.*"


class Trackers:
    """The trackers of one run (rank 0): ``log(record)`` once per epoch, ``close()`` at the end."""

    def __init__(self, run_dir: Path, name: str, config: dict, tensorboard: bool = True,
                 wandb_project: str | None = None, start_epoch: int = 0):
        self.writer = None
        self.wandb_run = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # lazy: imports tensorboard (~1 s)
            except ImportError as err:
                log.warning("no TensorBoard events for %s: %s (pip install tensorboard, or set "
                            "tensorboard: false)", run_dir, err)
            else:
                self.writer = SummaryWriter(str(run_dir), purge_step=start_epoch or None)
                if not start_epoch:
                    self.writer.add_text("config", "```\n" + json.dumps(config, indent=2)
                                         + "\n```", 0)
        if wandb_project:   # an optional package, found by config.validate
            wandb = importlib.import_module("wandb")
            self.wandb_run = wandb.init(project=wandb_project, name=run_dir.name, config=config,
                                        dir=str(run_dir), id=run_dir.name, resume="allow")

    def log(self, record: dict) -> None:
        """One epoch's record (its ``epoch`` is the step); only finite numbers are written."""
        step = int(record["epoch"])
        scalars = {k: float(v) for k, v in record.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)}
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({**scalars, "epoch": step}, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def event_files(run_dir: Path) -> list[Path]:
    """The TensorBoard events files of a run folder."""
    return sorted(Path(run_dir).glob(EVENTS_GLOB))
