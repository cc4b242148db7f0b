"""Shared fixtures: a private runs folder per test, a fixed torch seed, and the xdist groups that
keep together what must run in one worker process. The helpers the tests import (tiny run
configs, an interrupted or NaN-loss training) are in tests/helpers.py."""
from __future__ import annotations

import os

import pytest
import torch

# `pytest -n auto --dist loadgroup` (tests/run.sh) spreads the tests over the cores; these stay
# together on one worker: each notebook's nbval cells (one kernel runs them in order), and the
# modules whose module-scoped fixture holds a service or costly state (the browser's JupyterLab,
# the one-node Slurm, one execution of every notebook, trained runs), so it is built once.
GROUPED_MODULES = {"test_browser_lab.py": "browser-lab", "test_notebook_figures.py":
                   "notebook-figures", "test_cluster.py": "slurm", "test_failure_modes.py":
                   "failure-modes", "test_integrity.py": "integrity", "test_models_hooks.py":
                   "models-hooks", "test_shipped_teacher.py": "shipped-teacher"}


def threads_per_worker(cores: int | None, workers: int) -> int:
    """Torch threads for one of ``workers`` xdist processes on ``cores`` cores (at least 1): two
    workers of two threads each on two cores contend (a shipped teacher's evaluation ran 10x
    slower under the full suite than alone)."""
    return max(1, (cores or 1) // max(1, workers))


def pytest_configure(config):
    """In an xdist worker: share the cores between the workers, in this process and in the
    processes it starts (notebook kernels, training subprocesses read ``OMP_NUM_THREADS``)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is not None:
        threads = threads_per_worker(os.cpu_count(), int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


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
