"""ddkit.runs.parallel: runs trained by a pool of worker processes are the runs ddkit.runs.train.train makes
(same weights at the same thread count, cached, resumed), failures name their run and spare the
others, and progress events come from the workers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from safetensors.torch import load_file

import ddkit.runs.train as train_mod
from ddkit.core.config import ConfigError, load_profile, replace
from ddkit.runs import parallel
from ddkit.runs.progress import ENV as PROGRESS_ENV
from ddkit.runs.store import RunDir
from tests.helpers import interrupted_at_epoch, tiny_config


@pytest.fixture(autouse=True, scope="module")
def _stop_workers():
    yield
    parallel.shutdown()


def _config(seed: int, epochs: int = 2, **changes):
    cfg = replace(tiny_config(epochs=epochs, kd="soft", feature="spectral", layers="last"),
                  seed=seed, **{"data.augment": False})
    return replace(cfg, **changes) if changes else cfg


def _same_weights(a, b) -> bool:
    wa, wb = load_file(str(a.dir.final_weights)), load_file(str(b.dir.final_weights))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_pool_runs_equal_in_process_runs_at_the_same_thread_count(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 2)  # 2 workers x 1 thread on any machine
    configs = {("a", s): _config(s) for s in (0, 1, 2)}
    pooled = parallel.train_many(configs, workers=2, progress=False, root=tmp_path / "pool")
    assert list(pooled) == list(configs)
    for key, cfg in configs.items():
        alone = parallel._in_this_process(cfg, 1, tmp_path / "alone")
        assert pooled[key].dir.is_complete
        assert _same_weights(pooled[key], alone), key
        assert pooled[key].records[-1]["test_acc1"] == alone.records[-1]["test_acc1"]


def test_cached_runs_are_not_trained_again(tmp_path, monkeypatch):
    configs = {s: _config(s, epochs=1) for s in (0, 1)}
    parallel.train_many(configs, workers=2, progress=False, root=tmp_path)
    stamps = {s: RunDir.for_config(c, tmp_path).summary.stat().st_mtime_ns
              for s, c in configs.items()}
    monkeypatch.setattr(parallel, "_get_pool", lambda *a: pytest.fail("a pool was started"))
    monkeypatch.setattr(train_mod, "build_dataset", lambda *a, **k: pytest.fail("trained again"))
    again = parallel.train_many(configs, workers=2, progress=False, root=tmp_path)
    assert {s: RunDir.for_config(c, tmp_path).summary.stat().st_mtime_ns
            for s, c in configs.items()} == stamps
    assert [r.config for r in again.values()] == list(configs.values())


def test_a_worker_resumes_an_interrupted_run_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    cfg, other = _config(0, epochs=3), _config(1, epochs=1)
    whole = parallel._in_this_process(cfg, 1, tmp_path / "whole")
    with interrupted_at_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        parallel._in_this_process(cfg, 1, tmp_path / "pool")
    assert len(RunDir.for_config(cfg, tmp_path / "pool").records()) == 2
    runs = parallel.train_many({"cut": cfg, "other": other}, workers=2, progress=False,
                               root=tmp_path / "pool")
    assert _same_weights(runs["cut"], whole)
    assert [r["epoch"] for r in runs["cut"].records] == [0, 1, 2]


def test_a_failing_run_is_named_and_the_others_finish(tmp_path):
    good = {("good", s): _config(s, epochs=1) for s in (0, 1)}
    bad = _config(2, epochs=1, **{"data.root": str(tmp_path / "no-data-here")})
    configs = {**good, ("bad", 2): bad}
    with pytest.raises(parallel.RunsFailed) as info:
        parallel.train_many(configs, workers=2, progress=False, root=tmp_path)
    message = str(info.value)
    assert "1 run(s) failed" in message and "('bad', 2)" in message and bad.name in message
    assert "DatasetNotFoundError" in message
    assert list(info.value.failures) == [("bad", 2)]
    for cfg in good.values():
        assert RunDir.for_config(cfg, tmp_path).is_complete


def test_a_bad_config_stops_everything_before_any_run_starts(tmp_path):
    configs = {"good": _config(0, epochs=1), "bad": _config(1, epochs=1, **{"optim.epochs": 0})}
    with pytest.raises(ConfigError, match=r"run bad .*optim\.epochs"):
        parallel.train_many(configs, workers=2, progress=False, root=tmp_path)
    assert not RunDir.for_config(configs["good"], tmp_path).path.exists()


def test_a_worker_that_dies_fails_only_its_run(tmp_path, monkeypatch):
    # a worker killed mid-run (as by the OOM killer) takes the pool down; the runs it held are
    # retried one at a time, so only the one that kills its worker alone is reported
    configs = {"a": _config(0, epochs=1), "b": _config(1, epochs=1), "c": _config(2, epochs=1)}
    monkeypatch.setattr(parallel, "_train_in_worker", _die_on_seed_1)
    with pytest.raises(parallel.RunsFailed) as info:
        parallel.train_many(configs, workers=2, progress=False, root=tmp_path)
    assert list(info.value.failures) == ["b"] and "died" in info.value.failures["b"]
    for key in "ac":
        assert RunDir.for_config(configs[key], tmp_path).is_complete


def _die_on_seed_1(cfg, root, env):
    """Runs in the worker, where ddkit.runs.parallel is not patched."""
    if cfg.seed == 1:
        os._exit(9)
    return parallel._train_in_worker(cfg, root, env)


def test_workers_emit_progress_events(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(events))
    configs = {s: _config(s, epochs=2) for s in (0, 1)}
    runs = parallel.train_many(configs, workers=2, progress=False, root=tmp_path)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    for run in runs.values():
        mine = [e for e in lines if e.get("run") == run.dir.path.name]
        assert [e["event"] for e in mine] == ["run_start", "epoch", "epoch", "run_done"]
        assert mine[-1]["cached"] is False


def test_number_of_workers_from_argument_env_profile_and_cores(monkeypatch):
    monkeypatch.delenv(parallel.ENV, raising=False)
    monkeypatch.setattr(parallel, "cores", lambda: 6)
    assert parallel.resolve_workers() == 6 and parallel.threads_per_run(6) == 1
    assert parallel.resolve_workers(None, 3) == 3 and parallel.threads_per_run(3) == 2
    monkeypatch.setenv(parallel.ENV, "2")
    assert parallel.resolve_workers(None, 3) == 2
    assert parallel.resolve_workers(4, 3) == 4
    assert parallel.threads_per_run(12) == 1
    monkeypatch.setenv(parallel.ENV, "many")
    with pytest.raises(ConfigError, match="DDKIT_WORKERS"):
        parallel.resolve_workers()
    monkeypatch.delenv(parallel.ENV)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="workers"):
            parallel.resolve_workers(bad)


def test_profile_workers_is_checked_and_kept_out_of_run_hashes():
    assert load_profile("default").workers is None
    with pytest.raises(ConfigError, match="workers"):
        load_profile("default", workers=0)
    one, two = load_profile("default", workers=1), load_profile("default", workers=2)
    assert one.student_config() == two.student_config()


# --------------------------------------------------------------------------- under papermill

ROOT = Path(__file__).resolve().parents[2]
TRAIN_CELL = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.helpers import tiny_config
from ddkit.core.config import replace
from ddkit.runs import parallel
small = {{"data.train_subset": 64, "data.eval_subset": 64, "data.augment": False}}
configs = {{("ok", s): replace(tiny_config(epochs=1), seed=s, **small) for s in (0, 1)}}
"""
FAILING = """
configs[("bad", 2)] = replace(tiny_config(epochs=1), seed=2,
                              **{**small, "data.root": "/no-data-here"})
"""
RUN_CELL = "runs = parallel.train_many(configs, workers=2, progress=False)\nprint(len(runs), 'runs')"
# the pipeline of ./run_all.sh (its generated documents are not this test's to rewrite)
RUNNER = """
import sys
from pathlib import Path
from ddkit.publish import pipeline, readme
readme.update = lambda: False
try:
    pipeline.run_notebooks([Path(sys.argv[1])], "smoke")
except pipeline.NotebookFailed as err:
    print(f"NotebookFailed: {err}")
"""


def _run_in_pipeline(path: Path, *code: str) -> subprocess.CompletedProcess:
    cells = [nbformat.v4.new_code_cell('profile = "smoke"')]
    cells[0].metadata["tags"] = ["parameters"]
    cells += [nbformat.v4.new_code_cell(c) for c in code]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", RUNNER, str(path)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_a_notebook_training_through_the_pool_ends_without_a_traceback(tmp_path):
    """papermill interrupts its kernel's process group when it shuts the kernel down: the idle
    workers ignore that interrupt and stop with the kernel, printing nothing. A run that fails in
    a worker is still named, with its error, in one line."""
    done = _run_in_pipeline(tmp_path / "90_pool.ipynb", TRAIN_CELL, RUN_CELL)
    assert done.returncode == 0 and "NotebookFailed" not in done.stdout, done.stdout + done.stderr
    assert "90_pool done in" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "SpawnProcess" not in done.stderr, done.stderr
    failed = _run_in_pipeline(tmp_path / "91_pool_fails.ipynb", TRAIN_CELL + FAILING, RUN_CELL)
    assert "Traceback" not in failed.stderr and "SpawnProcess" not in failed.stderr, failed.stderr
    lines = failed.stdout.splitlines()
    assert lines and lines[0].startswith("NotebookFailed: 91_pool_fails.ipynb failed in cell"), \
        failed.stdout + failed.stderr
    assert "RunsFailed: 1 run(s) failed" in lines[0], failed.stdout
    bad = [line for line in lines if "('bad', 2)" in line]
    assert len(bad) == 1 and "DatasetNotFoundError" in bad[0], failed.stdout
