"""The phase map's generated text for the documents (``ddkit.publish.readme`` places it): the map's
block of docs/results.md and its rows of the README's verdict table, each built from the
committed tables under ``figures/phase_map/`` (and the controls' runs for the MAE remedies).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ddkit.core.config import load_profile
from ddkit.core.models import shipped_teacher
from ddkit.core.tables import fmt_minutes
from ddkit.studies import control_verdicts as cv
from ddkit.studies import grid
from ddkit.studies import phase_map as pm
from ddkit.studies import remedy_verdicts as rv
from ddkit.verdicts import claims
from ddkit.verdicts.claims import fmt

PROFILE = "phase_map"
COMMAND = "./run_all.sh --profile phase_map --from 09"


def _interval(r) -> str:
    return f"{fmt(r['estimate'])} [{fmt(r['lo95'])}, {fmt(r['hi95'])}]"


def load(figures: Path, controls: pd.DataFrame | None) -> dict | None:
    """Everything the map's text reads, from ``figures/phase_map/`` (None while its runs table
    is missing): points, fits, the MAP verdict, the remedies' verdicts, the teachers, the runs."""
    folder = Path(figures) / PROFILE
    runs_csv, mismatch_csv = folder / grid.RESULTS_CSV, folder / "mismatch.csv"
    if not (runs_csv.is_file() and mismatch_csv.is_file()):
        return None
    results = pd.read_csv(runs_csv)
    settings = pm.setting_table(load_profile(PROFILE))
    points = pm.points(results, settings, pd.read_csv(mismatch_csv))
    teachers_csv = folder / "teachers.csv"
    return {"results": results, "points": points,
            "fits": {cell: pm.boundary(points, cell) for cell in pm.ALIGNED},
            "verdicts": claims.judge(pm.map_evidence(points)),
            "remedies": remedies(controls, results, points),
            "teachers": pd.read_csv(teachers_csv) if teachers_csv.is_file() else None}


def remedies(controls: pd.DataFrame | None, results: pd.DataFrame | None = None,
             points: pd.DataFrame | None = None) -> pd.DataFrame:
    """The remedies' verdicts in every setting where late alignment hurts and remedies ran: the
    controls' MAE teacher (``controls``: its runs table) and the map's hurting points."""
    parts = []
    if controls is not None:
        parts.append(rv.verdicts(controls, {"R-MAE": cv.BASE}))
    if results is not None and points is not None:
        parts.append(rv.verdicts(results, pm.remedy_settings(points, results)))
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else rv.verdicts(pd.DataFrame(
        columns=["setting", "cell", "seed", "final_acc1"]), {})


def verdict_rows(data: dict | None, remedy_table: pd.DataFrame) -> list[str]:
    """The README verdict table's rows of the map (its primary slope and boundary; none while
    the map has no table) and of the remedies (per setting, the remedies that count)."""
    rows = []
    for r in ([] if data is None else
              data["verdicts"][data["verdicts"]["primary"].astype(bool)].to_dict("records")):
        fit = data["fits"]["SpectralKD-Last"]
        where = (f"boundary at mismatch {fit.ratio:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]"
                 if fit is not None and fit.bounded else "no boundary in the range")
        rows.append(f"| MAP | late alignment hurts above a mismatch of 1, helps below (the "
                    f"follow-up's prediction) | {r['verdict']}: slope {_interval(r)} pt per "
                    f"doubling, {r['n']} points; {where} |")
    for setting, g in (remedy_table.groupby("setting", sort=False) if len(remedy_table) else []):
        won = [f"{r['remedy']} ({r['reading']}, {_interval(r)} pt)"
               for r in g.to_dict("records") if r["counts"]]
        best = g.loc[g["estimate"].idxmin()]
        rows.append(f"| {g['claim'].iloc[0]} | a remedy removes the penalty "
                    f"({setting}) | "
                    + ("; ".join(won) if won else
                       f"none of {len(g)} counts; the closest, {best['remedy']}, is "
                       f"{_interval(best)} pt behind SoftKD") + " |")
    return rows


def _teachers_markdown(teachers: pd.DataFrame) -> list[str]:
    last = teachers[teachers["layer"] == teachers["layer"].max()]
    lines = ["| task | teacher | top-1 (%) | epochs | top-1 rise over the last 3 epochs (pt) | "
             "last-block dim at 90 % | at 95 % | width |",
             "|---|---|---|---|---|---|---|---|"]
    for (task, name), g in last.groupby(["task", "teacher"], sort=False):
        dims = g.set_index("energy")["dim"]
        lines.append(f"| {task} | `{name}` | {g['acc1'].iloc[0]:.2f} | {g['epochs'].iloc[0]} | "
                     f"{g['rise_last3'].iloc[0]:+.2f} | "
                     f"{dims.get(0.9, float('nan')):.1f} | {dims.get(0.95, float('nan')):.1f} | "
                     f"{g['width'].iloc[0]} |")
    return lines


def teacher_seconds() -> float:
    """Training time of the shipped mosaic teachers (their records), 0 when none is shipped."""
    total = 0.0
    for k in (10, 100):
        record = shipped_teacher(f"ddkit_vit_teacher_mosaic{k}", must_exist=False).record
        if record.exists():
            total += float(json.loads(record.read_text())["wall_time_s"])
    return total


def cost(results: pd.DataFrame) -> str:
    """The map's measured cost in words: its students' summed training time and its teachers'."""
    return (f"{len(results)} students, {fmt_minutes(results['wall_time_s'].sum())} of single-run "
            f"training time, plus {fmt_minutes(teacher_seconds())} for the mosaic teachers "
            "(shipped); two runs side by side on 2 cores, so the wall time is about half of the "
            "students' sum")


def map_markdown(data: dict | None) -> str:
    """docs/results.md's phase-map block."""
    if data is None:
        return (f"_Not generated yet: `{COMMAND}` writes this from `figures/{PROFILE}/` "
                "(notebook 09)._\n")
    points = data["points"]
    lines = [f"Generated from `figures/{PROFILE}/runs.csv` and `mismatch.csv` (notebook 09 under "
             f"`--profile {PROFILE}`). Effect = SoftKD − the aligned cell, final top-1, paired by "
             "seed (positive = late alignment hurts), with its 95 % t interval over seed pairs; "
             "mismatch = the teacher's last-block PCA dimension at 95 % / the student's width."]
    if data["teachers"] is not None:
        lines += ["", *_teachers_markdown(data["teachers"])]
    lines += ["", "| task | width | cell | SoftKD − cell [95 % CI] | n | mismatch | reading |",
              "|---|---|---|---|---|---|---|"]
    for r in points.sort_values(["cell", "task", "width"]).to_dict("records"):
        more = " (more seeds wanted)" if r["more_seeds"] else ""
        lines.append(f"| {r['task']} | {r['width']} | {r['cell']} | {_interval(r)} pt | {r['n']} | "
                     f"{r['ratio']:.2f} | {r['reading']}{more} |")
    lines += ["", *[f"- {line}" for line in pm.findings(points, data["fits"], data["verdicts"],
                                                      data["remedies"])]]
    lines += ["", f"Cost measured on this machine's runs: {cost(data['results'])}."]
    return "\n".join(lines) + "\n"
