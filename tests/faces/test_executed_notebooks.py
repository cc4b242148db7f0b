"""The committed executed notebooks (``notebooks/executed/``, written by ``./run_all.sh`` on the
default profile) show exactly the committed figures: every image output names its file in
``figures/`` and carries that file's bytes, and every notebook has its executed copy."""
from __future__ import annotations

import base64

import nbformat
import pytest

from ddkit.nb import FIGURE_KEY
from ddkit.publish import pipeline
from ddkit.runs.store import FIGURES

REGENERATE = "run ./run_all.sh to regenerate notebooks/executed/"


def executed_copies():
    return sorted(pipeline.EXECUTED.glob("*.ipynb"))


def test_every_notebook_has_an_executed_copy():
    have = {p.name for p in executed_copies()}
    missing = [p.name for p in pipeline.notebooks() if p.name not in have]
    assert not missing, f"no executed copy of {missing} in {pipeline.EXECUTED}: {REGENERATE}"
    stray = sorted(have - {p.name for p in pipeline.notebooks()})
    assert not stray, f"executed copies of notebooks that do not exist: {stray}: {REGENERATE}"


@pytest.mark.parametrize("executed", executed_copies(), ids=lambda p: p.stem)
def test_executed_copy_shows_the_committed_figures(executed):
    notebook = nbformat.read(executed, as_version=4)
    assert notebook.metadata.get("papermill", {}).get("parameters", {}).get("profile") == "default", (
        f"{executed.name} was not executed on the default profile: {REGENERATE}")
    images = [out for cell in notebook.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert images, f"{executed.name} shows no figure: {REGENERATE}"
    for out in images:
        name = out.get("metadata", {}).get(FIGURE_KEY)
        assert name, f"{executed.name}: an image output without '{FIGURE_KEY}': {REGENERATE}"
        committed = FIGURES / name
        assert committed.is_file(), f"{executed.name} shows {name}, not in figures/: {REGENERATE}"
        assert base64.b64decode(out["data"]["image/png"]) == committed.read_bytes(), (
            f"{executed.name} shows another {name} than figures/ holds: {REGENERATE}")
    shown = {out["metadata"][FIGURE_KEY] for out in images}
    not_shown = sorted(p.name for p in FIGURES.glob(f"{executed.name[:2]}_*.png")
                       if p.name not in shown)
    assert not not_shown, (f"figures/ holds {not_shown}, which {executed.name} does not show: "
                           f"delete stale figures and {REGENERATE}")
