"""evidence: the study's tables in, one verdict row per (claim, variant) out, paper effects from
the shipped reference tables."""
import math

import numpy as np
import pandas as pd
import pytest

from ddkit import evidence
from ddkit.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from ddkit.reference import paper_numbers

SEEDS = [0, 1, 2]
U = np.array([2.0, 1.5, 1.4, 2.6])          # a U over 4 layers
RISING = np.array([1.0, 1.5, 2.0, 2.5])


def _layer_rows(model, profile, by, index, metrics=("token_entropy", "token_entropy_per_layer")):
    return [{"model": model, by: index, "layer": l, "metric": m, "value": v}
            for m in metrics for l, v in enumerate(profile)]


@pytest.fixture
def tables():
    rng = np.random.default_rng(0)
    finals = pd.DataFrame(
        [r for s in SEEDS for r in _layer_rows("SoftKD", U + rng.normal(0, 0.01, 4), "seed", s)] +
        [r for s in SEEDS for r in _layer_rows("SpectralKD-Last", U - [0, 0.5, 0.6, 1.0]
                                               + rng.normal(0, 0.01, 4), "seed", s)])
    reps = []
    for r in range(20):
        noise = rng.normal(0, 0.01, 4)
        for metric in ("token_entropy", "token_entropy_per_layer"):
            reps += _layer_rows("teacher", RISING + noise, "replicate", r, [metric])
        reps += _layer_rows("teacher", RISING * 0.1 + noise / 10, "replicate", r,
                            ["spectrum_intensity", "intensity_over_magnitude"])
        reps += _layer_rows("teacher", [10, 12, 14, 20 + noise[0]], "replicate", r,
                            ["effective_rank", "pca_dims"])
        reps += _layer_rows("SoftKD", [5, 6, 7, 8 + noise[1]], "replicate", r,
                            ["effective_rank", "pca_dims"])
    reps = pd.DataFrame(reps)
    fit = pd.DataFrame([{"run": run, "seed": s, "epoch": e, "pair": pair,
                         "raw": raw * (1 + 0.01 * s), "relative": rel + 0.01 * s,
                         "cosine": cos + 0.01 * s, "zero": 1.0}
                        for run in ("SpectralKD-First+Last",) for s in SEEDS for e in (0, 9)
                        for pair, raw, rel, cos in (("s0-t0", 0.1, 1.3, 0.2), ("s3-t7", 2.0, 0.4, 0.8))])
    acc = {"SoftKD": (30, 80), "SpectralKD-Last": (35, 80), "SpectralKD-First+Last": (36, 80),
           "SpectralKD-First": (31, 80), "ProjectorKD-Last": (29, 78), "ProjectorKD-First": (30, 80)}
    history = pd.DataFrame([{"run": run, "seed": s, "epoch": e, "test_acc1": a[min(e, 1)] + 0.1 * s * (run == "SoftKD")}
                            for run, a in acc.items() for s in SEEDS for e in (0, 1, 9)])
    history.loc[history.epoch == 9, "test_acc1"] = history.loc[history.epoch == 1, "test_acc1"].to_numpy()
    return finals, reps, fit, history


def test_verdicts_follow_the_constructed_numbers(tables):
    finals, reps, fit, history = tables
    table = evidence.claims_table(evidence.all_verdicts(*tables, early_epoch=0), paper_numbers())
    verdict = table.set_index(["claim", "variant"])["verdict"]
    assert verdict[("C1", "raw, SoftKD students")] == REPRODUCED            # a U over seeds
    assert verdict[("C1", "raw, teacher")] == NOT_REPRODUCED                # monotone rise
    assert verdict[("C2", "intensity")] == REPRODUCED
    assert verdict[("C2-capacity", "effective_rank")] == REPRODUCED
    assert verdict[("C4", "raw")] == REPRODUCED                             # 20x raw ratio
    assert verdict[("C4", "relative_to_zero")] == NOT_REPRODUCED            # last fitted better
    assert verdict[("C4", "cosine")] == NOT_REPRODUCED
    assert verdict[("C6", "raw")] == REPRODUCED
    assert set(table["claim"]) == {"C1", "C2", "C2-capacity", "C3", "C3-early", "C4", "C5", "C6"}
    assert set(table["verdict"]) <= {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE}


def test_paper_effects_come_from_the_reference_tables():
    numbers = paper_numbers()
    assert evidence.paper_effect("C3", "top1, SpectralKD", numbers) == pytest.approx(-0.162, abs=1e-3)
    assert evidence.paper_effect("C3", "top1, ProjectorKD", numbers) == pytest.approx(-0.270, abs=1e-3)
    assert evidence.paper_effect("C4", "raw", numbers) == pytest.approx(2.2799 / 0.06122, rel=1e-3)
    assert evidence.paper_effect("C5", "top1 at epoch 9, SpectralKD-Last", numbers) == pytest.approx(4.912, abs=1e-3)
    assert math.isnan(evidence.paper_effect("C4", "relative_to_zero", numbers))
    assert math.isnan(evidence.paper_effect("C2", "intensity", numbers))


def test_results_markdown_lists_every_row(tables):
    table = evidence.claims_table(evidence.all_verdicts(*tables, early_epoch=0), paper_numbers())
    text = evidence.results_markdown(table, "default")
    assert text.count("\n| C") == len(table)
    assert "| C4 | raw | 37.2 |" in text
