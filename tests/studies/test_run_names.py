"""Every committed run keeps its name: the run folders named in the committed tables
(``figures/**/runs.csv``) are recomputed from their profiles' configs by today's code, so no
cached or shipped run is orphaned by a change to the config tree, a module's move or a new
field (new fields stay out of a run's identity while they hold their default)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ddkit.core.config import CELLS, load_profile, profile_names
from ddkit.runs.store import RunDir
from ddkit.studies import grid, study

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "figures"


def planned_names(profile_name: str) -> set[str]:
    """Run folder names a profile plans: its grid (base and settings) and, for a profile whose
    base trains the ablation (the default), every cell over its seeds."""
    profile = load_profile(profile_name)
    if all(changes.get("cell_seeds") for changes in profile.sweep.values()):
        return set(grid.names(profile))
    teacher, _ = study.teacher_model(profile, progress=False)   # a notebook 03 study
    return {RunDir.for_config(study.student_config(profile, cell, seed, teacher)).path.name
            for cell in CELLS for seed in profile.seeds_for(cell)}


def committed_tables() -> list[tuple[str, Path]]:
    """(profile, runs.csv) of every committed run table: figures/runs.csv is the default
    profile's; figures/<profile>/runs.csv another profile's (figures/smoke is not committed)."""
    out = [("default", FIGURES / "runs.csv")] if (FIGURES / "runs.csv").is_file() else []
    out += [(p.parent.name, p) for p in sorted(FIGURES.glob("*/runs.csv"))
            if p.parent.name in profile_names() and p.parent.name != "smoke"]
    return out


@pytest.mark.parametrize("profile_name, path", committed_tables(),
                         ids=[name for name, _ in committed_tables()])
def test_every_committed_run_is_recomputed_from_its_profile(profile_name, path):
    committed = set(pd.read_csv(path)["run"])
    missing = sorted(committed - planned_names(profile_name))
    assert not missing, (f"{len(missing)} run(s) of {path.relative_to(ROOT)} no longer recompute "
                         f"from profile {profile_name!r} (their hash or name moved): {missing[:5]}")


def test_the_check_sees_an_orphaned_run(tmp_path):
    """The check can fail: a run name the profile does not plan is reported."""
    assert "phase_map-student-soft-000000000000" not in planned_names("phase_map")
