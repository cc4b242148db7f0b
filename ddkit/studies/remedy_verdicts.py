"""Verdicts of the remedies (docs/design.md §11): in each setting where plain late alignment is
negative transfer, does a remedy beat SoftKD, or at least remove the penalty? And where
alignment helps (the default pair), does a remedy cost nothing?

One claim per setting (``R-<setting>``), one primary variant per remedy, Holm over them. The
effect is oriented as the controls' (SoftKD - remedy, final top-1, paired by seed; positive =
the remedy is behind SoftKD) and judged by the claims' directional rule (``ddkit.verdicts.claims``):

    opposite                           beats SoftKD (95 % interval below 0)
    absent | smaller than the paper's  non-inferior: the remedy is not behind by δ or more
                                       (90 % interval below δ)
    reproduced                         still behind SoftKD by a penalty that may reach δ
    inconclusive                       none of these

Two more comparisons per remedy, each setting's remedies a Holm family of their own, by the
same rule and δ:

    vs plain     SpectralKD-Last - remedy: does the remedy beat plain late alignment
                 (superiority: 95 % interval below 0)?
    vs control   remedy - its control (``config.CONTROL_OF``; positive = the control loses the
                 remedy's gain): UniformWide for the follow-up's Lift and WideLast (the extra
                 width alone), GenKD-Shuffled for GenKD (the generator without the image-to-
                 target pairing). "absent" = the control does as well within δ: the gain is
                 then not the remedy's own (width, or not feature knowledge).

The controls themselves (``controls``) are judged against SoftKD like the remedies, as a family
of their own; they never count as remedies.

δ: a fifth of the release's MAE penalty (SoftKD-MAE - SpectralKD-Last-MAE at its final epoch),
fixed before any remedy ran: a remedy that counts removes at least four fifths of the paper's
largest late-alignment penalty.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from ddkit.core.config import ABLATIONS, CONTROL_OF, REMEDIES, REMEDY_CONTROLS
from ddkit.studies import control_verdicts as cv
from ddkit.verdicts import claims
from ddkit.verdicts.claims import DIRECTIONAL, Evidence, Sesoi

FRACTION = 0.2
# the remedies' claims on the controls' settings: where alignment hurts (the MAE teacher, head
# untrained) and where it helps (the default pair); the phase map adds its hurting points
CONTROL_SETTINGS = {"R-MAE": cv.BASE, "R-default pair": cv.DEFAULT_PAIR}
QUESTIONS = {"R-default pair": "a remedy costs nothing where late alignment helps"}
QUESTION = "a remedy removes the penalty"
BEATS, NONINFERIOR, BEHIND = "beats SoftKD", "non-inferior to SoftKD", "still behind SoftKD"
COUNTS = (BEATS, NONINFERIOR)
PLAIN = "SpectralKD-Last"
# what a control that keeps the remedy's gain says about it
EXPLAINS = {"UniformWide": "the extra width alone can explain the gain",
            "GenKD-Shuffled-Last": "the gain is not knowledge in the generated features"}
COMPARISON_COLUMNS = ("estimate", "lo95", "hi95", "verdict", "reading")


def sesoi(logs: pd.DataFrame | None = None) -> Sesoi:
    gap = cv.official_final_gaps(logs)[("SoftKD-MAE", "SpectralKD-Last-MAE")]
    return Sesoi(FRACTION * gap, f"a fifth of the release's MAE penalty ({gap:.2f} pt): a remedy "
                                 "that counts removes at least four fifths of the paper's "
                                 "largest late-alignment penalty")


def _evidence(results: pd.DataFrame, settings: Mapping[str, str], cells: Iterable[str],
              reference, delta: Sesoi, suffix: str = "") -> list[Evidence]:
    """One Evidence per (setting, cell) with at least two seed pairs: ``reference(cell)`` -
    cell (or cell - control when ``reference`` returns ``("-", control)``)."""
    out = []
    for claim, setting in settings.items():
        for cell in cells:
            ref = reference(cell)
            if ref is None:
                continue
            flip = isinstance(ref, tuple)
            other = ref[1] if flip else ref
            pair = cv.paired_by_seed(results, setting, other, cell)
            if len(pair) < 2:
                continue
            a, b = (cell, other) if flip else (other, cell)
            out.append(Evidence(
                claim=claim + suffix, variant=f"{a} - {b}, final top-1 ({setting})",
                kind=DIRECTIONAL, dist=claims.paired(pair[a], pair[b]), sesoi=delta,
                unit="pt", primary=True,
                statistic=f"{a} - {b} top-1 at the final epoch, paired by seed",
                note=ABLATIONS.get(cell, f"setting {setting!r}")))
    return out


def evidence(results: pd.DataFrame, settings: Mapping[str, str],
             remedies: Iterable[str] = REMEDIES,
             logs: pd.DataFrame | None = None) -> list[Evidence]:
    """``settings``: ``{claim name: setting of results}``; one Evidence per remedy with at least
    two seed pairs against the setting's SoftKD."""
    return _evidence(results, settings, remedies, lambda _: "SoftKD", sesoi(logs))


def reading(verdict: str) -> str:
    return {claims.OPPOSITE: BEATS, claims.ABSENT: NONINFERIOR, claims.SMALLER: NONINFERIOR,
            claims.REPRODUCED: BEHIND}.get(verdict, verdict)


def plain_reading(verdict: str) -> str:
    return {claims.OPPOSITE: f"beats {PLAIN}", claims.ABSENT: f"non-inferior to {PLAIN}",
            claims.SMALLER: f"non-inferior to {PLAIN}",
            claims.REPRODUCED: f"behind {PLAIN}"}.get(verdict, verdict)


def control_reading(verdict: str, control: str) -> str:
    return {claims.REPRODUCED: f"{control} loses the gain: it is the remedy's own",
            claims.SMALLER: f"{control} loses part of the gain (less than δ)",
            claims.ABSENT: f"{control} does as well within δ: {EXPLAINS.get(control, '')}",
            claims.OPPOSITE: f"{control} does better"}.get(verdict, verdict)


def _judged(evidence_list: list[Evidence]) -> pd.DataFrame:
    table = claims.judge(evidence_list)
    if table.empty:
        return table
    names = table["variant"].str.extract(r"^(\S+) - (\S+),")
    table["left"], table["right"] = names[0], names[1]
    return table


def _merge(table: pd.DataFrame, other: pd.DataFrame, key: str, prefix: str, read) -> pd.DataFrame:
    """Columns ``prefix_<estimate, lo95, hi95, verdict, reading>`` of ``other`` (matched on the
    setting and the remedy in column ``key``) on ``table``'s rows; NaN / "" where absent."""
    cols = [f"{prefix}_{c}" for c in COMPARISON_COLUMNS]
    if other.empty:
        for c in cols:
            table[c] = "" if c.endswith(("verdict", "reading")) else float("nan")
        return table
    other = other.assign(remedy=other[key], setting=other["variant"].str.extract(
        r"\((.*)\)$")[0])
    other[f"{prefix}_reading"] = [read(v, r) for v, r in zip(other["verdict"], other["remedy"])]
    other = other.rename(columns={c: f"{prefix}_{c}" for c in COMPARISON_COLUMNS[:4]})
    out = table.merge(other[["setting", "remedy", *cols]], on=["setting", "remedy"], how="left")
    for c in cols[3:]:
        out[c] = out[c].fillna("")
    return out


def verdicts(results: pd.DataFrame, settings: Mapping[str, str],
             remedies: Iterable[str] = REMEDIES, logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The remedies' verdict table (``claims.judge``: Holm over each setting's remedies), with
    ``remedy``, ``setting``, ``reading`` and ``counts`` (beats SoftKD or is non-inferior),
    ``ablation`` (why a cell is an ablation, "" for a remedy as its source defines it), and the
    two further comparisons: ``plain_*`` (SpectralKD-Last - remedy, its reading) and
    ``control`` with ``control_*`` (remedy - control, its reading), each a Holm family of its
    own per setting."""
    remedies = list(remedies)
    delta = sesoi(logs)
    table = claims.judge(evidence(results, settings, remedies, logs))
    if table.empty:
        return table.assign(remedy=[], setting=[], reading=[], counts=[], ablation=[],
                            control=[], **{f"{p}_{c}": [] for p in ("plain", "control")
                                           for c in COMPARISON_COLUMNS})
    table["remedy"] = table["variant"].str.extract(r"SoftKD - (\S+),")[0]
    table["setting"] = table["claim"].map(dict(settings))
    table["reading"] = [reading(v) for v in table["verdict"]]
    table["counts"] = table["reading"].isin(COUNTS)
    table["ablation"] = [ABLATIONS.get(r, "") for r in table["remedy"]]
    table["control"] = [CONTROL_OF.get(r, "") for r in table["remedy"]]
    plain = _judged(_evidence(results, settings, [r for r in remedies if r != PLAIN],
                              lambda _: PLAIN, delta, ": vs plain"))
    table = _merge(table, plain, "right", "plain", lambda v, _: plain_reading(v))
    controlled = _judged(_evidence(results, settings, remedies,
                                   lambda r: ("-", CONTROL_OF[r]) if r in CONTROL_OF else None,
                                   delta, ": vs control"))
    return _merge(table, controlled, "left", "control",
                  lambda v, r: control_reading(v, CONTROL_OF.get(r, "the control")))


def controls(results: pd.DataFrame, settings: Mapping[str, str],
             cells: Iterable[str] = REMEDY_CONTROLS,
             logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The remedies' controls against SoftKD (SoftKD - control, a Holm family of their own per
    setting), with ``remedy`` (the control's cell), ``setting`` and ``reading``; they never
    count."""
    table = claims.judge(_evidence(results, settings, cells, lambda _: "SoftKD", sesoi(logs),
                                   ": controls"))
    if table.empty:
        return table.assign(remedy=[], setting=[], reading=[], counts=[])
    table["remedy"] = table["variant"].str.extract(r"SoftKD - (\S+),")[0]
    table["setting"] = table["variant"].str.extract(r"\((.*)\)$")[0]
    table["reading"] = [reading(v) for v in table["verdict"]]
    table["counts"] = False
    return table
