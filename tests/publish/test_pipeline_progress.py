"""The pipeline's terminal: kernel progress events relayed as lines, the kernel's TCP warning
dropped (and nothing else), executed notebooks published only when they succeed."""
from __future__ import annotations

import json
import logging
import os
import time
import warnings

import nbformat
import pandas as pd
import pytest

from ddkit.publish import pipeline
from ddkit.runs.progress import ENV, emit
from ddkit.runs.store import REPO_ROOT, TIMES_CSV


def events_of_a_plan() -> list[dict]:
    """4 runs, 1 cached: run a trains 60 s (epoch lines at 10 s and 40 s), run b 120 s, run c
    is cut short after its start; times are what ``ddkit.runs.progress.emit`` writes."""
    return [
        {"event": "plan", "label": "smoke: 3 cells", "total": 4, "cached": 1, "time": 99.0},
        {"event": "run_done", "run": "old", "acc1": 50.0, "wall_s": 9.0, "cached": True,
         "time": 99.5},
        {"event": "run_start", "run": "a", "epochs": 3, "resumed_from": 0, "time": 100.0},
        {"event": "epoch", "run": "a", "epoch": 1, "epochs": 3, "acc1": 20.0, "elapsed_s": 10.0,
         "time": 110.0},
        {"event": "epoch", "run": "a", "epoch": 2, "epochs": 3, "acc1": 30.5, "elapsed_s": 40.0,
         "time": 140.0},
        {"event": "run_done", "run": "a", "acc1": 40.25, "wall_s": 55.0, "cached": False,
         "time": 160.0},
        {"event": "run_start", "run": "b", "epochs": 3, "resumed_from": 1, "time": 160.0},
        {"event": "run_done", "run": "b", "acc1": 41.0, "wall_s": 100.0, "cached": False,
         "time": 280.0},
        {"event": "run_start", "run": "c", "epochs": 3, "resumed_from": 0, "time": 280.0},
    ]


EXPECTED = [
    "smoke: 3 cells: 4 runs, 1 cached, 3 to train",
    "training a (3 epochs)",
    "  a: epoch 2/3, top-1 30.50 %, 40 s of training",    # epoch 1 came 10 s after the start
    "done a: top-1 40.25 %, 1 min 0 s; 2 of 4 runs done, about 2 min left",   # 60 s x 2 left
    "resuming b at epoch 2 of 3",
    "done b: top-1 41.00 %, 2 min 0 s; 3 of 4 runs done, about 2 min left",   # 90 s x 1 left
    "training c (3 epochs)",
]


def test_relay_turns_events_into_lines():
    relay = pipeline.Relay(epoch_every_s=30)
    lines = [line for event in events_of_a_plan() for line in relay.feed(event)]
    assert lines == EXPECTED


def test_relay_last_run_has_no_estimate_and_a_cached_run_outside_a_plan_is_named():
    relay = pipeline.Relay()
    assert relay.feed({"event": "run_done", "run": "teacher", "acc1": 88.0, "wall_s": 5.0,
                       "cached": True, "time": 1.0}) == ["teacher: cached, top-1 88.00 %"]
    relay.feed({"event": "plan", "label": "p", "total": 1, "cached": 0, "time": 1.0})
    relay.feed({"event": "run_start", "run": "x", "epochs": 1, "resumed_from": 0, "time": 2.0})
    assert relay.feed({"event": "run_done", "run": "x", "acc1": 1.0, "wall_s": 3.0,
                       "cached": False, "time": 5.0}) == ["done x: top-1 1.00 %, 3 s; 1 of 1 runs done"]
    assert relay.feed({"event": "something_new", "time": 6.0}) == []


def test_estimate_divides_by_the_runs_training_side_by_side():
    relay = pipeline.Relay()
    relay.feed({"event": "plan", "label": "p", "total": 6, "cached": 0, "time": 0.0})
    for run in ("a", "b"):                                   # a pool of two workers
        relay.feed({"event": "run_start", "run": run, "epochs": 1, "time": 0.0})
    line, = relay.feed({"event": "run_done", "run": "a", "acc1": 1.0, "wall_s": 120.0,
                        "time": 120.0})
    assert line.endswith("1 of 6 runs done, about 5 min left")    # 120 s x 5 runs / 2


def test_plan_of_cached_runs_only():
    relay = pipeline.Relay()
    assert relay.feed({"event": "plan", "label": "p", "total": 24, "cached": 24,
                       "time": 0}) == ["p: 24 runs, all cached"]


def test_durations():
    assert [pipeline.duration(s) for s in (0.4, 59, 61, 3599, 7380)] == [
        "0 s", "59 s", "1 min 1 s", "59 min 59 s", "2 h 3 min"]


def test_tail_reads_complete_lines_only(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = pipeline.Tail(path)
    assert tail.read() == []  # no file yet
    path.write_text('{"event": "a"}\nnot json\n{"event": "b"')
    assert tail.read() == [{"event": "a"}]
    with open(path, "a") as fh:
        fh.write(', "x": 1}\n')
    assert tail.read() == [{"event": "b", "x": 1}]
    assert tail.read() == []


def test_relay_while_relays_what_the_work_emits_and_reraises(tmp_path, monkeypatch):
    """The work runs in a thread and appends events with ``ddkit.runs.progress.emit`` (as the kernel
    does); the calling thread prints them while it runs."""
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(ENV, str(path))
    said = []

    def work():
        for event in events_of_a_plan():
            emit(**{k: v for k, v in event.items() if k != "time"})
            time.sleep(0.01)

    pipeline.relay_while(work, path, say=said.append, poll_s=0.005,
                         relay=pipeline.Relay(epoch_every_s=3600))
    assert said[0] == "  smoke: 3 cells: 4 runs, 1 cached, 3 to train"
    assert [line.strip().split(":")[0] for line in said[1:]] == [
        "training a (3 epochs)", "done a", "resuming b at epoch 2 of 3", "done b",
        "training c (3 epochs)"]
    assert "3 of 4 runs done" in said[4]

    def broken():
        raise RuntimeError("cell 3 failed")
    with pytest.raises(RuntimeError, match="cell 3 failed"):
        pipeline.relay_while(broken, path, say=said.append, poll_s=0.005)


def test_kernel_log_drops_only_the_tcp_warning(capfd):
    """The arguments the pipeline gives every kernel, parsed by ipykernel's own app."""
    from ipykernel.kernelapp import IPKernelApp
    app = IPKernelApp()
    with warnings.catch_warnings():  # traitlets calls a dict literal on the command line old
        warnings.simplefilter("ignore", DeprecationWarning)  # style; kernels do not show it
        app.parse_command_line(pipeline.KERNEL_ARGUMENTS)
    app.log.warning("Kernel is running over TCP without encryption. All communication ...")
    app.log.warning("a warning the user should see")
    err = capfd.readouterr().err
    assert "without encryption" not in err
    assert "a warning the user should see" in err
    record = logging.LogRecord("x", logging.WARNING, "", 0, "Kernel is running over TCP "
                               "without encryption.", None, None)
    assert not pipeline.QuietKernelLog().filter(record)


def _notebook(path, *code):
    cells = [nbformat.v4.new_code_cell('profile = "smoke"')]
    cells[0].metadata["tags"] = ["parameters"]
    cells += [nbformat.v4.new_code_cell(c) for c in code]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), path)
    return path


def test_only_a_succeeding_default_notebook_is_published(tmp_path, monkeypatch, capfd):
    """On the default profile an executed notebook is copied to ``notebooks/executed/`` (here a
    temporary folder) when it succeeds, never when it fails; its progress is relayed."""
    published = tmp_path / "executed"
    monkeypatch.setattr(pipeline, "EXECUTED", published)
    monkeypatch.setattr(pipeline, "TIMES_DIR", tmp_path / "figures")
    ok = _notebook(tmp_path / "90_ok.ipynb", "from ddkit.runs.progress import emit\n"
                   "emit('run_done', run='r', acc1=12.5, wall_s=1.0, cached=True)\n"
                   "print(profile)")
    bad = _notebook(tmp_path / "91_bad.ipynb", "raise ValueError('on purpose')")
    with pytest.raises(pipeline.NotebookFailed, match=r"91_bad.ipynb failed in cell 2.*on purpose"):
        pipeline.run_notebooks([ok, bad], "default")
    assert sorted(p.name for p in published.iterdir()) == ["90_ok.ipynb"]
    times = pd.read_csv(tmp_path / "figures" / TIMES_CSV)
    assert list(times["notebook"]) == ["90_ok"] and times["wall_s"].iloc[0] > 0
    copy = json.loads((published / "90_ok.ipynb").read_text())
    assert copy["cells"][-1]["outputs"][0]["text"] == ["default\n"]
    assert copy["metadata"]["papermill"]["parameters"] == {"profile": "default"}
    err = capfd.readouterr().err
    assert "[ddkit]   r: cached, top-1 12.50 %" in err
    assert "without encryption" not in err


def test_published_copy_names_no_local_folder(tmp_path):
    executed = tmp_path / "03.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = {
        "input_path": str(pipeline.NOTEBOOKS / "03.ipynb"), "cwd": str(pipeline.NOTEBOOKS),
        "output_path": str(REPO_ROOT / "runs" / "notebooks" / "default" / "03.ipynb")}
    nbformat.write(notebook, executed)
    pipeline.publish_executed(executed, tmp_path / "out" / "03.ipynb")
    meta = nbformat.read(tmp_path / "out" / "03.ipynb", as_version=4).metadata.papermill
    assert meta == {"input_path": "notebooks/03.ipynb", "cwd": "notebooks",
                    "output_path": "runs/notebooks/default/03.ipynb"}


def test_ctrl_c_names_the_notebook_and_how_to_continue(tmp_path, monkeypatch):
    notebook = _notebook(tmp_path / "92_long.ipynb", "pass")

    def interrupted(work, progress_file, relay=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "relay_while", interrupted)
    with pytest.raises(pipeline.NotebookFailed, match=r"92_long.ipynb interrupted.*run the same "
                       r"command again"):
        pipeline.run_notebooks([notebook], "smoke")
    assert ENV not in os.environ


def test_record_time_keeps_one_row_per_notebook_with_its_runs(tmp_path):
    relay = pipeline.Relay()
    for event in ({"event": "plan", "label": "a", "total": 3, "cached": 2},
                  {"event": "run_start", "run": "r1", "time": 10.0, "epochs": 2},
                  {"event": "run_done", "run": "r1", "time": 70.0, "acc1": 80.0, "wall_s": 60.0},
                  {"event": "plan", "label": "b", "total": 4, "cached": 4}):
        relay.feed(event)
    pipeline.record_time(tmp_path, "03_negative_transfer", 95.04, relay)
    pipeline.record_time(tmp_path, "00_setup_and_data", 7.0, pipeline.Relay())
    pipeline.record_time(tmp_path, "03_negative_transfer", 99.0, relay)   # a rerun replaces its row
    table = pd.read_csv(tmp_path / TIMES_CSV)
    assert list(table["notebook"]) == ["00_setup_and_data", "03_negative_transfer"]
    row = table.iloc[1]
    assert (row["wall_s"], row["runs_trained"], row["runs_cached"], row["trained_run_wall_s"]) == (
        99.0, 1, 6, 60.0)
