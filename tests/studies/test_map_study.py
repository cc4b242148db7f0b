"""map_study records how much of a map is published: the counts come from the profile's plan
and the runs table, and a partial map says so in its README row and its findings."""
from __future__ import annotations

import pandas as pd
import pytest

from ddkit.core.config import load_profile
from ddkit.runs.store import FIGURES
from ddkit.studies import grid, map_study


@pytest.fixture(scope="module")
def committed_map():
    """The phase map's profile, committed tables, and its study computed once."""
    profile = load_profile("phase_map")
    results = pd.read_csv(FIGURES / "phase_map" / "runs.csv")
    mism = pd.read_csv(FIGURES / "phase_map" / "mismatch.csv")
    return profile, results, mism, map_study.compute(profile, results, mism)


def test_coverage_counts_the_planned_runs_the_table_holds(committed_map):
    profile, results, mism, whole = committed_map
    planned = set(grid.names(profile))
    assert whole.coverage == (len(planned & set(results["run"])), len(planned))
    dropped = results[results["setting"] != "Fashion-MNIST, width 16"]
    study = map_study.compute(profile, dropped, mism)
    assert study.coverage == (len(planned & set(dropped["run"])), len(planned))
    assert study.coverage[0] < whole.coverage[0]
    assert f"partial: {study.coverage[0]} of {len(planned)}" in map_study.verdict_row(study)
    assert map_study.findings(study)[0].startswith("MAP is partial")


def test_a_complete_map_says_nothing_about_coverage(committed_map, tmp_path):
    study = committed_map[3]
    done, planned = study.coverage
    study.rule = study.rule.assign(runs_published=planned)
    assert study.partial == "" and "partial" not in map_study.verdict_row(study)
    map_study.write(study, tmp_path)
    assert map_study.load(tmp_path, "phase_map").coverage == (planned, planned)
    legacy = study.rule.drop(columns=["runs_published", "runs_planned"])
    legacy.to_csv(tmp_path / "rule.csv", index=False)
    assert map_study.load(tmp_path, "phase_map").coverage is None


def test_the_replication_is_judged_with_the_pre_registered_ratios(tmp_path):
    """The replication's mismatch is the phase map's committed one (docs/preregistration.md's
    table, to its two decimals), not a recomputation on the replication's own images."""
    table = map_study.mismatch_table(load_profile("map_replication"), tmp_path, recompute=False)
    assert set(table["profile"]) == {"phase_map"}
    assert pd.read_csv(tmp_path / "mismatch.csv").equals(table)
    last = table[table["layers"] == "last"].set_index("setting")["ratio"]
    text = (FIGURES.parent / "docs" / "preregistration.md").read_text()
    rows = [line.strip().split("|")[1:4] for line in text.splitlines()
            if line.strip().startswith("| ") and ("above 1" in line or "below 1" in line)]
    assert len(rows) == 12
    for setting, ratio, side in rows:
        assert f"{last[setting.strip()]:.2f}" == ratio.strip(), setting
        assert (last[setting.strip()] > 1) == (side.strip() == "above 1"), setting
