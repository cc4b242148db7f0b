"""Does a claim that is absent at a profile's size appear with more data, longer training or a
stronger teacher/student gap? Each setting of a profile's ``sweep`` section overrides the profile
(dotted keys), trains the SoftKD and SpectralKD-Last students over the profile's seeds (cached like
every run), and is judged with the same rules as the claims notebook (docs/design.md §8).

    sweep:
      more data (16k): {data.train_subset: 16000}
      longer (24 epochs): {student.optim.epochs: 24}
"""
from __future__ import annotations

import time

import pandas as pd

from ddkit.core.config import Profile, replace
from ddkit.studies import study
from ddkit.verdicts import claims, evidence, sesoi

CELLS = ("SoftKD", "SpectralKD-Last")


def base_name(profile: Profile) -> str:
    """The name of the profile itself as a setting (the one a sweep does not explore): its
    ``base_name`` (what it is, e.g. "MAE teacher, head untrained"), else "<name> profile"."""
    return profile.own_setting


def settings(profile: Profile) -> dict[str, Profile]:
    """The profile itself (under ``base_name``) and one profile per sweep setting."""
    out = {base_name(profile): profile}
    for name, overrides in profile.sweep.items():
        out[name] = replace(profile, **overrides)
    return out


def _evidence(runs, x, y, paper: sesoi.Paper) -> list[claims.Evidence]:
    finals = study.final_dynamics(runs, x, y)
    return [*evidence.c3(study.histories(runs), paper, methods=("SpectralKD",), early_layers=False),
            *evidence.c6(finals, paper), *evidence.c1(finals, None, paper)]


def run_sweep(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """One row per (setting, claim, variant): the columns of ``claims.TABLE_COLUMNS`` (judged by
    the same rules as notebook 05, Holm within each claim and setting), and the wall time the
    setting's runs took (training seconds recorded by each run, summed). Every setting but the
    base is ``exploratory``: one factor changed at a time, no correction across settings, so a
    setting's verdict is a lead to follow up, not a finding."""
    x, y = study.analysis_batch(profile)
    paper = sesoi.Paper()
    rows = []
    for name, variant in settings(profile).items():
        began = time.perf_counter()
        teacher, _ = study.teacher_model(variant, progress)   # a setting may change the teacher
        runs = study.student_runs(variant, cells=CELLS, teacher=teacher, progress=progress)
        wall = sum(r.summary["wall_time_s"] for r in runs.values())
        table = claims.judge(sesoi.with_pilot(_evidence(runs, x, y, paper),
                                                 sesoi.load_pilot()))
        rows.append(table.assign(setting=name, train_wall_s=round(wall, 1),
                                 session_s=round(time.perf_counter() - began, 1)))
    out = pd.concat(rows, ignore_index=True)
    out["exploratory"] = out["setting"] != base_name(profile)
    return out[["setting", "exploratory", "train_wall_s", "session_s", *claims.TABLE_COLUMNS]]
