"""The suite's xdist groups hold: tests marked with one ``xdist_group`` run on one worker (the
smoke execution behind the inline-figure test, the browser's JupyterLab and the one-node Slurm
are built once per worker that runs them; split over two workers, two executions of the same
notebooks overwrote each other's executed copies). pytest 9 with pytest-xdist 3.8 split every
group silently; this runs a small suite on two workers and reads where each test ran."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import GROUPED_MODULES, threads_per_worker, xdist_group

PROBE = '''
import os
import pytest

@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("n", range(8))
def test_grouped(n):
    pass

@pytest.mark.parametrize("n", range(8))
def test_free(n):
    pass
'''


def test_a_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
                          "--dist", "loadgroup", "-v", "-o", "addopts=", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    workers = set(re.findall(r"\[(gw\d)\] .*PASSED .*test_grouped\[", out.stdout))
    assert len(re.findall(r"PASSED .*test_grouped\[", out.stdout)) == 8
    assert len(workers) == 1, f"the group ran on {sorted(workers)}"


def test_each_grouped_module_has_its_group():
    class Item:
        def __init__(self, path):
            self.path = Path(path)
    for name, group in GROUPED_MODULES.items():
        assert xdist_group(Item(f"tests/x/{name}")) == group
    assert xdist_group(Item("notebooks/09_phase_map.ipynb")) == "nbval-09_phase_map"
    assert xdist_group(Item("tests/core/test_losses.py")) is None


def test_threads_share_the_cores_between_workers():
    assert [threads_per_worker(2, w) for w in (1, 2, 4)] == [2, 1, 1]
    assert threads_per_worker(None, 2) == 1 and threads_per_worker(16, 4) == 4
