"""The U's arms, per profile and over training, on hand-made profiles and the official tables."""
import pandas as pd
import pytest

from ddkit import formation


def _tidy(profiles: dict[tuple[str, int, int], list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "seed": s, "epoch": e, "layer": l, "metric": "token_entropy",
                          "value": v}
                         for (m, s, e), values in profiles.items() for l, v in enumerate(values)])


def test_arms_of_hand_made_profiles():
    table = _tidy({("A", 0, 0): [3.0, 2.0, 2.5, 4.0],     # a U: minimum at L2
                   ("A", 0, 1): [1.0, 2.0, 3.0, 4.0],     # monotone rising: minimum at L1
                   ("B", 1, 0): [4.0, 3.0, 2.0, 1.0]})    # falling: minimum at the last block
    got = formation.arms(table).set_index(["model", "seed", "epoch"])
    assert got.loc[("A", 0, 0), ["min_layer", "first_minus_min", "last_minus_min"]].tolist() == [2, 1.0, 2.0]
    assert got.loc[("A", 0, 1), ["min_layer", "first_minus_min", "last_minus_min"]].tolist() == [1, 0.0, 3.0]
    assert got.loc[("B", 1, 0), ["min_layer", "first_minus_min", "last_minus_min"]].tolist() == [4, 3.0, 0.0]


def test_arms_needs_the_metric():
    with pytest.raises(ValueError, match="no 'effective_rank' rows"):
        formation.arms(_tidy({("A", 0, 0): [1.0, 2.0, 3.0]}), metric="effective_rank")


def test_progress_is_the_fraction_of_the_schedule_done():
    table = formation.with_progress(pd.DataFrame({"model": ["A", "B"], "epoch": [0, 9]}),
                                    {"A": 10, "B": 10})
    assert table["progress"].tolist() == [0.1, 1.0]
    with pytest.raises(ValueError, match="no schedule length for model"):
        formation.with_progress(pd.DataFrame({"model": ["C"], "epoch": [0]}), {"A": 10})


def test_official_softkd_left_arm_grows_over_training():
    soft = formation.official_arms().query("model == 'SoftKD'").sort_values("progress")
    assert soft["progress"].iloc[0] == pytest.approx(0.1) and soft["progress"].iloc[-1] == 1.0
    assert soft["first_minus_min"].iloc[0] == pytest.approx(0.040, abs=5e-4)   # nearly monotone
    assert soft["first_minus_min"].iloc[-1] == pytest.approx(0.627, abs=5e-4)  # the U of the paper
    assert soft["first_minus_min"].is_monotonic_increasing
