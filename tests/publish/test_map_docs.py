"""ddkit.publish.map_docs: the phase map's text, from the committed tables under figures/."""
from __future__ import annotations

import pandas as pd

from ddkit.core.tables import fmt_minutes
from ddkit.publish import map_docs, readme
from ddkit.runs.store import FIGURES, REPO_ROOT
from ddkit.studies import map_study


def _committed():
    controls = pd.read_csv(FIGURES / "controls" / "runs.csv")
    return map_docs.load(FIGURES, controls)


def test_nothing_published_is_said_with_the_command(tmp_path):
    assert map_docs.load(tmp_path, None) is None
    text = map_docs.map_markdown(None)
    assert text.startswith("_Not generated yet") and map_docs.COMMAND in text


def test_the_committed_tables_load_into_the_block_results_md_shows():
    data = _committed()
    runs = pd.read_csv(FIGURES / map_docs.PROFILE / "runs.csv")
    assert len(data["results"]) == len(runs)
    assert set(data["studies"]) == set(map_study.MAPS)
    block = map_docs.map_markdown(data)
    for name in data["teachers"]["teacher"].unique():         # one table row per teacher
        assert block.count(f"| `{name}` |") == 1
    assert block == readme.current((REPO_ROOT / "docs" / "results.md").read_text(), "phase_map")
    for r in data["points"].to_dict("records"):               # one table row per map point
        assert f"| {r['setting']} | {r['cell']} | " in block


def test_costs_sum_the_students_and_the_shipped_teachers():
    results = pd.DataFrame({"wall_time_s": [60.0, 120.0, 300.0]})
    assert map_docs.students_cost(results).startswith(f"3 students, {fmt_minutes(480.0)} of ")
    teachers = map_docs.teacher_seconds()
    assert teachers > 0                                       # both mosaic teachers are shipped
    assert f"plus {fmt_minutes(teachers)} for the mosaic teachers" in map_docs.cost(results)


def test_the_teachers_table_reads_the_last_block_at_95_percent():
    rows = [{"task": "mosaic10", "teacher": "t", "acc1": 91.234, "epochs": 30, "rise_last3": 0.5,
             "layer": layer, "energy": energy, "dim_followup": 10.0 * layer + energy,
             "dim_global": 20.0, "dim_centred": 7.25, "width": 192}
            for layer in (0, 11) for energy in (0.9, 0.95)]
    lines = map_docs._teachers_markdown(pd.DataFrame(rows))
    assert lines[2] == "| mosaic10 | `t` | 91.23 | 30 | +0.50 | 111.0 | 20 | 7.2 | 192 |"
    assert len(lines) == 3


def test_verdict_rows_are_the_published_studies_then_the_remedies():
    data = _committed()
    remedies = map_docs.remedies(pd.read_csv(FIGURES / "controls" / "runs.csv"), data["results"],
                                 data["points"])
    rows = map_docs.verdict_rows(data, remedies)
    published = [s for s in data["studies"].values() if s is not None]
    assert rows[:len(published)] == [map_study.verdict_row(s) for s in published]
    assert map_docs.verdict_rows(None, remedies) == rows[len(published):]
