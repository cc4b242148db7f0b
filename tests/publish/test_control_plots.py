"""ddkit.publish.control_plots: each figure draws what its table holds."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from ddkit.publish import control_plots
from ddkit.verdicts.stats import mean_ci


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _results():
    return pd.DataFrame({"setting": ["A"] * 4 + ["B"] * 2,
                         "cell": ["SoftKD", "SoftKD", "SpectralKD-Last", "SpectralKD-Last",
                                  "SoftKD", "SoftKD"],
                         "final_acc1": [70.0, 72.0, 65.0, 66.0, 80.0, 81.0]})


def test_accuracy_by_setting_draws_every_run_and_each_cells_interval():
    fig = control_plots.plot_accuracy_by_setting(_results(), order=["B", "A", "C"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["B", "A"]    # C has no runs
    dots = sorted(float(y) for c in ax.collections if isinstance(c, PathCollection)
                  for y in np.asarray(c.get_offsets())[:, 1])
    assert dots == sorted(_results()["final_acc1"])
    ci = mean_ci(np.array([70.0, 72.0]))
    bars = [line for line in ax.lines if line.get_marker() == "o"]
    assert any(np.isclose(line.get_ydata()[0], 71.0) for line in bars)
    caps = {round(float(y), 6) for line in ax.lines for y in line.get_ydata()}
    assert round(ci.lo, 6) in caps and round(ci.hi, 6) in caps


def test_a_single_run_has_no_interval():
    assert control_plots._mean_ci_rows(pd.Series([3.0])) == (3.0, 3.0, 3.0)
    mean, lo, hi = control_plots._mean_ci_rows(pd.Series([1.0, 3.0]))
    assert mean == 2.0 and lo < 2.0 < hi


def test_gap_curves_draw_one_line_per_setting_and_the_official_dashed():
    curves = pd.DataFrame({"setting": ["A"] * 3, "cell": ["SpectralKD-Last"] * 3,
                           "fraction": [0.1, 0.5, 1.0], "gap": [0.5, 1.0, 2.0],
                           "lo95": [0.0, 0.5, 1.5], "hi95": [1.0, 1.5, 2.5]})
    official = pd.DataFrame({"run": ["SpectralKD-Last"] * 2, "fraction": [0.5, 1.0],
                             "gap": [0.2, 0.4]})
    ax = control_plots.plot_gap_curves(curves, official).axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "A: SpectralKD-Last" in labels and "official SpectralKD-Last (1 seed)" in labels
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [0.2, 0.4]


def test_dose_is_on_a_log_axis():
    dose = pd.DataFrame({"feature_weight": [0.05, 0.2, 0.8], "estimate": [0.1, 0.4, 1.2],
                         "lo95": [0.0, 0.2, 0.9], "hi95": [0.2, 0.6, 1.5]})
    ax = control_plots.plot_dose(dose).axes[0]
    assert ax.get_xscale() == "log"
    line = next(line for line in ax.lines if len(line.get_xdata()) == 3)
    assert list(line.get_xdata()) == [0.05, 0.2, 0.8] and list(line.get_ydata()) == [0.1, 0.4, 1.2]


def test_effect_vs_mismatch_labels_its_settings_in_their_profiles_colours():
    table = pd.DataFrame({"profile": ["default", "controls"], "setting": ["pair", "MAE"],
                          "ratio": [0.5, 2.0], "estimate": [-0.3, 1.0], "lo95": [-0.8, 0.4],
                          "hi95": [0.2, 1.6]})
    fig = control_plots.plot_effect_vs_mismatch(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["default", "controls"]
    shown = " ".join(t.get_text() for t in fig.findobj(plt.Text))
    assert "pair" in shown and "MAE" in shown
