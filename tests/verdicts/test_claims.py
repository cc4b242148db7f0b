"""ddkit.verdicts.claims: every rule reaches each of its verdicts from constructed numbers, Holm acts within
a claim, the headline follows the primary variant(s), and the table says why."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddkit.verdicts import claims as claims_module
from ddkit.verdicts.claims import (
    ABSENT,
    ALPHA_SESOI,
    ALPHA_SIGN,
    DIRECTIONAL,
    EQUIVALENCE,
    INCONCLUSIVE,
    NONINFERIORITY,
    OPPOSITE,
    REPRODUCED,
    SMALLER,
    TABLE_COLUMNS,
    VERDICTS,
    Evidence,
    Sesoi,
    combine,
    decide,
    estimate_text,
    interior_min,
    judge,
    log_ratio,
    paired,
    pvalues,
    u_depth,
)
from ddkit.verdicts.stats import Replicates, TDist, holm, t_quantile

DELTA = Sesoi(0.2, "test SESOI")
BASE = np.array([76.99, 77.10, 76.85, 77.02, 76.91, 77.20, 76.80, 77.05, 76.95, 77.12])
NOISE = np.array([0.03, -0.05, 0.02, -0.01, 0.04, -0.03, 0.0, 0.01, -0.02, 0.01])  # mean 0
WIDE_NOISE = NOISE * 40   # a paired SD of about 1.2 pt: far too wide for a 0.2 pt SESOI


def ev(a, b, kind=DIRECTIONAL, primary=False, variant="v", claim="C3", sesoi=DELTA) -> Evidence:
    return Evidence(claim, variant, kind, paired(a, b), sesoi, "pt", "a - b", primary=primary)


# ----------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("p, verdict", [
    ((0.001, 0.999, 0.6), REPRODUCED),        # e > 0, effects of δ not excluded
    ((0.001, 0.999, 0.01), SMALLER),          # e > 0 and e < δ
    ((0.3, 0.7, 0.01), ABSENT),               # no sign shown, e < δ
    ((0.999, 0.001, 0.0001), OPPOSITE),       # e < 0 (also below δ: opposite wins)
    ((0.1, 0.9, 0.2), INCONCLUSIVE),
    ((0.024, 0.976, 0.06), REPRODUCED),       # thresholds: 2.5 % for signs, 5 % for δ
    ((0.026, 0.974, 0.049), ABSENT),
    ((math.nan, math.nan, math.nan), INCONCLUSIVE),  # one seed: no test
])
def test_directional_decisions(p, verdict):
    assert decide(DIRECTIONAL, *p).item() == verdict


def test_equivalence_and_noninferiority_decisions():
    assert decide(EQUIVALENCE, 0.04, 0.9).item() == REPRODUCED      # TOST at 5 %
    assert decide(EQUIVALENCE, 0.06, 0.02).item() == OPPOSITE       # beyond the margin at 2.5 %
    assert decide(EQUIVALENCE, 0.06, 0.03).item() == INCONCLUSIVE
    assert decide(NONINFERIORITY, 0.04, 0.9).item() == REPRODUCED
    assert decide(NONINFERIORITY, 0.5, 0.01).item() == OPPOSITE
    assert decide(NONINFERIORITY, math.nan, math.nan).item() == INCONCLUSIVE
    # vectorised over many problems at once
    out = decide(DIRECTIONAL, np.array([0.001, 0.5]), np.array([0.999, 0.5]), np.array([0.9, 0.9]))
    assert out.tolist() == [REPRODUCED, INCONCLUSIVE]


def test_combine_parts():
    assert combine([REPRODUCED]) == REPRODUCED and combine([ABSENT]) == ABSENT
    assert combine([REPRODUCED, REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([REPRODUCED, SMALLER]) == SMALLER
    assert combine([SMALLER, ABSENT, INCONCLUSIVE]) == ABSENT
    assert combine([REPRODUCED, ABSENT, OPPOSITE]) == OPPOSITE
    with pytest.raises(ValueError, match="combine"):
        combine([])
    with pytest.raises(ValueError, match="combine"):
        combine(["not reproduced"])


# ----------------------------------------------------------------------------- rows from data


def test_directional_rows_from_constructed_numbers():
    soft = BASE
    cases = {REPRODUCED: soft - 0.5 + NOISE,      # SoftKD - Last = +0.5 ± small: above 0, δ=0.2 not excluded
             SMALLER: soft - 0.1 + NOISE,         # +0.1 precisely: above 0, below δ
             ABSENT: soft + NOISE,                # 0 precisely
             OPPOSITE: soft + 0.3 + NOISE}        # -0.3
    for verdict, last in cases.items():
        table = judge([ev(soft, last, primary=True)])
        assert table.loc[0, "verdict"] == verdict == table.loc[0, "headline"]
    wide = soft - np.array([0.9, -0.8, 0.7, -0.6, 0.1, -0.2, 0.5, -0.4, 0.3, 0.0])  # noisy
    assert judge([ev(soft, wide, primary=True)]).loc[0, "verdict"] == INCONCLUSIVE


def test_row_numbers_are_the_hand_computed_ones():
    a, b = BASE, BASE - 0.5 + NOISE
    d = a - b
    row = judge([ev(a, b, primary=True)]).iloc[0]
    sd, n = d.std(ddof=1), len(d)
    assert list(judge([ev(a, b, primary=True)]).columns) == list(TABLE_COLUMNS)
    assert row["estimate"] == pytest.approx(d.mean()) and row["n"] == n
    assert row["lo95"] == pytest.approx(d.mean() - t_quantile(0.975, n - 1) * sd / math.sqrt(n))
    assert row["hi90"] == pytest.approx(d.mean() + t_quantile(0.95, n - 1) * sd / math.sqrt(n))
    assert row["sesoi"] == 0.2 and row["sesoi_reason"] == "test SESOI"
    assert row["p_support"] < ALPHA_SIGN and row["p_support_holm"] == row["p_support"]
    assert 0 < row["mde"] < row["estimate"] and 0 < row["power"] <= 1
    assert "Holm" in row["rule"] and "docs/design.md §8" in row["rule"] and "paired t over 10" in row["rule"]


def test_equivalence_rows():
    soft = BASE
    neutral = soft + 0.03 + NOISE      # significantly above 0, but well inside ±0.2: neutral
    t = judge([ev(neutral, soft, EQUIVALENCE, primary=True, claim="C3-early")])
    assert t.loc[0, "lo95"] > 0 and t.loc[0, "verdict"] == REPRODUCED
    beyond = soft + 0.6 + NOISE
    assert judge([ev(beyond, soft, EQUIVALENCE, primary=True)]).loc[0, "verdict"] == OPPOSITE
    noisy = soft + np.array([0.9, -0.8, 0.7, -0.6, 0.1, -0.2, 0.5, -0.4, 0.3, 0.0])
    assert judge([ev(noisy, soft, EQUIVALENCE, primary=True)]).loc[0, "verdict"] == INCONCLUSIVE
    assert math.isnan(t.loc[0, "p_sesoi"])


def test_noninferiority_rows():
    soft = BASE
    assert judge([ev(soft + 0.05 + NOISE, soft, NONINFERIORITY, primary=True)]).loc[0, "verdict"] == REPRODUCED
    assert judge([ev(soft + 0.8 + NOISE, soft, NONINFERIORITY, primary=True)]).loc[0, "verdict"] == OPPOSITE


def test_holm_within_a_claim_changes_a_borderline_verdict():
    soft = BASE
    # a variant whose raw one-sided p is just below 2.5 %: reproduced alone, not beside two
    # other primary variants with the same p (Holm: 3 x p > 2.5 %)
    shift = np.array([0.9, -0.6, 0.7, -0.5, 0.1, -0.2, 0.5, -0.3, 0.3, 0.0]) * 0.3
    d = TDist.of(shift + 0.0)
    k = (t_quantile(0.985, 9) * float(d.se) - float(d.mean))  # move the mean so p ≈ 0.015
    last = soft - (shift + k)
    one = judge([ev(soft, last, primary=True)])
    assert one.loc[0, "p_support"] == pytest.approx(0.015, rel=1e-6)
    assert one.loc[0, "verdict"] in (REPRODUCED, SMALLER)
    three = judge([ev(soft, last, primary=True, variant="a"),
                   ev(soft, last, primary=True, variant="b"),
                   ev(soft, last, primary=True, variant="c")])
    assert three["p_support_holm"].tolist() == pytest.approx([0.045] * 3, rel=1e-6)
    assert set(three["verdict"]) == {INCONCLUSIVE} and three["holm_changed"].all()
    # secondary variants are a family of their own: the primary keeps its p
    secondary = judge([ev(soft, last, primary=True, variant="a"), ev(soft, last, variant="b"),
                       ev(soft, last, variant="c")])
    assert secondary["p_support_holm"].tolist() == pytest.approx([0.015, 0.03, 0.03], rel=1e-6)
    assert list(secondary["family"]) == ["primary", "secondary", "secondary"]
    # a different claim is a different family: its rows do not dilute this one
    mixed = judge([ev(soft, last, primary=True), ev(soft, last, claim="C6", primary=True)])
    assert mixed["p_support_holm"].tolist() == pytest.approx([0.015, 0.015], rel=1e-6)
    # and kinds are separate families within a claim (their tests have different levels)
    kinds = judge([ev(soft, last, primary=True), ev(soft, last, NONINFERIORITY)])
    assert kinds.loc[0, "p_support_holm"] == pytest.approx(0.015, rel=1e-6)


def test_headline_and_the_opposites_beside_it():
    soft = BASE
    rows = [ev(soft, soft - 0.5 + NOISE, primary=True, variant="main"),
            ev(soft, soft + 0.5 + NOISE, variant="other way"),
            ev(soft, soft + NOISE, variant="flat")]
    t = judge(rows)
    assert t["headline"].tolist() == [REPRODUCED] * 3
    assert t["also_opposite"].tolist() == ["other way"] * 3
    parts = judge([ev(soft, soft - 0.5 + NOISE, primary=True, variant="part 1"),
                   ev(soft, soft + NOISE, primary=True, variant="part 2")])
    assert parts["headline"].tolist() == [ABSENT, ABSENT]
    with pytest.raises(ValueError, match="no primary"):
        judge([ev(soft, soft - 0.5)])
    assert list(judge([]).columns) == list(TABLE_COLUMNS)


def test_one_seed_is_inconclusive_with_nan_statistics():
    t = judge([ev([77.0], [76.5], primary=True)])
    row = t.iloc[0]
    assert row["verdict"] == INCONCLUSIVE and row["n"] == 1
    assert math.isnan(row["lo95"]) and math.isnan(row["p_support"]) and math.isnan(row["mde"])
    assert estimate_text(ev([77.0], [76.5])) == "+0.5 [n/a, n/a] pt (n=1)"


# ----------------------------------------------------------------------------- effect builders


def test_log_ratio_rows_show_ratios():
    first = np.array([0.061, 0.058, 0.065, 0.060])
    e = Evidence("C4", "ratio", DIRECTIONAL, log_ratio(first * [37, 40, 35, 38], first),
                 Sesoi(6.1, "half the log"), "x", "last/first", primary=True, scale="log",
                 paper=37.2)
    row = judge([e]).iloc[0]
    assert row["estimate"] == pytest.approx(math.exp(np.log([37, 40, 35, 38]).mean()))
    assert row["lo95"] < row["estimate"] < row["hi95"] and row["verdict"] == REPRODUCED
    assert row["sesoi"] == 6.1 and row["paper"] == 37.2
    small = Evidence("C4", "ratio", DIRECTIONAL, log_ratio(first * [2.2, 2.3, 2.25, 2.2], first),
                     Sesoi(6.1, "half the log"), "x", "last/first", primary=True, scale="log")
    assert judge([small]).loc[0, "verdict"] == SMALLER  # > 1 for sure, and below 6.1x for sure
    with pytest.raises(ValueError, match="ratio > 1"):
        Evidence("C4", "r", DIRECTIONAL, log_ratio(first, first), Sesoi(0.5, "x"), "x", "s", scale="log")
    with pytest.raises(ValueError, match="positive"):
        log_ratio([1.0, -1.0], [1.0, 1.0])


PROFILE_NOISE = np.array([[0.01, -0.02, 0.0, 0.02], [-0.01, 0.01, 0.02, -0.02],
                          [0.0, 0.01, -0.02, 0.0], [0.02, 0.0, 0.01, -0.01],
                          [-0.02, 0.0, -0.01, 0.01]])   # [S=5, L=4]


def test_u_depth_sign_and_arms():
    u = np.array([2.4, 1.9, 1.8, 3.3]) + PROFILE_NOISE
    d = u_depth(u)
    assert float(d.mean) == pytest.approx(min(u[:, 0].mean(), u[:, 3].mean()) - u[:, 1:3].mean(0).min())
    table = judge([Evidence("C1", "u", DIRECTIONAL, d, DELTA, "bits", "u", primary=True)])
    assert table.loc[0, "verdict"] == REPRODUCED
    mono = np.array([1.0, 1.5, 2.0, 2.5]) + PROFILE_NOISE
    t = judge([Evidence("C1", "u", DIRECTIONAL, u_depth(mono), DELTA, "bits", "u", primary=True),
               Evidence("C1", "first", DIRECTIONAL, u_depth(mono, ["first"]), DELTA, "bits", "f"),
               Evidence("C1", "last", DIRECTIONAL, u_depth(mono, ["last"]), DELTA, "bits", "l")])
    assert t["verdict"].tolist() == [OPPOSITE, OPPOSITE, REPRODUCED]  # no compression, expansion
    assert t.loc[0, "estimate"] == pytest.approx(-0.5, abs=0.02)
    with pytest.raises(ValueError, match="L >= 3"):
        u_depth([[1.0, 2.0]])
    with pytest.raises(ValueError, match="arms"):
        u_depth(u, ["middle"])


def test_u_depth_from_bootstrap_replicates():
    rng = np.random.default_rng(0)
    point = np.array([1.0, 1.5, 2.0, 2.5, 3.0])
    reps = point + rng.normal(0, 0.02, (400, 5))
    d = u_depth(reps, point=point, n_images=200)
    assert isinstance(d.arms, Replicates) and d.n == 200
    assert float(d.mean) == pytest.approx(-0.5)
    # the lower bound is the max over candidates of the per-arm percentile at 2.5 %/3
    arms = np.stack([reps[:, :1] - reps[:, 1:4], reps[:, 4:] - reps[:, 1:4]])  # [2, B, 3]
    lower = np.quantile(arms, 0.025 / 3, axis=1).min(0).max()
    assert float(d.lower(0.025)) == pytest.approx(lower)
    row = judge([Evidence("C1", "teacher", DIRECTIONAL, d, DELTA, "bits", "u", primary=True)]).iloc[0]
    assert row["verdict"] == OPPOSITE and "percentile bootstrap over 200 images" in row["rule"]


def test_pvalues_vectorised_and_interior_min():
    rng = np.random.default_rng(1)
    d = TDist.of(rng.normal(0.3, 0.1, (7, 10)))
    p = pvalues(DIRECTIONAL, d, 0.2)
    assert {k: v.shape for k, v in p.items()} == {"support": (7,), "opposite": (7,), "sesoi": (7,)}
    assert np.allclose(p["support"] + p["opposite"], 1.0)
    assert interior_min([[3.0, 1.0, 2.0, 0.5]]).tolist() == [1.0]
    assert set(decide(DIRECTIONAL, p["support"], p["opposite"], p["sesoi"])) <= set(VERDICTS)
    assert holm(p["support"]).shape == (7,)
    assert ALPHA_SESOI == 0.05 and ALPHA_SIGN == 0.025


def _interval_says(row) -> str:
    """The call the printed intervals make by the rules, before any multiplicity correction."""
    log = row["scale"] == "log"
    zero, d = (1.0, row["sesoi"]) if log else (0.0, row["sesoi"])
    lo_d = 1 / d if log else -d
    if row["kind"] == DIRECTIONAL:
        if row["hi95"] < zero:
            return OPPOSITE
        below = row["hi90"] < d
        if row["lo95"] > zero:
            return "smaller than the paper's" if below else REPRODUCED
        return "absent" if below else "inconclusive"
    if row["kind"] == "equivalence":
        if lo_d < row["lo90"] and row["hi90"] < d:
            return REPRODUCED
        return OPPOSITE if (row["lo95"] > d or row["hi95"] < lo_d) else "inconclusive"
    if row["hi90"] < d:
        return REPRODUCED
    return OPPOSITE if row["lo95"] > d else "inconclusive"


@pytest.mark.parametrize("path", ["figures/claims_table.csv", "figures/scale_sweep.csv",
                                  "figures/paper_shaped/scale_sweep.csv"])
def test_no_printed_interval_contradicts_its_verdict(path):
    """Over every committed table: the unadjusted call is what the printed 95 % / 90 % intervals
    say, and the verdict differs from it only where ``holm_changed`` says so."""
    from pathlib import Path

    from ddkit.core.tables import read_table
    table = read_table(Path(__file__).resolve().parents[2] / path)
    for row in table.to_dict("records"):
        where = f"{row.get('setting', '')} {row['claim']} {row['variant']}"
        assert _interval_says(row) == row["verdict_unadjusted"], where
        assert (row["verdict"] != row["verdict_unadjusted"]) == bool(row["holm_changed"]), where


def test_holm_runs_over_the_primaries_only_so_a_secondary_never_moves_a_headline():
    strong = paired(BASE + 0.5, BASE)                     # clearly in the paper's direction
    weak = paired(BASE + 0.05 + NOISE * 3, BASE)
    rows = [Evidence("C9", "primary", DIRECTIONAL, strong, DELTA, "pt", "s", primary=True)]
    alone = judge(rows)
    crowded = judge(rows + [Evidence("C9", f"secondary {i}", DIRECTIONAL, weak, DELTA, "pt", "s")
                            for i in range(12)])
    assert crowded.loc[0, "p_support_holm"] == alone.loc[0, "p_support_holm"]
    assert crowded.loc[0, "headline"] == alone.loc[0, "headline"]
    assert set(crowded["family"]) == {"primary", "secondary"}


def test_a_futile_design_is_flagged_with_the_seeds_it_needs():
    assert claims_module.needed_seeds(10, 0.6, 0.15) == 160          # (0.6 / 0.15)² × 10
    noisy = paired(BASE + WIDE_NOISE, BASE)
    table = judge([Evidence("C9", "v", DIRECTIONAL, noisy, DELTA, "pt", "s", primary=True)])
    assert table.loc[0, "power"] < 0.5
    assert table.loc[0, "design"].startswith("underpowered (needs ≈ ")


@pytest.mark.parametrize("paper, expected", [(0.5, "inside the 95 % CI"),
                                             (1.1, "within the SESOI of the CI"),
                                             (2.0, "no"), (math.nan, "")])
def test_paper_compatibility_by_hand(paper, expected):
    row = {"paper": paper, "lo95": 0.2, "hi95": 0.9, "sesoi": 0.3, "scale": "linear"}
    assert claims_module.paper_compatible(row) == expected


def test_the_sweeps_mark_every_setting_but_the_base_exploratory():
    from pathlib import Path

    from ddkit.core.config import load_profile
    from ddkit.core.tables import read_table
    root = Path(__file__).resolve().parents[2] / "figures"
    for path in (root / "scale_sweep.csv", root / "paper_shaped" / "scale_sweep.csv"):
        table = read_table(path)
        own = load_profile(path.parent.name if path.parent != root else "default").own_setting
        assert (table["exploratory"] == (table["setting"] != own)).all(), path
