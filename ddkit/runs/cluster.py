"""Train a grid of runs on a Slurm cluster: one submitit job array, one run per array task.

    settings = Executor(kind="slurm", partition="gpu", gpus_per_node=1, timeout_min=240)
    runs = train_array(configs, settings)     # {key: Run}, like parallel.train_many

Each task calls ``ddkit.runs.train.train(cfg, root=...)`` on a node, so a run lands in the same run
store, in the same ``<name>-<hash>/`` folder, with the same atomic writes and lock per run as a
run trained here; the store must be on a filesystem the nodes share (``check_slurm`` refuses a
local ``/tmp``). The task is a submitit ``Checkpointable``: on Slurm's preemption or time-limit
signal (USR2, sent ``signal_delay_s`` before the kill) submitit calls its ``checkpoint`` and
requeues the task; the requeued task runs ``train`` again, which resumes from the run's last
``checkpoint.pt`` (written after every epoch), so only the epoch in flight is trained again.

Runs already complete are cache hits read here; only the others are submitted. While waiting,
one bar on stderr counts finished runs with the array's running, pending and failed tasks. Task
state comes from ``squeue`` and submitit's result files (no Slurm accounting needed). A failed
task does not stop the others: ``RunsFailed`` names each failed run with its error and its
submitit log file. ``Executor(kind="local")`` trains with ``parallel.train_many`` instead.

On GPUs a grid trains one run at a time over every visible GPU (``ddkit.runs.launch``): each run
is a submitit local job of one process per GPU running this module's ``TrainTask`` (DDP). The
world size is part of a run's identity, so the configs are planned for it (``planned``) before
the cache is read.

``Executor(no_wait=True)`` submits and returns the runs already complete at once, printing the
array's id and ``collect``, the command that reads the runs once the array is done. A task of
several processes (``nodes * tasks_per_node > 1``) trains one run with DDP: each process takes
its rank, world size, local rank and master address and port from Slurm through submitit's
``TorchDistributedEnvironment`` (as torchrun would set them). ``$DDKIT_EXECUTOR`` (an
Executor's fields as JSON, ``Executor.to_env``) is the executor of the grids that are given
none (``ddkit notebooks --executor slurm`` sets it for its kernels). docs/cluster.md has the
commands for a real cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import submitit
import torch
import torch.distributed as dist
from submitit.core.utils import pickle_load
from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment
from tqdm.auto import tqdm

from ddkit.core.config import ConfigError, RunConfig, validate, with_world_size
from ddkit.runs.parallel import RunsFailed, train_many
from ddkit.runs.store import RunDir, runs_root
from ddkit.runs.train import Run, train

KINDS = ("local", "slurm")
LOCAL_ONLY = ("/tmp", "/dev/shm")     # paths that are this machine's own, never shared
SUBMITIT_DIR = ".submitit"            # <run store>/.submitit/<job id>/: submitit's files and logs
PASSED_ENV = ("DDKIT_DATA", "DDKIT_NATIVE")   # the caller's settings a task takes over
EXECUTOR_ENV = "DDKIT_EXECUTOR"    # an Executor as JSON: the executor of grids given none
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
POLL_S = 5.0
GONE_S = 30.0    # a task out of the queue (or ended) this long without a result has failed
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE")


class ClusterError(ConfigError):
    """Slurm is unreachable or a cluster setting cannot work; raised before anything is
    submitted."""


@dataclass(frozen=True)
class Executor:
    """Where a grid trains. ``kind="local"``: this machine's process pool (``workers``);
    ``kind="slurm"``: one job array; the other fields are its sbatch settings (``folder``:
    submitit's files and logs, default ``<run store>/.submitit``; ``tasks_per_node``: processes
    per node of each task, default one per GPU, else one; ``no_wait``: submit and return at once,
    printing ``collect``, the command that collects the runs later)."""

    kind: str = "local"
    partition: str | None = None
    gpus_per_node: int = 0
    nodes: int = 1
    timeout_min: int = 60
    array_parallelism: int = 64
    mem_gb: float | None = None
    cpus_per_task: int = 1
    folder: str | None = None
    workers: int | None = None
    signal_delay_s: int = 90
    tasks_per_node: int | None = None
    no_wait: bool = False
    collect: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ClusterError(f"executor {self.kind!r}: choose one of {list(KINDS)}")
        for name in ("nodes", "timeout_min", "array_parallelism", "cpus_per_task",
                     "tasks_per_node"):
            value = getattr(self, name)
            if value is None and name == "tasks_per_node":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ClusterError(f"executor {name}={value!r} must be a positive integer")
        if self.no_wait and self.kind != "slurm":
            raise ClusterError("--no-wait (no_wait=True) needs --executor slurm: a local pool "
                               "trains in this process and cannot go on without it")
        if self.gpus_per_node < 0:
            raise ClusterError(f"executor gpus_per_node={self.gpus_per_node} must be >= 0")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ClusterError(f"executor mem_gb={self.mem_gb} must be positive")

    @property
    def tasks(self) -> int:
        """Processes per node of each array task."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def world_size(self) -> int:
        """Processes that train one run together (DDP when above 1)."""
        return self.nodes * self.tasks

    def describe(self) -> str:
        """Where and how the runs train, in words (the grid's progress bar says it)."""
        if self.kind == "slurm":
            return f"Slurm array, {self.world_size} process(es) per run"
        if self.world_size > 1:
            where = f"{self.gpus_per_node} GPUs" if self.gpus_per_node else \
                f"{self.world_size} CPU processes"
            return f"one run at a time, DDP over {where}"
        if self.gpus_per_node:
            return (f"{self.workers or 1} run(s) at a time on the GPU" if (self.workers or 1) > 1
                    else "one run at a time on the GPU")
        return f"{self.workers or 1} at a time"

    def to_env(self) -> str:
        """These settings as ``$DDKIT_EXECUTOR``'s JSON (``from_env`` reads them back)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls) -> Executor | None:
        """The Executor in ``$DDKIT_EXECUTOR``, or None when it is unset or empty."""
        text = os.environ.get(EXECUTOR_ENV, "").strip()
        if not text:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ClusterError(f"${EXECUTOR_ENV} is not JSON ({err}): set it to an Executor's "
                               f"fields, e.g. '{{\"kind\": \"slurm\"}}', or unset it") from None
        if not isinstance(data, dict):
            raise ClusterError(f"${EXECUTOR_ENV} must be a JSON object of Executor fields, not "
                               f"{text!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ClusterError(f"${EXECUTOR_ENV}: unknown field(s) {unknown}; an Executor has "
                               f"{known}")
        return cls(**data)

    def log_folder(self, root: Path) -> Path:
        return Path(self.folder) if self.folder else Path(root) / SUBMITIT_DIR

    def parameters(self) -> dict:
        """submitit's ``update_parameters`` keywords for these settings."""
        params = {"name": "ddkit", "timeout_min": self.timeout_min, "nodes": self.nodes,
                  "tasks_per_node": self.tasks, "cpus_per_task": self.cpus_per_task,
                  "slurm_array_parallelism": self.array_parallelism,
                  "slurm_signal_delay_s": self.signal_delay_s}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        return params


# --------------------------------------------------------------------------- the world size


def planned(configs: Mapping[Hashable, RunConfig], settings: Executor) -> dict:
    """``configs`` planned for ``settings``' world size (part of each run's identity)."""
    if settings.world_size == 1:
        return dict(configs)
    return {key: with_world_size(cfg, settings.world_size) for key, cfg in configs.items()}


# --------------------------------------------------------------------------- before submitting


def _local_path(path: Path) -> str | None:
    resolved = os.path.realpath(path)
    return next((p for p in LOCAL_ONLY if resolved == p or resolved.startswith(p + "/")), None)


def check_slurm(settings: Executor, root: Path | None = None) -> list[str]:
    """Raise ClusterError, before anything is submitted, when the run store (or submitit's
    folder) is on a path only this machine sees, Slurm does not answer (``sinfo`` missing or
    failing) or ``settings.partition`` is not one of its partitions. Returns the partitions."""
    root = Path(root) if root is not None else runs_root()
    problems = []
    for what, path in (("the run store", root), ("submitit's folder", settings.log_folder(root))):
        local = _local_path(path)
        if local:
            problems.append(f"{what} {path} is under {local}, which the cluster's nodes cannot "
                            "see: put it on a shared filesystem (--runs-dir or $DDKIT_RUNS; "
                            "docs/cluster.md)")
    partitions: list[str] = []
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        problems.append("Slurm is unreachable: `sinfo` is not on PATH (run on a login node of "
                        "the cluster, or use --executor local)")
    else:
        try:
            out = subprocess.run([sinfo, "--noheader", "--format=%R"], capture_output=True,
                                 text=True, timeout=60)
        except subprocess.TimeoutExpired:
            out = None
            problems.append("Slurm is unreachable: `sinfo` did not answer in 60 s")
        if out is not None and out.returncode != 0:
            said = " ".join((out.stderr or out.stdout).split()) or f"exit {out.returncode}"
            problems.append(f"Slurm is unreachable: `sinfo` failed ({said})")
        elif out is not None:
            partitions = sorted({p.strip().rstrip("*") for p in out.stdout.split() if p.strip()})
            if settings.partition and settings.partition not in partitions:
                problems.append(f"unknown Slurm partition {settings.partition!r}; the "
                                f"cluster's partitions: {', '.join(partitions) or 'none'}")
    if problems:
        raise ClusterError("cannot submit to Slurm (nothing was submitted): "
                           + "; ".join(problems))
    return partitions


# --------------------------------------------------------------------------- the task side


class TrainTask(Checkpointable):
    """One array task: ``train(cfg, root=root)`` on the node. Requeued on preemption or time
    limit (submitit calls ``checkpoint``), it trains again, which resumes from the run's
    ``checkpoint.pt``."""

    def __init__(self, root: str, env: dict[str, str | None], master_port: int | None = None,
                 threads: int | None = None):
        self.root = root
        self.env = env
        self.master_port = master_port   # a local job: this machine's free port for DDP
        self.threads = threads           # a local job: torch threads per process

    def __call__(self, cfg: RunConfig) -> str:
        for name, value in self.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        threads = os.environ.get("SLURM_CPUS_PER_TASK") or getattr(self, "threads", None)
        if threads:
            torch.set_num_threads(int(threads))
        for name in DIST_ENV:     # sbatch passes the submitting shell's on: never this job's
            os.environ.pop(name, None)
        if submitit.JobEnvironment().num_tasks > 1:   # one run on several processes: DDP
            # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (from the job id) as
            # torchrun sets them; every GPU stays visible: train takes cuda:LOCAL_RANK
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
            if getattr(self, "master_port", None):    # one machine: its loopback, a free port
                os.environ["MASTER_ADDR"] = "127.0.0.1"
                os.environ["MASTER_PORT"] = str(self.master_port)
        try:
            run = train(cfg, progress=False, root=Path(self.root))
        finally:
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()   # left to exit, gloo's threads can abort it
        return str(run.dir.path)

    def checkpoint(self, cfg: RunConfig) -> DelayedSubmission:
        """The same task again: the run's own checkpoint.pt (written every epoch) is the state
        it resumes from, so nothing else needs saving."""
        return DelayedSubmission(self, cfg)


# --------------------------------------------------------------------------- the caller side


@dataclass
class Submitted:
    """A job array submitted without waiting: its job id, submitit's folder, the jobs by key."""

    job_id: str
    folder: Path
    jobs: dict


def _array_states(array_id: str) -> dict[str, str]:
    """``{task job id ("123_4"): Slurm state}`` from squeue (no accounting needed)."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=all",
                              f"--jobs={array_id}", "--format=%i|%T"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.stdout.splitlines():
        if "|" in line:
            job_id, state = line.strip().split("|", 1)
            states[job_id] = state
    return states


def _error_line(job, message: str) -> str:
    last = message.strip().splitlines()[-1] if message.strip() else "no error text"
    return f"{message.rstrip()}\n{last} (job {job.job_id}; log {job.paths.stderr})"


def validated_cache_hits(configs: Mapping[Hashable, RunConfig], root: Path) -> dict[Hashable, Run]:
    """Check every config before anything trains (ConfigError naming the run), then read the
    runs already complete in ``root`` (cache hits, keyed as ``configs``)."""
    for key, cfg in configs.items():
        try:
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(f"run {key} ({cfg.name}): {err}") from None
    return {key: train(cfg, progress=False, root=root) for key, cfg in configs.items()
            if RunDir.for_config(cfg, root).is_complete}


def train_array(configs: Mapping[Hashable, RunConfig], settings: Executor,
                root: Path | None = None, wait: bool = True, progress: bool = True,
                label: str = "runs") -> dict[Hashable, Run] | Submitted:
    """Train (or read from cache) every config of ``configs`` with ``settings``: on Slurm one
    job array of the runs not yet complete (``check_slurm`` first), else ``train_many``.
    Returns ``{key: Run}`` in the order of ``configs``. With ``settings.no_wait`` it returns at
    once the runs that were already complete, printing one line (stdout) with the array's id
    and ``settings.collect``; with ``wait=False`` it prints that line and returns a
    ``Submitted`` (its jobs). Raises ``RunsFailed`` naming each failed run and its log once
    every other task is done."""
    root = Path(root) if root is not None else runs_root()
    configs = planned(configs, settings)
    if settings.kind == "local" and settings.world_size > 1:
        raise ClusterError("a local executor of several processes per run trains through "
                           "ddkit.runs.launch.train_array (one submitit local job per run)")
    if settings.kind == "local":
        return train_many(configs, settings.workers, progress=progress, root=root, label=label)
    runs = validated_cache_hits(configs, root)
    pending = [key for key in configs if key not in runs]
    if not pending:
        return {key: runs[key] for key in configs}
    check_slurm(settings, root)
    folder = settings.log_folder(root)
    executor = submitit.AutoExecutor(folder=folder / "%A", cluster="slurm")  # one per array
    executor.update_parameters(**settings.parameters())
    task = TrainTask(str(root), {name: os.environ.get(name) for name in PASSED_ENV})
    jobs = dict(zip(pending, executor.map_array(task, [configs[k] for k in pending])))
    array_id = next(iter(jobs.values())).job_id.split("_")[0]
    print(f"[ddkit] submitted job array {array_id}: {len(jobs)} run(s) on Slurm; "
          f"logs in {folder / array_id}", file=sys.stderr)
    if settings.no_wait or not wait:
        collect = settings.collect or "the same call again (finished runs are cache hits)"
        print(f"submitted Slurm job array {array_id} ({len(jobs)} run(s); `squeue -j "
              f"{array_id}` shows it); once it is done, collect the runs with: {collect}",
              flush=True)
        if settings.no_wait:
            return {key: runs[key] for key in configs if key in runs}
        return Submitted(array_id, folder / array_id, jobs)
    failures = _wait(jobs, configs, runs, array_id, progress, label, len(configs))
    if failures:
        raise RunsFailed(failures, {key: cfg.name for key, cfg in configs.items()})
    return {key: runs[key] for key in configs}


def _wait(jobs, configs, runs, array_id, progress, label, total) -> dict[Hashable, str]:
    """Poll the array until every task has a result or has left the queue without one; fills
    ``runs`` and returns the failures."""
    failures: dict[Hashable, str] = {}
    gone_since: dict[Hashable, float] = {}
    bar = tqdm(total=total, initial=len(runs), desc=label, unit="run", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        while len(runs) + len(failures) < total:
            states = _array_states(array_id)
            counts = {"running": 0, "pending": 0}
            for key, job in jobs.items():
                if key in runs or key in failures:
                    continue
                state = states.get(job.job_id)
                if job.paths.result_pickle.exists():   # written whole (renamed into place)
                    outcome, value = pickle_load(job.paths.result_pickle)
                    run_dir = RunDir(Path(value)) if outcome == "success" else None
                    if run_dir is not None and run_dir.is_complete:
                        runs[key] = Run(configs[key], run_dir)
                        bar.update()
                    else:
                        failures[key] = _error_line(job, str(value) if run_dir is None else
                                                    f"{run_dir.path} is not complete")
                    continue
                if state is None or state.startswith(ENDED):
                    # out of the queue without a result: killed (memory, time, scancel) or lost;
                    # a task being requeued passes through such states for a moment
                    first = gone_since.setdefault(key, time.monotonic())
                    if time.monotonic() - first > max(GONE_S, 3 * POLL_S):
                        failures[key] = _error_line(job, f"task ended as {state or 'gone'} "
                                                         "without a result")
                    continue
                gone_since.pop(key, None)
                counts["running" if state.startswith(("RUNNING", "COMPLETING")) else "pending"] += 1
            bar.set_postfix_str(f"finished {len(runs)}, running {counts['running']}, pending "
                                f"{counts['pending']}, failed {len(failures)}", refresh=True)
            if len(runs) + len(failures) < total:
                time.sleep(POLL_S)
    except BaseException:  # Ctrl-C: the array goes on; say how to stop or collect it
        print(f"\n[ddkit] stopped waiting; the array goes on (scancel {array_id} stops it; "
              "the same command again collects it)", file=sys.stderr)
        raise
    finally:
        bar.close()
    return failures
