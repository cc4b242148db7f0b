"""study.ablation_findings reads the ablation's summary as its intervals say, tested on summaries
built from planted seeds (the reading of each cell against a plain comparison of the interval)."""
from __future__ import annotations

import pandas as pd

from ddkit.studies import study

SPREAD = [0.3, -0.2, 0.1, -0.4, 0.2]   # SoftKD's seeds around 70 %
NOISE = [0.1, -0.1, 0.05, 0.0, -0.05]  # a paired cell's own small seed noise
NOISY = [1.5, -1.5, 1.0, -1.0, 0.0]    # a cell whose seeds scatter around its shift


def planted(shifts: dict[str, float], seeds: int = 5, noisy: str = "") -> pd.DataFrame:
    """An accuracy table: SoftKD at 70 % with a seed-level spread, every other cell shifted by
    its planted amount with small paired noise (large for the cell named ``noisy``)."""
    rows = [{"run": cell, "seed": s,
             "final_acc1": 70.0 + shift + SPREAD[s]
             + (0.0 if cell == "SoftKD" else (NOISY if cell == noisy else NOISE)[s])}
            for cell, shift in {"SoftKD": 0.0, **shifts}.items() for s in range(seeds)]
    return pd.DataFrame(rows)


def test_each_cell_is_read_by_its_interval():
    summary = study.accuracy_summary(planted({"SpectralKD-First": 2.0, "SpectralKD-Last": -3.0,
                                               "ProjectorKD-Last": 0.02}, noisy="ProjectorKD-Last"))
    lines = {line.split(":")[0]: line for line in study.ablation_findings(summary)}
    assert "alignment helped" in lines["SpectralKD-First"]
    assert "alignment hurt" in lines["SpectralKD-Last"]
    assert "spans 0" in lines["ProjectorKD-Last"]
    row = summary.set_index("run").loc["SpectralKD-Last"]
    assert f"{row['diff_vs_SoftKD']:+.2f} pt" in lines["SpectralKD-Last"]
    assert "late alignment cost 5.00 pt more than early" in lines["SpectralKD"]


def test_one_seed_says_it_has_no_interval():
    summary = study.accuracy_summary(planted({"SpectralKD-Last": -3.0}, seeds=1))
    (line,) = study.ablation_findings(summary)
    assert "one seed: no interval" in line
