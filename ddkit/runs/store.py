"""Run directories, atomic writes, and the cache keyed by a config's hash.

Layout of one run (``runs/<name>-<hash>/``)::

    config.json            the RunConfig that made it (and its hash)
    metrics.jsonl          one JSON line per epoch, official keys (docs/design.md §2)
    checkpoint.pt          last epoch's full state, for resume (rewritten atomically)
    weights/epoch_NNNN.safetensors   weights kept every K epochs, for dynamics analysis
    model.safetensors      final weights
    summary.json           written last: its presence marks the run complete (a cache hit)

Every file is written to a temporary name and renamed into place, so an interrupted write never
leaves a half file where a good one was. A file damaged anyway (a full disk, a copy cut short)
raises RunFileError naming the file and the fix; nothing is overwritten to "repair" it, and a
cache hit verifies its files before it is used (``RunDir.verify``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import filelock
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ddkit.core.config import ConfigError, RunConfig, config_hash, file_digest, from_dict, to_dict

RUNS_ENV = "DDKIT_RUNS"
REPO_ROOT = Path(__file__).resolve().parents[2]
FIGURES = REPO_ROOT / "figures"       # the default profile's committed figures and tables
TIMES_CSV = "notebook_times.csv"      # FIGURES/<this>: each notebook's wall time in the last run


FIGURES_ENV = "DDKIT_FIGURES"
SCRATCH_FIGURES = ("smoke",)   # profiles whose figures are never committed (.gitignore)


def figure_dir(profile_name: str) -> Path:
    """``figures/`` for the default profile (the committed figures), ``figures/<name>/`` else.
    ``$DDKIT_FIGURES`` moves the smoke profile's folder (never committed) to
    ``$DDKIT_FIGURES/smoke/``: two executions of the smoke notebooks (the test suite's workers)
    then never write each other's figures; the committed folders stay where they are."""
    if profile_name == "default":
        return FIGURES
    scratch = os.environ.get(FIGURES_ENV)
    if scratch and profile_name in SCRATCH_FIGURES:
        return Path(scratch).expanduser() / profile_name
    return FIGURES / profile_name


log = logging.getLogger("ddkit")


def runs_root() -> Path:
    """Where runs live: ``$DDKIT_RUNS`` or ``<repo>/runs``."""
    return Path(os.environ.get(RUNS_ENV, REPO_ROOT / "runs"))


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and shipped files are for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
    atomic_write(path, _write)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def torch_save(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


class RunFileError(ValueError):
    """A file of a run or of the teacher cache is unreadable; the message names it and the fix."""


class RunBusyError(RuntimeError):
    """Another process holds the run's lock (``run_lock`` with ``wait=False``)."""


def read_json(path: Path, fix: str = "") -> Any:
    """The JSON document in ``path``; an unreadable one raises RunFileError with ``fix``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFileError(f"{path}: unreadable ({type(err).__name__}: {err}){fix}") from None


def read_jsonl(path: Path, fix: str = "") -> list[dict]:
    """One dict per non-empty line of ``path`` ([] when there is no file)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFileError(f"{path}: unreadable ({type(err).__name__}: {err}){fix}") from None


def check_safetensors(path: Path, fix: str = "") -> None:
    """Raise RunFileError unless ``path`` is a whole safetensors file (its header read and the
    data it announces present; the tensors themselves are not read)."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as err:  # SafetensorError, OSError: both mean "not a whole file"
        raise RunFileError(f"{path}: unreadable weights file, truncated or corrupt "
                           f"({type(err).__name__}: {err}){fix}") from None


@dataclass(frozen=True)
class RunDir:
    """Paths of one run; ``RunDir.for_config(cfg)`` is the cache lookup."""
    path: Path

    @classmethod
    def for_config(cls, cfg: RunConfig, root: Path | None = None) -> "RunDir":
        return cls((root or runs_root()) / f"{cfg.name}-{config_hash(cfg)}")

    config = property(lambda self: self.path / "config.json")
    log = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    weights_dir = property(lambda self: self.path / "weights")
    final_weights = property(lambda self: self.path / "model.safetensors")
    summary = property(lambda self: self.path / "summary.json")

    def epoch_weights(self, epoch: int) -> Path:
        return self.weights_dir / f"epoch_{epoch:04d}.safetensors"

    @property
    def fix(self) -> str:
        """What to do about a damaged file of this run (appended to RunFileError messages)."""
        return (f". Remove the run folder {self.path} to train it again from scratch (or pass "
                "--force to `ddkit train`)")

    def kept_weights(self) -> dict[int, Path]:
        """Saved per-epoch weights, ``{epoch: path}`` in epoch order."""
        files = sorted(self.weights_dir.glob("epoch_*.safetensors"))
        return {int(p.stem.split("_")[1]): p for p in files}

    @property
    def is_complete(self) -> bool:
        return self.summary.exists()

    def records(self) -> list[dict]:
        return read_jsonl(self.log, self.fix)

    def read_summary(self) -> dict:
        return read_json(self.summary, self.fix)

    def read_config(self) -> dict:
        """The run's recorded config (``config.json``'s ``config``)."""
        if not self.config.is_file():
            raise RunFileError(f"{self.path} is not a ddkit run folder: it has no config.json")
        data = read_json(self.config, self.fix)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise RunFileError(f"{self.config}: holds no run config{self.fix}")
        return data["config"]

    @property
    def lock_path(self) -> Path:
        """The run's lock file, beside its folder (so ``discard`` leaves it alone)."""
        return self.path.parent / f".{self.path.name}.lock"

    def verify(self) -> None:
        """Check a complete run's files before it is used as a cache hit: summary, config and log
        parse; the recorded config hashes to the folder's hash; config.json and the final weights
        have the digests summary.json recorded (runs from before the digests existed: the hash
        only); the final and kept weights are whole safetensors files. Raises RunFileError."""
        summary = self.read_summary()
        config = self.read_config()
        self.records()
        for path in (self.final_weights, *self.kept_weights().values()):
            if not path.is_file():
                raise RunFileError(f"{path}: missing{self.fix}")
            check_safetensors(path, self.fix)
        for path, key in ((self.config, "config_sha256"), (self.final_weights, "weights_sha256")):
            found = file_digest(path) if key in summary else None
            if found is not None and found != summary[key]:
                raise RunFileError(f"{path}: its digest {found[:12]} differs from "
                                   f"the {summary[key][:12]} summary.json recorded when the run "
                                   f"finished: the file was edited or replaced{self.fix}")
        try:
            recorded = config_hash(from_dict(RunConfig, config))
        except (ConfigError, OSError) as err:
            raise RunFileError(f"{self.config}: {err}{self.fix}") from None
        if not self.path.name.endswith(f"-{recorded}"):
            raise RunFileError(f"{self.config}: its config hashes to {recorded}, not to the "
                               f"folder's hash: the file was edited{self.fix}")

    def discard(self) -> None:
        """Delete this run's folder (``ddkit train --force``)."""
        if self.path.exists():
            shutil.rmtree(self.path)

    def write_config(self, cfg: RunConfig) -> None:
        write_json(self.config, {"hash": config_hash(cfg), "config": to_dict(cfg)})

    def write_log(self, records: list[dict]) -> None:
        write_text(self.log, "".join(json.dumps(r) + "\n" for r in records))


@contextlib.contextmanager
def run_lock(run_dir: RunDir, wait: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock (an OS file lock: released by the kernel when its process dies,
    so a killed trainer leaves no stale lock). ``wait=False``: raise RunBusyError when another
    process holds it; else wait for it, saying so once."""
    run_dir.path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(run_dir.lock_path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            raise RunBusyError(f"another process is training {run_dir.path} (lock "
                               f"{run_dir.lock_path}); let it finish (its result is then a "
                               "cache hit) or run again without --no-wait to wait for it"
                               ) from None
        log.info("waiting for another process training %s (lock %s)", run_dir.path,
                 run_dir.lock_path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
