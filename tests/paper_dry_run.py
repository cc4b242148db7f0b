"""The paper path, dry-run at toy size: the command a GPU user types,

    torchrun --nproc_per_node N -m ddkit.cli train --profile paper --kd soft --feature spectral --layers last

on a tiny ImageFolder of generated JPEG images (4 classes, 16 training and 8 validation images)
instead of ImageNet, with the real ``deit_tiny_patch16_224`` student and ``cait_s24_224`` teacher
at 224 px (random weights: ``pretrained`` off, the heads sized for the 4 classes), 2 images per
process and a global batch of 4 x N (two accumulation steps), one epoch: two optimizer steps on
each process. Then ``ddkit analyze --paper-faithful`` on the finished run. Everything else is the
``paper`` profile as it ships (augmentation, loader workers, the lr rule, DDP, bf16 on CUDA).

    .venv/bin/python tests/paper_dry_run.py --device cpu --nproc 2      # gloo, as the suite runs it
    .venv/bin/python tests/paper_dry_run.py --device cuda --nproc 8     # nccl, one process per GPU

``tests/runs/test_paper_path.py`` runs it on the CPU; ``benchmarks/gpu_check.sh`` on the GPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 4, 2
PER_PROCESS, ACCUM = 2, 2
RECIPE = ["--kd", "soft", "--feature", "spectral", "--layers", "last"]


def make_imagefolder(root: Path, size: int = 64, seed: int = 0) -> Path:
    """``root/{train,val}/class_k/*.jpg``: smooth random colour images, a JPEG each."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for k in range(CLASSES):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                image = Image.fromarray(low).resize((size, size), Image.BICUBIC)
                image.save(folder / f"{split}_{k}_{i}.jpg", quality=90)
    return root


def overrides(data_root: Path, nproc: int) -> list[str]:
    """The ``--set`` values that make the paper profile toy-sized (nothing else changes)."""
    sets = {"data.root": str(data_root), "data.batch_size": PER_PROCESS,
            "data.eval_batch_size": 4, "data.num_workers": 1,
            "student.optim.epochs": 1, "student.optim.global_batch": PER_PROCESS * nproc * ACCUM,
            "student.model.kwargs.num_classes": CLASSES,
            "distill.teacher.pretrained": "false",
            "distill.teacher.kwargs": f"{{num_classes: {CLASSES}}}"}
    return [part for key, value in sets.items() for part in ("--set", f"{key}={value}")]


def train_command(data_root: Path, device: str, nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), "-m", "ddkit.cli", "train", "--profile", "paper", *RECIPE,
            "--device", device, *overrides(data_root, nproc)]


def analyze_command(run_dir: Path, out: Path, device: str, figures: bool = True) -> list[str]:
    return [sys.executable, "-m", "ddkit.cli", "analyze", str(run_dir), "--paper-faithful",
            "--n", str(CLASSES * VAL_PER_CLASS), "--device", device, "--out", str(out),
            *([] if figures else ["--no-figures"])]


def _run(cmd: list[str], env: dict, timeout: float) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:8])} ... failed ({done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return time.perf_counter() - began, done.stdout + done.stderr


def run(workdir: Path, device: str = "cpu", nproc: int = 2, figures: bool = True,
        timeout: float = 600) -> dict:
    """Make the data, train the paper run on ``nproc`` processes, analyse it; returns what the
    run and the analysis wrote (paths, summary, settings, wall times)."""
    workdir = Path(workdir)
    data = make_imagefolder(workdir / "imagefolder")
    runs = workdir / "runs"
    env = {**os.environ, "DDKIT_RUNS": str(runs), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    train_s, train_log = _run(train_command(data, device, nproc), env, timeout)
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and (p / "summary.json").is_file()]
    analyze_s, analyze_log = _run(analyze_command(run_dir, workdir / "analysis", device, figures),
                                  env, timeout)
    return {"run_dir": run_dir, "summary": json.loads((run_dir / "summary.json").read_text()),
            "records": [json.loads(line) for line in
                        (run_dir / "metrics.jsonl").read_text().splitlines()],
            "analysis": workdir / "analysis",
            "settings": json.loads((workdir / "analysis" / "settings.json").read_text()),
            "train_s": round(train_s, 1), "analyze_s": round(analyze_s, 1),
            "train_log": train_log, "analyze_log": analyze_log}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--nproc", type=int, default=2, help="processes (on CUDA: one per GPU)")
    ap.add_argument("--workdir", default=None, help="where data, runs and the analysis go "
                    "(default: a new temporary folder)")
    ap.add_argument("--json", default=None, help="also write the result's numbers here")
    args = ap.parse_args()
    import tempfile
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ddkit-paper-dry-run-"))
    out = run(workdir, args.device, args.nproc)
    s = out["summary"]
    result = {"device": s["device"], "world_size": s["world_size"],
              "global_batch": s["global_batch"], "grad_accum_steps": s["grad_accum_steps"],
              "lr": s["lr"], "train_loss": out["records"][-1]["train_loss"],
              "test_acc1": s["final_acc1"], "train_s": out["train_s"],
              "analyze_s": out["analyze_s"], "run_dir": str(out["run_dir"])}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
