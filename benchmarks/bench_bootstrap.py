"""Time the image bootstrap of the claims study: per-image contributions resampled
(``image_bootstrap.layer_metrics_resampled``) against recomputing every metric on each resample's
features (what ``bootstrap_layer_metrics`` did before), on the default teacher's analysis shape.

    .venv/bin/python benchmarks/bench_bootstrap.py [--shape 8 200 96 7 7] [--n-boot 2000]
                                                   [--slow-resamples 10]

Random features whose per-layer scale grows like a residual stream (``bench_metrics.make_feats``,
fixed seed). Both paths run in this one process on the same resamples: the recomputation on the
first ``--slow-resamples`` of them (it is far too slow for 2,000), the fast path on all; the ratio
compares seconds per resample, and the two are checked to agree on the resamples both computed.
Prints a Markdown table and writes it to benchmarks/results/bootstrap_cpu.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_metrics import make_feats  # noqa: E402

from ddkit.signals import image_bootstrap, metrics  # noqa: E402
from ddkit.signals.dynamics import layer_metrics  # noqa: E402


def recompute(feats: torch.Tensor, index: np.ndarray) -> dict[str, np.ndarray]:
    """Every bootstrap metric recomputed from the resampled features (entropy bins held at the
    full batch's ranges, as the fast path does) -> {metric: [R, L]}."""
    lo, hi = float(feats.min()), float(feats.max())
    ranges = [(float(feats[l].min()), float(feats[l].max())) for l in range(feats.shape[0])]
    out: dict[str, list] = {name: [] for name in image_bootstrap.BOOTSTRAP_METRICS}
    for row in index:
        sub = feats[:, torch.as_tensor(row)]
        values = layer_metrics(sub)
        values["token_entropy"] = metrics.token_entropy(sub, value_range=(lo, hi))
        values["token_entropy_per_layer"] = torch.stack([
            metrics.token_entropy(sub[l:l + 1], value_range=ranges[l])[0] for l in range(len(ranges))])
        for name in out:
            out[name].append(values[name].double().numpy())
    return {name: np.stack(v) for name, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs=5, default=[8, 200, 96, 7, 7], metavar=("L", "B", "C", "H", "W"))
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--slow-resamples", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bootstrap_cpu.md"))
    args = p.parse_args()
    feats = make_feats(args.shape, "cpu")
    index, counts = image_bootstrap.resample_counts(args.shape[1], args.n_boot, seed=0)

    began = time.perf_counter()
    fast = image_bootstrap.layer_metrics_resampled(feats, counts)
    t_fast = time.perf_counter() - began
    k = args.slow_resamples
    began = time.perf_counter()
    slow = recompute(feats, index[:k])
    t_slow = time.perf_counter() - began
    diff = max(float(np.abs(fast[n][:k] - slow[n]).max() / max(np.abs(slow[n]).max(), 1e-12))
               for n in image_bootstrap.BOOTSTRAP_METRICS)
    per_fast, per_slow = t_fast / args.n_boot, t_slow / k
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join([
        f"Image bootstrap, features [L, B, C, H, W] = {args.shape} (cpu, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, load average {load:.1f} at the end; torch "
        f"{torch.__version__}, {platform.machine()}):", "",
        "| path | resamples timed | s | s / resample |", "|---|---:|---:|---:|",
        f"| recompute every metric per resample | {k} | {t_slow:.1f} | {per_slow:.3f} |",
        f"| per-image contributions (ddkit) | {args.n_boot} | {t_fast:.1f} | {per_fast:.4f} |", "",
        f"speed-up per resample: **{per_slow / per_fast:.0f}x**; {args.n_boot} resamples by "
        f"recomputation would take about {per_slow * args.n_boot:.0f} s. Largest relative "
        f"difference between the paths on the {k} shared resamples: {diff:.1e}.", ""])
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
