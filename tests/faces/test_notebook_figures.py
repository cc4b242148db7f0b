"""Every figure a notebook saves is also shown inline: each notebook is
executed once at the smoke size through the pipeline (``ddkit.publish.pipeline.run_notebooks``, as
``./run_all.sh --profile smoke`` does), and its executed copy must hold one image output per PNG
it wrote to ``figures/smoke/`` during that execution, each naming its file in its metadata and
showing that file's bytes.
"""
from __future__ import annotations

import base64
import struct
import time
from pathlib import Path

import nbformat
import pytest

from ddkit.core.config import load_profile
from ddkit.nb import FIGURE_KEY
from ddkit.publish import pipeline
from ddkit.runs.store import FIGURES_ENV, profile_figure_dir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 5_000   # a drawn figure at 150 dpi; an empty canvas compresses to ~1-2 kB
MIN_PNG_SIDE = 200      # pixels


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises if ``data`` is not a PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


def image_outputs(notebook) -> list[dict]:
    return [out for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]


@pytest.fixture(scope="session")
def smoke_execution(tmp_path_factory):
    """Run every notebook once at the smoke size; returns (executed-copy folder, figure folder,
    start time). Session-scoped, so a worker executes them once however its tests are ordered.
    Uses the run cache the notebooks use (``$DDKIT_RUNS`` or ``runs/``); the executed copies and
    the figures go to folders of its own (the figures through ``$DDKIT_FIGURES``, set only while
    the notebooks run), so no other execution of the same notebooks writes them meanwhile."""
    env = pytest.MonkeyPatch()
    env.setenv(FIGURES_ENV, str(tmp_path_factory.mktemp("figures")))
    try:
        began = time.time() - 1  # file times can lag the clock by a tick
        out_dir = pipeline.run_notebooks(pipeline.notebooks(), "smoke",
                                         out_dir=tmp_path_factory.mktemp("executed"))
        figures = profile_figure_dir(load_profile("smoke"))
    finally:
        env.undo()
    return out_dir, figures, began


def saved_during(figures: Path, number: str, since: float) -> list[str]:
    return sorted(p.name for p in figures.glob(f"{number}_*.png") if p.stat().st_mtime >= since)


@pytest.mark.parametrize("notebook", pipeline.notebooks(), ids=lambda p: p.stem)
def test_every_saved_figure_is_shown_inline(smoke_execution, notebook):
    out_dir, figures, began = smoke_execution
    executed = nbformat.read(out_dir / notebook.name, as_version=4)
    saved = saved_during(figures, notebook.name[:2], began)
    images = image_outputs(executed)
    assert saved, f"{notebook.name} saved no figure to {figures} in this execution"
    assert len(images) == len(saved), (
        f"{notebook.name}: {len(images)} image output(s) for {len(saved)} saved figure(s) {saved}")
    shown = []
    for out in images:
        name = out.get("metadata", {}).get(FIGURE_KEY)
        assert name, f"{notebook.name}: an image output without '{FIGURE_KEY}' metadata"
        assert (figures / name).is_file(), f"{notebook.name}: shows {name}, not in {figures}"
        assert base64.b64decode(out["data"]["image/png"]) == (figures / name).read_bytes(), (
            f"{notebook.name}: the image shown as {name} is not that file")
        shown.append(name)
    assert sorted(shown) == saved


@pytest.mark.parametrize("notebook", pipeline.notebooks(), ids=lambda p: p.stem)
def test_saved_figures_are_real_pictures(smoke_execution, notebook):
    _, figures, began = smoke_execution
    for name in saved_during(figures, notebook.name[:2], began):
        data = (figures / name).read_bytes()
        width, height = png_size(data)
        assert len(data) >= MIN_PNG_BYTES, f"{name}: {len(data)} bytes, an empty figure?"
        assert min(width, height) >= MIN_PNG_SIDE, f"{name}: {width} x {height} pixels"


def test_png_size_reads_the_header_and_refuses_other_files():
    header = PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 640, 480)
    assert png_size(header) == (640, 480)
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(20))
