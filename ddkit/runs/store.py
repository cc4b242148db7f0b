"""Run directories, atomic writes, and the cache keyed by a config's hash.

Layout of one run (``runs/<name>-<hash>/``)::

    config.json            the RunConfig that made it (and its hash)
    metrics.jsonl          one JSON line per epoch, official keys (docs/design.md §2)
    checkpoint.pt          last epoch's full state, for resume (rewritten atomically)
    weights/epoch_NNNN.safetensors   weights kept every K epochs, for dynamics analysis
    model.safetensors      final weights
    summary.json           written last: its presence marks the run complete (a cache hit)

Every file is written to a temporary name and renamed into place, so an interrupted write never
leaves a half file where a good one was; a store that cannot be written (read-only, full) raises
RunStoreError naming the folder and the fix, the temporary file removed. A file damaged anyway
(a copy cut short, an edit) raises RunFileError naming the file and the fix; nothing is
overwritten to "repair" it. ``summary.json`` records the digest of every file a cache hit reads
(config, log, final and kept weights) and its own, and a cache hit verifies them before the run
is used (``RunDir.verify``).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import filelock
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from ddkit.core.config import (
    ConfigError,
    RunConfig,
    config_hash,
    from_dict,
    published_name,
    sha256_of_file,
    to_dict,
)

RUNS_ENV = "DDKIT_RUNS"
REPO_ROOT = Path(__file__).resolve().parents[2]
FIGURES = REPO_ROOT / "figures"       # the default profile's committed figures and tables
TIMES_CSV = "notebook_times.csv"      # FIGURES/<this>: each notebook's wall time in the last run


FIGURES_ENV = "DDKIT_FIGURES"
SCRATCH_FIGURES = ("smoke",)   # profiles whose figures are never committed (.gitignore)


def profile_figure_dir(profile) -> Path:
    """The figure folder of a ``config.Profile``: ``figure_dir`` of its name, except that a kit
    profile changed by overrides publishes to ``figures/<name>-set-<digest>/``
    (``config.published_name``), never over the committed results of the profile it came from."""
    return figure_dir(published_name(profile))


def slug(name: str) -> str:
    """A file-name-safe form of a label, for figure and folder names: ``SpectralKD-First+Last``
    -> ``spectralkd_first_last`` (lower case, one underscore for each run of other characters,
    none at the ends)."""
    return "_".join(re.findall(r"[a-z0-9]+", name.lower()))


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


class RunStoreError(RuntimeError):
    """A folder of the run store (or another folder ddkit writes) cannot be written: read-only,
    not the user's, or full. The message names the folder and the fix."""


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def store_error(path: Path, err: OSError) -> RunStoreError | None:
    """The RunStoreError saying why ``path`` (a file or folder to write) could not be written
    and how to fix it; None for an OSError of another kind."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(runs_root()))
    in_store = root in (path, *path.parents)
    folder = root if in_store else next((p for p in path.parents if p.is_dir()), path.parent)
    elsewhere = (" or point --runs-dir (or $DDKIT_RUNS) at another folder" if in_store else "")
    if err.errno in READ_ONLY:
        return RunStoreError(f"cannot write {path}: {err.strerror}: {folder} is read-only or not "
                             f"yours; make it writable{elsewhere}. Nothing was half-written")
    if err.errno in FULL:
        return RunStoreError(f"cannot write {path}: {err.strerror}: the disk (or quota) holding "
                             f"{folder} is full; free space{elsewhere} and run the same command "
                             "again (finished epochs are kept). Nothing was half-written")
    return None


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a read-only or full-disk OSError of the block into RunStoreError for ``path``."""
    try:
        yield
    except OSError as err:
        said = store_error(path, err)
        if said is None:
            raise
        raise said from None


def make_dir(path: Path) -> Path:
    """``path.mkdir(parents=True, exist_ok=True)``, a read-only or full store named."""
    with writing(path):
        Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it into place. A store
    that cannot be written raises RunStoreError; the temporary file never stays behind."""
    path = Path(path)
    make_dir(path.parent)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with writing(path):
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and shipped files are for everyone
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` written atomically to ``path`` (Python's own writes: a full disk is an OSError
    naming it, which ``atomic_write`` reports)."""
    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write(path, _write)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class _Sink:
    """A file torch.save writes through, keeping the OSError of a failed write: torch reports
    it as a bare RuntimeError ("unexpected pos ..."), which ``torch_save`` turns back into it."""

    def __init__(self, fh: io.BufferedWriter):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.fh.flush()


def torch_save(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a full disk is an OSError (RunStoreError)."""
    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            sink = _Sink(fh)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise
    atomic_write(path, _write)


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    write_bytes(path, safetensors_bytes(tensors))


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
        parse; the log holds one record per epoch (0 .. epochs-1) and the summary's accuracies
        are its; the recorded config hashes to the folder's hash; every file has the digest
        summary.json recorded when the run finished (config, log, final and each kept weights
        file, no kept file missing or added, and summary.json its own); the final weights are
        those kept at the last epoch. Runs from before a digest existed are checked without it.
        Raises RunFileError naming the file and the fix."""
        summary = self.read_summary()
        if not isinstance(summary, dict):
            raise RunFileError(f"{self.summary}: holds no run summary{self.fix}")
        if "summary_sha256" in summary and summary["summary_sha256"] != summary_digest(summary):
            raise RunFileError(f"{self.summary}: its digest differs from the one it recorded "
                               f"when the run finished: the file was edited{self.fix}")
        config = self.read_config()
        records = self.records()
        kept = self.kept_weights()
        for path in (self.final_weights, *kept.values()):
            if not path.is_file():
                raise RunFileError(f"{path}: missing{self.fix}")
            check_safetensors(path, self.fix)
        recorded = [(self.config, summary.get("config_sha256")),
                    (self.final_weights, summary.get("weights_sha256")),
                    (self.log, summary.get("log_sha256"))]
        if "kept_sha256" in summary:
            named = summary["kept_sha256"]
            for path in kept.values():
                if path.name not in named:
                    raise RunFileError(f"{path}: not in the run's record (summary.json lists "
                                       f"{sorted(named)}): the file was added{self.fix}")
            recorded += [(self.weights_dir / name, digest) for name, digest in named.items()]
        for path, digest in recorded:
            if digest is None:
                continue
            if not path.is_file():
                raise RunFileError(f"{path}: missing (summary.json recorded it when the run "
                                   f"finished){self.fix}")
            found = file_digest(path)
            if found != digest:
                raise RunFileError(f"{path}: its digest {found[:12]} differs from "
                                   f"the {digest[:12]} summary.json recorded when the run "
                                   f"finished: the file was edited or replaced{self.fix}")
        self._check_log(summary, records)
        last = self.epoch_weights(summary["epochs"] - 1)
        if last.is_file() and file_digest(last) != file_digest(self.final_weights):
            raise RunFileError(f"{self.final_weights}: the final weights differ from "
                               f"{last.name}, those kept at the run's last epoch: a file was "
                               f"replaced{self.fix}")
        try:
            hashed = config_hash(from_dict(RunConfig, config))
        except (ConfigError, OSError) as err:
            raise RunFileError(f"{self.config}: {err}{self.fix}") from None
        if not self.path.name.endswith(f"-{hashed}"):
            raise RunFileError(f"{self.config}: its config hashes to {hashed}, not to the "
                               f"folder's hash: the file was edited{self.fix}")

    def _check_log(self, summary: dict, records: list[dict]) -> None:
        """One log record per epoch of the run, and the summary's accuracies are the log's."""
        epochs = summary.get("epochs")
        logged = [r.get("epoch") for r in records]
        if not isinstance(epochs, int) or logged != list(range(epochs)):
            raise RunFileError(f"{self.log}: holds epochs {_span(logged)} for a run of {epochs} "
                               f"epoch(s) (summary.json): the log was cut, replaced or added "
                               f"to{self.fix}")
        for key, value in (("final_acc1", records[-1].get("test_acc1")),
                           ("best_acc1", max(r.get("test_acc1", -1.0) for r in records))):
            if summary.get(key) != value:
                raise RunFileError(f"{self.summary}: {key} {summary.get(key)} is not the "
                                   f"{value} of {self.log.name}: the file was edited{self.fix}")

    def record_digests(self) -> dict:
        """The digests ``verify`` checks, of the run's files as they are now (written into
        summary.json when the run finishes)."""
        return {"config_sha256": file_digest(self.config),
                "weights_sha256": file_digest(self.final_weights),
                "log_sha256": file_digest(self.log),
                "kept_sha256": {p.name: file_digest(p) for p in self.kept_weights().values()}}

    def write_summary(self, summary: dict) -> None:
        """Write summary.json last (it marks the run complete), with the digests of the run's
        files and its own (``summary_sha256``)."""
        data = {**summary, **self.record_digests()}
        write_json(self.summary, {**data, "summary_sha256": summary_digest(data)})

    def discard(self) -> None:
        """Delete this run's folder (``ddkit train --force``)."""
        if self.path.exists():
            shutil.rmtree(self.path)

    def write_config(self, cfg: RunConfig) -> None:
        write_json(self.config, {"hash": config_hash(cfg), "config": to_dict(cfg)})

    def write_log(self, records: list[dict]) -> None:
        write_text(self.log, "".join(json.dumps(r) + "\n" for r in records))


def file_digest(path: Path) -> str:
    """sha256 (hex) of a run file's bytes, read now (not config.file_digest's remembered one:
    a file replaced in place must be seen)."""
    return sha256_of_file(path)


def summary_digest(summary: dict) -> str:
    """sha256 of a summary's content without its own digest (canonical JSON)."""
    data = {k: v for k, v in summary.items() if k != "summary_sha256"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _span(epochs: list) -> str:
    """``[0..4]`` for a run of consecutive epochs, else the list."""
    if epochs and epochs == list(range(epochs[0], epochs[0] + len(epochs))) and len(epochs) > 3:
        return f"[{epochs[0]}..{epochs[-1]}]"
    return str(epochs)


@contextlib.contextmanager
def run_lock(run_dir: RunDir, wait: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock (an OS file lock: released by the kernel when its process dies,
    so a killed trainer leaves no stale lock). ``wait=False``: raise RunBusyError when another
    process holds it; else wait for it, saying so once."""
    make_dir(run_dir.path.parent)
    lock = filelock.FileLock(run_dir.lock_path)
    try:
        with writing(run_dir.lock_path):
            lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            raise RunBusyError(f"another process is training {run_dir.path} (lock "
                               f"{run_dir.lock_path}); let it finish (its result is then a "
                               "cache hit) or run again without --no-wait to wait for it"
                               ) from None
        log.info("waiting for another process training %s (lock %s)", run_dir.path,
                 run_dir.lock_path)
        with writing(run_dir.lock_path):
            lock.acquire()
    try:
        yield
    finally:
        lock.release()
