"""Verdicts and curves of the negative-transfer controls (profile ``controls``;
docs/design.md §10), by the claims' rules (``ddkit.verdicts.claims``). Each control is a claim of its own with one
primary variant, so Holm runs within it; effects are oriented so that late alignment *hurting*
(the paper's direction) is positive:

    C3-MAE         SoftKD - SpectralKD-Last, final top-1, MAE teacher with its head untrained
                   (the official "MAE" case); secondary: SoftKD - ProjectorKD-Last
    C3-MAE-probed  the same with the head fitted by a linear probe: the features are the same,
                   only the logits change, so the pair of rows says where the penalty comes from
                   (secondary: SoftKD - ProjectorKD-Last)
    C3-long        the supervised teacher over a schedule 4x the default (secondary:
                   SoftKD - SpectralKD-First)
    C3-MAE-long    the MAE teacher (head untrained) over a schedule 4x the default: does the
                   penalty last once the students have converged?
    C3-MAE-mechanism  the MAE teacher at α = 0 (labels and features, no KD term): does the
                   penalty need the flat soft target? "reproduced" = a penalty remains without
                   it (it does not need it), "absent" = none of the paper's size (it does);
                   secondary: the penalty at α = 0.9 minus that at α = 0 (paired by seed:
                   what the soft target adds) and SoftKD - SpectralKD-Last with the feature
                   loss divided by the target's energy (is it the loss's scale?)
    C3-MAE-dose-probed  the probed head at the largest feature weight (w = 2): does a strong
                   feature loss cost even when the logits carry the labels? (secondary: w = 0.8)

SESOI: the official runs' own final gap of the same comparison (``ddkit.verdicts.reference``), as for C3
on the default pair: "absent" then excludes a penalty as large as the paper's.

Descriptive (intervals, no verdict):

    dose       SoftKD - SpectralKD-Last at each feature weight (MAE teacher, head untrained or
               probed), paired by seed
    loss terms per epoch, each loss term's mean over seeds (``ddkit.studies.mechanism``): which
               term dominates when, beside the release's MAE log
    gap curve  per epoch, the mean SoftKD - SpectralKD-Last gap with a t interval over seeds
    crossover  the fraction of the schedule after which the gap's running mean stays >= 0
               (late alignment no longer ahead), with a percentile bootstrap over seed pairs

Over 450 lines on purpose: every control claim with the settings it reads, its readings and the
descriptive tables drawn beside it, which change together when a control is added.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ddkit.verdicts import claims, reference
from ddkit.verdicts.claims import DIRECTIONAL, Evidence, Sesoi, pt_interval
from ddkit.verdicts.stats import mean_ci

BASE = "MAE teacher, head untrained"   # the profile itself (its base_name)
PROBED = "MAE teacher, head probed"
LONG = "supervised teacher, 48 epochs"
MAE_LONG = "MAE teacher, 48 epochs"
DEFAULT_PAIR = "supervised teacher, 12 epochs"   # the default pair: where the remedies must not cost
ALPHA0 = "MAE teacher, alpha 0"
NORMED = "MAE teacher, normalised feature loss"
DOSE = "feature weight"                           # prefix of the MAE teacher's dose settings
PROBED_DOSE = f"{PROBED}, feature weight"         # prefix of the probed head's dose settings
PROBED_W2 = f"{PROBED_DOSE} 2.0"
PROBED_W08 = f"{PROBED_DOSE} 0.8"
MAE_PAIR = ("SoftKD-MAE", "SpectralKD-Last-MAE")
MECHANISM_PLANNED = (ALPHA0, NORMED, PROBED_W08, PROBED_W2)   # the mechanism's settings
SUPPORT = (claims.REPRODUCED, claims.SMALLER)   # verdicts that say "negative transfer"
OFFICIAL_WINDOW = 9     # epochs of the running mean the official curves are drawn with (of 300)
# The crossover's running-mean window, a fraction of the schedule fixed before the data were
# read with it: the same sixth of the schedule as C5's early window (docs/design.md §8), taken
# to the nearest odd number of epochs so that the centred mean is symmetric: a 12-epoch run is
# read over 3 epochs, a 48-epoch run over 9, the release's 300 over 51 and its 500 over 83.
CROSSOVER_WINDOW = 1 / 6
# other windows, reported beside it (the sensitivity table): the former 9-of-300, then wider
SENSITIVITY_WINDOWS = (OFFICIAL_WINDOW / 300, 1 / 12, 1 / 6, 1 / 4, 1 / 3)
N_BOOT = 2000

# claim -> (setting, [(primary, cell that aligns late[, its own setting]), ...], official pair
# (soft, aligned)); a variant's SoftKD comes from SOFT_FROM's setting when its own has none
CONTROLS = {
    "C3-MAE": (BASE, [(True, "SpectralKD-Last"), (False, "ProjectorKD-Last")], MAE_PAIR),
    "C3-MAE-probed": (PROBED, [(True, "SpectralKD-Last"), (False, "ProjectorKD-Last")], MAE_PAIR),
    "C3-long": (LONG, [(True, "SpectralKD-Last"), (False, "SpectralKD-First")],
                ("SoftKD", "SpectralKD-Last")),
    "C3-MAE-long": (MAE_LONG, [(True, "SpectralKD-Last")], MAE_PAIR),
    "C3-MAE-mechanism": (ALPHA0, [(True, "SpectralKD-Last"), (False, "SpectralKD-Last", NORMED)],
                         MAE_PAIR),
    "C3-MAE-dose-probed": (PROBED_W2, [(True, "SpectralKD-Last"),
                                       (False, "SpectralKD-Last", PROBED_W08)], MAE_PAIR),
}
# settings whose runs change the feature loss only: their SoftKD runs are another setting's
SOFT_FROM = {NORMED: BASE, PROBED_W2: PROBED, PROBED_W08: PROBED}
# what each claim asks, for the verdict tables (default: late alignment is negative transfer)
QUESTIONS = {
    "C3-MAE-mechanism": "the MAE penalty persists without the flat soft target (α = 0: labels "
                        "and features only)",
    "C3-MAE-dose-probed": "a strong feature loss (w = 2) costs even with a probed head (the "
                          "logits carry the labels)",
}
# claim -> reading of its primary verdict, where the generic one would not say the answer
READINGS = {
    "C3-MAE-mechanism": {claims.REPRODUCED: "a penalty remains at α = 0: it does not need the "
                                            "flat soft target",
                         claims.SMALLER: "a penalty below the paper's remains at α = 0: it "
                                         "does not need the flat soft target",
                         claims.ABSENT: "no penalty of the paper's size at α = 0: it needs the "
                                        "flat soft target",
                         claims.OPPOSITE: "late alignment helps at α = 0: the penalty needs the "
                                          "flat soft target"},
    "C3-MAE-dose-probed": {claims.REPRODUCED: "negative transfer at w = 2 with the probed head: "
                                              "the feature weight alone makes a penalty",
                           claims.SMALLER: "a penalty below the paper's at w = 2 with the "
                                           "probed head",
                           claims.ABSENT: "no penalty of the paper's size even at w = 2: "
                                          "labelled logits protect the student",
                           claims.OPPOSITE: "late alignment helps at w = 2 with the probed head"},
}


def soft_setting(setting: str) -> str:
    """The setting whose SoftKD runs ``setting``'s aligned runs are paired with."""
    return SOFT_FROM.get(setting, setting)


def question(claim: str, setting: str) -> str:
    """What a control claim asks, in words (for the README's "the paper says" column)."""
    return QUESTIONS.get(claim, f"late alignment is negative transfer ({setting})")


def _official_acc(logs: pd.DataFrame | None) -> pd.DataFrame:
    """The release's test top-1 [epoch, run] (its shipped logs when ``logs`` is None)."""
    logs = reference.official_logs() if logs is None else logs
    return logs.pivot(index="epoch", columns="run", values="test_acc1")


def running_mean(gap, window: int) -> np.ndarray:
    """Centred running mean over ``window`` epochs (shorter at the ends) of ``gap [epochs]``."""
    return pd.Series(gap).rolling(window, center=True, min_periods=1).mean().to_numpy()


def official_final_gaps(logs: pd.DataFrame | None = None) -> dict[tuple[str, str], float]:
    """``{(soft run, aligned run): final-epoch test top-1 difference (pt)}`` of the release."""
    acc = _official_acc(logs)
    pairs = {pair for _, _, pair in CONTROLS.values()} | {("SoftKD-500ep", "SpectralKD-Last-500ep")}
    return {(a, b): float((acc[a] - acc[b]).dropna().iloc[-1]) for a, b in pairs}


def paired_by_seed(results: pd.DataFrame, setting: str, a: str, b: str,
                   a_setting: str | None = None, value: str = "final_acc1") -> pd.DataFrame:
    """Columns ``a``, ``b`` of ``value`` indexed by the seeds both have (``a`` read from
    ``a_setting`` when given: a dose setting has no SoftKD runs of its own)."""
    def cell(s, c):
        rows = results[(results["setting"] == s) & (results["cell"] == c)]
        return rows.set_index("seed")[value]
    return pd.concat({a: cell(a_setting or setting, a), b: cell(setting, b)},
                     axis=1).dropna().sort_index()


def evidence(results: pd.DataFrame, logs: pd.DataFrame | None = None) -> list[Evidence]:
    """One :class:`claims.Evidence` per control variant with at least 2 seed pairs (and the
    mechanism claim's α 0.9 - α 0 difference of penalties, ``soft_target_share``)."""
    gaps = official_final_gaps(logs)
    out = []
    for claim, (claim_setting, variants, official) in CONTROLS.items():
        paper = gaps[official]
        sesoi = Sesoi(abs(paper), f"the official {official[0]} - {official[1]} gap at the final "
                                  f"epoch ({paper:.3g} pt): 'absent' excludes a penalty as large "
                                  "as the paper's")
        for primary, cell, *own in variants:
            setting = own[0] if own else claim_setting
            soft = soft_setting(setting)
            pair = paired_by_seed(results, setting, "SoftKD", cell, a_setting=soft)
            if len(pair) < 2:
                continue
            where = setting if soft == setting else f"{setting}; SoftKD of {soft}"
            out.append(Evidence(
                claim=claim, variant=f"SoftKD - {cell}, final top-1 ({where})",
                kind=DIRECTIONAL, dist=claims.paired(pair["SoftKD"], pair[cell]), sesoi=sesoi,
                unit="pt", statistic=f"SoftKD - {cell} top-1 at the final epoch, paired by seed",
                primary=primary, paper=paper if cell == "SpectralKD-Last" and primary else math.nan,
                note=f"setting {setting!r} of the controls profile"))
        if claim == "C3-MAE-mechanism":
            share = soft_target_share(results)
            if len(share) >= 2:
                out.append(Evidence(
                    claim=claim, variant=f"penalty at α 0.9 - penalty at α 0 ({BASE} vs "
                                         f"{ALPHA0})",
                    kind=DIRECTIONAL, dist=claims.paired(share["alpha 0.9"], share["alpha 0"]),
                    sesoi=sesoi, unit="pt", primary=False,
                    statistic="(SoftKD - SpectralKD-Last) at α 0.9 minus the same at α 0, "
                              "final top-1, paired by seed: what the flat soft target adds to "
                              "the penalty (positive = it makes the penalty larger)",
                    note=f"{BASE!r}'s seeds paired with the α = 0 setting's"))
    return out


def soft_target_share(results: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the MAE teacher's penalty (SoftKD - SpectralKD-Last, final top-1) at α 0.9
    (the base) and at α 0 (``ALPHA0``), on the seeds both settings hold."""
    gaps = {}
    for name, setting in (("alpha 0.9", BASE), ("alpha 0", ALPHA0)):
        pair = paired_by_seed(results, setting, "SoftKD", "SpectralKD-Last")
        gaps[name] = pair["SoftKD"] - pair["SpectralKD-Last"]
    return pd.concat(gaps, axis=1).dropna().sort_index()


def verdicts(results: pd.DataFrame, logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The controls' verdict table (``claims.judge``), with ``reading``: negative transfer
    (support), late alignment helps (opposite), no penalty of the paper's size (absent), or the
    verdict itself; "; underpowered" where the design is."""
    table = claims.judge(evidence(results, logs))
    if table.empty:
        return table.assign(reading=[])
    table["reading"] = [_reading(c, v, p) + ("; underpowered" if d.startswith("underpowered")
                                              else "")
                        for c, v, p, d in zip(table["claim"], table["verdict"], table["primary"],
                                              table["design"])]
    return table


def _reading(claim: str, verdict: str, primary: bool) -> str:
    special = READINGS.get(claim, {}).get(verdict) if primary else None
    if special:
        return special
    return ("negative transfer" if verdict in SUPPORT else
            "late alignment helps" if verdict == claims.OPPOSITE else
            "no penalty of the paper's size" if verdict == claims.ABSENT else verdict)


def dose(results: pd.DataFrame, base: str = BASE, prefix: str = DOSE) -> pd.DataFrame:
    """SoftKD (``base``) - SpectralKD-Last at each feature weight of one head's settings (the
    ``base`` setting's own weight and every setting named ``prefix`` + its weight; default the
    MAE teacher with its head untrained, ``dose(results, PROBED, PROBED_DOSE)`` the probed
    head): estimate with its t interval over seed pairs (pt)."""
    rows = []
    settings = [base] + sorted({s for s in results["setting"] if s.startswith(prefix + " ")})
    for setting in settings:
        pair = paired_by_seed(results, setting, "SoftKD", "SpectralKD-Last", a_setting=base)
        if len(pair) < 2:
            continue
        weight = results.loc[(results["setting"] == setting)
                             & (results["cell"] == "SpectralKD-Last"), "feature_weight"].iloc[0]
        ci = mean_ci(pair["SoftKD"] - pair["SpectralKD-Last"])
        rows.append({"setting": setting, "feature_weight": weight, "estimate": ci.mean,
                     "lo95": ci.lo, "hi95": ci.hi, "n": len(pair), "interval": "t over seeds",
                     "soft_acc1": pair["SoftKD"].mean(),
                     "aligned_acc1": pair["SpectralKD-Last"].mean()})
    columns = ["setting", "feature_weight", "estimate", "lo95", "hi95", "n", "interval",
               "soft_acc1", "aligned_acc1"]
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows, columns=columns).sort_values("feature_weight").reset_index(drop=True)


def curve_settings(curves: pd.DataFrame, cell: str = "SpectralKD-Last") -> list[str]:
    """The settings whose curves hold at least 2 seeds of both SoftKD and ``cell``."""
    out = []
    for setting, g in curves.groupby("setting", sort=False):
        seeds = [set(g.loc[g["cell"] == c, "seed"]) for c in ("SoftKD", cell)]
        if len(seeds[0] & seeds[1]) >= 2:
            out.append(setting)
    return out


def _gap_matrix(curves: pd.DataFrame, setting: str, cell: str) -> np.ndarray:
    """SoftKD - ``cell`` top-1 [seed pairs, epochs] of ``setting``."""
    acc = curves[curves["setting"] == setting].pivot_table(
        index=["cell", "seed"], columns="epoch", values="test_acc1")
    soft, other = acc.loc["SoftKD"], acc.loc[cell]
    seeds = soft.index.intersection(other.index)
    return (soft.loc[seeds] - other.loc[seeds]).to_numpy(np.float64)


def gap_curve(curves: pd.DataFrame, setting: str, cell: str = "SpectralKD-Last") -> pd.DataFrame:
    """Per epoch: mean SoftKD - ``cell`` gap (pt) with a t interval over seed pairs."""
    gaps = _gap_matrix(curves, setting, cell)
    rows = []
    for epoch, column in enumerate(gaps.T):
        ci = mean_ci(column)
        rows.append({"setting": setting, "cell": cell, "epoch": epoch,
                     "fraction": (epoch + 1) / gaps.shape[1], "gap": ci.mean,
                     "lo95": ci.lo, "hi95": ci.hi, "n": len(column),
                     "interval": "t over seeds"})
    return pd.DataFrame(rows)


def window_epochs(epochs: int, fraction: float = CROSSOVER_WINDOW) -> int:
    """The running-mean window of a schedule of ``epochs``: ``fraction`` of it, to the nearest
    odd number of epochs (ties upwards), at least 1."""
    return max(1, 2 * int(np.floor(fraction * epochs / 2)) + 1)


def crossover_fraction(gap: np.ndarray, window: int | None = None,
                       fraction: float = CROSSOVER_WINDOW) -> float:
    """Fraction of the schedule after which the running mean of the mean gap ``gap [epochs]``
    stays >= 0: (last epoch it is < 0, plus 1) / epochs; 0 when it never is (late alignment
    never ahead), 1 when it still is at the end (never overtaken). The running mean is
    centred, over ``window`` epochs (default: ``fraction`` of the schedule, ``window_epochs``)."""
    epochs = len(gap)
    window = window or window_epochs(epochs, fraction)
    smooth = running_mean(gap, window)
    behind = np.flatnonzero(smooth < 0)
    return 0.0 if behind.size == 0 else (behind[-1] + 1) / epochs


def crossover(curves: pd.DataFrame, setting: str, cell: str = "SpectralKD-Last",
              n_boot: int = N_BOOT, seed: int = 0, fraction: float = CROSSOVER_WINDOW) -> dict:
    """The crossover fraction of ``setting`` (running mean over ``fraction`` of the schedule)
    with a 95 % percentile bootstrap over seed pairs."""
    gaps = _gap_matrix(curves, setting, cell)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(gaps), size=(n_boot, len(gaps)))
    boot = np.array([crossover_fraction(gaps[p].mean(0), fraction=fraction) for p in picks])
    return {"setting": setting, "cell": cell, "epochs": gaps.shape[1], "n": len(gaps),
            "window": window_epochs(gaps.shape[1], fraction),
            "fraction": crossover_fraction(gaps.mean(0), fraction=fraction),
            "lo95": float(np.quantile(boot, 0.025)), "hi95": float(np.quantile(boot, 0.975)),
            "interval": "percentile bootstrap over seed pairs"}


OFFICIAL_PAIRS = (("SoftKD", "SpectralKD-Last"), ("SoftKD-500ep", "SpectralKD-Last-500ep"),
                  ("SoftKD-MAE", "SpectralKD-Last-MAE"), ("SoftKD", "SpectralKD-First"))


def official_crossovers(logs: pd.DataFrame | None = None,
                        fraction: float = CROSSOVER_WINDOW) -> pd.DataFrame:
    """The release's crossover fractions (one seed each), by the same definition and the same
    window fraction of each schedule as the kit's runs."""
    acc = _official_acc(logs)
    rows = []
    for soft, aligned in OFFICIAL_PAIRS:
        gap = (acc[soft] - acc[aligned]).dropna().to_numpy(np.float64)
        rows.append({"run": aligned, "epochs": len(gap), "window": window_epochs(len(gap), fraction),
                     "fraction": crossover_fraction(gap, fraction=fraction), "final_gap": gap[-1]})
    return pd.DataFrame(rows)


def crossover_sensitivity(curves: pd.DataFrame, pairs, logs: pd.DataFrame | None = None,
                          windows=SENSITIVITY_WINDOWS) -> pd.DataFrame:
    """The crossover under each window fraction in ``windows``: the kit's ``pairs`` ((setting,
    cell), mean gap over seed pairs, no interval) and the release's runs. Rows (source, run,
    epochs, window_fraction, window, fraction, preset) with ``preset`` marking the window fixed
    in advance (``CROSSOVER_WINDOW``)."""
    rows = []
    for f in windows:
        for setting, cell in pairs:
            gaps = _gap_matrix(curves, setting, cell)
            rows.append({"source": "kit", "run": f"{setting}: {cell}", "epochs": gaps.shape[1],
                         "window_fraction": f, "window": window_epochs(gaps.shape[1], f),
                         "fraction": crossover_fraction(gaps.mean(0), fraction=f)})
        for r in official_crossovers(logs, f).to_dict("records"):
            rows.append({"source": "release", "run": r["run"], "epochs": r["epochs"],
                         "window_fraction": f, "window": r["window"], "fraction": r["fraction"]})
    out = pd.DataFrame(rows)
    return out.assign(preset=np.isclose(out["window_fraction"], CROSSOVER_WINDOW))


def _sweep_effects(sweep: pd.DataFrame, profile: str) -> pd.DataFrame:
    rows = sweep[(sweep["claim"] == "C3") & sweep["primary"].astype(bool)]
    return pd.DataFrame({"profile": profile, "setting": rows["setting"],
                         "estimate": rows["estimate"], "lo95": rows["lo95"],
                         "hi95": rows["hi95"], "n": rows["n"]})


def effect_vs_mismatch(sweeps: dict[str, pd.DataFrame], controls: pd.DataFrame,
                       dose_table: pd.DataFrame, mismatch: pd.DataFrame) -> pd.DataFrame:
    """Every setting's SoftKD - SpectralKD-Last final gap (pt, t interval over seeds) beside
    its last-layer mismatch ratio. ``sweeps``: ``{profile: scale-sweep table}`` (their C3
    primary rows); ``controls``: the verdict table of :func:`verdicts` (primary rows);
    ``dose_table``: :func:`dose` (each weight a setting of the MAE teacher's mismatch);
    ``mismatch``: ``settings_mismatch.profile_mismatch`` rows of every profile."""
    parts = [_sweep_effects(table, name) for name, table in sweeps.items()]
    primary = controls[controls["primary"].astype(bool)]
    settings = {claim: setting for claim, (setting, _, _) in CONTROLS.items()}
    parts.append(pd.DataFrame({"profile": "controls",
                               "setting": [settings[c] for c in primary["claim"]],
                               "estimate": primary["estimate"], "lo95": primary["lo95"],
                               "hi95": primary["hi95"], "n": primary["n"]}))
    doses = dose_table[dose_table["setting"] != BASE]
    parts.append(pd.DataFrame({"profile": "controls", "setting": doses["setting"],
                               "estimate": doses["estimate"], "lo95": doses["lo95"],
                               "hi95": doses["hi95"], "n": doses["n"]}))
    effects = pd.concat(parts, ignore_index=True)
    last = mismatch[mismatch["layers"] == "last"][["profile", "setting", "teacher",
                                                   "teacher_dim_followup", "student_width", "ratio",
                                                   "ratio_centred"]]
    return effects.merge(last, on=["profile", "setting"], how="left")


def separation(table: pd.DataFrame) -> dict:
    """Whether the mismatch ratio separates the settings where late alignment hurt (interval
    above 0) from those where it helped (interval below 0): the ratio ranges of both groups and
    whether they overlap."""
    hurt = table[table["lo95"] > 0]["ratio"]
    helped = table[table["hi95"] < 0]["ratio"]
    unclear = table[(table["lo95"] <= 0) & (table["hi95"] >= 0)]
    out = {"hurt": sorted(hurt.round(3)), "helped": sorted(helped.round(3)),
           "unclear": len(unclear)}
    out["separates"] = bool(len(hurt) and len(helped) and
                            (hurt.min() > helped.max() or hurt.max() < helped.min()))
    # settings with no clear effect at a ratio where alignment hurt elsewhere: the ratio alone
    # does not decide the sign there
    out["same_ratio_unclear"] = (sorted(unclear.loc[unclear["ratio"].between(
        hurt.min(), hurt.max()), "setting"]) if len(hurt) else [])
    return out


def findings(verdict_table: pd.DataFrame, dose_table: pd.DataFrame,
             crossovers: pd.DataFrame, official: pd.DataFrame, separated: dict,
             lengths: pd.DataFrame | None = None,
             flat: pd.DataFrame | None = None) -> list[str]:
    """The notebook's and the docs' sentences, each built from the tables given."""
    lines = []
    for row in verdict_table[verdict_table["primary"].astype(bool)].to_dict("records"):
        lines.append(f"{row['claim']} ({row['variant']}): {pt_interval(row)} over {row['n']} "
                     f"seeds, 95 % t interval; verdict {row['verdict']} ({row['reading']}); "
                     f"power {row['power']:.0%} at the SESOI {row['sesoi']:.3g} pt")
    if not dose_table.empty:
        lines.append("dose (SoftKD - SpectralKD-Last by feature weight, MAE teacher): " + "; ".join(
            f"w={r['feature_weight']:g}: {pt_interval(r)} (n={r['n']})"
            for r in dose_table.to_dict("records")))
    for r in crossovers.to_dict("records"):
        where = ("late alignment is behind from the first epoch (never ahead)"
                 if r["fraction"] == 0 else
                 "late alignment is still ahead at the end (never overtaken)"
                 if r["fraction"] == 1 else
                 f"late alignment stops leading at {r['fraction']:.0%} of the schedule")
        lines.append(f"crossover, {r['setting']}, SoftKD - {r['cell']} ({r['epochs']} epochs): "
                     f"{where}; fraction "
                     f"{r['fraction']:.0%} [{r['lo95']:.0%}, {r['hi95']:.0%}] ({r['interval']}, "
                     f"n={r['n']})")
    if lengths is not None and len(lengths):
        lines.append("final gap by schedule: " + "; ".join(
            f"{r['teacher']} teacher, {r['epochs']} epochs: {pt_interval(r)} (n={r['n']})"
            for r in lengths.to_dict("records")))
    if flat is not None and len(flat):
        lines.append("converged (top-1 drift over the last fifth within ±"
                     f"{flat['margin'].iloc[0]:g} pt, 90 % interval): " + "; ".join(
                         f"{r['setting']}, {r['cell']}: {'yes' if r['flat'] else 'no'} "
                         f"({r['drift']:+.2f} [{r['lo90']:+.2f}, {r['hi90']:+.2f}] pt)"
                         for r in flat.to_dict("records")))
    lines.append("official crossovers (one seed each): " + "; ".join(
        f"{r['run']}: {r['fraction']:.0%} of {r['epochs']} epochs, final gap "
        f"{r['final_gap']:+.2f} pt" for r in official.to_dict("records")))
    verb = "separates" if separated["separates"] else "does not separate"
    line = (f"the last-layer mismatch ratio {verb} the settings where late alignment hurt "
            f"(ratios {separated['hurt']}) from those where it helped "
            f"(ratios {separated['helped']}); {separated['unclear']} setting(s) unclear")
    same = separated.get("same_ratio_unclear", [])
    if same:
        line += (f"; but {', '.join(same)} sit at a ratio where it hurt elsewhere and show no "
                 "clear effect, so the ratio alone does not decide the sign")
    lines.append(line)
    return lines


def official_gap_curves(logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The release's SoftKD - SpectralKD-Last curves (9-epoch centred running mean) by fraction
    of the schedule: rows (run, epoch, fraction, gap)."""
    acc = _official_acc(logs)
    parts = []
    for soft, aligned in (("SoftKD", "SpectralKD-Last"), ("SoftKD-500ep", "SpectralKD-Last-500ep"),
                          ("SoftKD-MAE", "SpectralKD-Last-MAE"), ("SoftKD", "SpectralKD-First")):
        gap = (acc[soft] - acc[aligned]).dropna()
        parts.append(pd.DataFrame({"run": aligned, "epoch": gap.index,
                                   "fraction": (gap.index + 1) / len(gap),
                                   "gap": running_mean(gap.to_numpy(), OFFICIAL_WINDOW)}))
    return pd.concat(parts, ignore_index=True)


FLAT_TAIL = 0.2        # the last fifth of the schedule
FLAT_MARGIN = 0.5      # pt: a drift over the tail below half a point, a third of the default
                       # pair's seed SD of top-1 and above the official 300-epoch gap (0.16 pt)


def convergence(curves: pd.DataFrame, setting: str, tail: float = FLAT_TAIL,
                margin: float = FLAT_MARGIN) -> pd.DataFrame:
    """Per cell of ``setting``: the drift of test top-1 over the last ``tail`` of the schedule
    (least-squares slope per seed × the tail's length, pt), its 90 % t interval over seeds and
    ``flat``: that interval inside ±``margin`` (two one-sided tests at 5 %)."""
    rows = []
    g = curves[curves["setting"] == setting]
    for cell, c in g.groupby("cell", sort=False):
        acc = c.pivot_table(index="seed", columns="epoch", values="test_acc1")
        epochs = acc.shape[1]
        start = epochs - max(2, round(tail * epochs))
        x = np.arange(start, epochs, dtype=np.float64)
        y = acc.to_numpy(np.float64)[:, start:]
        slope = ((x - x.mean()) * (y - y.mean(1, keepdims=True))).sum(1) / ((x - x.mean()) ** 2).sum()
        drift = slope * (epochs - start)
        ci = mean_ci(drift, level=0.90) if len(drift) > 1 else None
        lo, hi = (ci.lo, ci.hi) if ci is not None else (math.nan, math.nan)
        rows.append({"setting": setting, "cell": cell, "epochs": epochs, "tail_from": start,
                     "drift": float(drift.mean()), "lo90": lo, "hi90": hi, "n": len(drift),
                     "margin": margin, "flat": bool(-margin < lo and hi < margin)})
    return pd.DataFrame(rows)


def schedule_lengths(default_claims: pd.DataFrame, verdict_table: pd.DataFrame,
                     default_epochs: int, long_epochs: int) -> pd.DataFrame:
    """Each teacher's SoftKD - SpectralKD-Last final gap at the default schedule and at the long
    one: the supervised teacher's from the default profile's C3 primary row and C3-long, the MAE
    teacher's from C3-MAE and C3-MAE-long. Does it grow, as the official 300 -> 500 epoch runs'
    does?"""
    rows = []
    for teacher, epochs, table, claim in (
            ("supervised", default_epochs, default_claims, "C3"),
            ("supervised", long_epochs, verdict_table, "C3-long"),
            ("MAE, head untrained", default_epochs, verdict_table, "C3-MAE"),
            ("MAE, head untrained", long_epochs, verdict_table, "C3-MAE-long")):
        row = table[(table["claim"] == claim) & table["primary"].astype(bool)]
        if not row.empty:
            r = row.iloc[0]
            rows.append({"teacher": teacher, "epochs": epochs, "claim": claim,
                         "estimate": r["estimate"], "lo95": r["lo95"], "hi95": r["hi95"],
                         "n": int(r["n"])})
    return pd.DataFrame(rows, columns=["teacher", "epochs", "claim", "estimate", "lo95", "hi95", "n"])
