"""Student-epochs per minute for a profile's students: today's path against the alternatives,
interleaved in one run so that every ratio comes from the same minutes of the machine.

    .venv/bin/python benchmarks/bench_study.py [--profile default] [--rounds 3] [--fraction 2]
                                               [--device cpu|cuda] [--workers N] [--skip NAME ...]

The students are the profile's (default: ViT 48/4 on an 8k Fashion-MNIST subset, distilled from
the shipped teacher through the shared teacher pass) in the SoftKD, SpectralKD-Last and
ProjectorKD-Last cells, seeds 0 and 1. Each round gives every variant the same work: one slice
(1/--fraction of an epoch: that share of the training steps and of the test-set evaluation) of
both seeds of one cell; rounds rotate through the cells and the variants' order. A variant's
student-epochs per minute = epochs trained (slices / fraction) ÷ its wall time, all rounds
together. Variants (``--skip`` drops some by name):

  today          one process, 2 threads (the machine's cores), runs one after another, DataLoader
  tensor data    the same, with the training and test sets held as one tensor (TensorBatches)
  1 thread       one process, one thread, tensor data (what each pool worker gets)
  compiled       tensor data and ``torch.compile`` of the student step (forward + loss; backward
                 through AOTAutograd); compile time reported apart, not in the rate
  compiled, 1 thread   the same on one thread (what a compiled pool worker would get)
  ensemble       the two seeds as one batched model (torch.func.stack_module_state + vmap) with
                 one AdamW over the stacked weights; each seed keeps its own subset and batches
  pool           --workers one-thread worker processes (default: one per core), each training
                 a different run, DataLoader
  pool + tensor  the same with tensor data: what ddkit.studies.study.student_runs does now

End to end (``--e2e-epochs``, 0 skips it): ``ddkit.studies.study.student_runs`` itself on the SoftKD and
SpectralKD-Last cells, seeds 0 and 1, cut to that many epochs, from an empty run folder (teacher
passes, checkpoints, worker start-up included), with ``workers=1`` (today: one process, all
cores' threads) and then with the default pool.

The step breakdown (forward incl. loss / backward / optimizer / the rest: batch, teacher lookup,
Python) comes from an instrumented copy of ``ddkit.runs.train.train_step`` on a few extra steps.
Prints Markdown tables and writes them to benchmarks/results/study_<device>.md. Run it through
benchmarks/quiet.sh to pause the background training while measuring.
"""
from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import torch

from ddkit.core.config import RunConfig, load_profile, replace
from ddkit.core.data import build_dataset
from ddkit.runs.parallel import cores
from ddkit.runs.teacher_cache import IndexedDataset
from ddkit.runs.train import (
    _autocast,
    _in_memory,
    _loader,
    _scheduler,
    _seed_all,
    _shared_teacher_pass,
    build_task,
    evaluate,
    train_step,
)
from ddkit.studies import study

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = ("SoftKD", "SpectralKD-Last", "ProjectorKD-Last")
SEEDS = (0, 1)
VARIANTS = ("today", "tensor data", "1 thread", "compiled", "compiled, 1 thread", "ensemble",
            "pool", "pool + tensor")


# --------------------------------------------------------------------------- one run, in slices


_teacher_outputs: dict = {}  # one copy of each shared teacher pass per process


class RunSlices:
    """One run's training state, trained a few steps at a time the way ddkit.runs.train.train does
    (same task, optimizer, scheduler, data order, shared teacher pass, train_step, evaluate)."""

    def __init__(self, cfg: RunConfig, device: torch.device, tensor_data: bool,
                 compiled: bool = False):
        self.cfg, self.device = cfg, device
        d = cfg.data
        _seed_all(cfg.seed)
        train_set = build_dataset(d.name, "train", root=d.root, img_size=d.img_size,
                                  subset=d.train_subset, seed=cfg.seed)
        eval_set = build_dataset(d.name, "test", root=d.root, img_size=d.img_size,
                                 subset=d.eval_subset, seed=cfg.seed)
        self.task, _ = build_task(cfg, device)
        self.optimizer = _adamw(self.task.trainable_module, cfg)
        self.steps_per_epoch = len(train_set) // d.batch_size
        self.eval_batches = math.ceil(len(eval_set) / d.eval_batch_size)
        self.scheduler = _scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.teacher = None
        if cfg.uses_teacher:
            key = (cfg.seed, tuple(self.task.teacher_layers))
            if key not in _teacher_outputs:
                _teacher_outputs[key] = _shared_teacher_pass(cfg, self.task, train_set, device,
                                                             None, False)
            self.teacher = _teacher_outputs[key]
            train_set = IndexedDataset(train_set)
        if tensor_data:
            train_set = _in_memory(train_set, d.batch_size, True, cfg.seed)
            eval_set = _in_memory(eval_set, d.eval_batch_size, False, cfg.seed)
        self.train_set, self.eval_set = train_set, eval_set
        self.epoch, self.step, self.batches, self.evals = 0, 0, None, None
        self.compile_s = 0.0
        if compiled:
            began = time.perf_counter()
            self.task.trainable_module = torch.compile(self.task.trainable_module)
            self.train_steps(2)  # compile forward and backward now, not in a timed slice
            self.compile_s = time.perf_counter() - began

    def _next_batch(self):
        while True:
            if self.batches is None:
                self.batches = iter(_loader(self.train_set, self.cfg.data.batch_size, True,
                                            self.cfg.seed, self.epoch, 1, 0, 0, False))
            batch = next(self.batches, None)
            if batch is not None:
                return batch
            self.epoch, self.step, self.batches = self.epoch + 1, 0, None

    def batch(self):
        """The next training batch on the device and its teacher outputs."""
        x, y, *index = self._next_batch()
        if self.cfg.optim.sched_per_step:
            self.scheduler.step_update(self.epoch * self.steps_per_epoch + self.step)
        x, y = x.to(self.device), y.to(self.device)
        teacher_out = (self.teacher.lookup(index[0], self.task.teacher_layers, self.device)
                       if self.teacher is not None else None)
        self.step += 1
        return x, y, teacher_out

    def train_steps(self, n: int) -> float:
        """Seconds for ``n`` training steps (ddkit.runs.train.train_step)."""
        self.task.train()
        began = time.perf_counter()
        for _ in range(n):
            x, y, teacher_out = self.batch()
            train_step(self.task, self.optimizer, x, y, self.cfg, self.device, "bench",
                       teacher_out)
        _sync(self.device)
        return time.perf_counter() - began

    def evaluate(self, n: int) -> float:
        """Seconds for ``n`` test batches through ddkit.runs.train.evaluate."""
        began = time.perf_counter()
        evaluate(self.task.student, self._eval_batches(n), self.device,
                 autocast=lambda: _autocast(self.cfg, self.device))
        _sync(self.device)
        return time.perf_counter() - began

    def _eval_batches(self, n: int):
        for _ in range(n):
            batch = next(self.evals, None) if self.evals is not None else None
            if batch is None:
                self.evals = iter(_loader(self.eval_set, self.cfg.data.eval_batch_size, False,
                                          self.cfg.seed, 0, 1, 0, 0, False))
                batch = next(self.evals)
            yield batch

    def breakdown(self, n: int) -> dict[str, float]:
        """Seconds of ``n`` steps split into forward (with the loss), backward, optimizer and
        the rest, through an instrumented copy of train_step."""
        self.task.train()
        parts = dict.fromkeys(("forward", "backward", "optimizer", "rest"), 0.0)
        for _ in range(n):
            t0 = time.perf_counter()
            x, y, teacher_out = self.batch()
            t1 = time.perf_counter()
            with _autocast(self.cfg, self.device):
                loss = self.task(x, y, teacher_out)["loss"]
            if not math.isfinite(loss.item()):
                raise RuntimeError("non-finite loss in the breakdown steps")
            t2 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            _sync(self.device)
            t3 = time.perf_counter()
            self.optimizer.step()
            _sync(self.device)
            t4 = time.perf_counter()
            for key, dt in (("rest", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2),
                            ("optimizer", t4 - t3)):
                parts[key] += dt
        return parts


def _adamw(module: torch.nn.Module, cfg: RunConfig):
    from timm.optim import create_optimizer_v2
    return create_optimizer_v2(module, "adamw", lr=cfg.optim.lr,
                               weight_decay=cfg.optim.weight_decay)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- the ensemble


class EnsembleSlices:
    """The seeds of one cell as one batched model: their StudentSteps stacked with
    ``torch.func.stack_module_state`` and run under ``vmap``, one AdamW over the stacked weights
    (the same weight-decay groups as timm's). Each member keeps its own data, order and teacher
    outputs (a seed draws its own subset), so the batched step does what the separate steps do."""

    def __init__(self, members: list[RunSlices]):
        from torch.func import functional_call, stack_module_state, vmap
        self.members = members
        first = members[0]
        self.cfg, self.device = first.cfg, first.device
        modules = [m.task.trainable_module for m in members]
        self.params, self.buffers = stack_module_state(modules)
        base = copy.deepcopy(modules[0]).to("meta")

        def member(params, buffers, x, y, teacher_logits, teacher_feats):
            out = functional_call(base, (params, buffers), (x, y, teacher_logits, teacher_feats))
            return out["loss"], out["output"]
        self.step_fn = vmap(member)
        student = first.task.student
        base_student = copy.deepcopy(student).to("meta")
        self.student_keys = [k for k in self.params if k.startswith("student.")]
        self.eval_fn = vmap(lambda p, b, x: functional_call(base_student, (p, b), (x,)))
        no_decay = set(getattr(student, "no_weight_decay", lambda: set())())
        decay, plain = [], []
        for name, p in self.params.items():
            if not p.requires_grad:
                continue
            short = name.removeprefix("student.")
            (plain if p.ndim <= 2 or name.endswith(".bias") or short in no_decay
             else decay).append(p)  # ndim counts the seed axis: 1-D weights are 2-D here
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.optim.weight_decay},
             {"params": plain, "weight_decay": 0.0}], lr=self.cfg.optim.lr)

    def _stacked_batch(self, batches=None):
        batches = batches or [m.batch() for m in self.members]
        x = torch.stack([b[0] for b in batches])
        y = torch.stack([b[1] for b in batches])
        if batches[0][2] is None:
            return x, y, None, None
        logits = torch.stack([b[2][0] for b in batches])
        feats = {k: torch.stack([b[2][1][k] for b in batches]) for k in batches[0][2][1]}
        return x, y, logits, feats

    def check_against_members(self) -> float:
        """Largest |batched loss - the member's own loss| on one batch (before any step)."""
        batches = [m.batch() for m in self.members]
        with torch.no_grad():
            own = torch.stack([m.task(*b)["loss"] for m, b in zip(self.members, batches)])
            batched, _ = self.step_fn(self.params, self.buffers, *self._stacked_batch(batches))
        return float((batched - own).abs().max())

    def train_steps(self, n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            x, y, logits, feats = self._stacked_batch()
            with _autocast(self.cfg, self.device):
                losses, _ = self.step_fn(self.params, self.buffers, x, y, logits, feats)
            if not torch.isfinite(losses).all():
                raise RuntimeError("non-finite loss in the ensemble")
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members share nothing: each gets its own gradient
            self.optimizer.step()
        _sync(self.device)
        return time.perf_counter() - began

    @torch.no_grad()
    def evaluate(self, n: int) -> float:
        began = time.perf_counter()
        params = {k.removeprefix("student."): v for k, v in self.params.items()
                  if k.startswith("student.")}
        buffers = {k.removeprefix("student."): v for k, v in self.buffers.items()
                   if k.startswith("student.")}
        streams = [m._eval_batches(n) for m in self.members]
        for batches in zip(*streams):
            x = torch.stack([b[0] for b in batches]).to(self.device)
            y = torch.stack([b[1] for b in batches]).to(self.device)
            logits = self.eval_fn(params, buffers, x).float()  # [S, B, K]
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            hits = top.eq(y[..., None])
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
            hits[..., 0].sum(), hits.any(-1).sum()
        _sync(self.device)
        return time.perf_counter() - began


# --------------------------------------------------------------------------- pool workers


def _worker(conn, threads: int, device: str) -> None:
    """A pool worker: trains slices of the runs it is sent, keeping each run's state."""
    torch.set_num_threads(threads)
    states: dict = {}
    while True:
        message = conn.recv()
        if message is None:
            return
        cfg, tensor_data, steps, evals = message
        key = (cfg.name, cfg.seed, tensor_data)
        try:
            if key not in states:
                states[key] = RunSlices(cfg, torch.device(device), tensor_data)
                states[key].train_steps(1)  # warm-up
            state = states[key]
            conn.send((state.train_steps(steps), state.evaluate(evals)))
        except Exception as err:  # noqa: BLE001 - reported by the parent
            conn.send(err)


class Pool:
    """``workers`` spawned processes with ``threads`` threads each, one Pipe per worker."""

    def __init__(self, workers: int, threads: int, device: str):
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, threads, device), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self, jobs: list[tuple]) -> tuple[float, list[float]]:
        """Wall seconds for the jobs, dealt round-robin to the workers, all at once, and each
        worker's seconds of training steps."""
        train_s = [0.0] * len(self.conns)
        began = time.perf_counter()
        per_worker = [jobs[i::len(self.conns)] for i in range(len(self.conns))]
        pending = [list(j) for j in per_worker]
        for conn, queue in zip(self.conns, pending):
            if queue:
                conn.send(queue.pop(0))
        busy = [bool(j) for j in per_worker]
        while any(busy):
            for i, conn in enumerate(self.conns):
                if busy[i] and conn.poll(0.005):
                    reply = conn.recv()
                    if isinstance(reply, Exception):
                        raise RuntimeError(f"pool worker {i}: {reply!r}")
                    train_s[i] += reply[0]
                    if pending[i]:
                        conn.send(pending[i].pop(0))
                    else:
                        busy[i] = False
        return time.perf_counter() - began, train_s

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(timeout=30)


# --------------------------------------------------------------------------- end to end


def end_to_end(profile, epochs: int, workers: int) -> str:
    """study.student_runs on 4 runs cut to ``epochs``, from empty run folders, one process
    (workers=1) then the pool; a Markdown table."""
    import tempfile

    from ddkit.core.config import replace as replace_profile
    from ddkit.runs import parallel
    short = replace_profile(profile, **{"student.optim.epochs": epochs})
    rows, walls = [], {}
    for label, w in (("today: workers=1 (one process)", 1), (f"pool: workers={workers}", workers)):
        with tempfile.TemporaryDirectory() as root:
            os.environ["DDKIT_RUNS"] = root
            parallel.shutdown()  # the pool's start-up counts
            torch.set_num_threads(cores())
            began = time.perf_counter()
            runs = study.student_runs(short, cells=["SoftKD", "SpectralKD-Last"], seeds=[0, 1],
                                      progress=False, workers=w)
            walls[w] = time.perf_counter() - began
            acc = ", ".join(f"{r.summary['final_acc1']:.2f}" for r in runs.values())
            rows.append(f"| {label} | {walls[w]:.1f} | {len(runs) * epochs / walls[w] * 60:.2f} | "
                        f"{walls[1] / walls[w]:.2f} | {acc} |")
            print(rows[-1], flush=True)
    parallel.shutdown()
    os.environ.pop("DDKIT_RUNS", None)
    return "\n".join([f"End to end: `study.student_runs`, SoftKD and SpectralKD-Last x seeds "
                      f"0, 1, {epochs} epochs each, empty run folder:", "",
                      "| how | wall s | student-epochs / min | × today | final top-1 (%) |",
                      "|---|---:|---:|---:|---|", *rows])


# --------------------------------------------------------------------------- the comparison


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fraction", type=int, default=2,
                    help="a slice is 1/fraction of an epoch (steps and test batches)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=None, help="pool workers (default: cores)")
    ap.add_argument("--breakdown-steps", type=int, default=10)
    ap.add_argument("--e2e-epochs", type=int, default=2,
                    help="epochs of the end-to-end student_runs comparison (0: skip it)")
    ap.add_argument("--skip", nargs="*", default=[], choices=VARIANTS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    device = torch.device(args.device)
    n_cores = cores()
    workers = args.workers or n_cores
    variants = [v for v in VARIANTS if v not in args.skip]
    if device.type == "cuda":  # one GPU: processes would only queue on it
        variants = [v for v in variants if not v.startswith("pool") and "1 thread" not in v]
    load_start = os.getloadavg()
    print(f"load average at the start {load_start[0]:.2f}; {n_cores} cores", flush=True)

    profile = load_profile(args.profile)
    teacher, _ = study.teacher_model(profile, progress=False)
    configs = {(c, s): replace(study.student_config(profile, c, s, teacher), device=args.device)
               for c in CELLS for s in SEEDS}

    all_threads = n_cores if device.type == "cpu" else torch.get_num_threads()
    settings = {  # variant -> (threads, tensor data, compiled)
        "today": (all_threads, False, False), "tensor data": (all_threads, True, False),
        "1 thread": (1, True, False), "compiled": (all_threads, True, True),
        "compiled, 1 thread": (1, True, True),
        "ensemble": (all_threads, True, False)}
    print("building the runs (teacher passes are cached under runs/teacher-cache)", flush=True)
    states: dict = {}
    compile_s = []
    for v in variants:
        if v.startswith("pool"):
            continue
        threads, tensor_data, compiled = settings[v]
        torch.set_num_threads(threads)
        for key, cfg in configs.items():
            states[v, key] = RunSlices(cfg, device, tensor_data, compiled)
            compile_s.append(states[v, key].compile_s) if compiled else None
            states[v, key].train_steps(1)  # warm-up
    ensembles, ensemble_check = {}, 0.0
    if "ensemble" in variants:
        torch.set_num_threads(settings["ensemble"][0])
        for cell in CELLS:
            ens = EnsembleSlices([states["ensemble", (cell, s)] for s in SEEDS])
            ensemble_check = max(ensemble_check, ens.check_against_members())
            ens.train_steps(1)
            ensembles[cell] = ens
    pool = None
    if any(v.startswith("pool") for v in variants):
        pool = Pool(workers, max(1, n_cores // workers), args.device)
        for tensor in (False, True):  # build every run state in the worker that will train it
            for cell in CELLS:
                pool.run([(configs[cell, s], tensor, 1, 1) for s in SEEDS])

    first = states.get(("today", (CELLS[0], 0))) or next(iter(states.values()))
    steps = first.steps_per_epoch // args.fraction
    evals = max(1, first.eval_batches // args.fraction)
    epochs_per_slice = steps / first.steps_per_epoch
    print(f"slice = {steps} of {first.steps_per_epoch} steps + {evals} of "
          f"{first.eval_batches} test batches; {len(SEEDS)} runs per variant per round", flush=True)

    wall = {v: 0.0 for v in variants}
    rates = {v: [] for v in variants}  # training images / s of each slice (summed over workers)
    done_epochs = {v: 0.0 for v in variants}
    per_round = {v: [] for v in variants}
    images = steps * first.cfg.data.batch_size  # training images in one run's slice
    for r in range(args.rounds):
        cell = CELLS[r % len(CELLS)]
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            if v.startswith("pool"):
                # seed i always goes to worker i % workers, where its state lives
                jobs = [(configs[cell, s], v == "pool + tensor", steps, evals) for s in SEEDS]
                seconds, worker_train_s = pool.run(jobs)
                per_worker = [SEEDS[i::workers] for i in range(workers)]
                rates[v].append(sum(len(w) * images / t for w, t in
                                    zip(per_worker, worker_train_s) if t > 0))
            elif v == "ensemble":
                torch.set_num_threads(settings[v][0])
                t_train = ensembles[cell].train_steps(steps)
                seconds = t_train + ensembles[cell].evaluate(evals)
                rates[v].append(len(SEEDS) * images / t_train)
            else:
                torch.set_num_threads(settings[v][0])
                t_train = seconds = 0.0
                for s in SEEDS:
                    t = states[v, (cell, s)].train_steps(steps)
                    t_train += t
                    seconds += t + states[v, (cell, s)].evaluate(evals)
                rates[v].append(len(SEEDS) * images / t_train)
            wall[v] += seconds
            done_epochs[v] += len(SEEDS) * epochs_per_slice
            per_round[v].append(len(SEEDS) * epochs_per_slice / seconds * 60)
            print(f"round {r + 1} {cell:>16} {v:>14}: {seconds:6.2f} s", flush=True)
    if pool is not None:
        pool.close()

    breakdown = {}
    for v, threads in (("today", all_threads), ("1 thread", 1)):
        if v in variants:
            torch.set_num_threads(threads)
            breakdown[v] = states[v, (CELLS[1], 0)].breakdown(args.breakdown_steps)

    e2e = end_to_end(profile, args.e2e_epochs, workers) if args.e2e_epochs and \
        device.type == "cpu" else ""
    load_end = os.getloadavg()
    batch = first.cfg.data.batch_size
    base = done_epochs["today"] / wall["today"] if "today" in variants else None
    lines = ["| variant | student-epochs / min | × today | per round (epochs / min) | "
             "train images / s |", "|---|---:|---:|---|---:|"]
    for v in variants:
        rate = done_epochs[v] / wall[v] * 60
        ratio = f"{rate / (base * 60):.2f}" if base else "—"
        rounds = ", ".join(f"{x:.2f}" for x in per_round[v])
        ips = sorted(rates[v])[len(rates[v]) // 2]
        lines.append(f"| {v} | {rate:.2f} | {ratio} | {rounds} | {ips:.0f} |")
    table = "\n".join(lines)
    parts = ""
    if breakdown:
        rows = ["| step share | " + " | ".join(f"{v} ({settings[v][0]} thread"
                                                f"{'s' if settings[v][0] > 1 else ''})"
                                                for v in breakdown) + " |",
                "|---|" + "---:|" * len(breakdown)]
        for part in ("forward", "backward", "optimizer", "rest"):
            rows.append(f"| {part} | " + " | ".join(
                f"{100 * b[part] / sum(b.values()):.0f} %" for b in breakdown.values()) + " |")
        rows.append("| ms / step | " + " | ".join(
            f"{1000 * sum(b.values()) / args.breakdown_steps:.1f}" for b in breakdown.values())
            + " |")
        parts = "\n".join(rows)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {n_cores} cores)"
    info = (f"Profile `{args.profile}`: cells {', '.join(CELLS)}, seeds {list(SEEDS)}; "
            f"{first.cfg.model.name}, {first.steps_per_epoch} steps of {batch} images and "
            f"{first.eval_batches} test batches of {first.cfg.data.eval_batch_size} per epoch; "
            f"{name}; {args.rounds} rounds, each variant {len(SEEDS)} runs x 1/{args.fraction} "
            f"epoch per round, interleaved; train images / s: median slice, steps only. Pool: "
            f"{workers} workers x {max(1, n_cores // workers)} thread(s). Load average "
            f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; torch "
            f"{torch.__version__}.")
    if compile_s:
        info += (f" torch.compile took {sum(compile_s) / len(compile_s):.0f} s per run before "
                 "its first step (not in the rate).")
    if ensembles:
        info += (f" Ensemble check: batched vs separate loss differ by at most "
                 f"{ensemble_check:.1e}.")
    text = (table + "\n\n" + (parts + "\n\n" if parts else "") + (e2e + "\n\n" if e2e else "")
            + info + "\n")
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"study_{device.type}.md"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
