"""ddkit's distillation step against the bare work it wraps, timed in one run.

bare  = teacher forward (no grad) + student forward + cross-entropy backward + AdamW step
ddkit = ddkit.runs.train.train_step on the SoftKD + SpectralKD First+Last task: teacher and student
        through forward_intermediates, the full loss with its parts, NaN check, AdamW step

Both loops see the same batch and alternate in rounds (bare, ddkit, bare, ...) so drifts of the
machine hit both alike; the ratio of the medians is ddkit's overhead.

How close to the machine's limit: the FLOPs of one forward + backward of each step (matmuls,
attention, convolutions; torch.utils.flop_counter.FlopCounterMode, taught the CPU attention
kernels it does not know) over the median step time, against the GEMM peak measured in the same
run (the best of a few large square matmuls in the step's dtype, same thread count).

    python benchmarks/bench_distill_step.py [--device cpu|cuda] [--batch 128] [--rounds 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ddkit.core.config import ModelConfig, load_profile, replace
from ddkit.runs.train import _autocast, build_task, train_step

RESULTS = Path(__file__).resolve().parent / "results"
ATEN = torch.ops.aten


def _attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# CPU attention kernels the flop counter does not count (it knows their CUDA twins); it passes
# the formulas the tensors' shapes
CPU_ATTENTION = {ATEN._scaled_dot_product_flash_attention_for_cpu: _attention,
                 ATEN._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(step) -> int:
    """FLOPs of one call of ``step``: its forward and backward (the optimizer's elementwise
    work, norms and activations are not counted)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        step()
    return counter.get_total_flops()


def gemm_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """FLOP/s of the best of ``reps`` n x n matmuls in ``dtype`` (after one warm-up)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    out = torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        began = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - began)
    return 2 * n ** 3 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=4, help="steps per timed block")
    ap.add_argument("--gemm-n", type=int, default=None,
                    help="size of the peak's square matmul (default 2048 on the CPU, 8192 on CUDA)")
    ap.add_argument("--note", default="", help="a sentence for the notes (e.g. what else ran)")
    ap.add_argument("--out", default=None,
                    help="Markdown file (default benchmarks/results/distill_step_<device>.md)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible; use --device cpu")
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]

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

    def bare_amp_step() -> None:                    # the step as train_step runs it
        with _autocast(cfg, device):
            bare_step()

    flops = {"bare": step_flops(bare_amp_step), "ddkit": step_flops(ddkit_step)}
    for step in (bare_amp_step, ddkit_step):        # warm-up
        timed(step)
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(timed(bare_amp_step))
        ours.append(timed(ddkit_step))
    b, o = statistics.median(bare), statistics.median(ours)

    # the peak in the dtype the step's matmuls run in (bf16 under the CUDA autocast, else fp32)
    amp = device.type == "cuda" and cfg.amp
    dtype = torch.bfloat16 if amp else torch.float32
    n = args.gemm_n or (8192 if device.type == "cuda" else 2048)
    peak = gemm_peak(device, dtype, n, reps=10 if device.type == "cuda" else 5)
    load_after = os.getloadavg()[0]
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({os.cpu_count()} cores), {threads} threads"

    def row(label: str, seconds: float, key: str) -> str:
        rate = flops[key] / seconds
        return (f"| {label} | {seconds * 1e3:.1f} | {args.batch / seconds:.0f} | "
                f"{flops[key] / 1e9:.2f} | {rate / 1e9:.1f} | {100 * rate / peak:.1f} % |")

    dtype_name = "bf16" if amp else "fp32"
    table = "\n".join([
        f"Distillation step, profile `{args.profile}` ({cfg.model.name} <- {teacher.name}), "
        f"batch {args.batch}, {name}, median of {args.rounds} rounds x {args.steps} steps:",
        "",
        "| step | ms / step | images / s | GFLOP / step (fwd + bwd) | achieved GFLOP/s | "
        "of the GEMM peak |",
        "|---|---:|---:|---:|---:|---:|",
        row("bare work (teacher fwd + student fwd/bwd + AdamW)", b, "bare"),
        row("ddkit SoftKD + SpectralKD First+Last", o, "ddkit"),
        "",
        f"ddkit / bare = **{o / b:.3f}** (overhead {100 * (o / b - 1):+.1f} %); the ddkit step "
        f"runs at **{100 * flops['ddkit'] / o / peak:.1f} %** of the GEMM peak.",
        "",
        f"GEMM peak: {peak / 1e9:.1f} GFLOP/s, the best of the {dtype_name} {n} x {n} matmuls "
        f"timed in the same run ({threads} threads). FLOPs: torch.utils.flop_counter over one "
        "step (matmuls, attention, convolutions; not the optimizer, norms or activations). "
        f"Load average {load_before:.2f} at the start, {load_after:.2f} at the end; torch "
        f"{torch.__version__}. {args.note}".rstrip(),
    ])
    print(table)
    out = Path(args.out) if args.out else RESULTS / f"distill_step_{device.type}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
