"""Verdicts of the remedies (docs/design.md §11): in each setting where plain late alignment is
negative transfer, does a remedy beat SoftKD, or at least remove the penalty?

One claim per setting (``R-<setting>``), one primary variant per remedy, Holm over them. The
effect is oriented as the controls' (SoftKD - remedy, final top-1, paired by seed; positive =
the remedy is behind SoftKD) and judged by the claims' directional rule (``ddkit.verdicts.claims``):

    opposite                           beats SoftKD (95 % interval below 0)
    absent | smaller than the paper's  non-inferior: the remedy is not behind by δ or more
                                       (90 % interval below δ)
    reproduced                         still behind SoftKD by a penalty that may reach δ
    inconclusive                       none of these

δ: a fifth of the release's MAE penalty (SoftKD-MAE - SpectralKD-Last-MAE at its final epoch),
fixed before any remedy ran: a remedy that counts removes at least four fifths of the paper's
largest penalty.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from ddkit.core.config import REMEDIES
from ddkit.studies import control_verdicts as cv
from ddkit.verdicts import claims
from ddkit.verdicts.claims import DIRECTIONAL, Evidence, Sesoi

FRACTION = 0.2
BEATS, NONINFERIOR, BEHIND = "beats SoftKD", "non-inferior to SoftKD", "still behind SoftKD"
COUNTS = (BEATS, NONINFERIOR)


def sesoi(logs: pd.DataFrame | None = None) -> Sesoi:
    gap = cv.official_final_gaps(logs)[("SoftKD-MAE", "SpectralKD-Last-MAE")]
    return Sesoi(FRACTION * gap, f"a fifth of the release's MAE penalty ({gap:.2f} pt): a remedy "
                                 "that counts removes at least four fifths of the paper's "
                                 "largest late-alignment penalty")


def evidence(results: pd.DataFrame, settings: Mapping[str, str],
             remedies: Iterable[str] = REMEDIES,
             logs: pd.DataFrame | None = None) -> list[Evidence]:
    """``settings``: ``{claim name: setting of results}``; one Evidence per remedy with at least
    two seed pairs against the setting's SoftKD."""
    delta = sesoi(logs)
    out = []
    for claim, setting in settings.items():
        for remedy in remedies:
            pair = cv.paired_by_seed(results, setting, "SoftKD", remedy)
            if len(pair) < 2:
                continue
            out.append(Evidence(
                claim=claim, variant=f"SoftKD - {remedy}, final top-1 ({setting})",
                kind=DIRECTIONAL, dist=claims.paired(pair["SoftKD"], pair[remedy]), sesoi=delta,
                unit="pt", primary=True,
                statistic=f"SoftKD - {remedy} top-1 at the final epoch, paired by seed",
                note=f"setting {setting!r}: plain late alignment is negative transfer here"))
    return out


def reading(verdict: str) -> str:
    return {claims.OPPOSITE: BEATS, claims.ABSENT: NONINFERIOR, claims.SMALLER: NONINFERIOR,
            claims.REPRODUCED: BEHIND}.get(verdict, verdict)


def verdicts(results: pd.DataFrame, settings: Mapping[str, str],
             remedies: Iterable[str] = REMEDIES, logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The remedies' verdict table (``claims.judge``: Holm over each setting's remedies), with
    ``remedy``, ``setting``, ``reading`` and ``counts`` (beats SoftKD or is non-inferior)."""
    table = claims.judge(evidence(results, settings, remedies, logs))
    if table.empty:
        return table.assign(remedy=[], setting=[], reading=[], counts=[])
    table["remedy"] = table["variant"].str.extract(r"SoftKD - (\S+),")[0]
    table["setting"] = table["claim"].map(dict(settings))
    table["reading"] = [reading(v) for v in table["verdict"]]
    table["counts"] = table["reading"].isin(COUNTS)
    return table
