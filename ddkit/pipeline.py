"""Run the notebooks in order with papermill: ``./run_all.sh`` calls ``run_notebooks``.

Executed copies go to ``runs/notebooks/<profile>/``; figures are written by the notebooks
themselves (``figures/`` for the default profile). A failing notebook stops the pipeline with its
name and the failing cell; re-running continues from cached runs and tables.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ddkit.store import REPO_ROOT, runs_root

NOTEBOOKS = REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def select(only: str | None = None, start: str | None = None) -> list[Path]:
    """Notebooks to run: all, ``only`` one number (``02``), or ``start`` from one number on."""
    found = notebooks()
    numbers = [p.name[:2] for p in found]
    for flag, value in (("--only", only), ("--from", start)):
        if value is not None and value.zfill(2) not in numbers:
            raise ValueError(f"{flag} {value}: no such notebook; valid numbers: {numbers}")
    if only is not None:
        return [p for p in found if p.name[:2] == only.zfill(2)]
    if start is not None:
        return [p for p in found if p.name[:2] >= start.zfill(2)]
    return found


def check_parameters(path: Path, params: dict) -> None:
    """Papermill only warns about unknown parameters; refuse them before running."""
    import papermill
    known = papermill.inspect_notebook(str(path))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path.name}: unknown parameter(s) {unknown}; it takes {sorted(known)}")


def run_notebooks(paths: list[Path], profile: str, extra: dict[str, dict] | None = None) -> Path:
    """Execute ``paths`` in order with ``profile`` (and per-notebook ``extra`` parameters)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir = runs_root() / "notebooks" / Path(profile).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = [(p, {"profile": profile, **(extra or {}).get(p.name[:2], {})}) for p in paths]
    for path, params in plans:
        check_parameters(path, params)
    for path, params in plans:
        began = time.perf_counter()
        print(f"[ddkit] {path.name} ({Path(profile).stem})", file=sys.stderr, flush=True)
        try:
            papermill.execute_notebook(str(path), str(out_dir / path.name), parameters=params,
                                       cwd=str(NOTEBOOKS), progress_bar=True, log_output=False,
                                       kernel_name="python3")
        except PapermillExecutionError as err:
            raise NotebookFailed(
                f"{path.name} failed in cell {err.cell_index} (execution count "
                f"{err.exec_count}): {err.ename}: {err.evalue}\n  executed copy: "
                f"{out_dir / path.name}") from None
        print(f"[ddkit] {path.name} done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return out_dir


CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def refresh_outputs(paths: list[Path] | None = None, timeout: int = 900) -> None:
    """Execute the notebooks in place with their default parameters (the smoke profile) and keep
    the outputs of ``NBVAL_CHECK_OUTPUT`` cells only: what nbval compares in the test suite."""
    import nbformat
    from nbclient import NotebookClient

    for path in paths or notebooks():
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        for cell in notebook.cells:
            if cell.cell_type == "code":
                if not cell.source.startswith(CHECK_MARK):
                    cell.outputs = []
                    cell.execution_count = None
                cell.metadata.pop("execution", None)
        nbformat.write(notebook, path)
        print(f"[ddkit] refreshed {path.name}", file=sys.stderr)
