"""The paper path, dry-run on the CPU: ``torchrun --nproc_per_node 2 -m ddkit.cli train --profile
paper`` with the real DeiT-Tiny student and CaiT-S24 teacher at 224 px (random weights) on a tiny
ImageFolder of generated JPEGs, two gloo processes, two optimizer steps each (two accumulated
micro-batches per step), the run's summary, and ``ddkit analyze --paper-faithful`` of the result
(``tests/paper_dry_run.py``; ``benchmarks/gpu_check.sh`` runs the same on CUDA)."""
import sys

import pandas as pd
import pytest

from ddkit.runs.tracking import event_files
from tests.paper_dry_run import ACCUM, CLASSES, PER_PROCESS, TRAIN_PER_CLASS, VAL_PER_CLASS, run


@pytest.mark.skipif(sys.platform != "linux", reason="gloo processes on Linux")
def test_the_paper_profile_trains_and_analyses_on_two_cpu_processes(tmp_path):
    out = run(tmp_path, device="cpu", nproc=2, figures=False)
    s = out["summary"]
    config = s["config"]
    assert config["model"]["name"] == "deit_tiny_patch16_224"
    assert config["distill"]["teacher"]["name"] == "cait_s24_224"
    assert config["data"]["img_size"] == 224 and config["data"]["augment"] is True
    assert (config["distill"]["kd"], config["distill"]["feature"],
            config["distill"]["layers"]) == ("soft", "spectral", "last")
    world = 2
    assert s["world_size"] == world == config["world_size"] and s["device"] == "cpu"
    assert (s["global_batch"], s["grad_accum_steps"]) == (PER_PROCESS * world * ACCUM, ACCUM)
    assert s["lr"] == pytest.approx(5e-4 * PER_PROCESS * world * ACCUM / 512)   # the paper's rule
    steps = CLASSES * TRAIN_PER_CLASS // world // PER_PROCESS // ACCUM
    assert steps == 2, "two optimizer steps on each process"
    (record,) = out["records"]
    assert record["train_loss_fft"] > 0 and record["train_loss_dist"] > 0
    assert "global batch 8 = 2 per process x 2 process(es) x 2 accumulation step(s)" in \
        out["train_log"]
    assert event_files(out["run_dir"])
    settings = out["settings"]
    assert settings["paper_faithful"] is True and settings["images"] == CLASSES * VAL_PER_CLASS
    assert settings["dataset"] == "imagefolder" and settings["img_size"] == 224
    layers = pd.read_csv(out["analysis"] / "layers.csv")
    assert sorted(layers["layer"].unique()) == list(range(12))      # DeiT-Tiny's 12 blocks
    assert "## " in (out["analysis"] / "summary.md").read_text()
