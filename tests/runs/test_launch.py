"""The launch plan: on the CPU a pool of one-process runs, on GPUs one run at a time over every
GPU (DDP through submitit's local executor and the Slurm task's ``TrainTask``), several runs on a
device only when asked; decided from a device count, so it is tested here without a GPU."""
import sys

import pytest

from ddkit.core.config import batch_plan, config_hash, load_profile, replace
from ddkit.core.device import DeviceUnavailableError
from ddkit.runs import cluster, launch
from ddkit.runs.cluster import Executor
from ddkit.runs.launch import launch_plan, train_array
from ddkit.runs.parallel import cores
from ddkit.studies import study
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _no_workers_env(monkeypatch):
    monkeypatch.delenv("DDKIT_WORKERS", raising=False)
    monkeypatch.delenv(cluster.EXECUTOR_ENV, raising=False)


@pytest.mark.parametrize("gpus", [0, 1, 4])
def test_the_cpu_keeps_its_pool_of_one_process_runs(gpus):
    plan = launch_plan("cpu", gpus=gpus)
    assert (plan.kind, plan.world_size, plan.workers) == ("local", 1, cores())
    assert launch_plan("auto", gpus=0).workers == cores()
    assert launch_plan("cpu", gpus=gpus, profile_workers=3).workers == 3


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_gpus_train_one_run_at_a_time_over_all_of_them(gpus):
    for device in ("cuda", "auto"):
        plan = launch_plan(device, gpus=gpus)
        assert plan.world_size == gpus and (plan.workers or 1) == 1
        assert plan.describe() == ("one run at a time on the GPU" if gpus == 1 else
                                   f"one run at a time, DDP over {gpus} GPUs")
        assert plan.kind == "local" and plan.gpus_per_node == gpus


def test_several_runs_share_a_device_only_when_asked(monkeypatch):
    plan = launch_plan("cuda", gpus=2, profile_workers=4)
    assert (plan.world_size, plan.workers) == (1, 4)
    assert launch_plan("cuda", gpus=2, workers=2).world_size == 1
    monkeypatch.setenv("DDKIT_WORKERS", "3")
    assert (launch_plan("cuda", gpus=2).workers, launch_plan("cuda", gpus=2).world_size) == (3, 1)


def test_cuda_without_a_gpu_is_refused_and_slurm_is_kept():
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        launch_plan("cuda", gpus=0)
    slurm = Executor(kind="slurm", tasks_per_node=2)
    assert launch_plan("cuda", gpus=8, executor=slurm) is slurm


@pytest.mark.parametrize("gpus, accum", [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_the_paper_grid_plans_each_run_for_every_gpu(monkeypatch, gpus, accum):
    monkeypatch.setattr(launch, "visible_gpus", lambda: gpus)
    seen = {}
    monkeypatch.setattr(study, "train_array", lambda configs, executor, **kw: seen.update(
        configs=configs, executor=executor, label=kw["label"]) or {})
    study.student_runs(load_profile("paper"), cells=["SoftKD", "SpectralKD-Last"])
    assert seen["executor"].world_size == gpus
    assert ("DDP over" in seen["label"]) == (gpus > 1)
    plans = [batch_plan(cfg) for cfg in seen["configs"].values()]
    assert {(p.world_size, p.accum, p.global_batch) for p in plans} == {(gpus, accum, 2048)}
    assert [p.lr for p in plans] == pytest.approx([2e-3] * len(plans))


@pytest.mark.skipif(sys.platform != "linux", reason="gloo processes on Linux")
def test_a_local_ddp_grid_trains_its_runs_one_after_another(tmp_path):
    """Two processes per run on the CPU (gloo) through submitit's local executor: the path a GPU
    box takes with one process per GPU."""
    configs = {"a": tiny_config(epochs=1), "b": replace(tiny_config(epochs=1), seed=4)}
    settings = Executor(kind="local", tasks_per_node=2, timeout_min=10)
    assert settings.describe() == "one run at a time, DDP over 2 CPU processes"
    runs = train_array(configs, settings, root=tmp_path / "runs", progress=False)
    for key, run in runs.items():
        summary = run.summary
        assert summary["world_size"] == 2 and run.config.world_size == 2
        assert run.dir.path.name.endswith(config_hash(run.config))
        assert run.dir.path.name != f"tiny-{config_hash(configs[key])}"   # not the 1-process run
    again = train_array(configs, settings, root=tmp_path / "runs", progress=False)
    assert {k: r.dir for k, r in again.items()} == {k: r.dir for k, r in runs.items()}
