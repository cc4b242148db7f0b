"""Time ddkit.signals.metrics against the loop-form numpy reference on the paper's analysis shape, and
against the machine's memory bandwidth.

    .venv/bin/python benchmarks/bench_metrics.py [--device cpu|cuda] [--shape 24 32 384 14 14]
                                                 [--repeat N] [--threads N]

Random features whose per-layer scale grows like a residual stream (fixed seed). The reference
(tests/reference_metrics.py: numpy, one np.histogram per token, one np.fft per layer) runs once;
ddkit is warmed up once, then timed --repeat times and the best time is kept (the machine may
be shared: the load average is recorded). The bandwidth is the best of --repeat copies of a
tensor twice the features' size (bytes read + bytes written per second, torch's threads);
a metric that reads the features once can take no less than ``bytes / bandwidth``: the table
gives each metric's achieved bytes/s (feature bytes / time) and its time ÷ that bound. The
token entropy is timed on both of its CPU paths (the C kernel of ddkit.signals.native and the torch
passes, ``DDKIT_NATIVE=0``). Prints a Markdown table and writes it to
benchmarks/results/metrics_<device>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import reference_metrics as ref  # noqa: E402

from ddkit.signals import metrics, native  # noqa: E402


def make_feats(shape: list[int], device: str, seed: int = 0) -> torch.Tensor:
    """``[L, B, C, H, W]`` float32: Gaussian channels, ~2 % of them 5× larger, and a scale that
    grows 1.15× per layer (as a residual stream does)."""
    g = torch.Generator().manual_seed(seed)
    L, B, C, H, W = shape
    f = torch.randn(L, B, C, H, W, generator=g)  # [L, B, C, H, W]
    channel_scale = 1 + 4 * (torch.rand(1, 1, C, 1, 1, generator=g) > 0.98)  # [1, 1, C, 1, 1]
    layer_scale = 1.15 ** torch.arange(L, dtype=torch.float32).view(L, 1, 1, 1, 1)
    return (f * channel_scale * layer_scale).to(device)


def best_time(fn: Callable[[], object], device: str, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs after one warm-up; CUDA is synchronised around each."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def one_time(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def copy_bandwidth(nbytes: int, device: str, repeat: int) -> float:
    """Best bytes/s (read + written) of copying a float32 tensor of ``nbytes``."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    t, _ = best_time(lambda: dst.copy_(src), device, repeat)
    return 2 * nbytes / t


@contextlib.contextmanager
def torch_path():
    """token_entropy on its torch passes instead of the C kernel."""
    old = os.environ.get(native.ENV)
    os.environ[native.ENV] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ[native.ENV]
        else:
            os.environ[native.ENV] = old


def max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.cpu().double().numpy() - b).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--shape", type=int, nargs=5, default=[24, 32, 384, 14, 14],
                   metavar=("L", "B", "C", "H", "W"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="Markdown file (default benchmarks/results/...)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)

    feats = make_feats(args.shape, args.device)
    host = feats.cpu().numpy()
    nbytes = feats.numel() * feats.element_size()
    L, B, C, H, W = args.shape
    student = feats[: max(1, L // 2), :, : max(1, C // 2)].contiguous()  # shallower, narrower
    rows = []  # (metric, reference s, ddkit s, max abs diff, bytes read once)
    print(f"shape {args.shape} on {args.device}, {torch.get_num_threads()} torch threads",
          flush=True)

    bandwidth = copy_bandwidth(2 * nbytes, args.device, args.repeat)
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write)", flush=True)

    t_ref, r = one_time(lambda: ref.token_entropy(host))
    kernel = args.device == "cpu" and native.available()
    t, o = best_time(lambda: metrics.token_entropy(feats), args.device, args.repeat)
    name = "token_entropy (global, 100 bins)" + (", C kernel" if kernel else "")
    rows.append((name, t_ref, t, max_diff(o, r), nbytes))
    print(rows[-1], flush=True)
    if kernel:
        with torch_path():
            t, o = best_time(lambda: metrics.token_entropy(feats), args.device, args.repeat)
        rows.append(("token_entropy (global, 100 bins), torch path", t_ref, t, max_diff(o, r),
                     nbytes))
        print(rows[-1], flush=True)

    t_ref, (rs, ri) = one_time(lambda: ref.channel_spectrum(host))
    t, (s, i) = best_time(lambda: metrics.channel_spectrum(feats), args.device, args.repeat)
    rows.append(("channel_spectrum", t_ref, t, max(max_diff(s, rs), max_diff(i, ri)), nbytes))
    print(rows[-1], flush=True)

    others = [
        ("token_entropy (per_layer)", nbytes,
         lambda: metrics.token_entropy(feats, value_range="per_layer")),
        ("activation_magnitude", nbytes, lambda: metrics.activation_magnitude(feats)),
        ("spatial_log_amplitude", nbytes, lambda: metrics.spatial_log_amplitude(feats)),
        ("effective_rank", nbytes, lambda: metrics.effective_rank(feats)),
        ("pca_dims", nbytes, lambda: metrics.pca_dims(feats)),
        ("channel_energy_concentration", nbytes,
         lambda: metrics.channel_energy_concentration(feats)),
        (f"linear_cka ({L}×{student.shape[0]} layers, C {C}/{student.shape[2]})",
         nbytes + student.numel() * student.element_size(),
         lambda: metrics.linear_cka(feats, student)),
    ]
    for name, reads, fn in others:
        t, _ = best_time(fn, args.device, 1 if "cka" in name else args.repeat)
        rows.append((name, None, t, None, reads))
        print(rows[-1], flush=True)

    cuda = args.device == "cuda"
    lines = ["| metric | reference s | ddkit s | speed-up × | max abs diff | achieved GB/s | "
             "time ÷ bandwidth bound |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, t_ref, t, diff, reads in rows:
        gbps, bound = reads / t / 1e9, reads / bandwidth
        cells = [name, f"{t_ref:.3f}" if t_ref else "—", f"{t:.4f}",
                 f"{t_ref / t:.0f}" if t_ref else "—", f"{diff:.1e}" if diff is not None else "—",
                 f"{gbps:.1f}", f"{t / bound:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    device = torch.cuda.get_device_name() if cuda else (platform.processor() or "cpu")
    info = (f"Shape [L, B, C, H, W] = {args.shape} float32 ({nbytes / 2**20:.0f} MiB) on "
            f"{args.device} ({device}; {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
            f"threads, load average {os.getloadavg()[0]:.1f} at the end); torch "
            f"{torch.__version__}, numpy {np.__version__}. ddkit: best of {args.repeat} after a "
            f"warm-up (linear_cka: one run); reference: one run. Memory bandwidth: "
            f"{bandwidth / 1e9:.1f} GB/s (best copy of {2 * nbytes / 2**20:.0f} MiB, bytes read "
            f"+ written); achieved GB/s = bytes of the features read once ÷ time; bound = those "
            f"bytes ÷ the bandwidth.")
    text = "\n".join(lines) + "\n\n" + info + "\n"
    print("\n" + text)
    out = Path(args.out) if args.out else (
        ROOT / "benchmarks" / "results" / f"metrics_{args.device}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
