"""The phase map (profile ``phase_map``; docs/design.md §11): where late feature alignment helps
and where it hurts, over task complexity × student width.

The profile is a grid (``ddkit.studies.grid``): each sweep setting is one point of the map, a (teacher,
student width) pair with its SoftKD, SpectralKD-Last and ProjectorKD-Last students (and, where
alignment hurts, the remedies). Task complexity is the teacher's task: Fashion-MNIST, or its
2×2 mosaics labelled by 1 or 2 quadrants (``ddkit.core.mosaic``), one shipped teacher each.

    teachers(profile)   # every mosaic teacher the settings name: shipped, or trained
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as scipy_stats

from ddkit.core import mosaic
from ddkit.core.anatomy import model_width
from ddkit.core.config import REMEDIES, Profile
from ddkit.core.data import build_dataset, dataset_info
from ddkit.core.models import SHIPPED_TEACHERS, create_from_config
from ddkit.core.mosaic import MOSAICS
from ddkit.runs.store import write_text
from ddkit.signals import mismatch
from ddkit.signals.dynamics import sample_batch
from ddkit.studies import control_verdicts as cv
from ddkit.studies import grid, study
from ddkit.verdicts.claims import pt_interval
from ddkit.verdicts.stats import mean_ci


def teacher_settings(profile: Profile, only: Iterable[str] | None = None) -> dict[str, Profile]:
    """One setting per distinct teacher preset of ``profile`` (or of its settings ``only``) that
    the kit ships under the phase map's profile (the mosaic teachers): ``{teacher preset:
    setting's profile}``."""
    out = {}
    for name, variant in grid.settings(profile).items():
        teacher = variant.teacher.model.name
        shipped = SHIPPED_TEACHERS.get(teacher)
        if (only is None or name in only) and shipped is not None \
                and shipped.profile == profile.name:
            out.setdefault(teacher, variant)
    return out


def teachers(profile: Profile, only: Iterable[str] | None = None, progress: bool = True,
             train: bool = True) -> dict[str, Path | None]:
    """``{teacher preset: weights}`` of every mosaic teacher of ``profile``: the shipped file when
    its record holds the hash of the profile's recipe (nothing is trained); else the recipe's run
    in the run store, trained (cached, resumable) when missing for the settings ``only`` (all
    when None) if ``train``, said in one line, and None for a teacher not trained yet.
    ddkit/shipped/ is never written (``ddkit ship-teacher --profile phase_map --teacher PRESET``
    ships one)."""
    trained = set(teacher_settings(profile, only)) if train else set()
    return {name: study.teacher_weights(variant, variant.teacher_config(), progress,
                                        name in trained, owner=profile)
            for name, variant in teacher_settings(profile).items()}


def teacher_table(profile: Profile, n: int = mismatch.IMAGES) -> pd.DataFrame:
    """Each teacher of the map (one per task): its shipped record's final top-1 and epochs, and
    its data-set-level dimensions at every block (``mismatch.layer_dims`` at 90 and 95 % energy:
    the follow-up's, the uncentred global and the centred one, on ``n`` class-balanced test
    images of its task); ``rise_last3``: its top-1 gain over its last three logged epochs (pt;
    near 0 = plateaued). Rows (task, teacher, acc1, epochs, rise_last3, images, layer, energy,
    dim_followup, dim_global, dim_centred, width)."""
    seen, frames = set(), []
    for name, variant in grid.settings(profile).items():
        teacher_cfg, _ = study.teacher_model(variant, progress=False)
        if name == grid.base_name(profile) or teacher_cfg.name in seen:
            continue
        seen.add(teacher_cfg.name)
        record = study.shipped_teacher_record(teacher_cfg.name)
        test_set = build_dataset(variant.data.name, "test", root=variant.data.root)
        x, _ = sample_batch(test_set, n, seed=variant.seeds[0])
        teacher = create_from_config(teacher_cfg, checkpoint=teacher_cfg.checkpoint)
        acc = study.shipped_teacher_log(teacher_cfg.name)["test_acc1"]
        frames.append(mismatch.layer_dims(teacher, x).assign(
            task=task_label(variant.data.name), teacher=teacher_cfg.name,
            acc1=record["final_acc1"], epochs=record["epochs"],
            rise_last3=float(acc.iloc[-1] - acc.iloc[-3]), images=n))
    cols = ["task", "teacher", "acc1", "epochs", "rise_last3", "images", "layer", "energy",
            "dim_followup", "dim_global", "dim_centred", "width"]
    return pd.concat(frames, ignore_index=True)[cols]


# --------------------------------------------------------------------------- the map's points

MAP_CELLS = ("SpectralKD-Last", "ProjectorKD-Last")   # the aligned cells the map sets against SoftKD
POINT_COLUMNS = ("setting", "task", "classes", "width", "target_rank", "cell", "n", "estimate", "se", "lo95",
                 "hi95", "interval", "soft_acc1", "cell_acc1", "teacher_dim", "ratio",
                 "teacher_dim_centred", "ratio_centred", "target_dim", "side", "reading",
                 "more_seeds")
# the target's dimension as each aligned cell's loss sees it (``mismatch.pair_rows``)
TARGET_DIM = {"SpectralKD-Last": "target_dim_spectralkd", "ProjectorKD-Last": "target_dim_projectorkd"}
HURTS, HELPS, UNCLEAR = "hurts", "helps", "no clear effect"
MIN_SEEDS_STRADDLING = 5     # a point whose interval straddles 0 wants this many seed pairs


def task_label(data_name: str) -> str:
    """``fashion_mnist`` -> Fashion-MNIST, ``fashion_mosaic_k100`` -> mosaic K=100."""
    if data_name in MOSAICS:
        return f"mosaic K={mosaic.num_classes(data_name)}"
    return {"fashion_mnist": "Fashion-MNIST"}.get(data_name, data_name)


def setting_table(profile: Profile) -> pd.DataFrame:
    """One row per sweep setting: task, classes K, student width, teacher preset and the rank of
    its feature target (``distill.target_rank``; None: the teacher's whole code)."""
    rows = []
    for name, variant in grid.settings(profile).items():
        if name == grid.base_name(profile):
            continue
        student = variant.student.model
        rows.append({"setting": name, "task": task_label(variant.data.name),
                     "classes": dataset_info(variant.data.name)["num_classes"],
                     "width": model_width(student.name, **student.kwargs),
                     "teacher": variant.teacher.model.name,
                     "target_rank": variant.distill.target_rank})
    return pd.DataFrame(rows)


def reading(lo: float, hi: float) -> str:
    """hurts (the 95 % interval of SoftKD - aligned is above 0), helps (below 0), or neither."""
    return HURTS if lo > 0 else HELPS if hi < 0 else UNCLEAR


def soft_settings(profile: Profile) -> dict[str, str]:
    """``{setting: the setting whose SoftKD runs it is paired with}`` for the settings that train
    no SoftKD of their own (the controlled-dimension design's rank settings): the setting with
    SoftKD runs on the same data, teacher and student width."""
    variants = grid.settings(profile)
    def key(v):
        student = v.student.model
        return v.data.name, v.teacher.model.name, model_width(student.name, **student.kwargs)
    owners = {key(v): name for name, v in variants.items() if "SoftKD" in v.cell_seeds}
    return {name: owners[key(v)] for name, v in variants.items()
            if v.cell_seeds and "SoftKD" not in v.cell_seeds and key(v) in owners}


def points(results: pd.DataFrame, settings: pd.DataFrame, mism: pd.DataFrame,
           cells: Iterable[str] = MAP_CELLS, soft_of: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (setting, aligned cell) with at least 2 seed pairs (``POINT_COLUMNS``):
    SoftKD - cell final top-1 (pt; positive = late alignment hurts), its standard error and 95 %
    t interval over seed pairs, the mean accuracies, and the setting's encoding mismatch at the
    last pair (``mismatch``: ``ratio`` is the follow-up's, ``teacher_dim_followup / width``; the
    centred one beside it; ``target_dim``: the target's follow-up dimension as the cell's loss
    sees it). ``more_seeds``: the interval straddles 0 with fewer than 5 pairs. ``soft_of``
    (``soft_settings``): where a setting's SoftKD runs live when it has none of its own."""
    last = mism[mism["layers"] == "last"].set_index("setting")
    rows = []
    for _, s in settings.iterrows():
        for cell in cells:
            pair = cv.paired_by_seed(results, s["setting"], "SoftKD", cell,
                                     a_setting=(soft_of or {}).get(s["setting"]))
            if len(pair) < 2:
                continue
            ci = mean_ci(pair["SoftKD"] - pair[cell])
            m = last.loc[s["setting"]]
            rows.append({**s[["setting", "task", "classes", "width", "target_rank"]].to_dict(),
                         "cell": cell,
                         "n": ci.n, "estimate": ci.mean, "se": ci.sd / math.sqrt(ci.n),
                         "lo95": ci.lo, "hi95": ci.hi,
                         "interval": "t over seed pairs", "soft_acc1": pair["SoftKD"].mean(),
                         "cell_acc1": pair[cell].mean(), "teacher_dim": m["teacher_dim_followup"],
                         "ratio": m["ratio"], "teacher_dim_centred": m["teacher_dim_centred"],
                         "ratio_centred": m["ratio_centred"],
                         "target_dim": m.get(TARGET_DIM.get(cell, ""), math.nan),
                         "side": "above 1" if m["ratio"] > 1 else "below 1",
                         "reading": reading(ci.lo, ci.hi),
                         "more_seeds": bool(ci.lo <= 0 <= ci.hi and ci.n < MIN_SEEDS_STRADDLING)})
    return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


# --------------------------------------------------------------------------- the boundary

@dataclass(frozen=True)
class Boundary:
    """The least-squares line ``effect = a + b · log2(ratio)`` over a cell's points (each point
    one value, its seed mean; every point weighs the same) and the ratio where it crosses 0.

    ``ratio``: 2 ** (-a / b); ``lo``/``hi``: its 95 % Fieller interval (NaN bounds when the slope
    is not distinguishable from 0: the set of ratios the data allow as the crossing is then
    unbounded, and the map has no boundary in its range)."""
    cell: str
    n: int
    intercept: float
    slope: float
    slope_se: float
    slope_lo: float
    slope_hi: float
    ratio: float
    lo: float
    hi: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    df: int

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def band(self, ratios: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted effect at ``ratios`` and its pointwise ``level`` interval."""
        x = np.log2(np.asarray(ratios, dtype=np.float64))
        fit = self.intercept + self.slope * x
        (vaa, vab), (_, vbb) = self.cov
        se = np.sqrt(vaa + 2 * x * vab + x * x * vbb)
        q = scipy_stats.t.ppf(0.5 + level / 2, self.df)
        return fit, fit - q * se, fit + q * se


def fieller_root(a: float, b: float, vaa: float, vab: float, vbb: float,
                 q: float) -> tuple[float, float]:
    """The Fieller interval of x* = -a / b: the x with (a + b x)² <= q² Var(a + b x). Written
    here because neither scipy nor statsmodels has it. (NaN, NaN) when the set is unbounded
    (b² <= q² Var b: the slope is not significant at that level)."""
    qa, qb, qc = b * b - q * q * vbb, 2 * (a * b - q * q * vab), a * a - q * q * vaa
    if qa <= 0:
        return math.nan, math.nan
    disc = qb * qb - 4 * qa * qc
    root = math.sqrt(max(disc, 0.0))
    return (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


def boundary(table: pd.DataFrame, cell: str = "SpectralKD-Last") -> Boundary | None:
    """:class:`Boundary` of ``cell``'s points (``points``); None with fewer than 3 points."""
    rows = table[table["cell"] == cell]
    if len(rows) < 3:
        return None
    x = np.log2(rows["ratio"].to_numpy(np.float64))
    fit = sm.OLS(rows["estimate"].to_numpy(np.float64), sm.add_constant(x)).fit()
    (a, b), cov = fit.params, fit.cov_params()
    q = scipy_stats.t.ppf(0.975, fit.df_resid)
    lo, hi = fieller_root(a, b, cov[0, 0], cov[0, 1], cov[1, 1], q)
    slope_lo, slope_hi = fit.conf_int(0.05)[1]
    return Boundary(cell=cell, n=len(rows), intercept=float(a), slope=float(b),
                    slope_se=float(fit.bse[1]), slope_lo=float(slope_lo), slope_hi=float(slope_hi),
                    ratio=float(2 ** (-a / b)) if b != 0 else math.nan,
                    lo=float(2 ** lo) if math.isfinite(lo) else math.nan,
                    hi=float(2 ** hi) if math.isfinite(hi) else math.nan,
                    cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
                    df=int(fit.df_resid))


def prediction(table: pd.DataFrame, cell: str = "SpectralKD-Last") -> pd.DataFrame:
    """The follow-up's prediction (hurts above a mismatch of 1, helps or neutral below) against
    the points: counts of each reading on each side, and whether each cell of the 2 × 3 table
    agrees with it."""
    rows = table[table["cell"] == cell]
    out = (rows.groupby(["side", "reading"]).size().unstack(fill_value=0)
           .reindex(index=["below 1", "above 1"], columns=[HELPS, UNCLEAR, HURTS], fill_value=0))
    return out


# --------------------------------------------------------------------------- remedies and words

def hurting_settings(table: pd.DataFrame, cell: str = "SpectralKD-Last") -> list[str]:
    """The map's settings where plain late alignment is negative transfer (``cell``'s interval
    above 0): where the remedies are tested."""
    return list(table.loc[(table["cell"] == cell) & (table["reading"] == HURTS), "setting"])


def remedy_settings(table: pd.DataFrame, results: pd.DataFrame) -> dict[str, str]:
    """``{claim name: setting}`` of the hurting settings that hold remedy runs."""
    has = set(results.loc[results["cell"].isin(REMEDIES), "setting"])
    return {f"R-{s}": s for s in hurting_settings(table) if s in has}


def remedy_findings(table: pd.DataFrame, remedies: pd.DataFrame | None) -> list[str]:
    """Sentences about the remedies: where the map says late alignment hurts and no remedy has
    run, and per setting the remedies' intervals and which count."""
    lines = []
    hurting = hurting_settings(table)
    tried = set() if remedies is None or not len(remedies) else set(remedies["setting"])
    untried = [s for s in hurting if s not in tried]
    if not hurting:
        lines.append("remedies: no map point is negative transfer (no SpectralKD-Last interval "
                     "above 0), so none runs on the map")
    elif untried:
        lines.append(f"remedies: not yet run where the map says late alignment hurts: "
                     f"{', '.join(untried)} (add the remedy cells to these settings in the "
                     f"profile and train them)")
    if remedies is not None and len(remedies):
        for setting, g in remedies.groupby("setting", sort=False):
            parts = [f"{r['remedy']} {pt_interval(r)} ({r['reading']})" for r in g.to_dict("records")]
            won = list(g.loc[g["counts"], "remedy"])
            lines.append(f"remedies, {g['claim'].iloc[0]} (setting {setting!r}; SoftKD - remedy, "
                         f"n = {int(g['n'].max())}, "
                         f"Holm over {len(g)}): " + "; ".join(parts) + ". "
                         + (f"Count: {', '.join(won)}." if won else "None counts."))
    return lines


def cached_teacher_table(profile: Profile, path: Path, recompute: bool) -> pd.DataFrame:
    """``teacher_table`` written to ``path`` when ``recompute`` or missing, else read."""
    if recompute or not path.is_file():
        write_text(path, teacher_table(profile).to_csv(index=False))
    return pd.read_csv(path)


def write_points(table: pd.DataFrame, path: Path) -> None:
    """The map's points as the committed table the documents read (``points.csv``)."""
    write_text(path, table.to_csv(index=False))


def plain_alignment(table: pd.DataFrame, controls: pd.DataFrame,
                    remedies: pd.DataFrame) -> pd.DataFrame:
    """Plain SoftKD - SpectralKD-Last (estimate, t interval) in each setting of ``remedies``:
    the map's point, or for the controls' base (the MAE teacher) its paired runs."""
    rows = []
    for setting in dict.fromkeys(remedies.get("setting", [])):
        point = table[(table["setting"] == setting) & (table["cell"] == "SpectralKD-Last")]
        if len(point):
            r = point.iloc[0]
            rows.append({"setting": setting, "estimate": r["estimate"], "lo95": r["lo95"],
                         "hi95": r["hi95"], "n": r["n"]})
            continue
        pair = cv.paired_by_seed(controls, setting, "SoftKD", "SpectralKD-Last")
        if len(pair) > 1:
            ci = mean_ci(pair["SoftKD"] - pair["SpectralKD-Last"])
            rows.append({"setting": setting, "estimate": ci.mean, "lo95": ci.lo, "hi95": ci.hi,
                         "n": ci.n})
    return pd.DataFrame(rows, columns=["setting", "estimate", "lo95", "hi95", "n"])


def phases(curves: pd.DataFrame, table: pd.DataFrame, cell: str = "SpectralKD-Last") -> pd.DataFrame:
    """When in training each map point's late alignment helps or hurts: the crossover fraction
    (``control_verdicts.crossover``: after it the gap's running mean stays >= 0, late alignment no
    longer ahead; a percentile bootstrap over seed pairs) and the mean gap over the first and the
    last third of the schedule, beside the point's mismatch and final reading."""
    rows = []
    for r in table[table["cell"] == cell].to_dict("records"):
        gaps = cv.gap_curve(curves, r["setting"], cell)
        third = max(1, len(gaps) // 3)
        rows.append({**{k: r[k] for k in ("setting", "task", "width", "ratio", "reading")},
                     **{k: v for k, v in cv.crossover(curves, r["setting"], cell).items()
                        if k in ("fraction", "lo95", "hi95", "interval")},
                     "early_gap": gaps["gap"].iloc[:third].mean(),
                     "late_gap": gaps["gap"].iloc[-third:].mean()})
    return pd.DataFrame(rows)
