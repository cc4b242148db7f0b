"""Tests for ddkit.publish.plots: every figure holds the data it was given; save_figure writes atomically."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ddkit.publish import plots
from ddkit.verdicts import reference


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def layer_table(models=("a", "b"), seeds=1, checkpoints=("final",), n_layers=4, metric="token_entropy"):
    rows = [dict(model=m, checkpoint=c, epoch=float(10 * (i + 1)), layer=layer, metric=metric,
                 value=layer + 10 * j + 0.1 * s + i, seed=s)
            for j, m in enumerate(models) for i, c in enumerate(checkpoints)
            for s in range(seeds) for layer in range(n_layers)]
    return pd.DataFrame(rows)


def history_table(runs=("SoftKD", "mine"), epochs=5):
    return pd.DataFrame([dict(run=r, epoch=e, test_acc1=10.0 * e + i, test_loss=1.0 / (e + 1))
                         for i, r in enumerate(runs) for e in range(epochs)])


def labels(ax, axis="x"):
    return [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]


def test_curves_hold_the_data():
    h = history_table()
    fig = plots.plot_curves(h)
    assert isinstance(fig, Figure)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["SoftKD", "mine"]
    np.testing.assert_allclose(lines[1].get_ydata(), h.loc[h["run"] == "mine", "test_acc1"])
    np.testing.assert_allclose(lines[0].get_xdata(), range(5))
    assert lines[0].get_color().lower() == plots.PALETTE["SoftKD"].lower()


def test_curves_zoom_log_and_seeds():
    h = pd.concat([history_table(epochs=10).assign(seed=s, test_acc1=lambda d, s=s: d["test_acc1"] + s)
                   for s in range(3)])
    fig = plots.plot_curves(h, y="test_loss", epochs=(2, 4), logy=True, title="t")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_title() == "t"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [2, 3, 4])
    fig = plots.plot_curves(h)  # 3 seeds: the mean line and a CI band
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), 10.0 * np.arange(10) + 1)
    assert len(fig.axes[0].collections) == 2


def test_official_curves():
    logs = reference.official_logs()
    fig = plots.plot_curves(logs[logs["run"].isin(["SoftKD", "SpectralKD-Last"])], epochs=(0, 30))
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["SoftKD", "SpectralKD-Last"]
    assert len(lines[0].get_xdata()) == 31
    assert lines[0].get_ydata()[9] == pytest.approx(32.706, abs=1e-3)


def test_layer_profile():
    t = layer_table(models=("a", "b", "c"))
    fig = plots.plot_layer_profile(t, "token_entropy", title="p")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3
    assert labels(ax) == ["L1", "L2", "L3", "L4"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), t.loc[t["model"] == "b", "value"])


def test_layer_profile_seeds_and_checkpoints():
    t = layer_table(seeds=3, checkpoints=("c1", "c2"))
    with pytest.raises(ValueError, match="checkpoint"):
        plots.plot_layer_profile(t, "token_entropy")
    with pytest.raises(ValueError, match="metric"):
        plots.plot_layer_profile(t, "nope", checkpoint="c1")
    fig = plots.plot_layer_profile(t, "token_entropy", checkpoint="c2")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2  # mean lines only
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.arange(4) + 1 + 0.1)  # mean over seeds
    assert len(ax.collections) == 2  # one set of CI bars per model
    fig = plots.plot_layer_profile(t, "token_entropy", checkpoint=10.0)  # by epoch
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), np.arange(4) + 0.1)


def test_official_entropy_profiles():
    e = reference.official_entropy()
    fig = plots.plot_layer_profile(e, "token_entropy", checkpoint="model_best")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4 and labels(ax)[-1] == "L12"
    fig = plots.plot_profile_over_checkpoints(e, "token_entropy", "SoftKD")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == [f"checkpoint_epoch_{n}" for n in range(30, 301, 30)]
    soft = e[(e["model"] == "SoftKD") & (e["checkpoint"] == "checkpoint_epoch_30")]
    np.testing.assert_allclose(lines[0].get_ydata(), soft["value"])
    assert len(fig.axes) == 2  # the epoch colorbar
    assert lines[0].get_color() != lines[-1].get_color()


def test_profile_over_checkpoints_synthetic():
    t = layer_table(checkpoints=("e1", "e2", "e3"))
    fig = plots.plot_profile_over_checkpoints(t, "token_entropy", "b", checkpoints=["e1", "e3"])
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["e1", "e3"]
    np.testing.assert_allclose(lines[1].get_ydata(), np.arange(4) + 12)
    with pytest.raises(ValueError):
        plots.plot_profile_over_checkpoints(t, "token_entropy", "zz")


def test_spectra():
    spec = np.random.default_rng(0).random((5, 16))  # [L, C]
    fig = plots.plot_spectra(spec)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 5
    np.testing.assert_allclose(lines[2].get_xdata(), np.fft.fftfreq(16)[:8])
    np.testing.assert_allclose(lines[2].get_ydata(), spec[2, :8])
    assert "channel" in ax.get_xlabel() and "cycles / channel" in ax.get_xlabel()
    fig = plots.plot_spectra(spec, layers=[0, 4])
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError):
        plots.plot_spectra(spec, freqs=np.arange(3))


def test_spectra_accepts_tensors():
    torch = pytest.importorskip("torch")
    fig = plots.plot_spectra(torch.ones(3, 8))
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), np.ones(4))


def test_log_amplitude():
    amp = -np.random.default_rng(1).random((4, 7)).cumsum(1)  # [L, K]
    fig = plots.plot_log_amplitude(amp)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4
    np.testing.assert_allclose(lines[3].get_ydata(), amp[3])
    assert lines[0].get_xdata()[0] == 0 and lines[0].get_xdata()[-1] == pytest.approx(np.pi)
    assert "spatial frequency" in ax.get_xlabel()


def test_matrix():
    m = np.random.default_rng(2).random((3, 6))  # [L_a, L_b]
    fig = plots.plot_matrix(m, "student layer", "teacher layer", title="CKA")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), m)
    assert ax.images[0].get_clim() == (0, 1)
    assert labels(ax, "y") == ["L1", "L2", "L3"] and labels(ax, "x")[-1] == "L6"
    assert ax.get_ylabel() == "student layer" and ax.get_xlabel() == "teacher layer"


def test_bars():
    t = pd.DataFrame({"method": ["SoftKD", "SoftKD", "SpectralKD", "SpectralKD"],
                      "layers": ["first", "last", "first", "last"],
                      "acc": [76.9, 77.0, 77.0, 76.8], "ci": [0.1, 0.2, 0.1, 0.3]})
    fig = plots.plot_bars(t, x="layers", y="acc", hue="method", err="ci", ref=76.99)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, t["acc"])
    errs = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(errs) == 2  # one set of error bars per hue
    spans = [seg[1, 1] - seg[0, 1] for c in errs for seg in c.lines[2][0].get_segments()]
    np.testing.assert_allclose(spans, 2 * t["ci"])
    np.testing.assert_allclose(ax.get_lines()[-1].get_ydata(), [76.99, 76.99])  # the reference line
    fig = plots.plot_bars(t[t["method"] == "SoftKD"], x="layers", y="acc", ylim=(76, 78))
    assert fig.axes[0].get_ylim() == (76, 78)
    with pytest.raises(ValueError):
        plots.plot_bars(t, x="layers", y="acc")  # two rows per bar


def test_existing_axes_and_palette():
    fig, (a, b) = plt.subplots(1, 2)
    assert plots.plot_curves(history_table(), ax=b) is fig
    assert len(a.get_lines()) == 0 and len(b.get_lines()) == 2
    colors = plots.palette(["SoftKD", "SoftKD-500ep", "x", "y"])
    assert colors["SoftKD"] == plots.PALETTE["SoftKD"] and len(set(colors.values())) == 4


def test_save_figure(tmp_path):
    fig = plots.plot_curves(history_table())
    paths = plots.save_figure(fig, "curves", tmp_path / "new" / "dir", pdf=True)
    assert [p.name for p in paths] == ["curves.png", "curves.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["curves.pdf", "curves.png"]  # no temp files
    assert plots.save_figure(fig, "again", tmp_path) == [tmp_path / "again.png"]
    for bad in ("", "a/b", "..", "a\\b"):
        with pytest.raises(ValueError):
            plots.save_figure(fig, bad, tmp_path)


def effects_table():
    """Two claims in the claims-table shape: C3 in points, C4 as a ratio (log scale)."""
    base = dict(kind="directional", n=10, note="", also_opposite="")
    rows = [dict(claim="C3", variant="main", primary=True, estimate=0.1, lo95=-0.1, hi95=0.3,
                 lo90=-0.05, hi90=0.25, sesoi=0.2, paper=0.16, unit="pt", scale="linear",
                 verdict="inconclusive", headline="inconclusive", **base),
            dict(claim="C3", variant="other", primary=False, estimate=-0.4, lo95=-0.6, hi95=-0.2,
                 lo90=-0.55, hi90=-0.25, sesoi=0.2, paper=np.nan, unit="pt", scale="linear",
                 verdict="opposite", headline="inconclusive", **base),
            dict(claim="C4", variant="ratio", primary=True, estimate=6.1 ** 0.5, lo95=2.0, hi95=4.0,
                 lo90=2.2, hi90=3.5, sesoi=6.1, paper=37.2, unit="x", scale="log",
                 verdict="smaller than the paper's", headline="smaller than the paper's", **base)]
    return pd.DataFrame(rows)


def test_effects_on_the_sesoi_scale():
    t = effects_table()
    pct = plots.effect_percent(t, "estimate")
    assert pct.tolist() == pytest.approx([50.0, -200.0, 50.0])   # 0.1/0.2; sqrt(6.1) is half of 6.1 on the log scale
    fig = plots.plot_effects(t)
    c3, c4 = fig.axes
    assert c3.get_title(loc="left") == "C3: inconclusive"
    assert c4.get_title(loc="left") == "C4: smaller than the paper's"
    assert labels(c3, "y") == ["★ main (inconclusive)", "other (opposite)"]
    assert c3.get_yticks().tolist() == [1, 0]                # the first row on top
    dots, paper = c3.collections[-2], c3.collections[-1]      # kit estimates, paper marks
    assert sorted(dots.get_offsets()[:, 0].tolist()) == pytest.approx([-200.0, 50.0])
    marks = paper.get_offsets()[:, 0]
    assert np.isfinite(marks).sum() == 1 and np.nanmax(marks) == pytest.approx(80.0)  # only like-for-like
    assert c4.collections[-1].get_offsets()[0, 0] == pytest.approx(100 * np.log(37.2) / np.log(6.1))
    assert "SESOI" in c4.get_xlabel()



def test_a_redrawn_figure_is_the_same_file(tmp_path):
    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [2, 0, 1])
        return fig
    first = plots.save_figure(draw(), "f", tmp_path / "a", pdf=True)
    second = plots.save_figure(draw(), "f", tmp_path / "b", pdf=True)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert b"/CreationDate" not in first[1].read_bytes()   # a date would differ between runs
