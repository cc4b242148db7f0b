"""The U's depth and arms over training, on hand-made profiles and on the official tables."""
import numpy as np
import pandas as pd
import pytest

from ddkit.studies import formation


def _tidy(profiles: dict[tuple[str, int, int], list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "seed": s, "epoch": e, "layer": l, "metric": "token_entropy",
                          "value": v}
                         for (m, s, e), values in profiles.items() for l, v in enumerate(values)])


def _get(table, model, epoch, statistic):
    row = table[(table.model == model) & (table.epoch == epoch) & (table.statistic == statistic)]
    return row.iloc[0]


def test_depth_and_arms_of_hand_made_profiles():
    table = formation.depths(_tidy({
        ("A", 0, 0): [3.0, 2.0, 2.5, 4.0],     # a U: interior minimum 2.0 at L2
        ("A", 0, 1): [1.0, 2.0, 3.0, 4.0],     # rising: the first block is the lowest
    }))
    u = {s: _get(table, "A", 0, s)["estimate"] for s in formation.STATISTICS}
    assert u == {"U depth": 1.0, "first − min": 1.0, "last − min": 2.0}
    mono = {s: _get(table, "A", 1, s)["estimate"] for s in formation.STATISTICS}
    assert mono == {"U depth": -1.0, "first − min": -1.0, "last − min": 2.0}
    assert np.isnan(_get(table, "A", 0, "U depth")["lo95"])  # one seed: no interval


def test_intervals_over_seeds_cover_the_mean_and_follow_the_spread():
    rng = np.random.default_rng(0)
    base = np.array([3.0, 2.0, 2.2, 2.4, 4.0])
    profiles = {("A", s, 0): list(base + rng.normal(0, 0.05, 5)) for s in range(5)}
    profiles |= {("B", s, 0): list(base + rng.normal(0, 0.5, 5)) for s in range(5)}
    table = formation.depths(_tidy(profiles))
    a, b = _get(table, "A", 0, "first − min"), _get(table, "B", 0, "first − min")
    assert a["n"] == 5 and a["lo95"] < a["estimate"] < a["hi95"]
    assert a["lo95"] > 0.5                                   # a clear arm, precisely measured
    assert (b["hi95"] - b["lo95"]) > 3 * (a["hi95"] - a["lo95"])


def test_depths_needs_the_metric():
    with pytest.raises(ValueError, match="no 'effective_rank' rows"):
        formation.depths(_tidy({("A", 0, 0): [1.0, 2.0, 3.0]}), metric="effective_rank")


def test_progress_is_the_fraction_of_the_schedule_done():
    table = formation.with_progress(pd.DataFrame({"model": ["A", "B"], "epoch": [0, 9]}),
                                    {"A": 10, "B": 10})
    assert table["progress"].tolist() == [0.1, 1.0]
    with pytest.raises(ValueError, match="no schedule length for model"):
        formation.with_progress(pd.DataFrame({"model": ["C"], "epoch": [0]}), {"A": 10})


def test_official_softkd_u_forms_over_training():
    soft = formation.official_depths().query("model == 'SoftKD'")
    left = soft[soft.statistic == "first − min"].sort_values("progress")
    assert left["progress"].iloc[0] == pytest.approx(0.1) and left["progress"].iloc[-1] == 1.0
    assert left["estimate"].iloc[0] == pytest.approx(0.040, abs=5e-4)   # nearly monotone
    assert left["estimate"].iloc[-1] == pytest.approx(0.627, abs=5e-4)  # the paper's U
    assert left["estimate"].is_monotonic_increasing
