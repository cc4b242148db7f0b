"""The paper-shaped study and its regime search, as notebook 07 tells them (docs/design.md §9).

Notebook 07 draws the results of one study profile (``paper_shaped``): the U's formation over
training (computed here from that profile's SoftKD and SpectralKD-Last runs), its claims table
(notebook 05 under that profile) and its regime search (notebook 06, the profile's ``sweep``).
Run under that profile, it recomputes the formation table from the cached runs (training what
is missing); under any other profile it reads the tables committed in ``figures/<study>/``, so
``./run_all.sh`` redraws the story in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ddkit.core import tables
from ddkit.core.config import Profile, load_profile
from ddkit.core.models import shipped_teacher
from ddkit.core.tables import CLAIM_ORDER, TITLES
from ddkit.runs.store import profile_figure_dir, write_text
from ddkit.runs.train import train
from ddkit.studies import formation, study
from ddkit.verdicts.claims import REPRODUCED

STUDY = tables.STUDY_DIR
CELLS = ("SoftKD", "SpectralKD-Last")
FORMATION_CSV = tables.FORMATION_CSV


def results_dir(profile: Profile) -> Path:
    """Where a study profile's notebooks write their tables: ``figures/<profile>/``."""
    return profile_figure_dir(profile)


def formation_table(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """The U depth and arms at every kept checkpoint of the profile's SoftKD and SpectralKD-Last
    students, with intervals over seeds and ``progress`` through the schedule."""
    teacher, _ = study.teacher_model(profile, progress)
    runs = study.student_runs(profile, cells=CELLS, teacher=teacher, progress=progress)
    x, y = study.analysis_batch(profile)
    table = pd.concat([study.run_dynamics(run, x, y, cell).assign(seed=seed)
                       for (cell, seed), run in runs.items()], ignore_index=True)
    return formation.with_progress(formation.depths(table), profile.student.optim.epochs)


@dataclass(frozen=True)
class Results:
    """What notebook 07 draws, and where it came from."""
    profile: Profile             # the study profile
    formation: pd.DataFrame      # formation.depths rows (model, epoch, statistic, ...) + progress
    official: pd.DataFrame       # the same for the official release
    claims: pd.DataFrame | None  # its claims table (notebook 05), None before it exists
    sweep: pd.DataFrame | None   # its regime search (notebook 06), None before it exists
    source: str                  # "runs" (recomputed) or "committed tables"


def _table(path: Path) -> pd.DataFrame | None:
    return tables.read_table(path) if path.is_file() else None


def load(name: str = STUDY, recompute: bool = False, progress: bool = True) -> Results:
    """The study's results: recomputed from its runs (``recompute``, written to its folder), or
    read from the committed tables (a clear error names the command when they are missing)."""
    profile = load_profile(name)
    folder = results_dir(profile)
    path = folder / FORMATION_CSV
    if recompute:
        table = formation_table(profile, progress)
        write_text(path, table.to_csv(index=False))
    elif not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `./run_all.sh --profile {name} --from 06` to "
                                "train the study and write its tables")
    return Results(profile, pd.read_csv(path), formation.official_depths(),
                   _table(folder / tables.CLAIMS_CSV), _table(folder / tables.SWEEP_CSV),
                   "runs" if recompute else "committed tables")


def search_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The regime search, one row per setting: each followed claim's primary estimate with its
    95 % interval and headline verdict, and the setting's training wall time."""
    rows = []
    for setting, g in sweep.groupby("setting", sort=False):
        row = {"setting": setting, "train_wall_s": g["train_wall_s"].iloc[0]}
        for claim in tables.FOLLOWED:
            primary = g[(g["claim"] == claim) & g["primary"]]
            if primary.empty:
                continue
            p = primary.iloc[0]
            unit = f" {p['unit']}" if p["unit"] else ""
            row[claim] = (f"{p['estimate']:+.3g} [{p['lo95']:+.3g}, {p['hi95']:+.3g}]{unit}: "
                          f"{p['headline']}")
        rows.append(row)
    return pd.DataFrame(rows)


def summary(results: Results) -> str:
    """Stable facts of what notebook 07 draws (for its checked output)."""
    f = results.formation
    parts = [f"models: {sorted(f['model'].unique())}",
             f"statistics: {list(dict.fromkeys(f['statistic']))}",
             f"claims table: {'yes' if results.claims is not None else 'no'}",
             f"regime settings: {0 if results.sweep is None else results.sweep['setting'].nunique()}"]
    return "\n".join(parts)


def teacher_summary(profile: Profile) -> pd.Series:
    """The shipped record of the study's teacher (accuracy, epochs, wall time, command), or its
    run's summary when it is trained rather than shipped."""
    try:
        record = study.shipped_teacher_record(shipped_teacher(profile.teacher.model.name).model)
    except (ValueError, FileNotFoundError):
        run = train(profile.teacher_config()) if profile.teacher_source == "train" else None
        record = run.summary if run is not None else {}
    keys = ("final_acc1", "best_acc1", "epochs", "scheduled_epochs", "complete", "wall_time_s",
            "device", "command")
    return pd.Series({k: record.get(k) for k in keys}, name=profile.teacher.model.name)


def formation_pivot(table: pd.DataFrame, statistic: str = "U depth") -> pd.DataFrame:
    """Checkpoints x models of one statistic: 'estimate [lo95, hi95]'."""
    rows = table[table["statistic"] == statistic]
    text = rows.assign(value=[f"{e:+.3f} [{lo:+.3f}, {hi:+.3f}]" for e, lo, hi in
                              zip(rows["estimate"], rows["lo95"], rows["hi95"])])
    return text.pivot(index="epoch", columns="model", values="value")


# --------------------------------------------------------------------------- the pair's claims

def unexplored(sweep_table: pd.DataFrame) -> str:
    """The one setting of a sweep table that is not exploratory: the profile itself (without an
    ``exploratory`` column, the first setting, as ``sweep.settings`` orders them)."""
    own = sweep_table["setting"]
    if "exploratory" in sweep_table:
        own = own[~sweep_table["exploratory"].astype(bool)]
    return str(own.iloc[0])


def headlines(table: pd.DataFrame) -> pd.Series:
    """One headline verdict per claim of a claims (or one setting's sweep) table."""
    return table.drop_duplicates("claim").set_index("claim")["headline"]


def compare(default: pd.DataFrame, shaped: pd.DataFrame) -> pd.DataFrame:
    """Headline per claim on the default pair and on the paper-shaped pair, side by side (the
    claims the paper-shaped table has; the default pair's other claims are left out)."""
    both = pd.concat({"default pair": headlines(default), "paper-shaped pair": headlines(shaped)},
                     axis=1)
    return both.loc[[c for c in CLAIM_ORDER if c in set(shaped["claim"])]]


def pair_claims(claims: pd.DataFrame | None, regime: pd.DataFrame | None) -> pd.DataFrame | None:
    """The paper-shaped pair's claims: its full claims table (notebook 05) when it was run, else
    the regime search's setting that is the profile itself (its one setting not exploratory: C1,
    C3, C6 from its SoftKD and SpectralKD-Last runs)."""
    if claims is not None:
        return claims
    if regime is not None and len(regime):
        return regime[regime["setting"] == unexplored(regime)].drop(columns=["setting"])
    return None


def where_claims_appear(sweep: pd.DataFrame) -> dict[str, str]:
    """Per followed claim, one sentence: the settings where its headline is ``reproduced``, or
    that it appeared in none of the settings searched (naming their verdicts)."""
    out = {}
    for claim in tables.FOLLOWED:
        verdicts = (sweep[sweep["claim"] == claim].drop_duplicates("setting")
                    .set_index("setting")["headline"])
        if verdicts.empty:
            continue
        found = [s for s, v in verdicts.items() if v == REPRODUCED]
        counts = verdicts.value_counts().to_dict()
        summary = ", ".join(f"{v}: {n}" for v, n in counts.items())
        out[claim] = (f"{claim} {TITLES.get(claim, claim)} (exploratory): reproduced in "
                      f"{', '.join(f'`{s}`' for s in found)} (of {len(verdicts)} settings)"
                      if found else
                      f"{claim} {TITLES.get(claim, claim)} (exploratory): reproduced in none of the "
                      f"{len(verdicts)} settings searched ({summary})")
    return out
