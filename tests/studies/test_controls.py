"""The negative-transfer controls: their verdicts (calibrated on planted effects), the crossover,
the dose table, the tables' merge across sessions, the mismatch metric and the MAE objective."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from ddkit.core.hooks import block_features
from ddkit.core.mae import MaskedAutoencoder, patchify
from ddkit.signals import mismatch
from ddkit.studies import control_verdicts as cv
from ddkit.studies import grid
from ddkit.verdicts.claims import OPPOSITE, decide, pvalues
from ddkit.verdicts.stats import TDist
from tests import reference_metrics as ref

PAIR_SD = 1.0   # pt, SD of a seed pair's gap in the simulated studies (the default pair's: 0.3-0.7)


def _results(effect: float, seeds: int, rng: np.random.Generator, setting: str = cv.BASE,
             cell: str = "SpectralKD-Last", sd: float = PAIR_SD) -> pd.DataFrame:
    """A study of ``seeds`` seed pairs whose SoftKD - ``cell`` gap has mean ``effect``."""
    soft = 75 + rng.normal(0, 1.0, seeds)
    other = soft - effect + rng.normal(0, sd, seeds)
    rows = [{"setting": setting, "cell": c, "seed": s, "final_acc1": v, "feature_weight": 0.2,
             "run": f"{c}-{s}"} for c, values in (("SoftKD", soft), (cell, other))
            for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def _readings(effect: float, studies: int, seeds: int = 5, seed: int = 0) -> np.ndarray:
    """End to end: ``studies`` simulated result tables through ``verdicts``."""
    rng = np.random.default_rng(seed)
    return np.array([cv.verdicts(_results(effect, seeds, rng))["reading"].iloc[0]
                     for _ in range(studies)])


def _rates(effect: float, seeds: int = 5, studies: int = 20_000, seed: int = 0) -> dict:
    """The same rule (kind and SESOI of C3-MAE's primary row) on ``studies`` studies at once."""
    rng = np.random.default_rng(seed)
    row = cv.evidence(_results(effect, seeds, rng))[0]
    diffs = effect + PAIR_SD * rng.standard_normal((studies, seeds))
    p = pvalues(row.kind, TDist.of(diffs), row.delta)
    called = decide(row.kind, p["support"], p["opposite"], p["sesoi"])
    return {"harm": np.isin(called, cv.SUPPORT).mean(), "help": (called == OPPOSITE).mean()}


def test_a_planted_3pt_penalty_with_5_seeds_is_called_negative_transfer():
    assert (_readings(3.0, studies=30) == "negative transfer").all()
    assert _rates(3.0)["harm"] >= 0.95


def test_a_planted_zero_is_not_called_negative_transfer():
    """End to end on 30 studies, and the rule's false-positive rate on 20 000: the support call
    at its one-sided 2.5 % (+ 3 Monte-Carlo standard errors)."""
    readings = _readings(0.0, studies=30, seed=1)
    assert (readings == "negative transfer").sum() <= 2
    rates = _rates(0.0, seed=1)
    assert rates["harm"] <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 20_000)
    assert rates["help"] <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 20_000)


def test_a_planted_gain_is_called_help_not_harm():
    assert (_readings(-3.0, studies=20, seed=2) == "late alignment helps").all()


def test_each_control_is_its_own_family_and_its_sesoi_is_the_official_gap():
    rng = np.random.default_rng(3)
    results = pd.concat([_results(3.0, 5, rng), _results(0.0, 5, rng, setting=cv.PROBED),
                         _results(-1.0, 5, rng, setting=cv.LONG),
                         _results(1.0, 5, rng, cell="ProjectorKD-Last")])
    results = results.drop_duplicates(["setting", "cell", "seed"])   # one SoftKD per base seed
    table = cv.verdicts(results)
    assert list(table["claim"]) == ["C3-MAE", "C3-MAE", "C3-MAE-probed", "C3-long"]
    assert table.groupby("claim")["primary"].sum().eq(1).all()
    gaps = cv.official_final_gaps()
    mae = gaps[("SoftKD-MAE", "SpectralKD-Last-MAE")]
    assert 5 < mae < 5.5                                              # the release's −5.3 pt
    assert table.loc[table["claim"] == "C3-MAE", "sesoi"].eq(mae).all()
    assert table.loc[table["claim"] == "C3-long", "sesoi"].iloc[0] == pytest.approx(
        gaps[("SoftKD", "SpectralKD-Last")])


@pytest.mark.parametrize("epochs, fraction, window", [
    (12, 1 / 6, 3), (48, 1 / 6, 9), (300, 1 / 6, 51), (500, 1 / 6, 83), (12, 9 / 300, 1), (4, 1 / 6, 1)])
def test_the_window_is_the_nearest_odd_number_of_epochs(epochs, fraction, window):
    assert cv.window_epochs(epochs, fraction) == window


@pytest.mark.parametrize("gap, window, expected", [
    ([-1, -1, 1, 1], 1, 0.5),        # behind for the first half: crosses at 50 %
    ([1, 1, 1, 1], 1, 0.0),          # late alignment never ahead
    ([-1, -1, -1, -1], 1, 1.0),      # ahead to the end: never overtaken
    ([-1, 1, -1, 1, 1, 1], 1, 0.5),  # the last time it is behind counts
    ([-3, 1, 1, 1, 1, 1], 3, 2 / 6),  # centred running mean: epoch 1 is (-3 + 1 + 1) / 3 < 0
])
def test_crossover_fraction_by_hand(gap, window, expected):
    assert cv.crossover_fraction(np.array(gap, float), window) == pytest.approx(expected)


def test_the_official_crossovers_are_those_of_the_release():
    """With the former 9-epoch window the release crosses at 59 % and 53 %; the pre-set window
    (a sixth of the schedule: 50 of 300, 83 of 500) reads the same runs with the same rule."""
    acc = cv._official_acc(None)
    for (soft, aligned), expected in zip(cv.OFFICIAL_PAIRS[:3], (178 / 300, 264 / 500, 0.0)):
        gap = (acc[soft] - acc[aligned]).dropna().to_numpy()
        assert cv.crossover_fraction(gap, window=cv.OFFICIAL_WINDOW) == pytest.approx(expected)
    preset = cv.official_crossovers().set_index("run")
    assert list(preset["window"]) == [51, 83, 51, 51]
    assert preset.loc["SpectralKD-Last-MAE", "fraction"] == 0.0
    assert 0 < preset.loc["SpectralKD-Last", "fraction"] < 1


def test_the_sensitivity_table_reads_every_window_and_marks_the_preset():
    epochs, rng = 12, np.random.default_rng(5)
    rows = []
    for seed in range(3):
        for cell, ahead in (("SoftKD", slice(6, None)), ("SpectralKD-Last", slice(0, 6))):
            acc = 60 + np.arange(epochs) + rng.normal(0, 0.2, epochs)
            acc[ahead] += 1.0
            rows += [{"setting": cv.LONG, "cell": cell, "seed": seed, "epoch": e,
                      "test_acc1": a} for e, a in enumerate(acc)]
    table = cv.crossover_sensitivity(pd.DataFrame(rows), [(cv.LONG, "SpectralKD-Last")])
    assert set(table["window_fraction"]) == set(cv.SENSITIVITY_WINDOWS)
    assert table["preset"].sum() == 5                        # one kit row + four release rows
    kit = table[table["source"] == "kit"].set_index("window_fraction")
    assert kit.loc[cv.CROSSOVER_WINDOW, "window"] == 3       # a sixth of 12, to the odd 3
    assert kit.loc[cv.CROSSOVER_WINDOW, "fraction"] == pytest.approx(0.5)


def test_crossover_interval_holds_the_point_and_says_what_it_resamples():
    epochs, rng = 12, np.random.default_rng(4)
    rows = []
    for seed in range(5):
        for cell, ahead in (("SoftKD", slice(6, None)), ("SpectralKD-Last", slice(0, 6))):
            acc = 60 + np.arange(epochs) + rng.normal(0, 0.2, epochs)
            acc[ahead] += 1.0                   # late alignment ahead for the first half only
            rows += [{"setting": cv.LONG, "cell": cell, "seed": seed, "epoch": e,
                      "test_acc1": a} for e, a in enumerate(acc)]
    out = cv.crossover(pd.DataFrame(rows), cv.LONG, n_boot=200)
    assert out["fraction"] == pytest.approx(0.5)
    assert out["lo95"] <= out["fraction"] <= out["hi95"]
    assert "bootstrap" in out["interval"] and out["n"] == 5


def test_dose_pairs_every_weight_with_the_base_softkd_seeds():
    rng = np.random.default_rng(5)
    base = _results(1.0, 4, rng)
    heavy = _results(0.0, 3, rng, setting="feature weight 0.8")
    heavy = heavy[heavy["cell"] == "SpectralKD-Last"].assign(feature_weight=0.8)
    heavy["final_acc1"] = 70.0
    table = cv.dose(pd.concat([base, heavy]))
    assert list(table["feature_weight"]) == [0.2, 0.8] and list(table["n"]) == [4, 3]
    soft = base[(base["cell"] == "SoftKD") & (base["seed"] < 3)]["final_acc1"]
    assert table["estimate"].iloc[1] == pytest.approx(soft.mean() - 70.0)


def test_merged_keeps_committed_runs_this_machine_lacks_and_replaces_the_rest():
    old = pd.DataFrame({"setting": ["a", "a"], "cell": ["SoftKD"] * 2, "seed": [0, 1],
                        "final_acc1": [1.0, 2.0], "run": ["r0", "r1"]})
    new = pd.DataFrame({"setting": ["a"], "cell": ["SoftKD"], "seed": [1],
                        "final_acc1": [3.0], "run": ["r1"]})
    out = grid.merged(new, old)
    assert list(out["run"]) == ["r0", "r1"] and list(out["final_acc1"]) == [1.0, 3.0]


def test_missing_tables_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="--profile controls --from 08"):
        grid.load(tmp_path, "./run_all.sh --profile controls --from 08")


def test_every_control_setting_plans_distinct_runs():
    from ddkit.core.config import load_profile
    names = grid.names(load_profile("controls"))
    settings = {key[0] for key in names.values()}
    assert {cv.BASE, cv.PROBED, cv.LONG} <= settings
    assert len(names) == len(set(names))


def test_pair_mismatch_gives_the_followup_and_the_centred_dimension_over_the_width():
    torch.manual_seed(0)
    teacher = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3,
                                embed_dim=24, num_heads=2, num_classes=10)
    student = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2,
                                embed_dim=12, num_heads=2, num_classes=10)
    x = torch.randn(16, 3, 32, 32)
    table = mismatch.pair_mismatch(teacher, student, x, "first_last")
    assert list(zip(table["student_block"], table["teacher_block"])) == [(0, 0), (1, 2)]
    feats = block_features(teacher, x, [0, 2]).numpy()
    expected = ref.pca_dims_fractional(feats, energy=0.95)
    np.testing.assert_allclose(table["teacher_dim_centred"], expected, rtol=1e-6)
    assert (table["student_width"] == 12).all()
    np.testing.assert_allclose(table["ratio_centred"], expected / 12)
    followup = [mismatch.followup_dim(torch.from_numpy(f)).quantile for f in feats]
    np.testing.assert_allclose(table["teacher_dim_followup"], followup)
    np.testing.assert_allclose(table["ratio"], np.array(followup) / 12)


def test_mae_pretraining_lowers_its_loss_on_a_tiny_batch():
    """Twenty steps on four gratings, masks held fixed: the masked patches' normalised-pixel
    error falls by over a fifth (a broken decoder, target or mask would leave it flat)."""
    torch.manual_seed(0)
    encoder = timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=4, in_chans=1,
                                depth=1, embed_dim=16, num_heads=2, num_classes=10)
    mae = MaskedAutoencoder(encoder, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    images = torch.stack([torch.sin(xx / (2 + i) + yy / 3) for i in range(4)])[:, None]
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()

    def loss() -> torch.Tensor:
        gen.set_state(state)                                  # the same masks every step
        return mae(images, generator=gen)["loss"]

    with torch.no_grad():
        before = loss().item()
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = loss().item()
    assert after < 0.8 * before
    assert patchify(images, 4).shape == (4, 49, 16)


def _curves(rise_per_epoch: float, epochs: int = 20, seeds: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(6)
    rows = []
    for seed in range(seeds):
        plateau = 80 + rng.normal(0, 0.3)
        acc = plateau - 10 * np.exp(-np.arange(epochs) / 2.0) + rise_per_epoch * np.arange(epochs)
        rows += [{"setting": cv.LONG, "cell": "SoftKD", "seed": seed, "epoch": e,
                  "test_acc1": a + rng.normal(0, 0.05)} for e, a in enumerate(acc)]
    return pd.DataFrame(rows)


def test_convergence_calls_a_plateau_flat_and_a_climb_not():
    flat = cv.convergence(_curves(0.0), cv.LONG).iloc[0]
    assert flat["flat"] and flat["tail_from"] == 16 and abs(flat["drift"]) < 0.2
    climbing = cv.convergence(_curves(0.5), cv.LONG).iloc[0]   # +2 pt over the last 4 epochs
    assert not climbing["flat"] and climbing["drift"] == pytest.approx(2.0, abs=0.2)


def test_the_committed_runs_are_planned_under_the_settings_they_are_published_under():
    """Renaming a setting (here the profiles' own, from "base" to their ``base_name``) changes no
    run: a run's name is its config's hash, and each committed row's run is the run its profile
    plans for that row's (setting, cell, seed)."""
    from ddkit.core.config import load_profile
    from ddkit.runs.store import FIGURES
    assert cv.BASE == load_profile("controls").own_setting
    for profile in ("controls", "phase_map"):
        planned = grid.names(load_profile(profile))
        table = pd.read_csv(FIGURES / profile / grid.RESULTS_CSV)
        keys = [planned.get(run) for run in table["run"]]
        assert keys == list(zip(table["setting"], table["cell"], table["seed"])), profile
