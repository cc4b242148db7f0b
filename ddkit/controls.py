"""The negative-transfer controls (profile ``controls``; docs/design.md §10): the runs that ask
where late feature alignment must hurt.

The base of the profile distils from a self-supervised teacher (``ddkit.mae``), and each setting
of its ``sweep`` section changes the base by dotted keys and names its own cells in
``cell_seeds``: a setting trains only those cells, and is compared with the base's SoftKD runs of
the same teacher when it has none of its own (the dose settings change only the feature loss).

    teachers(profile)          # pre-train the MAE encoder, probe its head, ship both
    runs(profile)              # {(setting, cell, seed): Run} over the base and every setting
"""
from __future__ import annotations

from collections.abc import Iterable

from ddkit import study
from ddkit.config import ConfigError, Profile, replace
from ddkit.models import shipped_teacher
from ddkit.parallel import resolve_workers, train_many
from ddkit.progress import emit
from ddkit.store import RunDir, read_json
from ddkit.train import Run, train

BASE = "base"


def settings(profile: Profile) -> dict[str, Profile]:
    """The base profile and one profile per sweep setting, each with only its own cells in
    ``cell_seeds``."""
    out = {BASE: profile}
    for name, overrides in profile.sweep.items():
        if not overrides.get("cell_seeds"):
            raise ConfigError(f"sweep setting {name!r} of profile {profile.name!r} names no "
                              "cells: give it cell_seeds, e.g. {SoftKD: [0, 1, 2]}")
        out[name] = replace(profile, **overrides)
    for name, variant in out.items():
        study.check_cells(variant.cell_seeds)
    return out


def _shipped_hash(model: str) -> str | None:
    record = shipped_teacher(model, must_exist=False).record
    return read_json(record).get("hash") if record.exists() else None


def _ship(profile: Profile, run: Run, progress: bool) -> None:
    if _shipped_hash(profile.teacher.model.name) != run.summary["hash"]:
        study.ship_teacher(profile, run=run, progress=progress)


def teachers(profile: Profile, progress: bool = True) -> dict[str, Run]:
    """Pre-train the profile's teacher as a masked autoencoder, fit its head with the profile's
    probe, and ship both (``ddkit/shipped/``) unless the shipped record already has the run's
    hash. Returns ``{"encoder": Run, "probe": Run}``."""
    if profile.teacher.mae is None or profile.probe is None:
        raise ConfigError(f"profile {profile.name!r} needs teacher.mae and probe sections")
    encoder = train(profile.teacher_config(), progress=progress)
    _ship(profile, encoder, progress)
    probe = train(profile.probe_config(encoder.dir.final_weights), progress=progress)
    _ship(replace(profile, **{"teacher.model": profile.probe.model}), probe, progress)
    return {"encoder": encoder, "probe": probe}


def configs(profile: Profile, only: Iterable[str] | None = None) -> dict:
    """``{(setting, cell, seed): RunConfig}`` of the base and each setting (or of ``only``)."""
    variants = settings(profile)
    names = list(only) if only is not None else list(variants)
    unknown = sorted(set(names) - set(variants))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; settings: {list(variants)}")
    out = {}
    for name in names:
        variant = variants[name]
        teacher, _ = study.teacher_model(variant, progress=False)
        for cell, seeds in variant.cell_seeds.items():
            for seed in seeds:
                out[(name, cell, seed)] = study.student_config(variant, cell, seed, teacher)
    return out


def runs(profile: Profile, only: Iterable[str] | None = None, progress: bool = True,
         workers: int | None = None) -> dict[tuple[str, str, int], Run]:
    """Train (or read from cache) every student of the base and the settings (or of ``only``)."""
    todo = configs(profile, only)
    workers = resolve_workers(workers, profile.workers)
    cached = sum(RunDir.for_config(cfg).is_complete for cfg in todo.values())
    emit("plan", label=f"{profile.name}: controls", total=len(todo), cached=cached)
    return train_many(todo, workers, progress=progress,
                      label=f"{profile.name} controls ({workers} at a time)")
