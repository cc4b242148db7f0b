"""The phase map's analysis (ddkit.studies.phase_map) and the remedies' verdicts (ddkit.studies.remedy_verdicts),
on planted results."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ddkit.core.config import REMEDIES, load_profile
from ddkit.studies import control_verdicts
from ddkit.studies import phase_map as pm
from ddkit.studies import remedy_verdicts as rv


def _runs(setting: str, effects: dict[str, float], seeds: int, rng, sd: float = 0.5) -> list[dict]:
    """Rows of runs.csv: SoftKD and one cell per ``effects`` entry (SoftKD - cell = effect)."""
    soft = 70 + rng.normal(0, 1.0, seeds)
    rows = [{"setting": setting, "cell": "SoftKD", "seed": s, "final_acc1": v}
            for s, v in enumerate(soft)]
    for cell, effect in effects.items():
        rows += [{"setting": setting, "cell": cell, "seed": s, "final_acc1": v - effect + rng.normal(0, sd)}
                 for s, v in enumerate(soft)]
    return rows


def _map(effect_of_ratio, ratios, seeds=3, sd=0.5, seed=0):
    """A planted map: one setting per ratio, SpectralKD-Last's effect given by the ratio."""
    rng = np.random.default_rng(seed)
    rows, settings, mism = [], [], []
    for i, r in enumerate(ratios):
        name = f"s{i}"
        rows += _runs(name, {"SpectralKD-Last": effect_of_ratio(r)}, seeds, rng, sd)
        settings.append({"setting": name, "task": "t", "classes": 10, "width": 16 * (i + 1),
                         "target_rank": None})
        mism.append({"setting": name, "layers": "last", "teacher_dim_followup": 16 * (i + 1) * r,
                     "ratio": r, "teacher_dim_centred": 16 * (i + 1) * r * 0.8,
                     "ratio_centred": r * 0.8, "target_dim_spectralkd": min(r, 1) * 16 * (i + 1)})
    return pd.DataFrame(rows), pd.DataFrame(settings), pd.DataFrame(mism)


def test_points_pair_by_seed_and_read_the_interval():
    results, settings, mism = _map(lambda r: 4.0 if r > 1 else -4.0, [0.5, 2.0], seeds=3, sd=0.3)
    table = pm.points(results, settings, mism)
    assert list(table["reading"]) == [pm.HELPS, pm.HURTS]
    assert list(table["side"]) == ["below 1", "above 1"]
    soft = results[(results["setting"] == "s1") & (results["cell"] == "SoftKD")]["final_acc1"].to_numpy()
    last = results[(results["setting"] == "s1") & (results["cell"] == "SpectralKD-Last")]["final_acc1"].to_numpy()
    assert table["estimate"].iloc[1] == pytest.approx((soft - last).mean())
    assert table["n"].tolist() == [3, 3] and not table["more_seeds"].any()
    # a point with no effect wants more seeds while it has fewer than 5
    results, settings, mism = _map(lambda r: 0.0, [1.0], seeds=3, sd=2.0, seed=3)
    row = pm.points(results, settings, mism).iloc[0]
    assert row["reading"] == pm.UNCLEAR and row["more_seeds"]


def test_fieller_interval_is_the_set_where_the_band_holds_zero():
    a, b, vaa, vab, vbb, q = 0.3, 1.5, 0.04, -0.01, 0.09, 2.3
    lo, hi = pm.fieller_root(a, b, vaa, vab, vbb, q)
    x = np.linspace(-3, 3, 600_001)
    inside = (a + b * x) ** 2 <= q * q * (vaa + 2 * x * vab + x * x * vbb)
    assert lo == pytest.approx(x[inside].min(), abs=2e-5) and hi == pytest.approx(x[inside].max(), abs=2e-5)
    assert lo < -a / b < hi
    assert all(math.isnan(v) for v in pm.fieller_root(a, 0.1, vaa, vab, vbb, q))   # slope not significant


def test_boundary_recovers_a_planted_crossing_and_reports_none_without_a_slope():
    ratios = [0.25, 0.5, 1.0, 2.0, 4.0, 0.35, 1.4, 2.8]
    results, settings, mism = _map(lambda r: 2.0 * math.log2(r / 1.5), ratios, seeds=5, sd=0.3)
    table = pm.points(results, settings, mism)
    fit = pm.boundary(table)
    x, y = np.log2(table["ratio"]), table["estimate"]
    assert fit.slope == pytest.approx(np.polyfit(x, y, 1)[0])
    assert fit.bounded and fit.lo < 1.5 < fit.hi and fit.ratio == pytest.approx(1.5, rel=0.15)
    assert fit.slope_lo > 0
    _, lo, hi = fit.band(np.array([1.5]))
    assert lo[0] < 0 < hi[0]
    flat = pm.points(*_map(lambda r: 0.0, ratios, seeds=5, sd=0.3, seed=1))
    assert not pm.boundary(flat).bounded
    assert pm.boundary(table.iloc[:2]) is None


def test_prediction_counts_each_reading_on_each_side():
    results, settings, mism = _map(lambda r: 5.0 if r > 1 else -5.0, [0.5, 0.7, 2.0], sd=0.2)
    table = pm.points(results, settings, mism)
    counts = pm.prediction(table)
    assert counts.loc["below 1", pm.HELPS] == 2 and counts.loc["above 1", pm.HURTS] == 1
    assert counts.to_numpy().sum() == 3


def test_the_profile_spans_three_tasks_and_six_widths():
    table = pm.setting_table(load_profile("phase_map"))
    assert sorted(set(table["task"])) == ["Fashion-MNIST", "mosaic K=10", "mosaic K=100"]
    assert sorted(set(table["width"])) == [8, 16, 24, 32, 48, 96]
    assert len(table) == 18


# --------------------------------------------------------------------------- remedies

def _remedy_readings(effect: float, studies: int, seeds: int = 5, sd: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(studies):
        results = pd.DataFrame(_runs("hurt", {"LossLift-Last": effect, "GenKD-Last": 0.0}, seeds, rng, sd))
        table = rv.verdicts(results, {"R-hurt": "hurt"}, remedies=("LossLift-Last", "GenKD-Last"))
        out.append(table.set_index("remedy").loc["LossLift-Last", "reading"])
    return np.array(out)


def test_a_remedy_3_pt_ahead_beats_softkd_and_one_3_pt_behind_does_not_count():
    ahead = _remedy_readings(-3.0, 80)
    assert (ahead == rv.BEATS).mean() > 0.9
    behind = _remedy_readings(+3.0, 80)
    assert (behind == rv.BEHIND).mean() > 0.9 and not (behind == rv.BEATS).any()


def test_a_remedy_level_with_softkd_is_non_inferior_when_precise_and_never_beats_often():
    level = _remedy_readings(0.0, 150, seeds=10, sd=0.5)
    assert (level == rv.NONINFERIOR).mean() > 0.8
    # at most the one-sided 2.5 % error (Holm only lowers it): P(>= 9 of 150 | 2.5 %) < 0.3 %
    assert (level == rv.BEATS).mean() < 0.06


def test_holm_runs_over_the_remedies_of_a_setting():
    rng = np.random.default_rng(0)
    results = pd.DataFrame(_runs("hurt", {r: -1.0 for r in REMEDIES}, 5, rng, 1.0))
    table = rv.verdicts(results, {"R-hurt": "hurt"})
    assert len(table) == len(REMEDIES) and table["primary"].all()
    p = np.sort(table["p_opposite"].to_numpy())
    adjusted = np.sort(table["p_opposite_holm"].to_numpy())
    assert adjusted[0] == pytest.approx(min(1.0, len(REMEDIES) * p[0]))
    assert np.allclose(table["sesoi"], 0.2 * 5.28, rtol=0.01)   # a fifth of the release's MAE gap


# --------------------------------------------------------------------------- figures

def test_the_map_figures_say_which_interval_each_band_is():
    import matplotlib.pyplot as plt

    from ddkit.publish import map_plots
    ratios = [0.25, 0.5, 1.0, 2.0, 4.0, 0.7]
    results, settings, mism = _map(lambda r: 2.0 * math.log2(r), ratios, seeds=4, sd=0.3)
    settings["task"] = ["Fashion-MNIST"] * 3 + ["mosaic K=10"] * 3
    table = pm.points(results, settings, mism)
    fits = {"SpectralKD-Last": pm.boundary(table)}
    fig = map_plots.plot_effect_vs_mismatch(table, fits)
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert "95 % t interval over seed pairs" in legend.get_title().get_text()
    assert any(label.startswith("boundary") and "Fieller 95 %" in label for label in labels)
    assert any("pointwise 95 % band" in label for label in labels)
    assert {"Fashion-MNIST", "mosaic K=10"} <= set(labels)
    grid_fig = map_plots.plot_map_grid(table)
    texts = [t.get_text() for t in grid_fig.axes[0].texts]
    assert len(texts) == len(table) and all("ratio" in t for t in texts)
    rng = np.random.default_rng(1)
    remedies = rv.verdicts(pd.DataFrame(_runs("s", {"LossLift-Last": -2.0}, 5, rng)), {"R-s": "s"},
                           remedies=("LossLift-Last",))
    forest = map_plots.plot_remedies(remedies)
    assert "95 % t interval" in forest.axes[0].get_legend().get_title().get_text()
    plt.close("all")


def test_phases_read_when_late_alignment_falls_behind():
    """A point whose aligned students lead until half the schedule and trail after it crosses
    at about one half; a point that trails from the first epoch crosses at 0."""
    import matplotlib.pyplot as plt

    from ddkit.publish import map_plots
    rng = np.random.default_rng(4)
    rows = []
    for setting, start in (("s0", -2.0), ("s1", 1.0)):
        for seed in range(4):
            for epoch in range(12):
                soft = 60 + epoch + rng.normal(0, 0.05)
                gap = start + (1.0 - start) * epoch / 11 if setting == "s1" else -2 + 4 * epoch / 11
                rows += [{"setting": setting, "cell": "SoftKD", "seed": seed, "epoch": epoch,
                          "test_acc1": soft},
                         {"setting": setting, "cell": "SpectralKD-Last", "seed": seed,
                          "epoch": epoch, "test_acc1": soft - gap}]
    curves = pd.DataFrame(rows)
    table = pd.DataFrame([{"setting": s, "task": "t", "width": w, "ratio": r, "reading": pm.HURTS,
                           "cell": "SpectralKD-Last"} for s, w, r in (("s0", 16, 1.5), ("s1", 24, 0.8))])
    out = pm.phases(curves, table).set_index("setting")
    assert 0.4 <= out.loc["s0", "fraction"] <= 0.6 and out.loc["s1", "fraction"] == 0.0
    assert out.loc["s0", "early_gap"] < 0 < out.loc["s0", "late_gap"]
    assert out.loc["s0", "interval"] == "percentile bootstrap over seed pairs"
    gaps = pd.concat([control_verdicts.gap_curve(curves, s) for s in ("s0", "s1")], ignore_index=True)
    fig = map_plots.plot_gap_by_phase(gaps, table)
    assert len(fig.axes[0].get_lines()) == 3          # two points and the zero line
    plt.close("all")


def test_the_findings_name_hurting_points_where_no_remedy_ran():
    table = pm.points(*_map(lambda r: 5.0 if r > 1 else -5.0, [0.5, 2.0], sd=0.2))
    hurting = pm.hurting_settings(table)
    assert len(hurting) == 1
    lines = pm.remedy_findings(table, None)
    assert any(line.startswith("remedies: not yet run") and hurting[0] in line for line in lines)
    tried = pd.DataFrame([{"setting": hurting[0], "claim": f"R-{hurting[0]}", "remedy": "LossLift-Last",
                           "estimate": 0.1, "lo95": -1.0, "hi95": 1.2, "reading": "removes the penalty",
                           "n": 5, "counts": True}])
    lines = pm.remedy_findings(table, tried)
    assert not any(line.startswith("remedies: not yet run") for line in lines)
    assert any("Count: LossLift-Last" in line for line in lines)


def test_no_hurting_point_means_no_remedy_runs_on_the_map():
    below_only = pm.points(*_map(lambda r: -5.0, [0.5, 0.7], sd=0.2))
    assert any("no map point is negative transfer" in line
               for line in pm.remedy_findings(below_only, None))


def test_points_carry_the_targets_dimension_and_pair_with_another_settings_softkd():
    results, settings, mism = _map(lambda r: 2.0, [0.5, 2.0], seeds=3, sd=0.3)
    table = pm.points(results, settings, mism)
    assert list(table["target_dim"]) == list(mism["target_dim_spectralkd"])
    assert list(table["ratio_centred"]) == list(mism["ratio_centred"])
    # a rank setting without SoftKD runs of its own is paired with s0's SoftKD
    ranked = results[(results["setting"] == "s1") & (results["cell"] != "SoftKD")]
    results = pd.concat([results[results["setting"] != "s1"], ranked])
    alone = pm.points(results, settings, mism)
    assert list(alone["setting"]) == ["s0"]
    paired = pm.points(results, settings, mism, soft_of={"s1": "s0"})
    assert list(paired["setting"]) == ["s0", "s1"]


def test_soft_settings_pair_each_rank_setting_with_its_widths_softkd():
    from ddkit.core.config import load_profile
    pairs = pm.soft_settings(load_profile("map_k"))
    assert len(pairs) == 20
    assert pairs["mosaic K=100, width 16, rank 64"] == "mosaic K=100, width 16"
    assert set(pairs.values()) == {f"mosaic K={k}, width {w}" for k in (10, 100) for w in (8, 16)}
