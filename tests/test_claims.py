"""ddkit.claims: every rule reaches each of its verdicts from constructed numbers, and says why."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddkit.claims import (INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, TABLE_COLUMNS, Verdict,
                          c1_u_shape, c2_capacity_gap, c2_distributed_code, c3_early_neutral,
                          c3_negative_transfer, c4_last_harder, c4_last_harder_cosine,
                          c5_early_speedup, c6_profile_distortion, claims_table, conjunction,
                          directional)
from ddkit.stats import Estimate, paired_difference, ratio_estimate

SEED_SHIFT = np.array([[0.0], [0.08], [-0.05]])        # [S, 1]: a per-seed offset, cancels in pairs
JITTER = np.array([[0.01, -0.02, 0.0, 0.02, -0.01],  # [S, L]: small per-layer noise, column means 0
                   [-0.01, 0.01, 0.02, -0.02, 0.02],
                   [0.0, 0.01, -0.02, 0.0, -0.01]])


def profile(base) -> np.ndarray:
    """[3, 5] seeds of a per-layer profile: base + per-seed offset + jitter."""
    return np.asarray(base, dtype=float)[None, :] + SEED_SHIFT + JITTER


# ----------------------------------------------------------------------------- generic

def test_directional_and_conjunction():
    pos, neg, mid = Estimate(1, 0.5, 1.5, 3, 1), Estimate(-1, -1.5, -0.5, 3, 1), Estimate(0, -1, 1, 3, 1)
    assert directional(pos, "greater") == REPRODUCED and directional(pos, "less") == NOT_REPRODUCED
    assert directional(neg, "less") == REPRODUCED and directional(neg, "greater") == NOT_REPRODUCED
    assert directional(mid, "greater") == INCONCLUSIVE and directional(mid, "less") == INCONCLUSIVE
    assert directional(pos, "greater", threshold=0.6) == INCONCLUSIVE
    assert directional(pos, "greater", threshold=2.0) == NOT_REPRODUCED
    assert directional(Estimate(1, math.nan, math.nan, 1, math.nan), "greater") == INCONCLUSIVE
    with pytest.raises(ValueError, match="direction"):
        directional(pos, "up")  # type: ignore[arg-type]
    assert conjunction([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert conjunction([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert conjunction([REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE]) == NOT_REPRODUCED


# ----------------------------------------------------------------------------- C1

def test_c1_clear_u_is_reproduced():
    u = profile([2.4, 2.0, 1.8, 2.2, 3.3])
    v = c1_u_shape(u, "raw")
    assert (v.claim, v.variant, v.verdict) == ("C1", "raw", REPRODUCED)
    d_first = paired_difference(u[:, 0], u[:, 2])
    assert v.statistic.startswith("min at L3/5; first−min 0.600 [")
    assert f"{d_first.lo:.3f}, {d_first.hi:.3f}]" in v.statistic and "last−min 1.500 [" in v.statistic
    assert v.estimate == d_first  # the shallower side binds


def test_c1_monotone_rise_is_not_reproduced():
    v = c1_u_shape(profile([1.0, 1.5, 2.0, 2.5, 3.0]), "per_layer_range")
    assert v.verdict == NOT_REPRODUCED and v.variant == "per_layer_range"
    assert v.statistic.startswith("min at L1/5; first−min 0.000 [0.000, 0.000]")
    assert "last−min 2.000 [" in v.statistic and v.estimate.lo > 0


def test_c1_noisy_flat_is_inconclusive():
    noisy = [[2.0, 1.8, 2.1], [2.0, 2.1, 1.9], [2.0, 1.9, 2.0]]  # mean min in the middle, within noise
    v = c1_u_shape(noisy, "raw")
    assert v.verdict == INCONCLUSIVE and v.statistic.startswith("min at L2/3")
    flat_end = [[2.0, 2.1, 2.3], [2.0, 2.1, 1.8], [2.0, 2.05, 2.0]]  # min at L1, last end noisy
    assert c1_u_shape(flat_end).verdict == INCONCLUSIVE
    assert c1_u_shape([[2.4, 1.8, 3.3]]).verdict == INCONCLUSIVE  # one seed: no CI


def test_c1_min_depth_flags_a_flat_side():
    l_shape = [[3.0, 2.0, 2.05], [3.1, 2.1, 2.14], [2.9, 1.9, 1.945]]  # last end barely above the min
    assert c1_u_shape(l_shape).verdict == REPRODUCED
    v = c1_u_shape(l_shape, min_depth=0.2)
    assert v.verdict == NOT_REPRODUCED and "0.2" in v.rule


def test_c1_bootstrap_replicates_use_percentiles():
    reps = profile([2.4, 2.0, 1.8, 2.2, 3.3])
    v = c1_u_shape(reps, replicates=True)
    d = reps[:, 0] - reps[:, 2]
    assert v.verdict == REPRODUCED and v.estimate.lo == pytest.approx(np.quantile(d, 0.025))
    assert "percentile" in v.rule
    with pytest.raises(ValueError, match="profiles"):
        c1_u_shape([[1.0, 2.0]])
    with pytest.raises(ValueError, match="profiles"):
        c1_u_shape([[1.0, math.nan, 2.0], [1.0, 1.0, 2.0]])


# ----------------------------------------------------------------------------- C2

def test_c2_distributed_code_each_verdict():
    first = np.array([0.10, 0.12, 0.11, 0.09])
    v = c2_distributed_code(first, first + [0.05, 0.06, 0.04, 0.05], "intensity_over_magnitude")
    assert (v.claim, v.variant, v.verdict) == ("C2", "intensity_over_magnitude", REPRODUCED)
    assert v.statistic.startswith("teacher last−first 0.050 [") and "(n=4)" in v.statistic
    assert c2_distributed_code(first, first - 0.03).verdict == NOT_REPRODUCED
    assert c2_distributed_code(first, first + [0.02, -0.02, 0.01, -0.01]).verdict == INCONCLUSIVE


def test_c2_capacity_gap_each_verdict():
    student = np.array([20.0, 22.0, 21.0])
    v = c2_capacity_gap(student + [30.0, 31.0, 29.0], student)
    assert (v.claim, v.verdict) == ("C2-capacity", REPRODUCED)
    assert "teacher−student at last layer 30.000 [" in v.statistic
    assert c2_capacity_gap(student - 5.0, student).verdict == NOT_REPRODUCED
    assert c2_capacity_gap(student + [3.0, -3.0, 1.0], student).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- C3

def test_c3_negative_transfer_each_verdict():
    soft = np.array([76.99, 77.10, 76.85])
    v = c3_negative_transfer(soft - [0.16, 0.20, 0.12], soft, "spectral")
    assert (v.claim, v.variant, v.verdict) == ("C3", "spectral", REPRODUCED)
    e = paired_difference(soft - [0.16, 0.20, 0.12], soft)
    assert v.statistic == f"Last−SoftKD {e.format(unit='pt', digits=3)}" and v.estimate == e
    assert v.statistic.startswith("Last−SoftKD -0.160 [")
    assert c3_negative_transfer(soft + [0.3, 0.4, 0.35], soft).verdict == NOT_REPRODUCED
    assert c3_negative_transfer(soft + [0.3, -0.4, 0.05], soft).verdict == INCONCLUSIVE
    with pytest.raises(ValueError, match=r"acc_last has 2.*acc_soft has 3"):
        c3_negative_transfer(soft[:2], soft)


def test_c3_early_neutral_each_verdict():
    soft = np.array([76.99, 77.10, 76.85, 77.02])
    v = c3_early_neutral(soft + [0.05, -0.05, 0.02, -0.01], soft)
    assert (v.claim, v.verdict) == ("C3-early", REPRODUCED) and "margin ±0.5 pt" in v.statistic
    assert c3_early_neutral(soft + [0.5, 0.6, 0.55, 0.52], soft).verdict == NOT_REPRODUCED
    wide = soft + [1.0, -1.0, 0.5, -0.3]
    assert c3_early_neutral(wide, soft).verdict == INCONCLUSIVE
    assert c3_early_neutral(wide, soft, margin=5.0).verdict == REPRODUCED
    with pytest.raises(ValueError, match="margin"):
        c3_early_neutral(wide, soft, margin=0.0)


# ----------------------------------------------------------------------------- C4

def test_c4_last_harder_each_verdict():
    first = np.array([0.061, 0.058, 0.065])
    v = c4_last_harder(first * [37.0, 40.0, 35.0], first)
    r = ratio_estimate(first * [37.0, 40.0, 35.0], first)
    assert (v.claim, v.variant, v.verdict) == ("C4", "raw", REPRODUCED)
    assert v.estimate == r and v.statistic.startswith(f"last/first loss ratio {r.mean:.3f} [")
    # docs/design.md §7: relative to a zero prediction the last pair was fitted better (0.39 vs 1.36)
    rel = c4_last_harder([0.39, 0.41, 0.37], [1.36, 1.30, 1.40], variant="relative_to_zero")
    assert rel.verdict == NOT_REPRODUCED and rel.variant == "relative_to_zero"
    assert c4_last_harder(first * [0.5, 3.0, 1.5], first).verdict == INCONCLUSIVE
    # clearly above 1 but not above the factor: inconclusive, reproduced with a lower factor
    assert c4_last_harder(first * [1.5, 1.6, 1.55], first).verdict == INCONCLUSIVE
    assert c4_last_harder(first * [1.5, 1.6, 1.55], first, factor=1.2).verdict == REPRODUCED


def test_c4_cosine_each_verdict():
    first = np.array([0.90, 0.92, 0.91])
    v = c4_last_harder_cosine(first - [0.2, 0.25, 0.22], first)
    assert (v.variant, v.verdict) == ("cosine", REPRODUCED) and "cosine last−first -0.223 [" in v.statistic
    assert c4_last_harder_cosine(first + 0.05, first - 0.1).verdict == NOT_REPRODUCED
    assert c4_last_harder_cosine(first + [0.05, -0.05, 0.01], first).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- C5

def test_c5_early_speedup_each_verdict():
    soft_e, soft_f = np.array([32.7, 32.5, 33.0]), np.array([77.1, 76.9, 76.95])
    feat_e = soft_e + [4.9, 4.7, 5.0]
    v = c5_early_speedup(feat_e, soft_e, soft_f + [-0.1, -0.1, 0.15], soft_f)
    assert (v.claim, v.verdict) == ("C5", REPRODUCED)
    assert v.statistic.startswith("early feat−SoftKD 4.867 [") and "; final feat−SoftKD -0.017 [" in v.statistic
    # no early speed-up
    assert c5_early_speedup(soft_e - 1.0, soft_e, soft_f, soft_f + 0.1).verdict == NOT_REPRODUCED
    # SoftKD never catches up: the gap stays as large
    assert c5_early_speedup(feat_e, soft_e, soft_f + [5.1, 4.9, 5.3], soft_f).verdict == NOT_REPRODUCED
    # noisy early gap, or a gap that narrows but stays open
    assert c5_early_speedup(soft_e + [2.0, -1.5, 0.5], soft_e, soft_f, soft_f).verdict == INCONCLUSIVE
    assert c5_early_speedup(feat_e, soft_e, soft_f + [2.0, 2.2, 1.9], soft_f).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- C6

def test_c6_profile_distortion_each_verdict():
    soft = profile([2.43, 2.01, 1.80, 2.60, 3.34])
    last = profile([2.43, 1.20, 0.84, 1.50, 2.19])
    v = c6_profile_distortion(last, soft, "raw")
    assert (v.claim, v.verdict) == ("C6", REPRODUCED)
    assert "middle-min Last−SoftKD -0.960 [" in v.statistic and "last-layer Last−SoftKD -1.150 [" in v.statistic
    assert v.estimate.mean == pytest.approx(-0.96)  # the binding part: the smaller effect
    assert c6_profile_distortion(soft, last).verdict == NOT_REPRODUCED
    # one part refuted (last layer higher) → not reproduced
    up_end = profile([2.43, 1.20, 0.84, 2.60, 3.60])
    assert c6_profile_distortion(up_end, soft).verdict == NOT_REPRODUCED
    noisy = soft + np.array([[0.2, -0.3, 0.3, 0.1, 0.4], [-0.1, 0.2, -0.4, 0.0, -0.5],
                             [0.0, 0.1, 0.05, -0.1, 0.05]])
    assert c6_profile_distortion(noisy, soft).verdict == INCONCLUSIVE
    with pytest.raises(ValueError, match="profile_soft"):
        c6_profile_distortion(last, soft[:, :4])


# ----------------------------------------------------------------------------- table

def test_claims_table_rows_and_columns():
    soft = np.array([76.99, 77.10, 76.85])
    verdicts = [c3_negative_transfer(soft - 0.2, soft),
                c1_u_shape(profile([2.4, 2.0, 1.8, 2.2, 3.3])),
                c1_u_shape([[2.4, 1.8, 3.3]])]
    df = claims_table(verdicts)
    assert list(df.columns) == list(TABLE_COLUMNS) == ["claim", "variant", "verdict", "statistic",
                                                       "mean", "lo", "hi", "n", "rule"]
    assert len(df) == 3 and df["claim"].tolist() == ["C3", "C1", "C1"]
    assert df["verdict"].tolist() == [REPRODUCED, REPRODUCED, INCONCLUSIVE]
    assert df.loc[0, "mean"] == pytest.approx(-0.2) and df.loc[0, "n"] == 3
    assert math.isnan(df.loc[2, "lo"])
    assert list(claims_table([]).columns) == list(TABLE_COLUMNS)
    none_row = Verdict("C2", "raw", INCONCLUSIVE, "no data", None, "n/a").as_row()
    assert none_row["n"] == 0 and math.isnan(none_row["mean"])
    with pytest.raises(ValueError, match="verdict"):
        Verdict("C1", "raw", "maybe", "", None, "")
