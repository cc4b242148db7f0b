"""A map of late alignment's effect against the encoding mismatch, computed once
(docs/design.md §11, docs/design.md §12): the phase map (claim ``MAP``), the
controlled-dimension design (``MAP-k``) and the pre-registered replication
(``MAP-replication``) are three profiles of one kind of study.

    study = compute(profile, results, curves, mism)   # the points, the rule, the secondary fits
    write(study, folder)                             # points.csv, rule.csv, models.csv
    load(folder, profile_name)                       # the same, from the committed tables

Notebook 09 computes a study from its runs (under the study's own profile) or from the committed
``runs.csv`` / ``mismatch.csv``, and writes the derived tables next to them; the documents read
only the derived tables, so nothing is recomputed for them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ddkit.core.config import Profile
from ddkit.runs.store import figure_dir, write_text
from ddkit.studies import grid, map_rule, settings_mismatch, sweep
from ddkit.studies import phase_map as pm
from ddkit.verdicts.claims import pt_interval

# profile -> (claim, aligned cells: the first is primary)
MAPS = {"phase_map": ("MAP", pm.MAP_CELLS), "map_k": ("MAP-k", pm.MAP_CELLS),
        "map_replication": ("MAP-replication", ("SpectralKD-Last",))}
NOTES = {"MAP": "the phase map's points (profile phase_map); the mismatch is the follow-up's",
         "MAP-k": ("the controlled-dimension design (profile map_k): width fixed, the target's "
                   "dimension set by projecting the teacher on its top-k shared directions"),
         "MAP-replication": ("the pre-registered replication (profile map_replication, "
                             "docs/preregistration.md): fresh seeds 5-9, judged once")}
DERIVED = ("points.csv", "rule.csv", "models.csv")
# A map whose mismatch is fixed in advance reads it from another map's committed table: the
# replication's pre-registration names the phase map's ratios (docs/preregistration.md), not a
# recomputation on the replication's own images (its first seed draws another 500).
MISMATCH_FROM = {"map_replication": "phase_map"}


@dataclass
class MapStudy:
    """One map judged: its points (``phase_map.points``), the rule's verdict table
    (``map_rule.judge``) and headline, and the secondary fits (``map_rule.models``, and the
    former least-squares boundary per cell, ``phase_map.boundary``)."""
    profile: str
    claim: str
    cells: Sequence[str]
    points: pd.DataFrame
    rule: pd.DataFrame
    models: pd.DataFrame
    fits: dict = field(default_factory=dict)

    @property
    def headline(self) -> str:
        return map_rule.headline(self.rule)

    @property
    def coverage(self) -> tuple[int, int] | None:
        """(runs published, runs the profile plans), from ``rule.csv``; None for tables written
        before the counts were recorded."""
        if not {"runs_published", "runs_planned"} <= set(self.rule.columns) or self.rule.empty:
            return None
        first = self.rule.iloc[0]
        return int(first["runs_published"]), int(first["runs_planned"])

    @property
    def partial(self) -> str:
        """'' when every planned run is published, else a clause saying how many are."""
        done, planned = self.coverage or (0, 0)
        return (f"partial: {done} of {planned} planned runs published"
                if self.coverage and done < planned else "")


def claim_of(profile_name: str) -> tuple[str, Sequence[str]]:
    """The claim and aligned cells of a map profile (a profile derived from one by overrides,
    ``<name>-set-<digest>``, is judged as its parent)."""
    base = next((name for name in MAPS if profile_name == name
                 or profile_name.startswith(f"{name}-set-")), None)
    if base is None:
        raise ValueError(f"{profile_name!r} is not a map profile; map profiles: {list(MAPS)}")
    return MAPS[base]


def mismatch_table(profile: Profile, folder: Path, recompute: bool) -> pd.DataFrame:
    """The mismatch table a map is judged with, also written to ``folder/mismatch.csv``: its own
    (``settings_mismatch.cached``), or for a map in ``MISMATCH_FROM`` the source map's committed
    rows of the settings it shares (every one of its settings must be there)."""
    path = Path(folder) / "mismatch.csv"
    base = next((name for name in MISMATCH_FROM if profile.name == name
                 or profile.name.startswith(f"{name}-set-")), None)
    if base is None:
        return settings_mismatch.cached([profile], path, recompute)
    source = figure_dir(MISMATCH_FROM[base]) / "mismatch.csv"
    fixed = pd.read_csv(source)
    wanted = list(sweep.settings(profile))
    missing = sorted(set(wanted) - set(fixed["setting"]))
    if missing:
        raise ValueError(f"{source} has no mismatch for {missing}, which {profile.name} "
                         "judges with its ratios: publish that map first")
    table = fixed[fixed["setting"].isin(wanted)]
    write_text(path, table.to_csv(index=False))
    return table.reset_index(drop=True)


def compute(profile: Profile, results: pd.DataFrame, mism: pd.DataFrame) -> MapStudy:
    """The map study of ``profile`` from its runs table and its mismatch table."""
    claim, cells = claim_of(profile.name)
    points = pm.points(results, pm.setting_table(profile), mism, cells,
                       soft_of=pm.soft_settings(profile))
    planned = set(grid.names(profile))
    rule = map_rule.judge(points, claim, cells, note=NOTES[claim]).assign(
        runs_published=len(planned & set(results["run"])), runs_planned=len(planned))
    return MapStudy(profile=profile.name, claim=claim, cells=cells, points=points, rule=rule,
                    models=map_rule.models(points, cells[0]),
                    fits={cell: pm.boundary(points, cell) for cell in cells})


def write(study: MapStudy, folder: Path) -> None:
    """The derived tables (``DERIVED``) into ``folder``."""
    for name, table in zip(DERIVED, (study.points, study.rule, study.models)):
        write_text(Path(folder) / name, table.to_csv(index=False))


def load(folder: Path, profile_name: str) -> MapStudy | None:
    """A map study from the derived tables committed in ``folder`` (None while they are
    missing); ``fits`` is left empty (the figures draw them, the documents do not)."""
    paths = [Path(folder) / name for name in DERIVED]
    if not all(p.is_file() for p in paths):
        return None
    points, rule, models = (pd.read_csv(p) for p in paths)
    claim, cells = claim_of(profile_name)
    return MapStudy(profile=profile_name, claim=claim, cells=cells, points=points, rule=rule,
                    models=models)


def run(profile: Profile, folder: Path, recompute: bool) -> MapStudy | None:
    """A map study as notebook 09 needs it. ``recompute`` (the notebook runs under the study's
    own profile): train its runs (or take them from the run cache; the map's teachers first),
    publish ``runs.csv`` / ``curves.csv`` and ``mismatch.csv``, compute the study and write its
    derived tables. Otherwise the committed derived tables (None while the study has not been
    published)."""
    if not recompute:
        return load(folder, profile.name)
    pm.teachers(profile)
    results = grid.tables(profile, folder, recompute=True)[grid.RESULTS_CSV]
    study = compute(profile, results, mismatch_table(profile, folder, recompute=True))
    write(study, folder)
    return study


def findings(study: MapStudy) -> list[str]:
    """Sentences about one map study, each built from its tables: the readings on each side of
    1, the rule's two parts and headline, and the secondary fits."""
    lines = [f"{study.claim} is {study.partial}: its verdict may change when the rest train"
             ] if study.partial else []
    for cell in study.cells:
        rows = study.points[study.points["cell"] == cell]
        if rows.empty:
            continue
        counts = rows.groupby(["side", "reading"]).size()
        sides = "; ".join(
            f"{side}: " + ", ".join(f"{counts.get((side, reading), 0)} {reading}"
                                    for reading in (pm.HURTS, pm.UNCLEAR, pm.HELPS))
            for side in ("above 1", "below 1"))
        lines.append(f"{study.claim}, {cell}: {len(rows)} points over mismatch "
                     f"{rows['ratio'].min():.2f}-{rows['ratio'].max():.2f} (each on its own 95 % "
                     f"t interval over seed pairs): {sides}")
        parts = study.rule[study.rule["variant"].str.contains(f"SoftKD - {cell} pooled")]
        for r in parts.to_dict("records"):
            lines.append(f"{study.claim}, {r['variant']}: {pt_interval(r)}, verdict {r['verdict']} "
                         f"(δ = {r['sesoi']:.2f} pt; power {r['power']:.0%} at δ)")
    lines.append(f"{study.claim}: headline {study.headline} (both primary parts must hold: "
                 "harm above 1 and none below)")
    m = study.models.set_index(["model", "term"]) if len(study.models) else None
    if m is not None:
        slope = m.loc[("slope", "log2 ratio")]
        lines.append(f"{study.claim}, secondary: the single least-squares slope on log2 mismatch "
                     f"is {slope['coef']:+.2f} [{slope['lo95']:+.2f}, {slope['hi95']:+.2f}] pt per "
                     "doubling; the hinge's slopes below and above 1 are "
                     f"{m.loc[('hinge', 'log2 ratio below 1'), 'coef']:+.2f} and "
                     f"{m.loc[('hinge', 'log2 ratio above 1'), 'coef']:+.2f}")
        aic = {k: m.loc[k]["aic"].iloc[0] for k in ("slope", "width", "dimension")}
        best = min(aic, key=aic.get)
        lines.append(f"{study.claim}, secondary: AIC of one-term fits: mismatch {aic['slope']:.1f}, "
                     f"student width {aic['width']:.1f}, teacher dimension "
                     f"{aic['dimension']:.1f} (lowest: {best}); with both terms the teacher "
                     f"dimension's coefficient is {m.loc[('both', 'log2 teacher dim'), 'coef']:+.2f} "
                     f"and the width's {m.loc[('both', 'log2 width'), 'coef']:+.2f} pt per doubling "
                     "(the follow-up predicts equal size and opposite sign, dimension positive)")
        if "within width" in m.index.get_level_values(0):
            w = m.loc[("within width", "log2 ratio")]
            lines.append(f"{study.claim}, secondary: at a fixed width the effect changes by "
                         f"{w['coef']:+.2f} [{w['lo95']:+.2f}, {w['hi95']:+.2f}] pt per doubling of "
                         "the target's dimension (the follow-up predicts a rise)")
    return lines


def verdict_row(study: MapStudy) -> str:
    """The README verdict table's row of one map study."""
    parts = study.rule[study.rule["primary"].astype(bool)]
    said = "; ".join(f"{r['variant'].split(':')[0]} {pt_interval(r)} ({r['verdict']})"
                     for r in parts.to_dict("records"))
    claim = {"MAP": "the follow-up's prediction: late alignment hurts above a mismatch of 1, "
                    "not below",
             "MAP-k": "the same, with the student's width fixed and the target's dimension varied",
             "MAP-replication": "the same on fresh seeds, pre-registered"}[study.claim]
    partial = f" ({study.partial})" if study.partial else ""
    return f"| {study.claim} | {claim} | {study.headline}{partial}: {said} |"
