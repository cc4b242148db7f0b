"""Figure text a reader can read: every figure of notebooks 08 and 09, drawn at smoke size from
small synthetic tables (points crowded as in the committed ones), shows no two text boxes that
overlap; point labels name their setting, legends list widths in numeric order, and no label is
a bare "base". The figures drawn from the committed tables are checked the same way."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ddkit.publish import control_plots, map_plots  # noqa: E402
from ddkit.publish.labels import drawn_texts, overlapping_texts, place_labels  # noqa: E402
from ddkit.studies import control_verdicts as cv  # noqa: E402
from ddkit.studies import map_rule  # noqa: E402
from ddkit.studies import phase_map as pm  # noqa: E402
from ddkit.verdicts import reference  # noqa: E402

WIDTHS = (96, 8, 48, 16, 32, 24)          # out of order on purpose
TASKS = ("Fashion-MNIST", "mosaic K=10", "mosaic K=100")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _strings(fig) -> list[str]:
    return [t.get_text() for t in drawn_texts(fig)]


def _no_overlap_and_no_bare_base(fig) -> None:
    assert overlapping_texts(fig) == []
    assert not [s for s in _strings(fig) if s.strip().lower() == "base"]


# --------------------------------------------------------------------------- synthetic tables


def _effects() -> pd.DataFrame:
    """``control_verdicts.effect_vs_mismatch`` rows, crowded like the committed ones: the
    controls' settings on one vertical line, two of them at the same point, neighbours a few
    hundredths of a ratio apart."""
    rows = [("default", "default pair", 0.60, -0.5), ("default", "wider gap (student 32-dim)", 0.90, -1.0),
            ("paper_shaped", "paper-shaped pair", 0.83, -0.3),
            ("paper_shaped", "ViT-8 teacher", 0.90, -0.6),
            ("paper_shaped", "4-block student", 0.83, 0.0),
            ("controls", cv.BASE, 0.865, 5.2), ("controls", cv.PROBED, 0.865, -0.3),
            ("controls", cv.LONG, 0.60, -0.4), ("controls", "feature weight 0.02", 0.865, 1.50),
            ("controls", "feature weight 0.05", 0.865, 1.55),
            ("controls", "feature weight 0.8", 0.865, 11.1),
            ("controls", "feature weight 2.0", 0.865, 16.1),
            ("controls", "feature weight 0.2", 0.865, 1.55)]     # the same spot as 0.05
    return pd.DataFrame([{"profile": p, "setting": s, "ratio": r, "estimate": e, "lo95": e - 3,
                          "hi95": e + 4, "n": 5} for p, s, r, e in rows])


def _points() -> pd.DataFrame:
    """Map points (``phase_map.points`` columns the figures read): 3 tasks x 6 widths x 2 cells,
    ratios of neighbouring tasks a few percent apart."""
    rng = np.random.default_rng(0)
    rows = []
    for t, task in enumerate(TASKS):
        for width in WIDTHS:
            ratio = 28.0 / width * (1 + 0.03 * t)
            for cell in pm.MAP_CELLS:
                estimate = 1.5 * np.log2(ratio) + rng.normal(0, 0.5)
                rows.append({"setting": f"{task}, width {width}", "task": task, "width": width,
                             "cell": cell, "ratio": ratio, "estimate": estimate,
                             "lo95": estimate - 2, "hi95": estimate + 2, "n": 5, "se": 0.7,
                             "teacher_dim": ratio * width, "target_rank": width // 2,
                             "side": "above 1" if ratio > 1 else "below 1"})
    return pd.DataFrame(rows)


def _ranks() -> pd.DataFrame:
    """The controlled-dimension design's points: widths 8 and 16 on two tasks, k = width/4 .. 4
    width, the ratio saturating (as the committed teachers' do) so that ranks crowd."""
    rows = []
    for task, dim in (("mosaic K=10", 14.0), ("mosaic K=100", 33.0)):
        for width in (8, 16):
            for k in (width // 4, width // 2, width, 2 * width, 4 * width):
                ratio = min(k, dim) / width
                for cell in pm.MAP_CELLS:
                    estimate = np.log2(ratio) + (0.3 if cell == pm.MAP_CELLS[1] else 0.0)
                    rows.append({"task": task, "width": width, "cell": cell, "ratio": ratio,
                                 "target_rank": k, "estimate": estimate, "lo95": estimate - 1.5,
                                 "hi95": estimate + 1.5})
    return pd.DataFrame(rows)


def _gap_curves(points: pd.DataFrame) -> pd.DataFrame:
    settings = points.drop_duplicates("setting")
    return pd.DataFrame([{"setting": r.setting, "cell": "SpectralKD-Last", "epoch": e,
                          "fraction": (e + 1) / 6, "gap": np.log2(r.ratio) * e / 5,
                          "lo95": -1.0, "hi95": 1.0, "n": 5}
                         for r in settings.itertuples() for e in range(6)])


def _results() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    cells = {cv.BASE: ("SoftKD", "SpectralKD-Last", "ProjectorKD-Last"),
             cv.PROBED: ("SoftKD", "SpectralKD-Last"), cv.LONG: ("SoftKD", "SpectralKD-First"),
             "feature weight 0.02": ("SpectralKD-Last",), "feature weight 2.0": ("SpectralKD-Last",)}
    return pd.DataFrame([{"setting": s, "cell": c, "seed": seed, "feature_weight": 0.2,
                          "final_acc1": 75 + rng.normal(0, 1)}
                         for s, cs in cells.items() for c in cs for seed in range(3)])


def _figures() -> dict:
    points = _points()
    fits = {cell: pm.boundary(points, cell) for cell in pm.MAP_CELLS}
    curves = pd.DataFrame([{"setting": s, "cell": "SpectralKD-Last", "epoch": e,
                            "fraction": (e + 1) / 6, "gap": g * e, "lo95": g * e - 1,
                            "hi95": g * e + 1, "n": 5}
                           for s, g in ((cv.BASE, 1.0), (cv.PROBED, -0.1)) for e in range(6)])
    dose = pd.DataFrame({"feature_weight": [0.02, 0.2, 2.0], "estimate": [1.0, 5.0, 16.0],
                         "lo95": [-2.0, 3.0, 11.0], "hi95": [5.0, 7.0, 21.0]})
    teachers = pd.DataFrame([{"task": task, "acc1": 90.0, "energy": energy, "layer": layer,
                              "dim_followup": (10 + 3 * layer) * (1 + t) * energy}
                             for t, task in enumerate(TASKS) for energy in (0.9, 0.95)
                             for layer in range(8)])
    remedies = pd.DataFrame([{"setting": s, "remedy": r, "estimate": e, "lo95": e - 2,
                              "hi95": e + 2, "reading": "still behind SoftKD", "sesoi": 1.06}
                             for s in (cv.BASE, "mosaic K=10, width 8")
                             for r, e in (("LossLift-Last", 10.0), ("GenKD-Last", -2.0))])
    plain = pd.DataFrame([{"setting": s, "estimate": 5.0, "lo95": 3.0, "hi95": 7.0, "n": 5}
                          for s in (cv.BASE, "mosaic K=10, width 8")])
    return {
        "08_accuracy_by_setting": lambda: control_plots.plot_accuracy_by_setting(_results()),
        "08_gap_curves": lambda: control_plots.plot_gap_curves(curves, cv.official_gap_curves()),
        "08_dose_response": lambda: control_plots.plot_dose(dose),
        "08_effect_vs_mismatch": lambda: control_plots.plot_effect_vs_mismatch(_effects()),
        "09_teacher_dims": lambda: map_plots.plot_teacher_dims(teachers, sorted(WIDTHS)),
        "09_effect_vs_mismatch": lambda: map_plots.plot_sign_test(
            points, map_rule.judge(points), reference.official_mismatch_points(),
            map_rule.sesoi().value),
        "09_slope": lambda: map_plots.plot_effect_vs_mismatch(points, fits),
        "09_map_k": lambda: map_plots.plot_map_k(_ranks()),
        "09_map": lambda: map_plots.plot_map_grid(points),
        "09_gap_by_phase": lambda: map_plots.plot_gap_by_phase(_gap_curves(points), points),
        "09_remedies": lambda: map_plots.plot_remedies(remedies, plain),
    }


@pytest.mark.parametrize("name", list(_figures()))
def test_no_two_texts_of_a_figure_overlap(name):
    _no_overlap_and_no_bare_base(_figures()[name]())


def test_every_point_of_the_effect_figures_is_named_once():
    """A label beside its point, or (where the points crowd) a number keyed under the axes."""
    table = _effects()
    shown = "\n".join(_strings(control_plots.plot_effect_vs_mismatch(table)))
    for setting in table["setting"]:
        assert shown.count(setting) == 1, setting
    points = _points()
    fig = map_plots.plot_effect_vs_mismatch(points, {})
    for ax, cell in zip(fig.axes, pm.MAP_CELLS):
        labels = sorted(t.get_text() for t in ax.texts)
        widths = sorted(str(w) for w in points.loc[points["cell"] == cell, "width"])
        assert labels == widths or any(t.startswith("widths:") for t in labels), (cell, labels)


def test_the_gap_legends_read_the_widths_in_numeric_order():
    points = _points()
    fig = map_plots.plot_gap_by_phase(_gap_curves(points), points)
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        widths = [int(label.split()[1]) for label in labels]
        assert widths == sorted(WIDTHS), labels


def test_the_untrained_head_curve_says_what_it_is():
    curves = pd.DataFrame([{"setting": cv.BASE, "cell": "SpectralKD-Last", "epoch": e,
                            "fraction": (e + 1) / 4, "gap": 1.0, "lo95": 0.0, "hi95": 2.0,
                            "n": 5} for e in range(4)])
    fig = control_plots.plot_gap_curves(curves)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["MAE teacher, head untrained: SpectralKD-Last"]


# --------------------------------------------------------------------------- the check itself


def test_the_check_finds_overlapping_text_and_skips_ticks_out_of_view():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_xscale("log")
    ax.set_xlim(0.03, 3)
    assert overlapping_texts(fig) == []           # log ticks beyond the view are not drawn
    ax.text(0.5, 0.5, "one label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another", transform=ax.transAxes)
    assert overlapping_texts(fig) == [("one label", "another")]


def test_labels_are_placed_inside_the_axes_the_same_way_every_time():
    def draw():
        fig, ax = plt.subplots(figsize=(3, 2))
        x, y = [1.0, 1.0, 1.01, 1.02, 2.0], [0.0, 0.0, 0.02, 0.01, 1.0]
        ax.plot(x, y, "o")
        ax.set_xlim(0.8, 2.2)
        texts = place_labels(ax, x, y, [f"setting number {i}" for i in range(5)])
        fig.canvas.draw()
        return fig, ax, [(t.get_text(), t.get_position()) for t in texts]
    fig, ax, first = draw()
    assert draw()[2] == first
    assert overlapping_texts(fig) == []
    frame = ax.get_window_extent()
    for text in ax.texts:
        if not text.get_text().startswith("labels:"):   # the key sits under the axes
            box = text.get_window_extent()
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 <= frame.y1


def test_labels_with_no_free_place_go_to_a_lettered_key_under_the_axes():
    fig, ax = plt.subplots(figsize=(2.0, 1.6))
    ax.plot([1.0], [1.0], "o")
    names = [f"a rather long setting name {i}" for i in range(12)]
    place_labels(ax, [1.0] * 12, [1.0] * 12, names, key_title="settings")
    keys = [t.get_text() for t in ax.texts if t.get_text().startswith("settings:")]
    assert len(keys) == 1
    keyed = keys[0].splitlines()[1:]
    assert keyed and all(line.split(": ", 1)[1] in names for line in keyed)
    shown = [t.get_text() for t in ax.texts]
    assert sorted([s for s in shown if s in names] + [k.split(": ", 1)[1] for k in keyed]) == sorted(names)
    assert overlapping_texts(fig) == []


# --------------------------------------------------------------------------- the committed tables


def test_the_figures_drawn_from_the_committed_tables_have_no_overlapping_text():
    """Notebook 08's effect-vs-mismatch and notebook 09's sign test (09_effect_vs_mismatch),
    slope (the labelled points) and gap-by-phase figures, from figures/controls/ and
    figures/phase_map/ as the notebooks draw them."""
    from ddkit.core.config import load_profile
    from ddkit.core.tables import SWEEP_CSV, read_table
    from ddkit.runs.store import FIGURES
    from ddkit.studies import grid, map_study

    controls = grid.load(FIGURES / "controls", "ddkit controls")[grid.RESULTS_CSV]
    mism = pd.read_csv(FIGURES / "controls" / "mismatch.csv")
    sweeps = {"default": read_table(FIGURES / SWEEP_CSV),
              "paper_shaped": read_table(FIGURES / "paper_shaped" / SWEEP_CSV)}
    effects = cv.effect_vs_mismatch(sweeps, cv.verdicts(controls), cv.dose(controls), mism)
    _no_overlap_and_no_bare_base(control_plots.plot_effect_vs_mismatch(effects))
    phase = map_study.run(load_profile("phase_map"), FIGURES / "phase_map", recompute=False)
    _no_overlap_and_no_bare_base(map_plots.plot_sign_test(
        phase.points, phase.rule, reference.official_mismatch_points(), map_rule.sesoi().value))
    fits = phase.fits or {cell: pm.boundary(phase.points, cell) for cell in phase.cells}
    _no_overlap_and_no_bare_base(map_plots.plot_effect_vs_mismatch(phase.points, fits))
    curves = grid.load(FIGURES / "phase_map", "ddkit phase-map")[grid.CURVES_CSV]
    gaps = pd.concat([cv.gap_curve(curves, s) for s in phase.points["setting"].unique()],
                     ignore_index=True)
    _no_overlap_and_no_bare_base(map_plots.plot_gap_by_phase(gaps, phase.points))
