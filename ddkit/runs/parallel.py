"""Many runs at once: a pool of worker processes, each training whole runs with ``ddkit.runs.train.train``.

A default student (ViT 48/4 on a 7x7 token grid) is too small for the threads of one process to
share its work well: on two cores, two threads give a run 1.5x one thread's speed, while two
one-thread processes training two runs give 1.85x, and they do not stall when another job holds
a core (``benchmarks/bench_study.py`` measures both). The pool only decides which process
trains which config; every run still goes through ``train`` with its cache, resume and logs.

Workers: ``workers`` argument, else ``$DDKIT_WORKERS``, else the profile's ``workers``, else the
number of cores this process may use. Each run trains with ``cores // workers`` torch threads
(at least one), wherever it runs: in the calling process when there is one worker or one run to
train, else in a worker started with the ``spawn`` method (clean in a Jupyter kernel; the
workers are kept for the next call). Same config and same thread count give the same weights,
bit for bit; a different thread count may change the last bits (torch splits some sums by
thread), so a run cached by a 2-thread process and the same run trained by a 1-thread worker
can differ in the last digits (the cache, keyed by config, treats them as the same run).

The workers ignore the interrupts meant for their caller (they share its process group: Ctrl-C,
a Jupyter kernel interrupted, papermill shutting its kernel down) and stop when the caller exits,
so a notebook kernel that ends takes them along without a traceback; an interrupt while runs
are in flight stops them (their runs resume from their last epoch).

A run that fails in a worker (an error, or the worker process dying) does not stop the others:
they finish and stay cached, and ``RunsFailed`` then names every failed run and its error.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import traceback
from collections.abc import Hashable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ddkit.core.config import ConfigError, RunConfig, validate
from ddkit.runs.store import RunDir, runs_root
from ddkit.runs.train import Run, train

ENV = "DDKIT_WORKERS"


class RunsFailed(RuntimeError):
    """Some runs failed; ``failures`` maps each one's key to its error (with the traceback)."""

    def __init__(self, failures: dict[Hashable, str], names: dict[Hashable, str]):
        self.failures = failures
        lines = [f"  {key} ({names[key]}): {error.strip().splitlines()[-1]}"
                 for key, error in failures.items()]
        super().__init__(f"{len(failures)} run(s) failed; the other runs finished and are cached "
                         "(run again to resume the failed ones from their last epoch):\n"
                         + "\n".join(lines))


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None = None, profile_workers: int | None = None) -> int:
    """The number of worker processes: ``workers``, else ``$DDKIT_WORKERS``, else
    ``profile_workers``, else ``cores()``."""
    env = os.environ.get(ENV)
    if workers is None and env:
        try:
            workers = int(env)
        except ValueError:
            raise ConfigError(f"${ENV}={env!r} must be a positive integer") from None
        where = f"${ENV}"
    else:
        where = "workers"
    if workers is None:
        workers = profile_workers if profile_workers is not None else cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{where}={workers!r} must be a positive integer (1 = train the runs "
                          "one after another in this process)")
    return workers


def threads_per_run(workers: int) -> int:
    """torch threads each run trains with when ``workers`` run at once."""
    return max(1, cores() // workers)


# --------------------------------------------------------------------------- the worker side


def _init_worker(threads: int) -> None:
    # The workers share the caller's process group, so an interrupt meant for the caller (Ctrl-C
    # in a terminal, a Jupyter kernel interrupted, papermill shutting its kernel down) reaches
    # them too: they ignore it. The caller stops them itself (``_kill_pool`` on an interrupt,
    # ``shutdown`` when it exits), so no idle worker dies with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


# the caller's settings a worker takes over for each run (kept workers outlive changes to them)
PASSED_ENV = ("DDKIT_PROGRESS", "DDKIT_DATA", "DDKIT_NATIVE")


def _train_in_worker(cfg: RunConfig, root: str, env: dict[str, str | None]) -> dict:
    """Train one run in a worker; errors come back as text (any exception type survives)."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        run = train(cfg, progress=False, root=Path(root))
        return {"ok": True, "path": str(run.dir.path)}
    except BaseException as err:  # noqa: BLE001 - reported to the parent, the worker lives on
        return {"ok": False, "error": "".join(traceback.format_exception(err))}


_pool: ProcessPoolExecutor | None = None
_pool_shape: tuple[int, int] | None = None


def _get_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """The kept pool for (workers, threads), started with ``spawn`` when missing."""
    global _pool, _pool_shape
    if _pool is None or _pool_shape != (workers, threads):
        shutdown()
        _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(threads,))
        _pool_shape = (workers, threads)
    return _pool


def shutdown() -> None:
    """Stop the kept worker processes (they are started again when needed)."""
    global _pool, _pool_shape
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
    _pool, _pool_shape = None, None


atexit.register(shutdown)   # the caller's exit (a notebook kernel's end) stops the idle workers


def _kill_pool() -> None:
    """Stop the workers now, even mid-run (their runs resume from the last epoch later)."""
    global _pool, _pool_shape
    if _pool is not None:
        for process in list(getattr(_pool, "_processes", {}).values()):
            process.terminate()
        _pool.shutdown(wait=False, cancel_futures=True)
    _pool, _pool_shape = None, None


# --------------------------------------------------------------------------- the caller side


def _in_this_process(cfg: RunConfig, threads: int, root: Path | None) -> Run:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train(cfg, progress=False, root=root)
    finally:
        torch.set_num_threads(before)


def train_many(configs: Mapping[Hashable, RunConfig], workers: int | None = None,
               progress: bool = True, root: Path | None = None,
               label: str = "runs") -> dict[Hashable, Run]:
    """Train (or read from cache) every config of ``configs`` (``{key: RunConfig}``), ``workers``
    at a time (see ``resolve_workers``); returns ``{key: Run}`` in the order of ``configs``.

    One progress bar counts finished runs. Raises ``RunsFailed`` after every other run is done
    when some runs failed.
    """
    workers = resolve_workers(workers)
    threads = threads_per_run(workers)
    root = Path(root) if root is not None else runs_root()
    for key, cfg in configs.items():  # every config checked before any run starts
        try:
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(f"run {key} ({cfg.name}): {err}") from None
    runs: dict[Hashable, Run] = {}
    pending = []
    for key, cfg in configs.items():
        if RunDir.for_config(cfg, root).is_complete:
            runs[key] = train(cfg, progress=False, root=root)  # a cache hit: reads, emits
        else:
            pending.append(key)
    names = {key: cfg.name for key, cfg in configs.items()}
    failures: dict[Hashable, str] = {}
    bar = tqdm(total=len(configs), initial=len(runs), desc=label, unit="run",
               disable=not progress, dynamic_ncols=True)

    def finished(key: Hashable, run: Run) -> None:
        runs[key] = run
        bar.update()
        bar.set_postfix_str(f"{key}: {run.summary['final_acc1']:.2f} %", refresh=True)

    try:
        if workers == 1 or len(pending) <= 1:
            for key in pending:
                try:
                    finished(key, _in_this_process(configs[key], threads, root))
                except Exception:  # noqa: BLE001 - same contract as the pool
                    failures[key] = traceback.format_exc()
        else:
            _run_pool(configs, pending, min(workers, len(pending)), threads, root, finished,
                      failures)
    finally:
        bar.close()
    if failures:
        raise RunsFailed(failures, names)
    return {key: runs[key] for key in configs}


def _run_pool(configs, pending, workers, threads, root, finished, failures) -> None:
    """Keep ``workers`` runs in flight. A worker that dies takes the pool's other runs in flight
    down with it: each of those is then trained alone in a fresh pool (resuming from its last
    epoch), so only the run that kills its worker on its own is reported as failed."""
    queue = list(pending)
    suspects: set[Hashable] = set()  # in flight when a worker died: trained alone from then on
    in_flight: dict[Future, Hashable] = {}
    env = {name: os.environ.get(name) for name in PASSED_ENV}
    try:
        while queue or in_flight:
            pool = _get_pool(workers, threads)
            while queue and len(in_flight) < workers:
                alone = queue[0] in suspects
                if in_flight and (alone or suspects & set(in_flight.values())):
                    break
                key = queue.pop(0)
                in_flight[pool.submit(_train_in_worker, configs[key], str(root), env)] = key
                if alone:
                    break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                if isinstance(future.exception(), BrokenProcessPool):
                    broken = True  # handled below with the pool's other runs in flight
                    continue
                key = in_flight.pop(future)
                result = future.result()
                if result["ok"]:
                    finished(key, Run(configs[key], RunDir(Path(result["path"]))))
                else:
                    failures[key] = result["error"]
            if broken:
                _kill_pool()
                keys = list(in_flight.values())
                in_flight.clear()
                if len(keys) == 1:
                    failures[keys[0]] = ("its worker process died while training it alone "
                                         "(out of memory? a crash in a native library?)")
                else:
                    suspects.update(keys)
                    queue[:0] = keys
    except BaseException:  # KeyboardInterrupt: stop the workers, keep their checkpoints
        _kill_pool()
        raise
