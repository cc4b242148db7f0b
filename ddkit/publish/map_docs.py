"""The phase map's generated text for the documents (``ddkit.publish.readme`` places it): the map's
block of docs/results.md and its rows of the README's verdict table, each built from the
committed tables under ``figures/phase_map/`` (and the controls' runs for the MAE remedies).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ddkit.core.models import shipped_teacher
from ddkit.core.tables import fmt_minutes
from ddkit.publish import remedy_docs
from ddkit.studies import grid, map_study
from ddkit.studies import phase_map as pm
from ddkit.verdicts.claims import fmt_interval

PROFILE = "phase_map"
COMMAND = "./run_all.sh --profile phase_map --from 09"


def load(figures: Path, controls: pd.DataFrame | None) -> dict | None:
    """Everything the maps' text reads, from the committed tables under ``figures/`` (None while
    the phase map's runs table is missing): the three map studies (``map_study.load``: their
    derived points, rule and models tables, None where a study is not published), the phase
    map's runs, the remedies' verdicts and the teachers. Nothing is recomputed but the
    remedies' verdicts."""
    folder = Path(figures) / PROFILE
    runs_csv = folder / grid.RESULTS_CSV
    if not runs_csv.is_file():
        return None
    results = pd.read_csv(runs_csv)
    studies = {name: map_study.load(Path(figures) / name, name) for name in map_study.MAPS}
    phase = studies[PROFILE]
    teachers_csv = folder / "teachers.csv"
    return {"results": results, "studies": studies,
            "points": phase.points if phase is not None else None,
            "remedies": remedies(controls, results, phase.points if phase is not None else None),
            "teachers": pd.read_csv(teachers_csv) if teachers_csv.is_file() else None}


def remedies(controls: pd.DataFrame | None, results: pd.DataFrame | None = None,
             points: pd.DataFrame | None = None) -> pd.DataFrame:
    """The remedies' verdicts in every setting where they ran (``remedy_docs.tables``): the
    controls' MAE teacher and default pair (``controls``: their runs table) and the map's
    hurting points."""
    return remedy_docs.tables(controls, results, points)["remedies"]


def verdict_rows(data: dict | None, remedy_table: pd.DataFrame,
                 missing: pd.DataFrame | None = None) -> list[str]:
    """The README verdict table's rows of the maps (``MAP``, ``MAP-k``, ``MAP-replication``: the
    rule's two parts and headline, for each study published) and of the remedies
    (``remedy_docs.verdict_rows``; ``missing``: the planned remedy runs not published yet)."""
    rows = [] if data is None else [map_study.verdict_row(study)
                                    for study in data["studies"].values() if study is not None]
    return rows + remedy_docs.verdict_rows(remedy_table, missing)


def _teachers_markdown(teachers: pd.DataFrame) -> list[str]:
    last = teachers[teachers["layer"] == teachers["layer"].max()]
    lines = ["| task | teacher | top-1 (%) | epochs | top-1 rise over the last 3 epochs (pt) | "
             "last-block dim at 95 %: follow-up (p99) | global | centred | width |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (task, name), g in last.groupby(["task", "teacher"], sort=False):
        d = g.set_index("energy").loc[0.95]
        lines.append(f"| {task} | `{name}` | {g['acc1'].iloc[0]:.2f} | {g['epochs'].iloc[0]} | "
                     f"{g['rise_last3'].iloc[0]:+.2f} | {d['dim_followup']:.1f} | "
                     f"{d['dim_global']:.0f} | {d['dim_centred']:.1f} | {g['width'].iloc[0]} |")
    return lines


def teacher_seconds() -> float:
    """Training time of the shipped mosaic teachers (their records), 0 when none is shipped."""
    total = 0.0
    for k in (10, 100):
        record = shipped_teacher(f"ddkit_vit_teacher_mosaic{k}", must_exist=False).record
        if record.exists():
            total += float(json.loads(record.read_text())["wall_time_s"])
    return total


def students_cost(results: pd.DataFrame) -> str:
    """Students' summed training time in words (a study with shipped teachers only)."""
    students = f"{len(results)} student" + ("" if len(results) == 1 else "s")
    return (f"{students}, {fmt_minutes(results['wall_time_s'].sum())} of single-run "
            "training time; two runs side by side on 2 cores, so the wall time is about half")


def cost(results: pd.DataFrame) -> str:
    """The map's measured cost in words: its students' summed training time and its teachers'."""
    return (f"{len(results)} students, {fmt_minutes(results['wall_time_s'].sum())} of single-run "
            f"training time, plus {fmt_minutes(teacher_seconds())} for the mosaic teachers "
            "(shipped); two runs side by side on 2 cores, so the wall time is about half of the "
            "students' sum")


def map_markdown(data: dict | None) -> str:
    """docs/results.md's block of the maps: the teachers, each study's points and rule, the
    generated findings and the measured cost."""
    if data is None or data["studies"][PROFILE] is None:
        return (f"_Not generated yet: `{COMMAND}` writes this from `figures/{PROFILE}/` "
                "(notebook 09)._\n")
    lines = ["Generated from the derived tables notebook 09 writes beside each study's runs "
             "(`figures/<profile>/points.csv`, `rule.csv`, `models.csv`). Effect = SoftKD − the "
             "aligned cell, final top-1, paired by seed (positive = late alignment hurts), with "
             "its 95 % t interval over seed pairs; mismatch = the follow-up's dimension of the "
             "target (the teacher's last block, or its rank-k projection in MAP-k: the 99th "
             "percentile over images of the per-image dimension at 95 % in the shared uncentred "
             "basis) over the student's width; the centred ratio the kit used before beside it. "
             "The rule (docs/design.md §12): the points above 1 pooled must show harm of at "
             "least δ, the points below 1 pooled none."]
    if data["teachers"] is not None:
        lines += ["", *_teachers_markdown(data["teachers"])]
    for name, study in data["studies"].items():
        if study is None:
            lines += ["", f"**{map_study.claim_of(name)[0]}** (profile `{name}`): not published "
                          f"yet; `ddkit phase-map --profile {name}` trains it."]
            continue
        lines += ["", f"**{study.claim}** (profile `{name}`)", "",
                  "| setting | cell | SoftKD − cell [95 % CI] | n | mismatch (follow-up) | "
                  "centred | reading |", "|---|---|---|---|---|---|---|"]
        for r in study.points.sort_values(["cell", "ratio"]).to_dict("records"):
            more = " (more seeds wanted)" if r["more_seeds"] else ""
            lines.append(f"| {r['setting']} | {r['cell']} | {fmt_interval(r)} pt | {r['n']} | "
                         f"{r['ratio']:.2f} | {r['ratio_centred']:.2f} | {r['reading']}{more} |")
        lines += ["", *[f"- {line}" for line in map_study.findings(study)]]
    lines += ["", *[f"- {line}" for line in pm.remedy_findings(data["points"], data["remedies"])]]
    lines += ["", f"Cost measured on this machine's runs: {cost(data['results'])}."]
    return "\n".join(lines) + "\n"
