"""Shared fixtures: a private runs folder per test and tiny run configs (seconds on 2 cores), and
the xdist groups that keep together what must run in one worker process."""
from __future__ import annotations

import contextlib

import pytest
import torch

import ddkit.runs.train as train_mod
from ddkit.core.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig
from ddkit.core.losses import DistillationLoss

TINY_STUDENT = ModelConfig(name="ddkit_vit_student_fmnist",
                           kwargs={"embed_dim": 16, "depth": 2, "num_heads": 2})
TINY_TEACHER = ModelConfig(name="ddkit_vit_teacher_fmnist",
                           kwargs={"embed_dim": 32, "depth": 4, "num_heads": 2})


def tiny_config(epochs: int = 2, **distill) -> RunConfig:
    """A student run on 128 Fashion-MNIST images; ``distill`` sets the loss recipe."""
    recipe = DistillConfig(teacher=TINY_TEACHER, **distill) if distill else DistillConfig()
    return RunConfig(
        name="tiny", model=TINY_STUDENT,
        data=DataConfig(train_subset=128, eval_subset=100, batch_size=32, augment=True),
        optim=OptimConfig(epochs=epochs, lr=1e-3, warmup_epochs=1, sched_per_step=True),
        distill=recipe, seed=3, device="cpu")


# `pytest -n auto --dist loadgroup` (tests/run.sh) spreads the tests over the cores; these stay
# together on one worker: each notebook's nbval cells (one kernel runs them in order), and the
# modules whose module-scoped fixture holds a service or costly state (the browser's JupyterLab,
# the one-node Slurm, one execution of every notebook, trained runs), so it is built once.
GROUPED_MODULES = {"test_browser_lab.py": "browser-lab", "test_notebook_figures.py":
                   "notebook-figures", "test_cluster.py": "slurm", "test_failure_modes.py":
                   "failure-modes", "test_integrity.py": "integrity", "test_models_hooks.py":
                   "models-hooks", "test_shipped_teacher.py": "shipped-teacher"}


def xdist_group(item) -> str | None:
    """The xdist group of a collected test (None: it may run on any worker)."""
    path = item.path
    if path.suffix == ".ipynb":
        return f"nbval-{path.stem}"
    return GROUPED_MODULES.get(path.name)


@pytest.hookimpl(tryfirst=True)   # before xdist reads the marks (its hook is registered later)
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    """Every test writes its runs to its own temporary folder."""
    root = tmp_path / "runs"
    monkeypatch.setenv("DDKIT_RUNS", str(root))
    return root


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@contextlib.contextmanager
def interrupted_at_epoch(monkeypatch, epoch: int):
    """Inside the block, training raises KeyboardInterrupt (as Ctrl-C would) when it reaches
    ``epoch`` (0-based); the real epoch loop is back when the block ends."""
    real = train_mod._train_epoch

    def stop(task, loader, optimizer, scheduler, cfg, device, at, *rest):
        if at == epoch:
            raise KeyboardInterrupt
        return real(task, loader, optimizer, scheduler, cfg, device, at, *rest)
    monkeypatch.setattr(train_mod, "_train_epoch", stop)
    try:
        yield
    finally:
        monkeypatch.setattr(train_mod, "_train_epoch", real)


def nan_loss_after_steps(monkeypatch, steps: int) -> None:
    """Every distillation loss after the first ``steps`` training steps is NaN."""
    real = DistillationLoss.forward
    calls = {"n": 0}

    def nan_later(self, *args, **kwargs):
        parts = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > steps:
            parts["loss"] = parts["loss"] * float("nan")
        return parts
    monkeypatch.setattr(DistillationLoss, "forward", nan_later)
