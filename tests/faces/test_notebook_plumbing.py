"""Notebook parameters are checked before compute; the pipeline refuses bad selections."""
import json

import pytest

from ddkit import nb
from ddkit.core.config import load_profile
from ddkit.publish import pipeline
from ddkit.runs import store


def test_unknown_and_mistyped_parameters_stop_the_notebook():
    with pytest.raises(nb.ParameterError, match=r"unknown notebook parameter\(s\) \['profle'\].*\['profile'\]"):
        nb.check_parameters({"profle": "smoke", "profile": "smoke"}, {"profile": str})
    with pytest.raises(nb.ParameterError, match=r"train_teacher='yes' should be bool"):
        nb.check_parameters({"profile": "smoke", "train_teacher": "yes"},
                            {"profile": str, "train_teacher": bool})
    with pytest.raises(nb.ParameterError, match="missing"):
        nb.check_parameters({}, {"profile": str})


def test_notebook_names_are_not_parameters():
    import math
    ns = {"profile": "smoke", "In": [], "Out": {}, "math": math, "_": 3, "get_ipython": print}
    assert nb.check_parameters(ns, {"profile": str}) == {"profile": "smoke"}


def test_unknown_profile_is_named():
    with pytest.raises(nb.ParameterError, match=r"profile='huge'.*valid profiles"):
        nb.start({"profile": "huge"})


def test_missing_data_stops_before_compute(monkeypatch, tmp_path):
    import ddkit.core.data as data
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setattr(data, "default_data_dir", lambda: tmp_path / "cache")
    import torchvision.datasets
    def offline(*args, **kwargs):
        raise RuntimeError("offline")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        nb.start({"profile": "smoke"})


def test_figures_of_the_default_profile_are_the_committed_ones():
    assert store.profile_figure_dir(load_profile("default")) == store.FIGURES
    assert store.profile_figure_dir(load_profile("smoke")) == store.FIGURES / "smoke"


def test_ddkit_figures_moves_only_the_smoke_folder(tmp_path, monkeypatch):
    """The suite's workers each give their execution of the smoke notebooks its own figures;
    the committed folders (default, the grids) are read where they are."""
    monkeypatch.setenv(store.FIGURES_ENV, str(tmp_path))
    assert store.profile_figure_dir(load_profile("smoke")) == tmp_path / "smoke"
    assert store.profile_figure_dir(load_profile("default")) == store.FIGURES
    assert store.profile_figure_dir(load_profile("controls")) == store.FIGURES / "controls"


def test_pipeline_selection_and_parameters():
    names = [p.name[:2] for p in pipeline.notebooks()]
    assert names == sorted(names) and names[0] == "00"
    assert [p.name[:2] for p in pipeline.select(only="2")] == ["02"]
    assert [p.name[:2] for p in pipeline.select(start="03")] == [n for n in names if n >= "03"]
    with pytest.raises(ValueError, match=r"--only 42: no such notebook"):
        pipeline.select(only="42")
    first = pipeline.notebooks()[0]
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epochs'\]"):
        pipeline.check_notebook_parameters(first, {"profile": "smoke", "epochs": 3})
    pipeline.check_notebook_parameters(first, {"profile": "smoke"})


@pytest.mark.parametrize("path", pipeline.notebooks(), ids=lambda p: p.stem)
def test_source_notebooks_are_well_formed_for_nbval(path):
    """Every cell has an id (nbformat 4.5), and a code cell that keeps outputs (the checked
    `# NBVAL_CHECK_OUTPUT` cells) has an execution count: nbval refuses an 'unrun reference cell
    that has outputs'."""
    cells = json.loads(path.read_text())["cells"]
    assert all("id" in c for c in cells), f"{path.name}: cells without an id"
    unrun = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and c.get("outputs") and c.get("execution_count") is None]
    assert not unrun, f"{path.name}: cells {unrun} keep outputs but have no execution count"
