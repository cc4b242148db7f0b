"""ddkit's distillation step against the bare work it wraps, timed in one run.

bare  = teacher forward (no grad) + student forward + cross-entropy backward + AdamW step
ddkit = ddkit.train.train_step on the SoftKD + SpectralKD First+Last task: teacher and student
        through forward_intermediates, the full loss with its parts, NaN check, AdamW step

Both loops see the same batch and alternate in rounds (bare, ddkit, bare, ...) so drifts of the
machine hit both alike; the ratio of the medians is ddkit's overhead.

    python benchmarks/bench_distill_step.py [--device cpu|cuda] [--batch 128] [--rounds 15]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from ddkit.config import ModelConfig, load_profile, replace
from ddkit.train import build_task, train_step

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=4, help="steps per timed block")
    args = ap.parse_args()
    device = torch.device(args.device)

    profile = load_profile(args.profile)
    teacher = ModelConfig(name=profile.teacher.model.name, kwargs=profile.teacher.model.kwargs)
    cfg = replace(profile.student_config(kd="soft", feature="spectral", layers="first_last",
                                         teacher=teacher), device=args.device)
    torch.manual_seed(0)
    task, _ = build_task(cfg, device)
    task.train()
    ddkit_opt = create_optimizer_v2(task.trainable_module, "adamw", lr=1e-4, weight_decay=0.05)

    torch.manual_seed(0)
    bare_task, _ = build_task(cfg, device)         # same architectures, separate weights
    student, bare_teacher = bare_task.student.train(), bare_task.teacher.eval()
    bare_opt = create_optimizer_v2(student, "adamw", lr=1e-4, weight_decay=0.05)

    shape = (args.batch, student.patch_embed.proj.in_channels, *student.patch_embed.img_size)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, student.num_classes, (args.batch,), device=device)

    def bare_step() -> None:
        with torch.no_grad():
            bare_teacher(x)
        loss = F.cross_entropy(student(x), y)
        bare_opt.zero_grad(set_to_none=True)
        loss.backward()
        bare_opt.step()

    def ddkit_step() -> None:
        train_step(task, ddkit_opt, x, y, cfg, device)

    def timed(step) -> float:
        _sync(device)
        began = time.perf_counter()
        for _ in range(args.steps):
            step()
        _sync(device)
        return (time.perf_counter() - began) / args.steps

    for step in (bare_step, ddkit_step):            # warm-up
        timed(step)
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(timed(bare_step))
        ours.append(timed(ddkit_step))
    b, o = statistics.median(bare), statistics.median(ours)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    table = "\n".join([
        f"Distillation step, profile `{args.profile}` ({cfg.model.name} <- {teacher.name}), "
        f"batch {args.batch}, {name}, median of {args.rounds} rounds x {args.steps} steps:",
        "",
        "| step | ms / step | images / s |",
        "|---|---|---|",
        f"| bare work (teacher fwd + student fwd/bwd + AdamW) | {b * 1e3:.1f} | {args.batch / b:.0f} |",
        f"| ddkit SoftKD + SpectralKD First+Last | {o * 1e3:.1f} | {args.batch / o:.0f} |",
        "",
        f"ddkit / bare = **{o / b:.3f}** (overhead {100 * (o / b - 1):+.1f} %)",
    ])
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"distill_step_{device.type}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
