"""The paper-shaped study's tables as notebook 07 and the README tell them: the regime search per
setting, where each followed claim appears, the pair's claims beside the default pair's, and the
U's depth at the end of training. Hand-made tables with known verdicts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ddkit.publish import readme
from ddkit.studies import regime
from ddkit.verdicts.claims import DIRECTIONAL, REPRODUCED, Evidence, Sesoi, judge, paired

SEEDS = np.array([80.1, 79.8, 80.3, 80.0, 79.9, 80.2])
JITTER = np.array([0.02, -0.03, 0.01, 0.0, -0.01, 0.02])


def _claims(c1_gain: float, c3_gain: float) -> pd.DataFrame:
    """A judged table with one primary row each for C1, C3 and C6: an effect of ``gain`` in the
    paper's direction (0: none)."""
    d = Sesoi(0.1, "a tenth")
    ev = [Evidence("C1", "U depth", DIRECTIONAL, paired(SEEDS + c1_gain + JITTER, SEEDS), d, "bits",
                   "depth", primary=True),
          Evidence("C3", "final", DIRECTIONAL, paired(SEEDS + c3_gain + JITTER, SEEDS), d, "pt",
                   "gap", primary=True),
          Evidence("C6", "distortion", DIRECTIONAL, paired(SEEDS - 0.5 + JITTER, SEEDS), d, "bits",
                   "distortion", primary=True)]
    return judge(ev)


@pytest.fixture
def sweep() -> pd.DataFrame:
    return pd.concat([_claims(0.0, 0.0).assign(setting="paper-shaped pair", exploratory=False,
                                               train_wall_s=2520.0, session_s=1.0),
                      _claims(0.6, 0.0).assign(setting="4-block student", exploratory=True,
                                               train_wall_s=900.0, session_s=1.0)],
                     ignore_index=True)


def _formation() -> pd.DataFrame:
    rows = []
    for model, ends in (("SoftKD", (0.12, 0.02)), ("SpectralKD-Last", (0.05, -0.01))):
        for epoch, value in zip((1, 29), ends):
            rows += [{"model": model, "epoch": epoch, "progress": (epoch + 1) / 30,
                      "statistic": s, "estimate": value, "lo95": value - 0.01,
                      "hi95": value + 0.01, "n": 3} for s in ("U depth", "first − min")]
    return pd.DataFrame(rows)


def test_search_table_has_one_row_per_setting_with_each_followed_claim(sweep):
    table = regime.search_table(sweep)
    assert list(table["setting"]) == ["paper-shaped pair", "4-block student"]
    assert list(table["train_wall_s"]) == [2520.0, 900.0]
    assert table.loc[1, "C1"].endswith(f": {REPRODUCED}")
    assert not table.loc[0, "C1"].endswith(f": {REPRODUCED}")
    assert table.loc[0, "C6"].endswith(": opposite")


def test_where_claims_appear_names_the_settings_or_says_none(sweep):
    text = regime.where_claims_appear(sweep)
    assert text["C1"].startswith("C1 U-shaped entropy (exploratory): reproduced in `4-block student` (of 2")
    assert "reproduced in none of the 2 settings searched" in text["C3"]
    assert "opposite: 2" in text["C6"]


def test_pair_claims_prefers_the_full_table_and_falls_back_to_the_pairs_own_setting(sweep):
    full = _claims(0.6, 0.6)
    assert regime.pair_claims(full, sweep) is full
    own = regime.pair_claims(None, sweep)     # the one setting not exploratory, wherever it is
    assert len(own) == 3 and "setting" not in own and not own["exploratory"].any()
    assert regime.pair_claims(None, sweep.iloc[::-1]).equals(own.iloc[::-1])
    assert regime.pair_claims(None, None) is None
    both = regime.compare(_claims(0.6, 0.6), own)
    assert list(both.index) == ["C1", "C3", "C6"]
    assert both.loc["C1", "default pair"] == REPRODUCED
    assert both.loc["C1", "paper-shaped pair"] != REPRODUCED


def test_paper_shaped_block_reports_the_last_checkpoint_and_the_settings(sweep):
    text = readme.paper_shaped_markdown(_claims(0.6, 0.6), None, sweep, _formation())
    assert "paper-shaped pair (regime search, the pair's own setting)" in text
    assert "`paper-shaped pair` 42 min, `4-block student` 15 min" in text
    assert "- SoftKD students at the last checkpoint (after 30 epochs): U depth +0.02 bits" in text
    assert "over 3 seeds" in text and "after 2 epochs" not in text
    end = readme.formation_end(_formation())
    assert sorted(end["epoch"]) == [29, 29]


def test_formation_pivot_is_checkpoints_by_models():
    table = regime.formation_pivot(_formation())
    assert list(table.index) == [1, 29] and list(table.columns) == ["SoftKD", "SpectralKD-Last"]
    assert table.loc[29, "SoftKD"] == "+0.020 [+0.010, +0.030]"


def test_load_names_the_command_when_the_study_has_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(regime, "results_dir", lambda profile: tmp_path)
    with pytest.raises(FileNotFoundError, match="run_all.sh --profile paper_shaped --from 06"):
        regime.load("paper_shaped")


def test_teacher_line_says_when_a_teacher_was_shipped_before_its_schedule_ended():
    record = {"config": {"model": {"name": "ddkit_cait_teacher_fmnist"}}, "final_acc1": 89.5,
              "epochs": 24, "scheduled_epochs": 30, "wall_time_s": 7200.0, "device": "cpu"}
    line = readme.teacher_line(record)
    assert line.startswith("Teacher `ddkit_cait_teacher_fmnist`: **89.50 %** top-1")
    assert "after 24 of its 30 scheduled epochs (shipped before the schedule ended" in line
    assert "2.0 h on cpu" in line
    done = readme.teacher_line({**record, "epochs": 30})
    assert "after 30 epochs, 2.0 h" in done
    assert "teacher `ddkit_cait" in readme.paper_shaped_markdown(None, None, None, None, record).lower()
