"""The kit documents itself: every "<doc> §N" cited in code, notebooks and the README names a
document in the repository that has a section N, and no "§" is left without its document."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ddkit.publish import pipeline

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"(?P<doc>[\w./-]+\.md) §(?P<section>\d+)")
SECTION_MARK = re.compile(r"§\s*\d+")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an sdist): every text file under the root
        paths = [p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file()]
    else:
        paths = [Path(p) for p in out.stdout.split()]
    keep = {".py", ".md", ".ipynb", ".yaml", ".yml", ".sh", ".toml", ".cfg", ".txt"}
    return [ROOT / p for p in paths if p.suffix in keep and (ROOT / p).is_file()]


def _sections(doc: Path) -> set[str]:
    return set(re.findall(r"^#+ (\d+)\.", doc.read_text(), flags=re.M))


def _citations() -> list[tuple[str, str, str]]:
    found = []
    for path in _tracked_text_files():
        text = path.read_text(errors="replace")
        for m in CITATION.finditer(text):
            found.append((str(path.relative_to(ROOT)), m["doc"], m["section"]))
    return found


def test_there_are_citations_to_check():
    assert len(_citations()) >= 10


@pytest.mark.parametrize("where,doc,section", sorted(set(_citations())))
def test_cited_section_exists(where, doc, section):
    path = ROOT / doc
    assert path.is_file(), f"{where} cites {doc}, which is not in the repository"
    assert section in _sections(path), f"{where} cites {doc} §{section}; it has §{sorted(_sections(path), key=int)}"


def test_every_section_mark_names_its_document():
    bare = []
    for path in _tracked_text_files():
        text = path.read_text(errors="replace")
        cited = {m.start("section") - 1 for m in CITATION.finditer(text)}
        for m in SECTION_MARK.finditer(text):
            if m.start() not in cited and path.name != "design.md":
                bare.append(f"{path.relative_to(ROOT)}: {text[max(0, m.start() - 30):m.end()]!r}")
    assert not bare, "a § without its document: " + "; ".join(bare)


def test_no_reference_outside_the_repository():
    outside = [str(p.relative_to(ROOT)) for p in _tracked_text_files()
               if p.name != "test_docs.py"
               and re.search(r"\.\./shared|/work/shared|DESIGN\.md", p.read_text(errors="replace"))]
    assert not outside, f"these files cite documents the repository does not hold: {outside}"


def test_runs_env_is_documented():
    from ddkit.runs.store import RUNS_ENV
    assert RUNS_ENV in (ROOT / "docs" / "design.md").read_text()
    assert RUNS_ENV in (ROOT / "README.md").read_text()


def test_the_readme_lists_every_notebook_in_order():
    table = (ROOT / "README.md").read_text().split("## The notebooks", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\d\d_[a-z_]+)` \|", table, flags=re.M)
    assert listed == [p.stem for p in pipeline.notebooks()]
