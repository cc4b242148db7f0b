"""Run directories, atomic writes, and the cache keyed by a config's hash.

Layout of one run (``runs/<name>-<hash>/``)::

    config.json            the RunConfig that made it (and its hash)
    metrics.jsonl          one JSON line per epoch, official keys (docs/design.md §2)
    checkpoint.pt          last epoch's full state, for resume (rewritten atomically)
    weights/epoch_NNNN.safetensors   weights kept every K epochs, for dynamics analysis
    model.safetensors      final weights
    summary.json           written last: its presence marks the run complete (a cache hit)

Every file is written to a temporary name and renamed into place, so an interrupted write never
leaves a half file where a good one was.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

from ddkit.config import RunConfig, config_hash, to_dict

RUNS_ENV = "DDKIT_RUNS"
REPO_ROOT = Path(__file__).resolve().parent.parent


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


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


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

    def kept_weights(self) -> dict[int, Path]:
        """Saved per-epoch weights, ``{epoch: path}`` in epoch order."""
        files = sorted(self.weights_dir.glob("epoch_*.safetensors"))
        return {int(p.stem.split("_")[1]): p for p in files}

    @property
    def is_complete(self) -> bool:
        return self.summary.exists()

    def records(self) -> list[dict]:
        return read_jsonl(self.log)

    def read_summary(self) -> dict:
        with open(self.summary) as fh:
            return json.load(fh)

    def write_config(self, cfg: RunConfig) -> None:
        write_json(self.config, {"hash": config_hash(cfg), "config": to_dict(cfg)})

    def write_log(self, records: list[dict]) -> None:
        write_text(self.log, "".join(json.dumps(r) + "\n" for r in records))
