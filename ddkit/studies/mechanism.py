"""The MAE penalty's mechanism (profile ``controls``; docs/design.md §10): which loss term
dominates when. Every run logs its loss terms per epoch and ``grid.curves`` publishes them;
here they are averaged over seeds per setting and cell, set beside the release's MAE log, and
read in sentences with the mechanism claims (``control_verdicts``: C3-MAE-mechanism,
C3-MAE-dose-probed).

    loss_terms(curves)            per (setting, cell, epoch, term): mean over seeds, t interval
    official_loss_terms()         the release's MAE runs, per epoch and term (one seed each)
    mechanism_findings(...)       the sentences, each built from those tables
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ddkit.studies.control_verdicts import (
    ALPHA0,
    BASE,
    NORMED,
    PROBED,
    PROBED_W2,
)
from ddkit.verdicts import reference
from ddkit.verdicts.claims import pt_interval
from ddkit.verdicts.stats import mean_ci

TERMS = ("train_loss_base", "train_loss_dist", "train_loss_fft")   # the official keys
TERM_NAMES = {"train_loss_base": "(1-α)·CE", "train_loss_dist": "α·KD",
              "train_loss_fft": "w·feature"}
MECHANISM_SETTINGS = (BASE, ALPHA0, NORMED, PROBED)


def loss_terms(curves: pd.DataFrame, settings=MECHANISM_SETTINGS,
               cells=("SoftKD", "SpectralKD-Last")) -> pd.DataFrame:
    """Per (setting, cell, epoch, term): each logged loss term's mean over seeds with its t
    interval (``TERMS`` and each pair's raw loss ``train_loss_feat/<s>-<t>``), by fraction of
    the schedule; only rows whose term was logged (curves published before the per-term
    columns hold NaN and are left out). Columns setting, cell, epoch, fraction, term, mean,
    lo95, hi95, n."""
    columns = ["setting", "cell", "epoch", "fraction", "term", "mean", "lo95", "hi95", "n"]
    terms = [t for t in TERMS if t in curves.columns]
    terms += sorted(c for c in curves.columns if c.startswith("train_loss_feat/"))
    rows = []
    g = curves[curves["setting"].isin(list(settings)) & curves["cell"].isin(list(cells))]
    for (setting, cell, epoch), e in g.groupby(["setting", "cell", "epoch"], sort=False):
        for term in terms:
            values = e[term].dropna().to_numpy(np.float64)
            if not len(values):
                continue
            ci = mean_ci(values) if len(values) > 1 else None
            rows.append({"setting": setting, "cell": cell, "epoch": int(epoch),
                         "fraction": (epoch + 1) / e["epochs"].iloc[0], "term": term,
                         "mean": float(values.mean()), "lo95": ci.lo if ci else math.nan,
                         "hi95": ci.hi if ci else math.nan, "n": len(values)})
    return pd.DataFrame(rows, columns=columns)


def official_loss_terms(logs: pd.DataFrame | None = None,
                        runs=("SoftKD-MAE", "SpectralKD-Last-MAE")) -> pd.DataFrame:
    """The release's per-epoch loss terms of ``runs`` (one seed each; default its MAE runs):
    columns run, epoch, fraction, term, value."""
    logs = reference.official_logs() if logs is None else logs
    parts = []
    for run in runs:
        g = logs[logs["run"] == run].sort_values("epoch")
        for term in TERMS:
            parts.append(pd.DataFrame({"run": run, "epoch": g["epoch"].to_numpy(),
                                       "fraction": (g["epoch"].to_numpy() + 1) / len(g),
                                       "term": term, "value": g[term].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def mechanism_findings(verdict_table: pd.DataFrame, terms: pd.DataFrame,
                       official: pd.DataFrame | None = None) -> list[str]:
    """The sentences on the MAE penalty's mechanism, each built from the tables given: the
    mechanism and probed-dose claims (primary and secondary rows), and which loss term is the
    largest at the start and at the end of each MAE setting's SpectralKD-Last runs (and of the
    release's MAE run), or that the per-term losses are not published yet."""
    lines = []
    rows = verdict_table[verdict_table["claim"].isin(["C3-MAE-mechanism", "C3-MAE-dose-probed"])]
    for r in rows.to_dict("records"):
        role = "primary" if r["primary"] else "secondary"
        lines.append(f"{r['claim']} ({role}: {r['variant']}): {pt_interval(r)} over {r['n']} "
                     f"seeds; verdict {r['verdict']} ({r['reading']})")
    if not len(rows):
        lines.append("C3-MAE-mechanism and C3-MAE-dose-probed: not trained yet (no runs of "
                     f"{ALPHA0!r} or {PROBED_W2!r} in the controls' table)")
    aligned = terms[(terms["cell"] == "SpectralKD-Last") & terms["term"].isin(TERMS)]
    if aligned.empty:
        lines.append("per-term losses: not published yet for the controls' runs (curves.csv "
                     "holds them once `ddkit controls` republishes the runs)")
    for setting, g in aligned.groupby("setting", sort=False):
        first, last = g["epoch"].min(), g["epoch"].max()
        lines.append(f"loss terms, {setting}, SpectralKD-Last: largest at the first epoch "
                     f"{_largest(g[g['epoch'] == first], 'mean')}, at the last "
                     f"{_largest(g[g['epoch'] == last], 'mean')}")
    if official is not None and len(official):
        for run, g in official[official["run"].str.startswith("SpectralKD")].groupby("run"):
            first, last = g["epoch"].min(), g["epoch"].max()
            lines.append(f"loss terms, the release's {run} (one seed): largest at the first "
                         f"epoch {_largest(g[g['epoch'] == first], 'value')}, at the last "
                         f"{_largest(g[g['epoch'] == last], 'value')}")
    return lines


def _largest(rows: pd.DataFrame, column: str) -> str:
    top = rows.loc[rows[column].idxmax()]
    parts = ", ".join(f"{TERM_NAMES[t]} {v:.3g}" for t, v in zip(rows["term"], rows[column]))
    return f"{TERM_NAMES[top['term']]} ({parts})"
