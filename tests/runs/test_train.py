"""The training engine: official log keys, cache, bit-identical resume, NaN stop, DDP."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ddkit.runs.train as train_mod
from ddkit.core.config import ConfigError, replace
from ddkit.runs.store import RunDir
from ddkit.runs.train import LOG_KEYS, NonFiniteLossError, train
from tests.helpers import interrupted_at_epoch, nan_loss_after_steps, tiny_config

DISTILL = dict(kd="soft", feature="spectral", layers="first_last")
ROOT = Path(__file__).resolve().parents[2]


def _weights(run):
    return load_file(str(run.dir.final_weights))


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def test_log_has_the_official_keys_and_run_files():
    run = train(tiny_config(**DISTILL), progress=False)
    records = run.records
    assert [r["epoch"] for r in records] == [0, 1]
    for key in LOG_KEYS:
        assert key in records[0], key
    assert records[0]["train_loss_fft"] > 0 and records[0]["train_loss_dist"] > 0
    parts = records[0]["train_loss_base"] + records[0]["train_loss_dist"] + records[0]["train_loss_fft"]
    assert records[0]["train_loss"] == pytest.approx(parts, rel=1e-5)
    assert {"train_loss_feat/0-0", "train_loss_feat/1-3"} <= set(records[0])
    assert sorted(run.checkpoints()) == [0, 1]
    assert json.loads(run.dir.config.read_text())["config"]["distill"]["kd"] == "soft"
    assert run.summary["final_acc1"] == records[-1]["test_acc1"]
    assert run.load_model(epoch=0)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_same_run_twice_trains_once(monkeypatch):
    first = train(tiny_config(), progress=False)
    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")
    monkeypatch.setattr(train_mod, "build_dataset", no_training)
    second = train(tiny_config(), progress=False)
    assert second.dir == first.dir and second.records == first.records


def test_same_seed_same_result_other_seed_differs(tmp_path):
    a = train(tiny_config(**DISTILL), progress=False, root=tmp_path / "a")
    b = train(tiny_config(**DISTILL), progress=False, root=tmp_path / "b")
    _assert_same_weights(a, b)
    c = train(replace(tiny_config(**DISTILL), seed=4), progress=False, root=tmp_path / "c")
    assert not torch.equal(_weights(a)["head.weight"], _weights(c)["head.weight"])


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=3, **DISTILL, projector_mode="faithful")
    whole = train(cfg, progress=False, root=tmp_path / "whole")

    with interrupted_at_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, root=tmp_path / "resumed")
    run_dir = RunDir.for_config(cfg, tmp_path / "resumed")
    assert not run_dir.is_complete and len(run_dir.records()) == 2
    resumed = train(cfg, progress=False, root=tmp_path / "resumed")
    _assert_same_weights(whole, resumed)
    assert _without_time(resumed.records) == _without_time(whole.records)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(monkeypatch):
    cfg = tiny_config(epochs=3, **DISTILL)
    nan_loss_after_steps(monkeypatch, 4)        # 4 steps of 32 images = epoch 0
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+: non-finite loss nan.*checkpoint is kept"):
        train(cfg, progress=False)
    run_dir = RunDir.for_config(cfg)
    state = torch.load(run_dir.checkpoint, weights_only=False)
    assert state["epoch"] == 0 and [r["epoch"] for r in run_dir.records()] == [0]
    assert not run_dir.is_complete
    for name, value in state["trainable"].items():
        assert torch.isfinite(value.float()).all(), name


def test_bad_config_fails_before_any_compute(monkeypatch):
    monkeypatch.setattr(train_mod, "build_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    cfg = tiny_config(kd="soft", feature="spectral", layers=[[0, 7]])
    with pytest.raises(ConfigError, match=r"distill\.layers"):
        train(cfg, progress=False)
    assert not RunDir.for_config(cfg).path.exists()


def test_learnable_projector_trains_and_faithful_stays_frozen(tmp_path):
    def projector_weight(mode, trained: bool):
        cfg = tiny_config(epochs=1, kd="soft", feature="projector", layers="last",
                          projector_mode=mode)
        if trained:
            run = train(cfg, progress=False, root=tmp_path / mode)
            state = torch.load(run.dir.checkpoint, weights_only=False)["trainable"]
            return state["criterion.projectors.0.proj.weight"]
        train_mod._seed_all(cfg.seed)                 # the same draws as train() makes
        task, _ = train_mod.build_task(cfg, torch.device("cpu"))
        return task.trainable_module.criterion.projectors[0].proj.weight.detach()

    initial = projector_weight("faithful", trained=False)
    assert torch.equal(projector_weight("faithful", trained=True), initial)
    assert torch.equal(projector_weight("learnable", trained=False), initial)
    assert not torch.equal(projector_weight("learnable", trained=True), initial)


@pytest.mark.skipif(sys.platform != "linux", reason="gloo test on Linux")
def test_ddp_two_cpu_processes(tmp_path):
    profile = tmp_path / "ddp.yaml"
    profile.write_text(
        "data: {name: fashion_mnist, train_subset: 128, eval_subset: 100, batch_size: 16}\n"
        "teacher: {model: {name: ddkit_vit_teacher_fmnist, kwargs: {embed_dim: 32, depth: 2, num_heads: 2}},"
        " optim: {epochs: 1, warmup_epochs: 0}}\n"
        "student: {model: {name: ddkit_vit_student_fmnist, kwargs: {embed_dim: 16, depth: 1, num_heads: 2}},"
        " optim: {epochs: 2, warmup_epochs: 0}}\n"
        "device: cpu\n")
    env = {**os.environ, "DDKIT_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ddkit.cli", "pair", "--profile", str(profile)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))  # no locks
    assert len(runs) == 2                                   # the teacher and the student
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["world_size"] == 2
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == list(range(summary["epochs"]))


def test_shared_teacher_pass_is_computed_once_and_matches_the_live_teacher(tmp_path, monkeypatch):
    import ddkit.runs.teacher_cache as cache_mod
    plain = replace(tiny_config(**DISTILL), **{"data.augment": False})
    shared = train(plain, progress=False)
    files = list((Path(os.environ["DDKIT_RUNS"]) / "teacher-cache").glob("*.pt"))
    assert len(files) == 1
    live = train(replace(plain, share_teacher_pass=False), progress=False, root=tmp_path / "live")
    for a, b in zip(shared.records, live.records):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_loss_fft"] == pytest.approx(b["train_loss_fft"], rel=1e-4)

    monkeypatch.setattr(cache_mod, "compute", lambda *a, **k: pytest.fail("teacher ran twice"))
    other = replace(plain, **{"distill.feature": "projector"})     # same teacher blocks
    assert train(other, progress=False).summary["epochs"] == 2
