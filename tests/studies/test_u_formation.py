"""studies/u_formation: the U statistics per checkpoint against a plain reference, the depth
design's rows (intervals over seeds) and one run's rows (intervals over images), C1-depth and
C6-deep on planted profiles, where the U is located, and the findings' words for a partial
design."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ddkit.core.config import replace
from ddkit.runs.train import train
from ddkit.studies import u_formation as uf
from ddkit.verdicts.claims import OPPOSITE, REPRODUCED, judge
from ddkit.verdicts.sesoi import Paper, sesoi_c1
from tests.helpers import TINY_STUDENT, tiny_config

U = np.array([3.0, 2.6, 2.3, 2.2, 2.4, 2.8])         # U depth min(3.0, 2.8) - 2.2 = 0.6 bits
MONOTONE = np.array([2.0, 2.2, 2.4, 2.6, 2.8, 3.0])  # U depth 2.0 - 2.2 = -0.2 bits
DELTA = sesoi_c1(Paper()).value


def reference_u_depth(profile: np.ndarray, arms=("first", "last")) -> float:
    """Plainly: the largest, over interior blocks, of the smallest end-minus-block gap."""
    ends = {"first": profile[0], "last": profile[-1]}
    return max(min(ends[a] - x for a in arms) for x in profile[1:-1])


def _entropy(profiles: dict[str, np.ndarray], seeds=(0, 1, 2), sd=0.02, epochs=2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"setting": "depth 6", "cell": cell, "seed": s, "depth": 6, "epoch": e,
                          "epochs": epochs, "layer": l, "value": v + rng.normal(0, sd)}
                         for cell, p in profiles.items() for s in seeds for e in range(epochs)
                         for l, v in enumerate(p)])


@pytest.mark.parametrize("profile", [U, MONOTONE, np.array([1.0, 0.5, 2.0])])
def test_rows_match_the_plain_reference(profile):
    rows = {r["statistic"]: r for r in uf._rows(profile[None], "none", source="x")}
    assert rows["U depth"]["estimate"] == pytest.approx(reference_u_depth(profile))
    assert rows["first − min"]["estimate"] == pytest.approx(reference_u_depth(profile, ("first",)))
    assert rows["last − min"]["estimate"] == pytest.approx(reference_u_depth(profile, ("last",)))
    k = int(np.argmin(profile[1:-1])) + 1
    assert rows["U depth"]["min_block"] == k and rows["U depth"]["min_position"] == (k + 1) / len(profile)
    assert np.isnan(rows["U depth"]["lo95"]) and rows["U depth"]["interval"] == "none"


def test_depth_rows_give_intervals_over_seeds_at_every_checkpoint():
    rows = pd.DataFrame(uf.depth_rows(_entropy({"SoftKD": U})))
    u = rows[rows["statistic"] == "U depth"]
    assert list(u["progress"]) == [0.5, 1.0] and set(u["n"]) == {3}
    assert set(u["interval"]) == {"seeds"}
    assert (u["lo95"] < 0.6).all() and (u["hi95"] > 0.6).all() and (u["lo95"] > DELTA).all()


def test_c1_depth_judges_a_planted_u_and_a_planted_monotone_profile():
    verdicts = judge(uf.c1_depth_evidence(_entropy({"SoftKD": U, "no-KD": MONOTONE})))
    by_variant = verdicts.set_index("variant")["verdict"]
    assert by_variant["SoftKD students, 6 blocks: U depth at the end"] == REPRODUCED
    assert by_variant["no-KD students, 6 blocks: U depth at the end"] == OPPOSITE
    assert uf.c1_depth_evidence(_entropy({"SoftKD": U}, seeds=(0,))) == []   # one seed: none


def test_c6_deep_pairs_seeds_at_the_last_checkpoint():
    flat_last = U.copy()
    flat_last[-1] = 2.0                       # SpectralKD-Last lowers the last block by 0.8 bits
    evidence = uf.c6_deep_evidence(_entropy({"SoftKD": U, "SpectralKD-Last": flat_last}), "depth 6")
    last = [e for e in evidence if "last layer" in e.variant][0]
    assert last.dist.mean == pytest.approx(0.8, abs=0.05)
    assert uf.c6_deep_evidence(_entropy({"SoftKD": U}), "depth 6") == []


def test_located_finds_the_first_depth_and_fraction_above_the_sesoi():
    table = uf.table([uf.depth_rows(_entropy({"SoftKD": U}, epochs=4))])
    where = uf.located(table, DELTA)
    assert where["depth"] == 6 and where["from_progress"] == 0.25
    flat = uf.table([uf.depth_rows(_entropy({"SoftKD": MONOTONE}))])
    assert uf.located(flat, DELTA) == {"depth": None}


def test_findings_say_how_much_is_published_and_read_one_run_alone():
    one = uf._rows(U + np.random.default_rng(1).normal(0, 0.05, (200, 6)), "images",
                   source="one run", model="r", setting="depth 6", cell="SoftKD", depth=6,
                   epoch=1, epochs=2, progress=1.0)
    table = uf.table([uf.depth_rows(_entropy({"SoftKD": U}, seeds=(0,))), one])
    lines = uf.findings(table, None, DELTA, planned=18)
    assert "the depth design: 1 of 18 planned runs published (partial" in lines[0]
    assert any("one SoftKD student with 6 blocks" in l and "a U, its minimum at block 4 of 6" in l
               for l in lines)
    assert lines[-1] == "C1-depth is not judged yet: it needs at least two seeds at a depth"


def test_run_final_rows_read_a_trained_run_over_images(runs_dir):
    four_blocks = replace(TINY_STUDENT, kwargs={**TINY_STUDENT.kwargs, "depth": 4})
    run = train(replace(tiny_config(epochs=1), model=four_blocks,
                        **{"data.train_subset": 64, "data.augment": False}), progress=False)
    x = torch.randn(16, 1, 28, 28)
    rows = pd.DataFrame(uf.run_final_rows({("depth 2", "no-KD", 3): run}, x))
    u = rows[rows["statistic"] == "U depth"].iloc[0]
    assert (u["source"], u["interval"], u["n"], u["depth"]) == ("one run", "images", 16, 4)
    profiles = uf.image_profiles(run.load_model(), x)
    assert u["estimate"] == pytest.approx(reference_u_depth(profiles.mean(0)))
    assert u["model"] == run.dir.path.name and u["lo95"] <= u["estimate"] <= u["hi95"]
