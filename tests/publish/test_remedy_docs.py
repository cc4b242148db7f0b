"""The remedies' further comparisons (against plain SpectralKD-Last and against each remedy's
control), the MAE penalty's mechanism claims, the per-term loss tables, and the generated text
that says which planned runs are not trained yet (ddkit.studies.remedy_verdicts,
ddkit.studies.control_verdicts, ddkit.publish.remedy_docs, ddkit.publish.remedy_plots)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ddkit.core.config import load_profile
from ddkit.publish import remedy_docs, remedy_plots
from ddkit.studies import control_verdicts as cv
from ddkit.studies import grid, mechanism
from ddkit.studies import remedy_verdicts as rv


def _runs(setting: str, effects: dict[str, float], seeds: int, rng, sd: float = 0.4) -> list[dict]:
    """Rows of runs.csv: SoftKD and one cell per ``effects`` entry (SoftKD - cell = effect)."""
    soft = 70 + rng.normal(0, 1.0, seeds)
    rows = [{"setting": setting, "cell": "SoftKD", "seed": s, "final_acc1": v,
             "feature_weight": 0.2} for s, v in enumerate(soft)]
    for cell, effect in effects.items():
        rows += [{"setting": setting, "cell": cell, "seed": s, "feature_weight": 0.2,
                  "final_acc1": v - effect + rng.normal(0, sd)} for s, v in enumerate(soft)]
    return rows


# --------------------------------------------------------------------------- remedy comparisons

def test_a_remedy_is_judged_against_softkd_plain_alignment_and_its_control():
    rng = np.random.default_rng(0)
    results = pd.DataFrame(_runs("hurt", {"SpectralKD-Last": 6.0, "GenKD-Last": -2.0,
                                          "GenKD-Shuffled-Last": -2.0, "WideLast-Last": -2.0,
                                          "UniformWide": 4.0, "Lift-Last": 9.0}, 8, rng))
    table = rv.verdicts(results, {"R-hurt": "hurt"}).set_index("remedy")
    assert table.loc["GenKD-Last", "reading"] == rv.BEATS
    assert table.loc["GenKD-Last", "plain_reading"] == "beats SpectralKD-Last"
    # the shuffled generator keeps GenKD's gain: not feature knowledge
    assert table.loc["GenKD-Last", "control"] == "GenKD-Shuffled-Last"
    assert table.loc["GenKD-Last", "control_reading"].startswith(
        "GenKD-Shuffled-Last does as well within δ: the gain is not knowledge")
    # WideLast's gain is lost in UniformWide: the width alone does not explain it
    assert table.loc["WideLast-Last", "control_estimate"] == pytest.approx(6.0, abs=1.0)
    assert table.loc["WideLast-Last", "control_reading"].startswith("UniformWide loses the gain")
    assert table.loc["Lift-Last", "reading"] == rv.BEHIND
    assert table.loc["Lift-Last", "plain_reading"] == "behind SpectralKD-Last"
    # each comparison is its own Holm family over the setting's remedies
    assert set(table["claim"]) == {"R-hurt"} and table["primary"].all()
    controls = rv.controls(results, {"R-hurt": "hurt"}).set_index("remedy")
    assert set(controls.index) == {"UniformWide", "GenKD-Shuffled-Last"}
    assert not controls["counts"].any()


def test_a_control_that_loses_the_gain_is_called_so_in_most_planted_studies():
    rng = np.random.default_rng(1)
    calls = []
    for _ in range(40):
        results = pd.DataFrame(_runs("s", {"GenKD-Last": -3.0, "GenKD-Shuffled-Last": 3.0,
                                           "SpectralKD-Last": 3.0}, 5, rng, sd=1.0))
        row = rv.verdicts(results, {"R-s": "s"}).set_index("remedy").loc["GenKD-Last"]
        calls.append(row["control_reading"].startswith("GenKD-Shuffled-Last loses the gain"))
    assert np.mean(calls) > 0.9


def test_the_ablation_is_labelled_and_a_missing_comparison_is_blank_not_invented():
    rng = np.random.default_rng(2)
    results = pd.DataFrame(_runs("s", {"LossLift-Last": 3.0}, 5, rng))
    row = rv.verdicts(results, {"R-s": "s"}).iloc[0]
    assert row["ablation"].startswith("ablation")
    assert math.isnan(row["plain_estimate"]) and row["plain_reading"] == ""
    assert row["control"] == "" and row["control_reading"] == ""


# --------------------------------------------------------------------------- the mechanism

def _mechanism(alpha0_penalty: float, seeds: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = (_runs(cv.BASE, {"SpectralKD-Last": 5.0}, seeds, rng)
            + _runs(cv.ALPHA0, {"SpectralKD-Last": alpha0_penalty}, seeds, rng)
            + [r for r in _runs(cv.NORMED, {"SpectralKD-Last": 0.0}, seeds, rng)
               if r["cell"] != "SoftKD"]
            + _runs(cv.PROBED, {"SpectralKD-Last": 0.0}, seeds, rng)
            + [r for r in _runs(cv.PROBED_W2, {"SpectralKD-Last": 6.0}, seeds, rng)
               if r["cell"] != "SoftKD"])
    return pd.DataFrame(rows)


def test_the_mechanism_claim_says_whether_the_penalty_needs_the_flat_soft_target():
    needs = cv.verdicts(_mechanism(0.0)).set_index(["claim", "primary"])
    row = needs.loc[("C3-MAE-mechanism", True)]
    assert row["verdict"] == "absent" and "it needs the flat soft target" in row["reading"]
    persists = cv.verdicts(_mechanism(5.0, seed=1)).set_index(["claim", "primary"])
    assert "it does not need the flat soft target" in persists.loc[("C3-MAE-mechanism", True),
                                                                   "reading"]
    secondary = needs.loc[("C3-MAE-mechanism", False)]
    variants = list(secondary["variant"])
    assert any(f"SoftKD of {cv.BASE}" in v for v in variants)     # the normalised loss's SoftKD
    share = secondary[secondary["variant"].str.startswith("penalty at α 0.9")].iloc[0]
    assert share["estimate"] == pytest.approx(5.0, abs=1.0)       # what the soft target adds


def test_the_probed_dose_pairs_with_the_probed_softkd_and_reads_a_penalty():
    table = cv.verdicts(_mechanism(0.0)).set_index(["claim", "primary"])
    row = table.loc[("C3-MAE-dose-probed", True)]
    assert cv.PROBED_W2 in row["variant"] and "SoftKD of " + cv.PROBED in row["variant"]
    assert "the feature weight alone makes a penalty" in row["reading"]
    dose = cv.dose(_mechanism(0.0), cv.PROBED, cv.PROBED_DOSE)
    assert list(dose["setting"]) == [cv.PROBED, cv.PROBED_W2]
    # the untrained head's dose table never picks the probed settings up
    assert list(cv.dose(_mechanism(0.0))["setting"]) == [cv.BASE]


def test_curves_publish_every_loss_term_and_old_rows_keep_nan_there():
    records = [{"epoch": e, "test_acc1": 50.0 + e, "test_loss": 1.0, "train_loss": 2.0,
                "train_loss_base": 0.1, "train_loss_dist": 0.5, "train_loss_fft": 0.2 / (e + 1),
                "train_loss_feat/3-7": 1.0 / (e + 1)} for e in range(3)]
    run = SimpleNamespace(records=records, dir=SimpleNamespace(path=Path("new-run")))
    new = grid.curves({(cv.BASE, "SpectralKD-Last", 0): run})
    assert list(new.columns) == [*grid.CURVE_COLUMNS, "train_loss_feat/3-7"]
    old = pd.DataFrame({"setting": [cv.BASE], "cell": ["SoftKD"], "seed": [0], "epoch": [0],
                        "epochs": [3], "test_acc1": [49.0], "run": ["old-run"]})
    merged = grid.merged(new, old)
    assert len(merged) == 4 and list(merged.columns) == list(new.columns)
    assert merged.set_index("run").loc["old-run", "train_loss_base"] != \
        merged.set_index("run").loc["old-run", "train_loss_base"]          # NaN
    terms = mechanism.loss_terms(merged)
    fft = terms[(terms["term"] == "train_loss_fft")]
    assert list(fft["mean"]) == pytest.approx([0.2, 0.1, 0.2 / 3])
    assert set(terms["term"]) == {*mechanism.TERMS, "train_loss_feat/3-7"}   # SoftKD's NaN rows left out
    lines = mechanism.mechanism_findings(pd.DataFrame(columns=["claim", "primary"]), terms)
    assert any(line.startswith(f"loss terms, {cv.BASE}, SpectralKD-Last: largest at the first "
                               "epoch α·KD") for line in lines)


def test_the_releases_mae_loss_terms_are_its_logged_keys():
    official = mechanism.official_loss_terms()
    assert set(official["run"]) == {"SoftKD-MAE", "SpectralKD-Last-MAE"}
    assert set(official["term"]) == set(mechanism.TERMS)
    first = official[(official["run"] == "SpectralKD-Last-MAE") & (official["epoch"] == 0)]
    assert first.set_index("term").loc["train_loss_fft", "value"] == pytest.approx(1.18, abs=0.01)


# --------------------------------------------------------------------------- what is not trained

def test_planned_runs_without_tables_are_named_with_their_command_not_invented():
    controls = load_profile("controls")
    runs = pd.read_csv(Path(grid.__file__).parents[2] / "figures" / "controls" / "runs.csv")
    missing = remedy_docs.pending(controls, runs, settings={cv.ALPHA0})
    assert set(missing["cell"]) == {"SoftKD", "SpectralKD-Last"} or missing.empty
    if len(missing):
        assert missing["command"].iloc[0] == 'ddkit controls --only "MAE teacher, alpha 0"'
    none = remedy_docs.pending(controls, None, settings={cv.ALPHA0})
    assert list(none["published"]) == [0, 0] and list(none["planned"]) == [5, 5]
    empty_table = rv.verdicts(pd.DataFrame(columns=["setting", "cell", "seed", "final_acc1"]), {})
    rows = remedy_docs.pending_rows(controls, cv.verdicts(runs[runs["setting"] == cv.BASE]),
                                    empty_table, remedy_docs.missing_runs(
                                        controls, runs[runs["setting"] == cv.BASE],
                                        load_profile("phase_map"), None))
    assert any(r.startswith("| C3-MAE-mechanism |") and "not trained yet" in r
               and 'ddkit controls --only "MAE teacher, alpha 0"' in r for r in rows)
    assert any(r.startswith("| R-default pair |") and "not trained yet" in r for r in rows)


def test_the_forest_and_the_loss_terms_draw_with_and_without_runs():
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(3)
    results = pd.DataFrame(_runs(cv.BASE, {"SpectralKD-Last": 5.0, "GenKD-Last": 2.0,
                                           "GenKD-Shuffled-Last": 2.0}, 5, rng))
    data = remedy_docs.tables(results)
    missing = pd.DataFrame([{"profile": "controls", "setting": cv.BASE, "cell": "Lift-Last",
                             "planned": 5, "published": 0, "command": "x"}])
    fig = remedy_plots.plot_remedy_forest(data, missing)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["not trained yet"]
    assert "95 % t interval over seed pairs" in fig.axes[-1].get_legend().get_title().get_text()
    empty = remedy_docs.tables(None)
    assert remedy_plots.plot_remedy_forest(empty).axes[0].texts[0].get_text().startswith("no remedy")
    fig = remedy_plots.plot_loss_terms(mechanism.loss_terms(pd.DataFrame(columns=grid.CURVE_COLUMNS)),
                                       mechanism.official_loss_terms())
    assert "not published yet" in fig.axes[0].texts[0].get_text()
    plt.close("all")


def test_the_figures_from_the_committed_tables_have_no_overlapping_text():
    import matplotlib.pyplot as plt

    from ddkit.publish import labels
    from ddkit.studies import map_study
    figures = Path(grid.__file__).parents[2] / "figures"
    C, M = grid.load(figures / "controls", "x"), grid.load(figures / "phase_map", "x")
    study = map_study.load(figures / "phase_map", "phase_map")
    data = remedy_docs.tables(C[grid.RESULTS_CSV], M[grid.RESULTS_CSV],
                              study.points if study is not None else None)
    missing = remedy_docs.missing_runs(load_profile("controls"), C[grid.RESULTS_CSV],
                                       load_profile("phase_map"), M[grid.RESULTS_CSV])
    for fig in (remedy_plots.plot_remedy_forest(data, missing),
                remedy_plots.plot_loss_terms(mechanism.loss_terms(C[grid.CURVES_CSV]),
                                             mechanism.official_loss_terms())):
        assert labels.overlapping_texts(fig) == []
    plt.close("all")
