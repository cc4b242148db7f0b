"""The GPU check exists and runs: ``benchmarks/gpu_check.sh --device cpu`` at smoke size (every
step but the paper dry run, which tests/runs/test_paper_path.py runs), writing its block to a file and
leaving docs/benchmarks.md alone; the docs say the check has not run on a GPU yet."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_the_docs_hold_the_gpu_block_and_say_it_has_not_run_on_a_gpu():
    text = gpu_check.DOC.read_text()
    start, end = text.index(gpu_check.BEGIN), text.index(gpu_check.END)
    assert start < end
    assert "Not run on a GPU yet" in text[start:end]
    assert "benchmarks/gpu_check.sh" in text


def test_the_block_replaces_only_what_lies_between_the_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{gpu_check.BEGIN}\nold\n{gpu_check.END}\nafter\n")
    gpu_check.write_doc_block("new\n", doc)
    assert doc.read_text() == f"before\n{gpu_check.BEGIN}\nnew\n{gpu_check.END}\nafter\n"


@pytest.mark.skipif(sys.platform != "linux", reason="gloo processes on Linux")
def test_gpu_check_runs_on_the_cpu_at_smoke_size(tmp_path):
    doc_before = gpu_check.DOC.read_bytes()
    block = tmp_path / "block.md"
    env = {"DDKIT_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu",
                           "--skip", "paper", "--workdir", str(tmp_path / "work"),
                           "--out", str(block)], cwd=ROOT, capture_output=True, text=True,
                          timeout=3600, env={**os.environ, **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = block.read_text()
    for step in ("metrics", "ddp", "bench_metrics", "bench_distill_step", "bench_study"):
        assert f"| {step} | ok |" in text, text
    assert "one epoch on 2 process(es) (cpu, DDP)" in text
    assert "9 of 9 metrics match the CPU" in text
    assert "s wall, exit 0" in done.stderr
    assert gpu_check.DOC.read_bytes() == doc_before, "a CPU run must not write the docs"
