"""The study a profile describes: its teacher, the ablation grid of students, their tables.

The notebooks call these; every run goes through ``ddkit.train.train`` and its cache, so a
notebook re-run with the same profile trains nothing twice.

Cells of the negative-transfer ablation (names as in the official release's tables):
no-KD, SoftKD, SpectralKD-{First, Last, First+Last}, ProjectorKD-{First, Last, First+Last}.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ddkit.config import ConfigError, ModelConfig, Profile, RunConfig
from ddkit.models import SHIPPED_TEACHER
from ddkit.train import Run, train

LAYER_NAMES = {"first": "First", "last": "Last", "first_last": "First+Last"}
CELLS: dict[str, dict] = {
    "no-KD": dict(kd="none"),
    "SoftKD": dict(kd="soft"),
    **{f"{m}KD-{name}": dict(kd="soft", feature=m.lower(), layers=layers)
       for m in ("Spectral", "Projector") for layers, name in LAYER_NAMES.items()},
}


def cell_parts(cell: str) -> dict:
    """``{"method", "layers"}`` of a cell name, for grouping tables."""
    spec = CELLS[cell]
    method = {"none": "SoftKD" if spec["kd"] == "soft" else "no-KD", "spectral": "SpectralKD",
              "projector": "ProjectorKD"}[spec.get("feature", "none")]
    return {"method": method, "layers": spec.get("layers", "none")}


def check_cells(cells: Iterable[str]) -> list[str]:
    cells = list(cells)
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise ConfigError(f"unknown cell(s) {unknown}; valid cells: {list(CELLS)}")
    return cells


def teacher_model(profile: Profile, progress: bool = True) -> tuple[ModelConfig, Run | None]:
    """The teacher every student distils from, by ``profile.teacher_source``:
    ``shipped`` (the committed default teacher), ``hub`` (``distill.teacher``, e.g. CaiT-S24
    pretrained) or ``train`` (the profile's teacher run, trained once and cached)."""
    model = profile.teacher.model
    if profile.teacher_source == "shipped":
        if not SHIPPED_TEACHER.exists():
            raise FileNotFoundError(f"shipped teacher missing at {SHIPPED_TEACHER}; set "
                                    "teacher_source: train in the profile to train one")
        return ModelConfig(name=model.name, kwargs=model.kwargs,
                           checkpoint=str(SHIPPED_TEACHER)), None
    if profile.teacher_source == "hub":
        if profile.distill.teacher is None:
            raise ConfigError("teacher_source: hub needs distill.teacher in the profile")
        return profile.distill.teacher, None
    run = train(profile.teacher_config(), progress=progress)
    return ModelConfig(name=model.name, kwargs=model.kwargs,
                       checkpoint=str(run.dir.final_weights)), run


def student_config(profile: Profile, cell: str, seed: int, teacher: ModelConfig | None) -> RunConfig:
    check_cells([cell])
    spec = CELLS[cell]
    uses_teacher = spec["kd"] != "none" or spec.get("feature", "none") != "none"
    return profile.student_config(**spec, seed=seed, teacher=teacher if uses_teacher else None)


def student_runs(profile: Profile, cells: Iterable[str] | None = None,
                 seeds: Iterable[int] | None = None, teacher: ModelConfig | None = None,
                 progress: bool = True) -> dict[tuple[str, int], Run]:
    """Train (or read from cache) every (cell, seed) student; seeds default to the profile's."""
    cells = check_cells(cells if cells is not None else CELLS)
    seeds = list(seeds if seeds is not None else profile.seeds)
    if teacher is None and any(c != "no-KD" for c in cells):
        teacher, _ = teacher_model(profile, progress)
    configs = {(c, s): student_config(profile, c, s, teacher) for c in cells for s in seeds}
    return {key: train(cfg, progress=progress) for key, cfg in configs.items()}


def histories(runs: dict[tuple[str, int], Run]) -> pd.DataFrame:
    """Per-epoch logs of every run, with ``run`` (cell), ``method``, ``layers`` and ``seed``."""
    frames = [r.history().assign(run=cell, seed=seed, **cell_parts(cell))
              for (cell, seed), r in runs.items()]
    return pd.concat(frames, ignore_index=True)


def accuracy_table(runs: dict[tuple[str, int], Run]) -> pd.DataFrame:
    """One row per (cell, seed): final and best top-1 (percent), wall time."""
    rows = []
    for (cell, seed), run in runs.items():
        s = run.summary
        rows.append({"run": cell, "seed": seed, **cell_parts(cell), "final_acc1": s["final_acc1"],
                     "best_acc1": s["best_acc1"], "wall_time_s": s["wall_time_s"]})
    return pd.DataFrame(rows)
