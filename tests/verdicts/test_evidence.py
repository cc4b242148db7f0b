"""evidence: the study's tables in, one judged row per (claim, variant) out; the paper's like-for-like
numbers and the SESOI from the shipped reference tables; the fast image bootstrap equals
recomputing the metrics on each resample."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ddkit.core.models import create_model
from ddkit.signals import image_bootstrap, metrics
from ddkit.signals.dynamics import layer_metrics
from ddkit.verdicts import evidence, sesoi
from ddkit.verdicts.claims import OPPOSITE, REPRODUCED, SMALLER, TABLE_COLUMNS

SEEDS10, SEEDS3 = list(range(10)), [0, 1, 2]
U = np.array([2.0, 1.5, 1.4, 2.6])          # a U over 4 layers
RISING = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
JITTER = np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.02, -0.015, 0.005, -0.005, 0.0])  # per seed
MODELS = pd.DataFrame({"depth": [8, 4], "width": [96, 48]}, index=["teacher", "student"])


def _layer_rows(model, profile, by, index, metrics=("token_entropy", "token_entropy_per_layer")):
    return [{"model": model, by: index, "layer": l, "metric": m, "value": v}
            for m in metrics for l, v in enumerate(profile)]


@pytest.fixture(scope="module")
def paper():
    return sesoi.Paper()


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    finals = []
    for s in SEEDS10:
        finals += _layer_rows("SoftKD", U + JITTER[s] + rng.normal(0, 0.01, 4), "seed", s)
        finals += _layer_rows("SpectralKD-Last", U - [0, 0.5, 0.6, 1.0] + rng.normal(0, 0.01, 4), "seed", s)
        finals += _layer_rows("SoftKD", [20, 22, 24, 32 + rng.normal(0, 0.5)], "seed", s,
                              ["effective_rank", "pca_dims"])
    finals = pd.DataFrame(finals)
    # 1000 resamples: a percentile p-value is at least 1/1001, and Holm over C1's 6 rows (x2 arms)
    # must still reach 2.5 %
    B, L = 1000, 8
    noise = np.vstack([np.zeros((1, L)), rng.normal(0, 0.01, (B, L))])      # row 0: the full batch
    base = {"token_entropy": RISING, "token_entropy_per_layer": RISING,
            "intensity_over_magnitude": np.full(L, 0.113), "effective_rank": np.linspace(30, 70, L),
            "pca_dims": np.linspace(30, 70, L)}
    reps = pd.concat([pd.DataFrame({"model": "teacher", "replicate": np.repeat(np.arange(-1, B), L),
                                    "layer": np.tile(np.arange(L), B + 1), "metric": m,
                                    "value": (v + noise * (0.01 if m == "intensity_over_magnitude" else 1)).ravel()})
                      for m, v in base.items()], ignore_index=True).assign(n_images=200)
    fit = pd.DataFrame([{"run": run, "seed": s, "epoch": e, "pair": pair, "raw": 1.0, "zero": zero,
                         "relative": 1.0 / zero, "cosine": cos + 0.01 * JITTER[s]}
                        for run in ("SpectralKD-First", "SpectralKD-Last") for s in SEEDS10
                        for e in (0, 11) for pair, zero, cos in (("s0-t0", 0.1, 0.9), ("s3-t7", 2.0, 0.6))])
    cells = {"SoftKD": (SEEDS10, 30.0, 80.0), "SpectralKD-Last": (SEEDS10, 36.0, 79.5),
             "SpectralKD-First": (SEEDS10, 33.0, 80.0), "ProjectorKD-Last": (SEEDS10, 31.0, 79.0),
             "ProjectorKD-First": (SEEDS3, 30.0, 80.0), "SpectralKD-First+Last": (SEEDS3, 37.0, 80.8),
             "ProjectorKD-First+Last": (SEEDS3, 31.0, 80.0)}
    history = []
    for run, (seeds, early, final) in cells.items():
        for s in seeds:
            for e in range(12):
                acc = early + (final - early) * e / 11 + JITTER[s] * (3 if run == "SoftKD" else 1)
                row = {"run": run, "seed": s, "epoch": e, "test_acc1": acc}
                if run == "SpectralKD-First":
                    row["train_loss_feat/0-0"] = 0.05 * (1 + JITTER[s])
                if run == "SpectralKD-Last":
                    row["train_loss_feat/3-7"] = 1.0 * (1 + 2 * JITTER[s])   # 20x the First pair
                if run == "SpectralKD-First+Last":
                    row["train_loss_feat/0-0"], row["train_loss_feat/3-7"] = 0.1, 0.25 * (1 + JITTER[s])
                history.append(row)
    return finals, reps, fit, pd.DataFrame(history)


def test_verdicts_follow_the_constructed_numbers(tables, paper):
    table = evidence.claims_table(*tables, MODELS, paper)
    assert list(table.columns) == list(TABLE_COLUMNS)
    v = table.set_index(["claim", "variant"])["verdict"]
    assert v[("C1", "SoftKD students, raw: U depth, min(first, last) - interior min")] == REPRODUCED
    assert v[("C1", "teacher, raw: U depth, min(first, last) - interior min")] == OPPOSITE  # rising
    assert v[("C2", "teacher last - first block, effective rank / C")] == REPRODUCED     # 40/96
    assert v[("C2-capacity", "teacher - SoftKD student at the last block, effective rank / C")] == \
        SMALLER                                                                       # 70/96 - 32/48 < 0.1
    # SoftKD - Last: +0.5 pt at the end, jitter cancels in the pairs
    assert v[("C3", "SoftKD - SpectralKD-Last, final top-1")] == REPRODUCED
    assert v[("C3-early", "SpectralKD-First - SoftKD, final top-1")] == REPRODUCED        # 0 ± tiny
    assert v[("C4", "SpectralKD-Last pair s3-t7 ÷ SpectralKD-First pair s0-t0, final train loss")] \
        == REPRODUCED                                                                  # 20x > 1, 6.1x not excluded
    assert v[("C4", "token cosine, SpectralKD-First pair s0-t0 - SpectralKD-Last pair s3-t7")] == REPRODUCED
    assert v[("C5", "SpectralKD-Last - SoftKD, early window")] == REPRODUCED             # +5.5 pt
    assert v[("C5", "SpectralKD-Last - SoftKD, final (caught up)")] == REPRODUCED        # -0.5 < δ
    assert v[("C5", "SoftKD - SpectralKD-Last, final (overtaken)")] == REPRODUCED
    assert v[("C5", "SoftKD - SpectralKD-First+Last, final (overtaken)")] == OPPOSITE    # stays ahead
    assert v[("C6", "SoftKD - SpectralKD-Last, last layer, raw")] == REPRODUCED
    head = table.groupby("claim")["headline"].first()
    assert head["C5"] == REPRODUCED and head["C1"] == REPRODUCED
    assert "SoftKD - SpectralKD-First+Last, final (overtaken)" in \
        table.loc[table["claim"] == "C5", "also_opposite"].iloc[0]
    # every claim has exactly its pre-declared primary variant(s)
    assert table[table["primary"]].groupby("claim").size().to_dict() == {
        "C1": 1, "C2": 1, "C2-capacity": 1, "C3": 1, "C3-early": 1, "C4": 1, "C5": 3, "C6": 2}


def test_pairs_use_the_seeds_both_cells_have(tables, paper):
    table = evidence.claims_table(*tables, MODELS, paper).set_index(["claim", "variant"])
    assert table.loc[("C3", "SoftKD - SpectralKD-Last, final top-1"), "n"] == 10
    assert table.loc[("C3-early", "ProjectorKD-First - SoftKD, final top-1"), "n"] == 3
    assert table.loc[("C5", "SpectralKD-First+Last - SoftKD, final (caught up)"), "n"] == 3
    assert table.loc[("C1", "teacher, raw: U depth, min(first, last) - interior min"), "n"] == 200


def test_notes_say_what_the_rows_are_conditional_on(tables, paper):
    table = evidence.claims_table(*tables, MODELS, paper).set_index(["claim", "variant"])["note"]
    assert "conditional on one teacher run" in table[("C1", "teacher, raw: U depth, min(first, last) - interior min")]
    c2 = table[("C2", "teacher last - first block, effective rank / C")]
    assert "demoted" in c2 and f"{sesoi.gaussian_intensity_over_magnitude(96):.4f}" in c2
    assert "conditional on the width gap" in table[
        ("C2-capacity", "teacher - SoftKD student at the last block, effective rank / C")]
    c4 = table[("C4", "SpectralKD-Last pair s3-t7 ÷ SpectralKD-First pair s0-t0, final train loss")]
    assert "rescaled, not a second test" in c4 and "1x" in c4  # 20x · 0.1 / 2.0 = 1.0x


def test_paper_values_are_like_for_like(tables, paper):
    table = evidence.claims_table(*tables, MODELS, paper).set_index(["claim", "variant"])["paper"]
    # C1: the official SoftKD profile (best checkpoint): 2.43, min 1.80 at L4, 3.34 at L12
    assert table[("C1", "SoftKD students, raw: first - interior min")] == pytest.approx(0.625, abs=1e-3)
    assert table[("C1", "SoftKD students, raw: last - interior min")] == pytest.approx(1.535, abs=1e-3)
    u_depth = table[("C1", "SoftKD students, raw: U depth, min(first, last) - interior min")]
    assert u_depth == pytest.approx(0.625, abs=1e-3)
    # C3 at the final and at the best epoch are different numbers
    assert table[("C3", "SoftKD - SpectralKD-Last, final top-1")] == pytest.approx(0.156, abs=1e-3)
    assert table[("C3", "SoftKD - ProjectorKD-Last, final top-1")] == pytest.approx(0.228, abs=1e-3)
    assert table[("C3", "SoftKD - SpectralKD-Last, best top-1")] == pytest.approx(0.162, abs=1e-3)
    assert table[("C3", "SoftKD - ProjectorKD-Last, best top-1")] == pytest.approx(0.270, abs=1e-3)
    # C4: the two single-pair runs' final train_loss_fft / w: 2.2799 / 0.06122
    assert table[("C4", "SpectralKD-Last pair s3-t7 ÷ SpectralKD-First pair s0-t0, final train loss")] \
        == pytest.approx(2.2799 / 0.06122, rel=1e-3)
    # no like-for-like number: left empty, never a neighbour's
    for key in [("C4", "SpectralKD-First+Last, pair s3-t7 ÷ pair s0-t0 in one run, final train loss"),
                ("C1", "teacher, raw: U depth, min(first, last) - interior min"),
                ("C1", "SoftKD students, per-layer range: U depth, min(first, last) - interior min"),
                ("C2", "teacher last - first block, effective rank / C"),
                ("C6", "SoftKD - SpectralKD-Last, last layer, per-layer range")]:
        assert math.isnan(table[key])
    # C5's early window over the paper's epochs of the same window: 5..49 of 300
    assert table[("C5", "SpectralKD-Last - SoftKD, early window")] == pytest.approx(
        np.mean([paper.acc_at("SpectralKD-Last", e) - paper.acc_at("SoftKD", e) for e in range(5, 50)]))
    assert table[("C6", "SoftKD - SpectralKD-Last, last layer, raw")] == pytest.approx(1.143, abs=1e-3)
    assert table[("C6", "SoftKD - SpectralKD-Last, interior minimum, raw")] == pytest.approx(0.957, abs=1e-3)


def test_sesoi_values_and_reasons(paper):
    # the values docs/design.md §8 quotes, computed from the shipped tables
    assert sesoi.sesoi_c1(paper).value == pytest.approx(0.625 / 4, abs=1e-3)
    assert "0.040" in sesoi.sesoi_c1(paper).reason       # the epoch-30 dip
    assert sesoi.sesoi_c3(paper, "SpectralKD", "final").value == pytest.approx(0.156, abs=1e-3)
    assert sesoi.sesoi_c3(paper, "ProjectorKD", "best").value == pytest.approx(0.270, abs=1e-3)
    assert sesoi.sesoi_c3_early(paper, "SpectralKD", "final").value == \
        sesoi.sesoi_c3(paper, "SpectralKD", "final").value
    assert sesoi.sesoi_c4(paper).value == pytest.approx(math.sqrt(2.2799 / 0.06122), rel=1e-3)
    assert sesoi.sesoi_c5(paper, "SpectralKD-Last").value == pytest.approx(2.712 / 2, abs=1e-3)
    assert sesoi.sesoi_c5(paper, "SpectralKD-First+Last").value == pytest.approx(3.519 / 2, abs=1e-3)
    assert sesoi.sesoi_c5_caught_up(paper).value == pytest.approx(0.156, abs=1e-3)
    assert sesoi.sesoi_c5_overtake(paper).value == pytest.approx(0.156, abs=1e-3)
    assert sesoi.sesoi_c6(paper, "last layer").value == pytest.approx(1.143 / 2, abs=1e-3)
    assert sesoi.sesoi_c6(paper, "interior minimum").value == pytest.approx(0.957 / 2, abs=1e-3)
    for s in (sesoi.sesoi_c2(), sesoi.sesoi_c4_cosine(), sesoi.sesoi_c1(paper)):
        assert s.value > 0 and len(s.reason) > 30


def test_c5_early_window_starts_after_the_warm_up_and_is_fixed_by_a_fraction():
    assert sesoi.early_window(12, warmup=1) == [1]            # 2/12 = 1/6
    assert sesoi.early_window(300, warmup=5) == list(range(5, 50))
    assert sesoi.early_window(24, warmup=2) == [2, 3]
    assert sesoi.early_window(4, warmup=1) == [1]             # too short: the first after warm-up


def test_c5_early_row_averages_the_window_per_seed(tables, paper):
    finals, reps, fit, history = tables
    history = history.copy()
    history.loc[(history["run"] == "SpectralKD-Last") & (history["epoch"] == 1), "test_acc1"] -= 100
    row = evidence.claims_table(finals, reps, fit, history, MODELS, paper).set_index(
        ["claim", "variant"]).loc[("C5", "SpectralKD-Last - SoftKD, early window")]
    assert row["verdict"] == OPPOSITE            # epoch 1 alone decides the early part
    wide = evidence.claims_table(finals, reps, fit, history, MODELS, paper, warmup=0).set_index(
        ["claim", "variant"]).loc[("C5", "SpectralKD-Last - SoftKD, early window")]
    soft = history[(history["run"] == "SoftKD") & history["epoch"].isin([0, 1])]
    last = history[(history["run"] == "SpectralKD-Last") & history["epoch"].isin([0, 1])]
    assert wide["estimate"] == pytest.approx(last["test_acc1"].mean() - soft["test_acc1"].mean())


def test_schedule_fractions():
    assert sesoi.matched_early_epoch(300) == 9          # the paper's own
    assert sesoi.matched_early_epoch(12) == 0           # 8.3 %, the nearest to 3.3 %
    assert sesoi.matched_early_epoch(30) == 0           # 3.3 % exactly
    assert sesoi.matched_early_epoch(100) == 2
    assert sesoi.paper_epoch_at(0, 12) == 24 and sesoi.paper_epoch_at(9, 300) == 9
    assert sesoi.paper_epoch_at(11, 12) == 299


def test_c5_sensitivity_covers_every_epoch(tables, paper):
    _, _, _, history = tables
    sens = evidence.c5_sensitivity(history, paper)
    assert len(sens) == 6 * 12 and set(sens["run"]) == set(sesoi.ALIGNED)
    row = sens[(sens["run"] == "SpectralKD-Last") & (sens["epoch"] == 0)].iloc[0]
    assert row["gap"] == pytest.approx(6.0) and row["n"] == 10 and row["paper_epoch"] == 24
    assert row["fraction"] == pytest.approx(1 / 12)


# --------------------------------------------------------------------------- the image bootstrap


def test_resampled_metrics_equal_recomputation_on_the_resampled_images():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 6, 8, 2, 2, generator=g) * torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1, 1, 1)
    f[1, 2] += 3.0                                          # one image unlike the rest
    index, counts = image_bootstrap.resample_counts(6, 5, seed=1)
    assert counts.sum(1).tolist() == [6.0] * 5
    fast = image_bootstrap.layer_metrics_resampled(f, counts, chunk=2)
    lo, hi = float(f.min()), float(f.max())                 # entropy bins: the full batch's range
    for r in range(5):
        sub = f[:, torch.as_tensor(index[r])]
        slow = layer_metrics(sub)
        slow["token_entropy"] = metrics.token_entropy(sub, value_range=(lo, hi))
        slow["token_entropy_per_layer"] = torch.stack([
            metrics.token_entropy(sub[l:l + 1], value_range=(float(f[l].min()), float(f[l].max())))[0]
            for l in range(3)])
        for name in image_bootstrap.BOOTSTRAP_METRICS:
            assert np.allclose(fast[name][r], slow[name].double().numpy(), rtol=1e-5, atol=1e-6), name
    # all-ones counts are the full batch
    full = image_bootstrap.layer_metrics_resampled(f, np.ones((1, 6)))
    assert np.allclose(full["effective_rank"][0], metrics.effective_rank(f).double().numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="counts"):
        image_bootstrap.layer_metrics_resampled(f, np.ones((2, 5)))
    with pytest.raises(ValueError, match="n_boot"):
        image_bootstrap.resample_counts(6, 1)


def test_bootstrap_table_of_a_model():
    torch.manual_seed(0)
    model = create_model("ddkit_vit_student_fmnist", depth=3).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    table = image_bootstrap.bootstrap_layer_metrics(model, x, y, "student", n_boot=20, seed=0)
    assert set(table["metric"]) == set(image_bootstrap.BOOTSTRAP_METRICS)
    assert table["replicate"].min() == -1 and table["replicate"].max() == 19
    assert (table["n_images"] == 8).all() and len(table) == 21 * 3 * len(image_bootstrap.BOOTSTRAP_METRICS)
    again = image_bootstrap.bootstrap_layer_metrics(model, x, y, "student", n_boot=20, seed=0)
    pd.testing.assert_frame_equal(table, again)              # same seed, same resamples


def test_gaussian_intensity_over_magnitude_matches_simulation():
    g = torch.Generator().manual_seed(0)
    for C in (96, 48, 33):
        f = torch.randn(1, 64, C, 7, 7, generator=g, dtype=torch.float64)
        ratio = float(metrics.channel_spectrum(f)[1][0] / metrics.activation_magnitude(f)[0])
        assert ratio == pytest.approx(sesoi.gaussian_intensity_over_magnitude(C), rel=0.01)
    assert sesoi.gaussian_intensity_over_magnitude(96) == pytest.approx(0.1131, abs=1e-4)


def test_accuracy_summary_pairs_on_common_seeds():
    from ddkit.studies.study import accuracy_summary
    acc = pd.DataFrame([{"run": run, "seed": s, "final_acc1": base + 0.1 * s}
                        for run, seeds, base in (("SoftKD", SEEDS10, 80.0), ("no-KD", SEEDS3, 78.0))
                        for s in seeds])
    out = accuracy_summary(acc).set_index("run")
    assert out.loc["SoftKD", "n"] == 10 and out.loc["no-KD", "n"] == 3
    assert out.loc["SoftKD", "mean"] == pytest.approx(80.45)
    assert out.loc["no-KD", "diff_vs_SoftKD"] == pytest.approx(-2.0)   # seeds 0-2 of both
    assert out.loc["no-KD", "diff_half_width"] == pytest.approx(0.0, abs=1e-9)


def test_power_uses_the_pilot_sd_set_before_the_data(tables, paper):
    """A seed-paired row's power assumes its pilot row's SD (stated in power_basis); without a
    pilot row it uses the observed spread and says so; the pilot's SD is recovered from the
    printed t interval of the table it came from."""
    base = evidence.claims_table(*tables, MODELS, paper)
    pilot = sesoi.pilot_from_table(base, "a test table")
    row = base.set_index(["claim", "variant"]).loc[("C3", "SoftKD - SpectralKD-Last, final top-1")]
    sd = pilot.set_index(["claim", "variant"]).loc[("C3", "SoftKD - SpectralKD-Last, final top-1"), "sd"]
    hist = tables[3]
    last = hist[(hist["run"] == "SpectralKD-Last") & (hist["epoch"] == 11)].set_index("seed")["test_acc1"]
    soft = hist[(hist["run"] == "SoftKD") & (hist["epoch"] == 11)].set_index("seed")["test_acc1"]
    assert sd == pytest.approx((soft - last).std(ddof=1), rel=1e-9)
    noisy = pilot.assign(sd=pilot["sd"] * 50)                  # a much noisier pilot
    planned = evidence.claims_table(*tables, MODELS, paper, pilot=noisy).set_index(["claim", "variant"])
    prow = planned.loc[("C3", "SoftKD - SpectralKD-Last, final top-1")]
    assert prow["power"] < row["power"] and prow["power_basis"].startswith("planned SD")
    assert "a test table, n = 10" in prow["power_basis"]
    assert (prow["estimate"], prow["verdict"]) == (row["estimate"], row["verdict"])   # power only
    fresh = planned.loc[("C1", "teacher, raw: U depth, min(first, last) - interior min")]
    assert fresh["power_basis"].startswith("observed spread")   # images, not seeds: no pilot SD


def test_pca_dims_are_fractional_so_a_c2_interval_cannot_collapse_on_an_integer():
    """Integer PCA dimensions made C2's resampled interval a single value ([0.0833, 0.0833]);
    the interpolated dimension moves with every resample, and equals the plain metric on the
    full batch."""
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 30, 12, 3, 3, generator=g) * torch.linspace(0.2, 3, 12).view(1, 1, 12, 1, 1)
    _, counts = image_bootstrap.resample_counts(30, 40, seed=3)
    dims = image_bootstrap.layer_metrics_resampled(f, counts)["pca_dims"]            # [R, L]
    assert (np.abs(dims - np.round(dims)) > 1e-6).any() and np.ptp(dims[:, 0]) > 0.05
    full = image_bootstrap.layer_metrics_resampled(f, np.ones((1, 30)))["pca_dims"][0]
    from ddkit.signals import metrics
    np.testing.assert_allclose(full, metrics.pca_dims(list(f), 0.9, fractional=True).numpy(), rtol=1e-6)
