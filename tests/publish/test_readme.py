"""The README's results are generated: regenerating every block from the committed figures/*.csv
gives exactly what the README says, and each verdict has its sentence."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ddkit.core.tables import CLAIMS_CSV, TITLES, read_table
from ddkit.publish import readme
from ddkit.runs.store import FIGURES, REPO_ROOT
from ddkit.verdicts.claims import (
    ABSENT,
    DIRECTIONAL,
    EQUIVALENCE,
    INCONCLUSIVE,
    NONINFERIORITY,
    OPPOSITE,
    REPRODUCED,
    SMALLER,
    Evidence,
    Sesoi,
    judge,
    log_ratio,
    paired,
)

BASE = np.array([76.99, 77.10, 76.85, 77.02, 76.91, 77.20, 76.80, 77.05, 76.95, 77.12])
NOISE = np.array([0.03, -0.05, 0.02, -0.01, 0.04, -0.03, 0.0, 0.01, -0.02, 0.01])
WIDE = np.array([0.9, -0.8, 0.7, -0.6, 0.1, -0.2, 0.5, -0.4, 0.3, 0.0])


def test_generated_blocks_match_the_committed_csvs():
    generated = readme.blocks(FIGURES)
    assert set(generated) == set(readme.BLOCKS)
    for page, names in readme.PAGES.items():
        text = page.read_text()
        for name in names:
            assert readme.current(text, name) == generated[name], (
                f"{page.name} block {name!r} disagrees with figures/*.csv: run `python -m "
                "ddkit.publish.readme` (or the notebooks) to regenerate it")


def test_the_readme_is_short_and_its_links_resolve():
    """A newcomer's page: under 150 lines; every relative link and image path exists."""
    text = readme.README.read_text()
    assert len(text.splitlines()) < 150
    links = re.findall(r"\]\(([^)#\s]+)", text)
    assert links, "the README links to its documents"
    missing = [link for link in links if "://" not in link
               and not (readme.README.parent / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    for page in readme.PAGES:
        for link in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            assert "://" in link or (page.parent / link).exists(), f"{page.name}: {link}"


def _table() -> pd.DataFrame:
    d = Sesoi(0.2, "a fifth of a point")
    rows = [("C3", "reproduced row", DIRECTIONAL, BASE - 0.5 + NOISE, True),
            ("C3", "smaller row", DIRECTIONAL, BASE - 0.1 + NOISE, False),
            ("C3", "absent row", DIRECTIONAL, BASE + NOISE, False),
            ("C3", "opposite row", DIRECTIONAL, BASE + 0.4 + NOISE, False),
            ("C3", "noisy row", DIRECTIONAL, BASE + WIDE, False),
            ("C3-early", "neutral row", EQUIVALENCE, BASE + NOISE, True),
            ("C3-early", "beyond row", EQUIVALENCE, BASE - 0.7 + NOISE, False),
            ("C3-early", "unclear row", EQUIVALENCE, BASE + WIDE, False),
            ("C5", "caught-up row", NONINFERIORITY, BASE + NOISE, True),
            ("C5", "open row", NONINFERIORITY, BASE - 0.9 + NOISE, True)]
    ev = [Evidence(c, v, k, paired(BASE, other), d, "pt", f"stat of {v}", primary=p,
                   paper=0.16 if c == "C3" else np.nan, note=f"note of {v}" if p else "")
          for c, v, k, other, p in rows]
    ev.append(Evidence("C4", "ratio row", DIRECTIONAL, log_ratio(BASE * 0 + 20 * (1 + NOISE), BASE * 0 + 1),
                       Sesoi(6.1, "half the log"), "x", "ratio", primary=True, scale="log", paper=37.2))
    return judge(ev)


def test_every_verdict_has_its_sentence():
    table = _table().set_index("variant")
    expect = {"reproduced row": (REPRODUCED, "in the paper's direction (95 % CI above zero)"),
              "smaller row": (SMALLER, "smaller than the SESOI of 0.2 pt"),
              "absent row": (ABSENT, "effects of 0.2 pt or more are excluded"),
              "opposite row": (OPPOSITE, "the opposite of the paper's direction"),
              "noisy row": (INCONCLUSIVE, "neither an effect nor its absence is shown"),
              "neutral row": (REPRODUCED, "neutral: the 90 % CI lies inside ±0.2 pt"),
              "beyond row": (OPPOSITE, "not neutral"),
              "unclear row": (INCONCLUSIVE, "neither neutrality"),
              "caught-up row": (REPRODUCED, "caught up: the gap is below 0.2 pt"),
              "open row": (OPPOSITE, "not caught up"),
              "ratio row": (REPRODUCED, "20x")}
    for variant, (verdict, phrase) in expect.items():
        row = table.loc[variant].copy()
        row["variant"] = variant
        assert row["verdict"] == verdict, variant
        text = readme.sentence(row)
        assert text.startswith(f"{variant}: ") and phrase in text, text
    row = table.loc["reproduced row"].rename(None).to_dict() | {"variant": "x"}
    assert "(n = 10, paper +0.16 pt)" in readme.sentence(row)


def test_claim_paragraphs_headlines_and_tables(tmp_path):
    table = _table()
    text = readme.claims_markdown(table)
    lines = text.strip().split("\n")
    assert [ln.split(" (")[0] for ln in lines] == ["- **C3", "- **C3-early", "- **C4", "- **C5"]
    assert lines[0].startswith(f"- **C3 ({TITLES['C3']}): {REPRODUCED}.** reproduced row:")
    assert "Opposite in: opposite row." in lines[0] and "SESOI: a fifth of a point." in lines[0]
    assert lines[3].startswith(f"- **C5 ({TITLES['C5']}): {OPPOSITE}.**")   # one part open
    assert "Note: note of caught-up row; note of open row." in lines[3]
    results = readme.results_markdown(table)
    assert results.count("\n| C") == len(table) and "| C4 | ratio row ★ | 37.2x |" in results
    # the CSV round trip gives the same text (the pipeline writes the documents from the CSV)
    table.to_csv(tmp_path / "claims_table.csv", index=False)
    again = read_table(tmp_path / "claims_table.csv")
    assert readme.claims_markdown(again) == text and readme.results_markdown(again) == results


def test_sweep_table():
    table = _table()
    sweep = pd.concat([table.assign(setting=s, train_wall_s=w, session_s=1.0)
                       for s, w in (("base", 304.0), ("longer", 555.4))], ignore_index=True)
    text = readme.sweep_markdown(sweep)
    rows = [ln for ln in text.split("\n") if ln.startswith("| base") or ln.startswith("| longer")]
    assert len(rows) == 2 and rows[1].startswith("| longer | 555 | ")
    assert "C3: reproduced row" in text and "C3 reproduced; C3-early reproduced" in rows[0]


def test_render_replaces_between_markers_and_names_a_missing_one(tmp_path):
    text = "top\n<!-- a:begin -->\nold\n<!-- a:end -->\nbottom\n"
    assert readme.render(text, {"a": "new\n"}) == "top\n<!-- a:begin -->\nnew\n<!-- a:end -->\nbottom\n"
    assert readme.current(readme.render(text, {"a": "x\n"}), "a") == "x\n"
    with pytest.raises(ValueError, match="<!-- b:begin -->"):
        readme.render(text, {"b": "x"})
    with pytest.raises(ValueError, match="exactly one"):
        readme.render(text + text, {"a": "x"})
    # update(): placeholders until the CSVs exist, then the generated text; False when unchanged
    page = tmp_path / "README.md"
    page.write_text("\n".join(f"{b}\n{e}" for b, e in map(readme.marker, readme.BLOCKS)) + "\n")
    figures = tmp_path / "figures"
    figures.mkdir()
    assert readme.update(page, figures) and "_Not generated yet" in readme.current(page.read_text(), "claims")
    assert not readme.update(page, figures)
    _table().to_csv(figures / CLAIMS_CSV, index=False)
    assert readme.update(page, figures)
    assert readme.current(page.read_text(), "claims").startswith("- **C3 (")


def test_setup_block_states_each_notebooks_time_from_the_recorded_table():
    times = pd.DataFrame([
        {"notebook": "00_setup_and_data", "wall_s": 7.0, "runs_trained": 0, "runs_cached": 0,
         "trained_run_wall_s": 0.0, "cpu_count": 2, "finished_utc": "2026-11-27 22:00"},
        {"notebook": "03_negative_transfer", "wall_s": 1500.0, "runs_trained": 39,
         "runs_cached": 13, "trained_run_wall_s": 2900.0, "cpu_count": 2,
         "finished_utc": "2026-11-27 22:40"}])
    text = readme.setup_markdown(times=times)
    assert "finished between 2026-11-27 22:00 and 2026-11-27 22:40 UTC, 2 CPU cores; 25.1 min in all" in text
    assert "| `00_setup_and_data` | 7 s | 0 | 0 |" in text
    assert "| `03_negative_transfer` | 25.0 min | 39 | 13 |" in text
    assert readme.setup_markdown().endswith(").\n")                    # no table: one line


BARE_BASE = re.compile(r"(?<![\w-])base(?![\w-])", re.IGNORECASE)


def test_no_setting_a_reader_sees_is_a_bare_base():
    """Every setting is named by what it is: no cell of a committed table under figures/ is the
    word "base", and neither generated page uses it (a profile names its own setting in
    ``base_name``, e.g. "MAE teacher, head untrained")."""
    tables = sorted(p for p in FIGURES.rglob("*.csv")     # figures/smoke/: not committed
                    if p.relative_to(FIGURES).parts[0] != "smoke")
    assert len(tables) >= 8
    for path in tables:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        bare = [column for column in table if table[column].str.strip().str.lower().eq("base").any()]
        assert not bare, f"{path.relative_to(REPO_ROOT)}: a bare 'base' in {bare}"
    for page in readme.PAGES:
        found = [line for line in page.read_text().splitlines() if BARE_BASE.search(line)]
        assert not found, f"{page.name} calls a setting 'base': {found}"
