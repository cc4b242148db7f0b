"""Where a grid's runs train on this machine, decided before any starts: ``launch_plan``.

    plan = launch_plan(profile.device, profile_workers=profile.workers)   # or gpus=8 for a test
    runs = train_array(planned(configs, plan), plan)                      # {key: Run}

On the CPU the runs train in the process pool (``ddkit.runs.parallel``), as before. On GPUs they
train **one run at a time over every visible GPU**: each run one submitit local job of one
process per GPU, each process running the Slurm task's ``cluster.TrainTask`` (DDP: nccl, each on
``cuda:LOCAL_RANK``; one GPU: in this process). Several runs share a device only when asked for
(a profile's ``workers``, ``--workers`` or ``$DDKIT_WORKERS``). A Slurm executor goes to
``cluster.train_array`` unchanged. The plan is a function of a device count, so a test decides
the plan of an 8-GPU box on a CPU.
"""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Hashable, Mapping
from pathlib import Path

import submitit
import torch
from tqdm.auto import tqdm

from ddkit.core.config import ConfigError, RunConfig
from ddkit.core.device import CPU_HINT, DeviceUnavailableError
from ddkit.runs import cluster
from ddkit.runs.cluster import Executor, TrainTask, planned, validated_cache_hits
from ddkit.runs.parallel import ENV as WORKERS_ENV
from ddkit.runs.parallel import RunsFailed, cores, resolve_workers
from ddkit.runs.store import RunDir, runs_root
from ddkit.runs.train import Run

LOCAL_DDP_TIMEOUT_MIN = 60 * 24 * 366   # a local DDP run is never stopped by a time limit


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_plan(device: str, gpus: int | None = None, workers: int | None = None,
                profile_workers: int | None = None, executor: Executor | None = None) -> Executor:
    """How a grid's runs train on this machine, decided before any of them starts.

    - A Slurm ``executor`` is kept as it is (one array task per run).
    - On the CPU (``device`` cpu, or auto without a GPU): the process pool, ``workers`` runs at
      once (``workers``, else ``$DDKIT_WORKERS``, else ``profile_workers``, else the cores).
    - On GPUs (``device`` cuda, or auto with ``gpus`` > 0): one run at a time over all ``gpus``
      (default: the visible ones), a DDP process per GPU when there are several; several runs at
      once only when asked for (``workers``, ``$DDKIT_WORKERS`` or the profile's ``workers``),
      and then they share the device(s).

    ``gpus`` lets a test (or a plan made ahead) decide for a machine it is not on. The returned
    Executor's ``world_size`` is the world size the runs' configs are planned for."""
    if executor is not None and executor.kind == "slurm":
        return executor
    if executor is not None and workers is None:
        workers = executor.workers
    gpus = visible_gpus() if gpus is None else gpus
    if gpus < 0:
        raise ConfigError(f"gpus={gpus} must be >= 0")
    if device == "cuda" and gpus == 0:
        raise DeviceUnavailableError(f"device 'cuda' asked for but no CUDA device is visible; "
                                     f"{CPU_HINT}")
    if device == "cpu" or gpus == 0:
        return Executor(workers=resolve_workers(workers, profile_workers))
    asked = workers is not None or bool(os.environ.get(WORKERS_ENV)) or profile_workers is not None
    if asked:
        return Executor(workers=resolve_workers(workers, profile_workers), gpus_per_node=gpus,
                        tasks_per_node=1)
    if gpus == 1:
        return Executor(workers=1, gpus_per_node=1)
    return Executor(kind="local", workers=1, gpus_per_node=gpus, tasks_per_node=gpus,
                    timeout_min=LOCAL_DDP_TIMEOUT_MIN)


def train_array(configs: Mapping[Hashable, RunConfig], settings: Executor,
                root: Path | None = None, wait: bool = True, progress: bool = True,
                label: str = "runs"):
    """Train ``configs`` as ``settings`` (a launch plan) says: a local executor of several
    processes per run through ``train_local_ddp``, anything else through
    ``cluster.train_array`` (the process pool, or a Slurm job array)."""
    if settings.kind == "local" and settings.world_size > 1:
        return train_local_ddp(configs, settings, root=root, progress=progress, label=label)
    return cluster.train_array(configs, settings, root=root, wait=wait, progress=progress,
                               label=label)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _visible_gpu_ids() -> list[int] | None:
    """The GPU ids of ``$CUDA_VISIBLE_DEVICES`` when it lists numbers (submitit's local executor
    sets the variable for its tasks: the same devices, not the first ones)."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        return None


def train_local_ddp(configs: Mapping[Hashable, RunConfig], settings: Executor,
                    root: Path | None = None, progress: bool = True,
                    label: str = "runs") -> dict[Hashable, Run]:
    """Train ``configs`` one after another, each as one submitit local job of
    ``settings.world_size`` processes on this machine (DDP: nccl over ``settings.gpus_per_node``
    GPUs, gloo on the CPU), each process running ``TrainTask`` as a Slurm task would. Runs
    already complete are cache hits; a failed run does not stop the others (``RunsFailed`` names
    it with its log). Ctrl-C stops the run in flight (it resumes from its last epoch)."""
    root = Path(root) if root is not None else runs_root()
    configs = planned(configs, settings)
    runs = validated_cache_hits(configs, root)
    folder = settings.log_folder(root) / "local"
    failures: dict[Hashable, str] = {}
    bar = tqdm(total=len(configs), initial=len(runs), desc=label, unit="run",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    params = {"timeout_min": settings.timeout_min, "tasks_per_node": settings.tasks,
              "gpus_per_node": settings.gpus_per_node}
    ids = _visible_gpu_ids()
    if settings.gpus_per_node and ids is not None:
        params["visible_gpus"] = ids
    threads = None if settings.gpus_per_node else max(1, cores() // settings.tasks)
    env = {name: os.environ.get(name) for name in (*cluster.PASSED_ENV, "DDKIT_PROGRESS")}
    try:
        for key, cfg in configs.items():
            if key in runs:
                continue
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(**params)
            job = executor.submit(TrainTask(str(root), env, _free_port(), threads), cfg)
            print(f"[ddkit] {cfg.name}: DDP over {settings.world_size} process(es) "
                  f"(submitit local job {job.job_id}; logs {job.paths.stderr})",
                  file=sys.stderr, flush=True)
            try:
                run_dir = RunDir(Path(job.results()[0]))   # every process returns the run
            except KeyboardInterrupt:
                job.cancel(check=False)
                raise
            except Exception as err:  # noqa: BLE001 - submitit's failures come in several types
                failures[key] = cluster._error_line(job, str(err))
                continue
            if run_dir.is_complete:
                runs[key] = Run(configs[key], run_dir)
                bar.update()
            else:
                failures[key] = cluster._error_line(job, f"{run_dir.path} is not complete")
    finally:
        bar.close()
    if failures:
        raise RunsFailed(failures, {key: cfg.name for key, cfg in configs.items()})
    return {key: runs[key] for key in configs}
