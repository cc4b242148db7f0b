"""Run the notebooks in order with papermill: ``./run_all.sh`` calls ``run_notebooks``.

Executed copies go to ``<runs>/notebooks/<profile>/``; figures are written by the notebooks
themselves (``figures/`` for the default profile), and a notebook that succeeds on the default
profile is also copied to ``notebooks/executed/`` for readers. A failing notebook stops the
pipeline with its name and the failing cell; re-running continues from cached runs and tables.

While a notebook runs, its kernel appends training events to a ``$DDKIT_PROGRESS`` file
(``ddkit.runs.progress``); ``Relay`` turns them into terminal lines: which run is training, a line
per finished run with its wall time and top-1, and how many runs are left with an estimate.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ddkit.core.config import load_profile
from ddkit.publish import readme
from ddkit.runs.progress import ENV as PROGRESS_ENV
from ddkit.runs.store import FIGURES, REPO_ROOT, TIMES_CSV, profile_figure_dir, runs_root, write_text

NOTEBOOKS = REPO_ROOT / "notebooks"
EXECUTED = NOTEBOOKS / "executed"  # the default profile's executed notebooks, for readers
TIMES_DIR = FIGURES  # the default profile's figures, where docs/results.md reads TIMES_CSV
TIMES_COLUMNS = ("notebook", "wall_s", "runs_trained", "runs_cached", "trained_run_wall_s",
                 "cpu_count", "finished_utc")

# ipykernel warns on every start that its local TCP sockets are unencrypted: not the user's
# concern for a kernel papermill starts on this machine. The kernel's log handler drops that one
# message (``QuietKernelLog``); everything else it logs still reaches the terminal.
_TCP_WARNING = "Kernel is running over TCP without encryption"
_KERNEL_LOG_CONFIG = {"filters": {"ddkit_quiet": {"()": "ddkit.publish.pipeline.QuietKernelLog"}},
                      "handlers": {"console": {"filters": ["ddkit_quiet"]}}}
KERNEL_ARGUMENTS = [f"--IPKernelApp.logging_config={json.dumps(_KERNEL_LOG_CONFIG)}"]
# how long papermill waits for a cell's last outputs once the kernel says the cell is done; its
# default (4 s) dropped two figures of notebook 09 on a loaded machine without an error, so the
# wait is long and a timeout fails the notebook instead of losing its output
IOPUB_WAIT_S = 120


class QuietKernelLog(logging.Filter):
    """Drops ipykernel's "running over TCP without encryption" warning, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TCP_WARNING)


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def notebooks() -> list[Path]:
    """The notebooks in run order (``notebooks/NN_*.ipynb``; not ``notebooks/executed/``)."""
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


def _papermill():
    """The papermill module, imported on first use."""
    import papermill  # lazy: papermill starts slowly and only running notebooks needs it
    return papermill


def check_notebook_parameters(path: Path, params: dict) -> None:
    """Papermill only warns about unknown parameters; refuse them before running."""
    known = _papermill().inspect_notebook(str(path))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path.name}: unknown parameter(s) {unknown}; it takes {sorted(known)}")


# --------------------------------------------------------------------------- progress relay


def duration(seconds: float) -> str:
    """``42 s``, ``12 min 5 s``, ``2 h 3 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Relay:
    """Terminal lines from a notebook kernel's progress events (``ddkit.runs.progress``).

    ``feed(event)`` returns the lines to print (often none): a plan's size and what is cached, a
    line when a run starts, an epoch line at most every ``epoch_every_s`` seconds of a run, and a
    line per trained run with its wall time (first to last event of the run) and final top-1 (%),
    followed by "k of n runs done, about M min left" where M = mean wall time of the runs trained
    so far x runs still to train ÷ the most runs seen training at once (the worker pool trains
    side by side). Cached runs count as done without a line of their own.
    ``cached_total`` and ``walls`` add up over every plan the notebook made (its time record).
    """

    def __init__(self, epoch_every_s: float = 30.0):
        self.epoch_every_s = epoch_every_s
        self.total = self.done = self.cached = self.cached_seen = self.cached_total = 0
        self.side_by_side = 1
        self.walls: list[float] = []
        self.started: dict[str, float] = {}
        self.last_line: dict[str, float] = {}

    def feed(self, event: dict) -> list[str]:
        kind, run, now = event.get("event"), event.get("run", "?"), float(event.get("time", 0))
        if kind == "plan":
            self.total, self.cached = int(event["total"]), int(event["cached"])
            self.done = self.cached_seen = 0
            self.cached_total += self.cached
            todo = self.total - self.cached
            return [f"{event['label']}: {self.total} runs, "
                    + ("all cached" if todo == 0 else f"{self.cached} cached, {todo} to train")]
        if kind == "run_start":
            self.started[run] = self.last_line[run] = now
            self.side_by_side = max(self.side_by_side, len(self.started))
            begin, epochs = int(event.get("resumed_from", 0)), event["epochs"]
            if begin:
                return [f"resuming {run} at epoch {begin + 1} of {epochs}"]
            return [f"training {run} ({epochs} epochs)"]
        if kind == "epoch":
            if now - self.last_line.get(run, now) < self.epoch_every_s:
                return []
            self.last_line[run] = now
            return [f"  {run}: epoch {event['epoch']}/{event['epochs']}, top-1 "
                    f"{event['acc1']:.2f} %, {duration(event['elapsed_s'])} of training"]
        if kind != "run_done":
            return []
        in_plan = self.done < self.total
        self.done += in_plan
        if event.get("cached"):
            self.cached_seen += in_plan
            return [] if in_plan else [f"{run}: cached, top-1 {event['acc1']:.2f} %"]
        wall = now - self.started.pop(run) if run in self.started else float(event["wall_s"])
        self.walls.append(wall)
        line = f"done {run}: top-1 {event['acc1']:.2f} %, {duration(wall)}"
        if in_plan:
            line += f"; {self.done} of {self.total} runs done"
            to_train = (self.total - self.done) - (self.cached - self.cached_seen)
            if to_train > 0:
                left = sum(self.walls) / len(self.walls) * to_train / self.side_by_side
                line += (", under a minute left" if left < 60
                         else f", about {round(left / 60)} min left")
        return [line]


class Tail:
    """The complete JSON lines appended to a file since the last ``read``."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = Path(path), 0, b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a stray line must not stop the relay
        return events


def _say(line: str) -> None:
    tqdm.write(f"[ddkit] {line}", file=sys.stderr)  # above papermill's cell bar, if it is shown


def relay_while(work: Callable[[], None], progress_file: Path, say: Callable[[str], None] = _say,
                poll_s: float = 0.5, relay: Relay | None = None) -> None:
    """Run ``work()`` in a thread while relaying the events appended to ``progress_file``;
    re-raise what ``work`` raised."""
    relay, tail, failure = relay or Relay(), Tail(progress_file), []

    def target() -> None:
        try:
            work()
        except BaseException as err:  # handed to the calling thread
            failure.append(err)

    worker = threading.Thread(target=target, name="papermill", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        for event in tail.read():
            for line in relay.feed(event):
                say("  " + line)
    if failure:
        raise failure[0]


# --------------------------------------------------------------------------- the pipeline


def _cell_bar() -> dict | bool:
    """Papermill's per-cell bar, plain, on a terminal; none in logs (carriage returns)."""
    if not sys.stderr.isatty():
        return False
    return {"desc": "[ddkit]   cell", "leave": False,
            "bar_format": "{desc} {n_fmt}/{total_fmt} [{elapsed}]"}


def publish_executed(executed: Path, target: Path) -> None:
    """Copy papermill's executed notebook to ``target`` atomically, with the papermill
    metadata's paths made relative to the repository (no machine's folders in the copy)."""
    data = json.loads(executed.read_text())
    meta = data.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path", "cwd"):
        if isinstance(meta.get(key), str) and Path(meta[key]).is_relative_to(REPO_ROOT):
            meta[key] = str(Path(meta[key]).relative_to(REPO_ROOT))
    write_text(target, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def record_time(folder: Path, notebook: str, wall_s: float, relay: "Relay") -> Path:
    """Write ``notebook``'s row of ``folder/notebook_times.csv`` (other notebooks' rows kept):
    its wall time (s), the runs it trained and found cached, the trained runs' wall times summed
    (s; above ``wall_s`` when runs train side by side), the machine's cores and the finish time."""
    import pandas as pd  # lazy: ddkit.cli imports this module; pandas (~0.3 s) would slow `ddkit --help`
    path = Path(folder) / TIMES_CSV
    row = {"notebook": notebook, "wall_s": round(wall_s, 1), "runs_trained": len(relay.walls),
           "runs_cached": relay.cached_total, "trained_run_wall_s": round(sum(relay.walls), 1),
           "cpu_count": os.cpu_count(),
           "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=TIMES_COLUMNS)
    table = pd.concat([old[old["notebook"] != notebook], pd.DataFrame([row])], ignore_index=True)
    write_text(path, table.sort_values("notebook").to_csv(index=False))
    return path


def run_notebooks(paths: list[Path], profile: str, extra: dict[str, dict] | None = None,
                  out_dir: Path | None = None) -> Path:
    """Execute ``paths`` in order with ``profile`` (and per-notebook ``extra`` parameters),
    relaying training progress to stderr; the executed copies go to ``out_dir`` (default:
    ``<run store>/notebooks/<profile>/``), which is returned. On the default profile each notebook that succeeds is
    also published to ``notebooks/executed/`` and its time recorded in ``figures/`` (``record_time``).
    At the end the generated documents (README, docs/results.md) are regenerated from the
    committed tables: the pipeline is their only writer, never a notebook."""
    papermill = _papermill()
    committed = profile_figure_dir(load_profile(profile)) == FIGURES
    out_dir = Path(out_dir) if out_dir is not None else runs_root() / "notebooks" / Path(profile).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = [(p, {"profile": profile, **(extra or {}).get(p.name[:2], {})}) for p in paths]
    for path, params in plans:
        check_notebook_parameters(path, params)
    for path, params in plans:
        began = time.perf_counter()
        _say(f"{path.stem} ({Path(profile).stem})")
        executed = out_dir / path.name
        progress_file = out_dir / f".{path.stem}.progress.jsonl"
        progress_file.unlink(missing_ok=True)
        before = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = str(progress_file)  # the kernel inherits it
        relay = Relay()
        try:
            relay_while(lambda: papermill.execute_notebook(
                str(path), str(executed), parameters=params, cwd=str(NOTEBOOKS),
                progress_bar=_cell_bar(), log_output=False, kernel_name="python3",
                extra_arguments=KERNEL_ARGUMENTS, iopub_timeout=IOPUB_WAIT_S,
                raise_on_iopub_timeout=True), progress_file, relay=relay)
        except KeyboardInterrupt:  # the kernel ends itself once this process is gone
            raise NotebookFailed(
                f"{path.name} interrupted; finished runs and epochs are kept: run the same "
                f"command again to continue from them") from None
        except papermill.PapermillExecutionError as err:
            raise NotebookFailed(
                f"{path.name} failed in cell {err.cell_index} (execution count "
                f"{err.exec_count}): {err.ename}: {err.evalue}\n  executed copy: "
                f"{executed}") from None
        finally:
            if before is None:
                os.environ.pop(PROGRESS_ENV, None)
            else:
                os.environ[PROGRESS_ENV] = before
            progress_file.unlink(missing_ok=True)
        wall = time.perf_counter() - began
        if committed:
            publish_executed(executed, EXECUTED / path.name)
            record_time(TIMES_DIR, path.stem, wall, relay)
        _say(f"{path.stem} done in {duration(wall)}")
    if committed:
        _say(f"executed notebooks to read, figures inline: {EXECUTED}")
    if readme.update():   # the generated documents, from the committed tables just written
        _say(f"regenerated {', '.join(p.name for p in readme.PAGES)} from {FIGURES}")
    return out_dir


CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def refresh_outputs(paths: list[Path] | None = None, timeout: int = 900) -> None:
    """Execute the notebooks in place with their default parameters (the smoke profile) and keep
    the outputs of ``NBVAL_CHECK_OUTPUT`` cells only: what nbval compares in the test suite."""
    import nbformat  # lazy: only refresh-notebooks reads and writes notebooks
    from nbclient import NotebookClient  # lazy: only refresh-notebooks runs a kernel in-process

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
