"""The notebooks as a reader runs them: JupyterLab from this environment, headless Chromium,
Run All from the Run menu, every notebook at the smoke size (its default parameters).

For each notebook: execution counts exactly 1..N, no error or traceback output, no "Error
displaying widget", and one loaded ``<img>`` (naturalWidth > 0) per figure the notebook saved to
the smoke figure folder during the run (its own, ``$DDKIT_FIGURES``). One screenshot per
notebook goes to ``<runs>/screenshots/``.
The server serves a temporary copy of the notebooks (the tracked ones are never written) and
keeps its state in a temporary folder; server and browser are stopped by their process, also
when a test fails. Needs Debian's chromium and chromium-driver and selenium: ``./tests/run.sh``
installs them when run as root on Debian; elsewhere the test is skipped, saying how to enable it.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from ddkit.core.config import load_profile
from ddkit.publish import pipeline
from ddkit.runs.store import FIGURES_ENV, REPO_ROOT, profile_figure_dir, runs_root
from tests.faces.lab_browser import Browser, Lab, missing_browser

pytestmark = pytest.mark.skipif(missing_browser() is not None,
                                reason=f"browser test: {missing_browser()}")

NOTEBOOK_TIMEOUT_S = 900   # one notebook's Run All at the smoke size, on a busy 2-core machine
POLL_S = 1.0
WINDOW = (1400, 1000)
MAX_SCREENSHOT_HEIGHT = 16000  # pixels; Chromium's largest texture is about 16k

# the notebook's state as the page shows it: code-cell prompts, the toolbar's execution indicator
# and the status bar's kernel status ("Python 3 (ipykernel) | Idle")
STATE_JS = """
const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
    .map(e => e.textContent.trim());
const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
const status = Array.from(document.querySelectorAll('.jp-StatusBar-Widget'))
    .map(e => e.textContent).join(' ');
const kernel = (status.match(
    /\\| (Idle|Busy|Starting|Restarting|Unknown|Dead|Connecting|Terminating|Disconnected|Initializing)/
  ) || [])[1] || null;
return {cells: document.querySelectorAll('.jp-Notebook .jp-Cell').length, prompts: prompts,
        indicator: indicator ? indicator.dataset.status : null, kernel: kernel};
"""
OUTPUTS_JS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output'))
    .map(e => [e.dataset.mimeType || 'widget', e.textContent]);
"""
IMAGES_JS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img'))
    .map(e => ({complete: e.complete, width: e.naturalWidth, height: e.naturalHeight}));
"""
SCROLL_TO_IMAGE_JS = """
const images = document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img');
images[arguments[0]].scrollIntoView({block: 'center'});
"""
NOTEBOOK_HEIGHT_JS = """
const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
return outer ? outer.scrollHeight : document.body.scrollHeight;
"""
SCROLL_TO_TOP_JS = """
const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
if (outer) { outer.scrollTop = 0; }
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of the notebooks, a browser, and the run cache's folder (read here:
    each test gets a private ``$DDKIT_RUNS`` from conftest); server and browser stopped at the
    end."""
    base = tmp_path_factory.mktemp("jupyterlab")
    served = base / "notebooks"
    served.mkdir()
    for path in pipeline.notebooks():
        shutil.copy2(path, served / path.name)
    # the kernels import this checkout's ddkit and use the run cache the other tests use
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    runs = runs_root()
    # figures of its own: nbval's execution of the same notebooks (another worker) writes
    # figures/smoke/ meanwhile; the test reads figure_dir() in this process, so it is set here too
    figures = base / "figures"
    env = pytest.MonkeyPatch()
    env.setenv(FIGURES_ENV, str(figures))
    server = Lab(served, base / "home", env={"PYTHONPATH": python_path, "DDKIT_RUNS": str(runs),
                                             FIGURES_ENV: str(figures)})
    browser = None
    try:
        browser = Browser(base / "home")
        yield server, browser.driver, runs
    finally:
        try:
            if browser is not None:
                browser.stop()
        finally:
            server.stop()
            env.undo()


def wait_for(driver, what: str, ready, timeout_s: float, stable: int = 1):
    """Poll the page state until ``ready(state)`` holds ``stable`` times in a row."""
    deadline, in_a_row, state = time.monotonic() + timeout_s, 0, None
    while time.monotonic() < deadline:
        state = driver.execute_script(STATE_JS)
        in_a_row = in_a_row + 1 if ready(state) else 0
        if in_a_row >= stable:
            return state
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; page state: "
                         f"{state}")


def run_all(driver) -> None:
    """Run > Run All Cells, as a reader does (JupyterLab 4 has no shortcut for it)."""
    from selenium.webdriver.common.by import By
    driver.find_element(By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel')]"
                                  "[normalize-space(text())='Run']").click()
    driver.find_element(By.CSS_SELECTOR, "li[data-command='runmenu:run-all']").click()


def screenshot(driver, path: Path) -> None:
    """The whole notebook in one picture: the window is made as tall as the notebook."""
    height = driver.execute_script(NOTEBOOK_HEIGHT_JS) or WINDOW[1]
    driver.set_window_size(WINDOW[0], min(int(height) + 400, MAX_SCREENSHOT_HEIGHT))
    driver.execute_script(SCROLL_TO_TOP_JS)
    time.sleep(1.0)  # let the page lay out at the new size
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)


def loaded_images(driver, timeout_s: float = 30.0) -> list[dict]:
    """Each output image, scrolled into view, once it is loaded (or the timeout passed)."""
    images = driver.execute_script(IMAGES_JS)
    for i in range(len(images)):
        driver.execute_script(SCROLL_TO_IMAGE_JS, i)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(
            im["complete"] and im["width"] > 0 for im in images):
        time.sleep(0.5)
        images = driver.execute_script(IMAGES_JS)
    return images


@pytest.mark.parametrize("notebook", pipeline.notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_in_jupyterlab(lab, notebook):
    from selenium.webdriver.common.by import By
    server, driver, runs = lab
    stored = nbformat.read(notebook, as_version=4)
    n_code = sum(cell.cell_type == "code" for cell in stored.cells)
    figures = profile_figure_dir(load_profile("smoke"))
    began = time.time() - 1
    # a workspace of its own per notebook: no other notebook's tab (and kernel) is restored
    driver.get(f"{server.url}/lab/workspaces/test-{notebook.stem}/tree/{notebook.name}"
               f"?token={server.token}")
    try:
        wait_for(driver, "every cell on the page", lambda s: s["cells"] == len(stored.cells)
                 and s["indicator"] is not None, timeout_s=120)
        driver.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell").click()  # the current
        wait_for(driver, "the kernel to be idle", lambda s: s["kernel"] == "Idle"  # notebook
                 and s["indicator"] == "idle", timeout_s=180, stable=2)
        before = driver.execute_script(STATE_JS)["prompts"]
        run_all(driver)
        wait_for(driver, "Run All to start", lambda s: s["indicator"] == "busy"
                 or s["prompts"] != before, timeout_s=60)
        # done: no cell queued or running, the indicator and the kernel idle, for 3 polls (the
        # kernel can read idle between cells, and while widgets update)
        state = wait_for(driver, "every cell to finish", lambda s: "[*]:" not in s["prompts"]
                         and s["indicator"] == "idle" and s["kernel"] == "Idle",
                         timeout_s=NOTEBOOK_TIMEOUT_S, stable=3)
        outputs = driver.execute_script(OUTPUTS_JS)
        images = loaded_images(driver)
    finally:  # also after a failure: the picture shows what went wrong
        cleanup_errors = []
        for step in (lambda: screenshot(driver, runs / "screenshots" / f"{notebook.stem}.png"),
                     server.shutdown_kernels):
            try:
                step()
            except Exception as err:  # reported below, after the notebook's own result
                cleanup_errors.append(repr(err))

    assert state["prompts"] == [f"[{i}]:" for i in range(1, n_code + 1)], (
        f"{notebook.name}: execution counts {state['prompts']}, expected 1..{n_code}")
    for mime, text in outputs:
        for bad in ("Traceback (most recent call last)", "Error displaying widget"):
            assert bad not in text, f"{notebook.name}: {mime} output:\n{text[-3000:]}"
    saved = sorted(p.name for p in figures.glob(f"{notebook.name[:2]}_*.png")
                   if p.stat().st_mtime >= began)
    assert saved, f"{notebook.name}: no figure saved to {figures} during Run All"
    assert len(images) == len(saved), (
        f"{notebook.name}: {len(images)} <img> in the page for {len(saved)} saved figures {saved}")
    for i, image in enumerate(images):
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, (
            f"{notebook.name}: image {i + 1} of {len(images)} not rendered: {image}")
    assert not cleanup_errors, f"{notebook.name}: screenshot or kernel shutdown failed: {cleanup_errors}"
