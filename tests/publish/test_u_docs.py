"""publish/u_docs: the README's C1-depth and C6-deep rows and the depth design's cost line, from
planted U-formation tables: before any run, with single runs read alone (intervals over
images), and judged once a depth has two seeds."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ddkit.publish import u_docs
from ddkit.studies import u_formation as uf

U_PROFILE = np.array([3.0, 2.6, 2.3, 2.2, 2.4, 2.8])          # a U of 0.6 bits, min at block 4
MONOTONE = np.array([2.0, 2.2, 2.4, 2.6, 2.8, 3.0])


def _teacher_rows() -> list[dict]:
    images = U_PROFILE + np.random.default_rng(0).normal(0, 0.05, (200, 6))
    return uf._rows(images, "images", source="shipped teacher", model=u_docs.CAIT, setting="",
                    cell="teacher", depth=6, epoch=29, epochs=30, progress=1.0)


def _entropy(profile: np.ndarray, seeds=(0, 1, 2), cells=("SoftKD", "no-KD")) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"setting": "depth 6", "cell": c, "seed": s, "depth": 6, "epoch": e,
                          "epochs": 2, "layer": l, "value": v + rng.normal(0, 0.02)}
                         for c in cells for s in seeds for e in (0, 1)
                         for l, v in enumerate(profile)])


def _runs(n: int) -> pd.DataFrame:
    return pd.DataFrame({"wall_time_s": [600.0] * n, "setting": ["depth 6"] * n})


def test_no_table_no_rows():
    assert u_docs.verdict_rows(None, 18) == [] and u_docs.cost_line(None) == []


def test_before_any_run_the_row_names_the_command_and_reads_the_teacher():
    data = {"table": uf.table([_teacher_rows()]), "entropy": None, "runs": None}
    c1, c6 = u_docs.verdict_rows(data, 18)
    assert "not trained yet: `ddkit u-formation`" in c1 and "(0 of 18 planned runs published)" in c1
    assert "CaiT-shaped teacher: +0.6" in c1 and "(a U)" in c1
    assert c6.startswith("| C6-deep |") and "not located yet" in c6
    assert u_docs.cost_line(data) == []


def test_single_runs_are_read_alone_with_their_image_intervals():
    rng = np.random.default_rng(2)
    ones = (uf._rows(MONOTONE + rng.normal(0, 0.05, (200, 6)), "images", source="one run",
                     model="r1", setting="depth 6", cell="SoftKD", depth=6, epoch=1, epochs=2,
                     progress=1.0))
    data = {"table": uf.table([_teacher_rows(), ones]), "entropy": _entropy(MONOTONE, seeds=(0,)),
            "runs": _runs(2)}
    c1 = u_docs.verdict_rows(data, 18)[0]
    assert "not judged yet: it needs two seeds" in c1
    # the monotone profile's U depth is min(first, last) - the lowest interior block = -0.2
    assert re.search(r"6 blocks, SoftKD: -0\.(19|20)\d* \[", c1), c1
    assert "(monotone)" in c1 and "(2 of 18" in c1
    assert u_docs.cost_line(data) == ["- `ddkit u-formation`: 2 students, 20.0 min of single-run "
                                      "training time; two runs side by side on 2 cores, so the "
                                      "wall time is about half"]


def test_a_depth_with_seeds_is_judged_and_c6_follows_where_the_u_is():
    entropy = _entropy(U_PROFILE)
    table = uf.table([_teacher_rows(), uf.depth_rows(entropy)])
    data = {"table": table, "entropy": entropy, "runs": _runs(6)}
    c1, c6 = u_docs.verdict_rows(data, 6)
    assert "6 blocks: reproduced (SoftKD, +0.6" in c1 and "n = 3" in c1
    assert "planned runs published" not in c1           # the whole design is published
    assert "not trained yet: SpectralKD-Last at depth 6" in c6
    aligned = _entropy(MONOTONE, cells=("SpectralKD-Last",))
    data["entropy"] = pd.concat([entropy, aligned], ignore_index=True)
    c6 = u_docs.verdict_rows(data, 6)[1]
    assert "SoftKD - SpectralKD-Last, last layer (depth 6)" in c6 and "bits" in c6
