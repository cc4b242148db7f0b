"""The GPU check: what the kit must do on CUDA, in one command that finishes within 8 minutes on
one GPU (``benchmarks/gpu_check.sh``, which calls this).

  1. metrics      every metric of ddkit.signals.metrics on the same features on the device and
                  on the CPU: the largest difference, relative to the CPU values' scale
  2. ddp          ``torchrun --nproc_per_node <GPUs>``: one epoch of the smoke profile's
                  SoftKD + SpectralKD-Last student, one DDP process per visible GPU
  3. bench_metrics, bench_distill_step, bench_study   the three benchmarks with --device
  4. paper        tests/paper_dry_run.py: ``--profile paper`` with the real DeiT-Tiny and CaiT-S24
                  on a generated ImageFolder, one process per GPU, then analyze --paper-faithful

Each step runs with a time limit and its outcome, wall time and numbers go to one Markdown block;
on CUDA (``--size full``) the block replaces the one between ``<!-- gpu:begin -->`` and
``<!-- gpu:end -->`` in docs/benchmarks.md. ``--device cpu`` runs the same steps at smoke size
(two gloo processes where GPUs would be), writing the block to ``--out`` only: the suite runs it
so (tests/faces/test_gpu_check.py). Exit status 1 when a step failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"
STEPS = ("metrics", "ddp", "bench_metrics", "bench_distill_step", "bench_study", "paper")
# seconds per step on one GPU (sum 465 s, under the 8 minutes); smoke size on the CPU
LIMIT_S = {"metrics": 45, "ddp": 90, "bench_metrics": 60, "bench_distill_step": 60,
           "bench_study": 90, "paper": 120}
# at smoke size on a shared CPU only whether the steps run matters: the limits only stop a hang
SMOKE_LIMIT_S = {step: 1200 for step in STEPS}


# --------------------------------------------------------------------------- 1. metrics


def metrics_vs_cpu(device: str, shape: list[int], seed: int = 0) -> dict:
    """Each metric on ``device`` against the same call on the CPU (float32 both)."""
    from ddkit.signals import metrics
    g = torch.Generator().manual_seed(seed)
    L, B, C, H, W = shape
    feats = torch.randn(L, B, C, H, W, generator=g) * 1.15 ** torch.arange(L).view(L, 1, 1, 1, 1)
    student = feats[: max(1, L // 2), :, : max(1, C // 2)].contiguous()
    calls = {
        "token_entropy (global)": lambda f, s: metrics.token_entropy(f),
        "token_entropy (per_layer)": lambda f, s: metrics.token_entropy(f, value_range="per_layer"),
        "channel_spectrum": lambda f, s: metrics.channel_spectrum(f),
        "activation_magnitude": lambda f, s: metrics.activation_magnitude(f),
        "spatial_log_amplitude": lambda f, s: metrics.spatial_log_amplitude(f),
        "effective_rank": lambda f, s: metrics.effective_rank(f),
        "pca_dims": lambda f, s: metrics.pca_dims(f),
        "channel_energy_concentration": lambda f, s: metrics.channel_energy_concentration(f),
        "linear_cka": lambda f, s: metrics.linear_cka(f, s),
    }
    on_device = feats.to(device), student.to(device)
    rows = []
    for name, call in calls.items():
        cpu = _flat(call(feats, student))
        dev = _flat(call(*on_device))
        scale = float(cpu.abs().max()) or 1.0
        diff = float((dev - cpu).abs().max())
        rows.append({"metric": name, "max_abs_diff": diff, "relative": diff / scale})
    # a histogram may put a value on the other side of a bin edge: entropies differ by a little
    tolerance = {"token_entropy (global)": 1e-2, "token_entropy (per_layer)": 1e-2,
                 "pca_dims": 5e-2}
    for row in rows:
        row["ok"] = row["relative"] <= tolerance.get(row["metric"], 1e-3)
    return {"rows": rows, "shape": shape}


def _flat(value) -> torch.Tensor:
    if isinstance(value, (tuple, list)):
        return torch.cat([_flat(v) for v in value])
    if isinstance(value, dict):
        return torch.cat([_flat(v) for _, v in sorted(value.items())])
    return torch.as_tensor(value).detach().double().cpu().reshape(-1)


# --------------------------------------------------------------------------- the commands


def _python() -> str:
    return sys.executable


def ddp_command(device: str, nproc: int) -> list[str]:
    sets = {"student.optim.epochs": 1, "data.batch_size": 16, "data.train_subset": 400,
            "data.eval_subset": 200, "save_every": 0}
    return [_python(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), "-m", "ddkit.cli", "train", "--profile", "smoke", "--kd", "soft",
            "--feature", "spectral", "--layers", "last", "--device", device,
            *[part for k, v in sets.items() for part in ("--set", f"{k}={v}")]]


def bench_commands(device: str, smoke: bool, out: Path) -> dict[str, list[str]]:
    bench = ROOT / "benchmarks"
    if smoke:
        return {
            "bench_metrics": [_python(), str(bench / "bench_metrics.py"), "--device", device,
                              "--shape", "4", "4", "32", "7", "7", "--repeat", "1",
                              "--out", str(out / "metrics.md")],
            "bench_distill_step": [_python(), str(bench / "bench_distill_step.py"), "--device",
                                   device, "--profile", "smoke", "--batch", "8", "--rounds", "1",
                                   "--steps", "1", "--gemm-n", "256",
                                   "--out", str(out / "distill_step.md")],
            "bench_study": [_python(), str(bench / "bench_study.py"), "--device", device,
                            "--profile", "smoke", "--rounds", "1", "--fraction", "2",
                            "--e2e-epochs", "0", "--breakdown-steps", "1", "--skip",
                            "tensor data", "1 thread", "compiled", "compiled, 1 thread",
                            "ensemble", "pool", "pool + tensor", "--out", str(out / "study.md")],
        }
    return {
        "bench_metrics": [_python(), str(bench / "bench_metrics.py"), "--device", device,
                          "--out", str(out / "metrics.md")],
        "bench_distill_step": [_python(), str(bench / "bench_distill_step.py"), "--device",
                               device, "--rounds", "5", "--out", str(out / "distill_step.md")],
        "bench_study": [_python(), str(bench / "bench_study.py"), "--device", device,
                        "--rounds", "2", "--fraction", "4", "--e2e-epochs", "0",
                        "--skip", "compiled", "compiled, 1 thread", "--out",
                        str(out / "study.md")],
    }


def paper_command(device: str, nproc: int, workdir: Path) -> list[str]:
    return [_python(), str(ROOT / "tests" / "paper_dry_run.py"), "--device", device, "--nproc",
            str(nproc), "--workdir", str(workdir), "--json", str(workdir / "result.json")]


def _run(cmd: list[str], env: dict, limit: float) -> tuple[str, float, str]:
    """``(status, wall s, output tail)``: status ok, failed (exit N) or timed out."""
    began = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=limit)
    except subprocess.TimeoutExpired as err:
        text = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) \
            else (err.stdout or "")
        return f"timed out after {limit:.0f} s", time.perf_counter() - began, text[-3000:]
    wall = time.perf_counter() - began
    text = (done.stdout or "") + (done.stderr or "")
    return ("ok" if done.returncode == 0 else f"failed (exit {done.returncode})"), wall, text[-6000:]


# --------------------------------------------------------------------------- the check


def check(device: str, smoke: bool, workdir: Path, skip: tuple[str, ...] = ()) -> dict:
    """Run every step not in ``skip``; returns ``{"steps": [...], "details": {...}}``."""
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    nproc = gpus if device == "cuda" else 2
    limits = SMOKE_LIMIT_S if smoke else LIMIT_S
    env = {**os.environ, "DDKIT_RUNS": str(workdir / "runs"), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    os.environ["DDKIT_RUNS"] = env["DDKIT_RUNS"]
    steps, details = [], {}

    def record(name, status, wall, result, output=""):
        steps.append({"step": name, "status": status, "wall_s": round(wall, 1),
                      "result": result})
        if status != "ok" and output:
            details[name] = output
        print(f"[gpu_check] {name}: {status} in {wall:.1f} s; {result}", flush=True)

    if "metrics" not in skip:
        began = time.perf_counter()
        try:
            shape = [4, 4, 32, 7, 7] if smoke else [12, 32, 192, 14, 14]
            out = metrics_vs_cpu(device, shape)
            bad = [r["metric"] for r in out["rows"] if not r["ok"]]
            worst = max(out["rows"], key=lambda r: r["relative"])
            status = "ok" if not bad else "failed"
            result = (f"{len(out['rows']) - len(bad)} of {len(out['rows'])} metrics match the "
                      f"CPU on {shape}; largest relative difference {worst['relative']:.1e} "
                      f"({worst['metric']})" + (f"; out of tolerance: {bad}" if bad else ""))
            details["metrics_rows"] = out["rows"]
        except Exception as err:  # noqa: BLE001 - reported in the block
            status, result = "failed", f"{type(err).__name__}: {err}"
        record("metrics", status, time.perf_counter() - began, result)

    if "ddp" not in skip:
        status, wall, text = _run(ddp_command(device, nproc), env, limits["ddp"])
        result = f"{nproc} process(es)"
        if status == "ok":
            line = [json.loads(x) for x in text.splitlines() if x.startswith("{\"run\"")]
            summary = json.loads((Path(line[-1]["run"]) / "summary.json").read_text())
            result = (f"one epoch on {summary['world_size']} process(es) "
                      f"({summary['device']}{', DDP' if summary['world_size'] > 1 else ''}), "
                      f"global batch {summary['global_batch']}, top-1 "
                      f"{summary['final_acc1']:.2f} %, {summary['wall_time_s']} s training")
        record("ddp", status, wall, result, text)

    out_dir = workdir / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, cmd in bench_commands(device, smoke, out_dir).items():
        if name in skip:
            continue
        status, wall, text = _run(cmd, env, limits[name])
        result = _bench_line(name, out_dir, status)
        record(name, status, wall, result, text)

    if "paper" not in skip:
        paper = workdir / "paper"
        status, wall, text = _run(paper_command(device, nproc, paper), env, limits["paper"])
        result = f"{nproc} process(es)"
        if status == "ok":
            r = json.loads((paper / "result.json").read_text())
            result = (f"deit_tiny_patch16_224 <- cait_s24_224 at 224 px on {r['world_size']} "
                      f"process(es) ({r['device']}), global batch {r['global_batch']} "
                      f"({r['grad_accum_steps']} accumulation steps), lr {r['lr']:.3g}; "
                      f"train {r['train_s']} s, analyze --paper-faithful {r['analyze_s']} s")
        record("paper", status, wall, result, text)
    return {"steps": steps, "details": details, "gpus": gpus, "nproc": nproc,
            "results": out_dir}


def _bench_line(name: str, out_dir: Path, status: str) -> str:
    files = {"bench_metrics": "metrics.md", "bench_distill_step": "distill_step.md",
             "bench_study": "study.md"}
    path = out_dir / files[name]
    if status != "ok" or not path.is_file():
        return "no table"
    text = path.read_text()
    if name == "bench_distill_step":
        m = re.search(r"ddkit / bare = \*\*([\d.]+)\*\*.*?\*\*([\d.]+) %\*\* of the GEMM", text)
        return f"ddkit / bare {m[1]}, the ddkit step at {m[2]} % of the GEMM peak" if m else "table"
    if name == "bench_metrics":
        m = re.search(r"\| token_entropy \(global, 100 bins\)[^|]*\| [^|]* \| ([\d.]+) \| ([\d]+) \|",
                      text)
        return f"token entropy {m[1]} s, {m[2]}x the loop reference" if m else "table"
    m = re.search(r"\| today \| ([\d.]+) \|", text)
    return f"today's path: {m[1]} student-epochs / min" if m else "table"


def block(report: dict, device: str, smoke: bool, total_s: float) -> str:
    """The Markdown block of a check (between the markers when written to the docs)."""
    name = torch.cuda.get_device_name(0) if device == "cuda" else \
        f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    ok = all(s["status"] == "ok" for s in report["steps"])
    lines = [f"**GPU check** — `benchmarks/gpu_check.sh{' --device cpu' if device == 'cpu' else ''}`"
             f" on {name}" + (f", {report['gpus']} GPU(s)" if device == "cuda" else "") +
             f", {'smoke' if smoke else 'full'} size, {time.strftime('%Y-%m-%d')}: "
             f"{'every step passed' if ok else 'some steps failed'} in {total_s:.0f} s "
             f"(torch {torch.__version__}).", "",
             "| step | status | wall s | result |", "|---|---|---:|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['step']} | {s['status']} | {s['wall_s']} | {s['result']} |")
    rows = report["details"].get("metrics_rows")
    if rows:
        lines += ["", "CUDA against CPU, per metric (largest absolute and relative difference):",
                  "", "| metric | max abs diff | relative | within tolerance |",
                  "|---|---:|---:|---|"]
        lines += [f"| {r['metric']} | {r['max_abs_diff']:.1e} | {r['relative']:.1e} | "
                  f"{'yes' if r['ok'] else 'no'} |" for r in rows]
    for title, file in (("bench_metrics", "metrics.md"), ("bench_distill_step", "distill_step.md"),
                        ("bench_study", "study.md")):
        path = report["results"] / file
        if path.is_file():
            lines += ["", f"`{title}`:", "", path.read_text().strip()]
    return "\n".join(lines) + "\n"


def write_doc_block(text: str, doc: Path = DOC) -> None:
    """Replace what lies between the markers of ``doc`` with ``text``."""
    content = doc.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    doc.write_text(content[:start] + "\n" + text + content[end:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--size", choices=("full", "smoke"), default=None,
                    help="default: full on CUDA, smoke on the CPU")
    ap.add_argument("--skip", nargs="*", default=[], choices=STEPS)
    ap.add_argument("--workdir", default=None, help="runs and results (default: a new "
                    "temporary folder)")
    ap.add_argument("--out", default=None, help="also write the Markdown block here")
    ap.add_argument("--no-docs", dest="docs", action="store_false",
                    help="on CUDA, do not write the block into docs/benchmarks.md")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible (use --device cpu for the smoke run)")
    smoke = (args.size or ("full" if args.device == "cuda" else "smoke")) == "smoke"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ddkit-gpu-check-"))
    began = time.perf_counter()
    report = check(args.device, smoke, workdir, tuple(args.skip))
    text = block(report, args.device, smoke, time.perf_counter() - began)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)
    if args.device == "cuda" and not smoke and args.docs:
        write_doc_block(text)
        print(f"[gpu_check] wrote the GPU block of {DOC}")
    for name, output in report["details"].items():
        if name != "metrics_rows":
            print(f"--- {name} output (tail)\n{output}", file=sys.stderr)
    return 0 if all(s["status"] == "ok" for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
