"""What the paper's 14x14 token grid would cost the paper-shaped study on this machine.

The kit's paper-shaped pair sees a 7x7 grid (patch 4 on 28x28); patch 2 gives the paper's 14x14
(196 tokens, as DeiT-Tiny at 224 px). Both grids are timed interleaved in one process, so the
ratio holds even on a busy machine: the student's training step (forward, backward, AdamW) and the
teacher's forward (its outputs are cached for un-augmented students).

    python benchmarks/bench_grid.py [--threads 1] [--batch 64] [--reps 3]
"""
from __future__ import annotations

import argparse
import time

import timm
import torch

import ddkit.core.models  # noqa: F401  (registers the kit's presets with timm)


def step_seconds(name: str, patch: int, train: bool, x: torch.Tensor, reps: int) -> float:
    model = timm.create_model(name, patch_size=patch)
    opt = torch.optim.AdamW(model.parameters())
    y = torch.zeros(len(x), dtype=torch.long)

    def once() -> None:
        if train:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)

    once()  # warm-up
    began = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - began) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 1, 28, 28)
    print(f"batch {args.batch}, {args.threads} thread(s), seconds per batch")
    for name, train in (("ddkit_deit_student_fmnist", True), ("ddkit_cait_teacher_fmnist", False)):
        coarse, fine = (step_seconds(name, p, train, x, args.reps) for p in (4, 2))
        what = "fwd+bwd+AdamW" if train else "forward"
        print(f"{name} {what}: 7x7 {coarse:.3f} s, 14x14 {fine:.3f} s: {fine / coarse:.1f}x")


if __name__ == "__main__":
    main()
