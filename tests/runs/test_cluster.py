"""ddkit.runs.cluster against a real Slurm: a one-node cluster on localhost (munged, slurmctld and
slurmd from Debian's slurm-wlm and munge, a generated slurm.conf with 2 CPUs and a partition
``debug``) runs a job array of smoke-sized runs, requeues a task preempted with USR2 (submitit's
signal) and the run resumes from its checkpoint, ending with the weights of an uninterrupted
run; the second call is all cache hits; ``no_wait`` returns before its run starts; one run
trains on a task of 2 processes (DDP, gloo). The daemons keep their state in a temporary folder
and stop at the end of the module.

Needs root and the daemons: ``./tests/run.sh`` installs slurm-wlm and munge when run as root on
Debian; elsewhere those tests are skipped, saying how to enable them. The checks made before
submitting (unknown partition, run store under /tmp, Slurm unreachable), the ``--no-wait`` line
and its collect command, and the executor handed to the notebooks through ``$DDKIT_EXECUTOR``
run everywhere, with a fake ``sinfo`` on PATH and nothing submitted.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from submitit.core.utils import pickle_load

from ddkit import cli
from ddkit.cli import build_parser, main
from ddkit.core.config import load_profile, replace
from ddkit.runs import cluster, parallel
from ddkit.runs.cluster import EXECUTOR_ENV, ClusterError, Executor, check_slurm, train_array
from ddkit.runs.progress import ENV as PROGRESS_ENV
from ddkit.runs.store import RunDir
from ddkit.runs.train import train
from ddkit.studies import grid, study
from ddkit.studies.study import student_config, teacher_model
from tests.helpers import tiny_config

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "sbatch", "squeue", "scancel", "scontrol", "srun")
PARTITION = "debug"
START_TIMEOUT_S = 30
KEEP_ENV = "DDKIT_KEEP_SLURM"   # set: keep the cluster's folder (logs, state, runs) for a look
SUBMIT_DIR = "/var/tmp"    # the run store of the real-Slurm tests: not /tmp, which check_slurm refuses


def missing_slurm() -> str | None:
    """Why the real-Slurm tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (the test starts munged, slurmctld and slurmd as root)"
    absent = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]
    if absent:
        return (f"{', '.join(absent)} not found: install Debian's slurm-wlm and munge "
                "('sudo apt-get install slurm-wlm munge'; ./tests/run.sh does it when run as root "
                "on Debian)")
    return None


needs_slurm = pytest.mark.skipif(missing_slurm() is not None,
                                 reason=f"real-Slurm test: {missing_slurm()}")


# --------------------------------------------------------------------------- the cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=ddkit-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge/munge.socket
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _log_tail(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                     for p in sorted(folder.glob("*")) if p.is_file())


@pytest.fixture(scope="module")
def slurm():
    """A one-node Slurm on localhost for this module: yields ``{"dir": Path}`` (its state,
    logs and a run store beside them, under /var/tmp) with ``$SLURM_CONF`` set; stops the
    daemons and removes the folder at the end (kept with ``$DDKIT_KEEP_SLURM=1``)."""
    reason = missing_slurm()
    if reason:
        pytest.skip(f"real-Slurm test: {reason}")
    base = Path(tempfile.mkdtemp(prefix="ddkit-slurm-", dir=SUBMIT_DIR))
    base.chmod(0o755)
    for sub in ("munge", "state", "spool", "log"):
        (base / sub).mkdir()
    (base / "munge").chmod(0o755)   # munged wants its socket's folder reachable by everyone
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = base / "slurm.conf"
    conf.write_text(SLURM_CONF.format(dir=base, ctld_port=_free_port(), d_port=_free_port(),
                                      partition=PARTITION))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        out = open(base / "log" / f"{name}.out", "w")
        procs.append(subprocess.Popen([shutil.which(name), *args], env=env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    mp = pytest.MonkeyPatch()
    try:
        m = base / "munge"
        start("munged", "--foreground", "--force", f"--socket={m}/munge.socket",
              f"--key-file={key}", f"--pid-file={m}/munged.pid", f"--seed-file={m}/seed",
              f"--log-file={base}/log/munged.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (m / "munge.socket").exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail("munged did not start:\n" + _log_tail(base / "log"))
            time.sleep(0.2)
        start("slurmctld", "-D", "-i")
        start("slurmd", "-D", "-N", "localhost")
        mp.setenv("SLURM_CONF", str(conf))
        while True:
            out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True,
                                 text=True, env=env)
            if out.returncode == 0 and out.stdout.split() == ["idle"]:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(f"Slurm did not come up in {START_TIMEOUT_S} s (sinfo: "
                            f"{(out.stdout + out.stderr).strip()!r}):\n" + _log_tail(base / "log"))
            time.sleep(0.5)
        yield {"dir": base}
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
        for proc in reversed(procs):     # slurmd, slurmctld, then munged
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        mp.undo()
        if not os.environ.get(KEEP_ENV):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def store(slurm, request):
    """A run store the node sees (the cluster's own folder, not /tmp)."""
    root = slurm["dir"] / "runs" / request.node.name
    root.mkdir(parents=True)
    return root


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch):
    monkeypatch.setattr(cluster, "POLL_S", 1.0)


def _smoke_configs(cells=("no-KD", "SoftKD"), epochs: int = 2) -> dict:
    profile = load_profile("smoke")
    teacher, _ = teacher_model(profile, progress=False)
    small = {"data.train_subset": 128, "data.eval_subset": 100, "student.optim.epochs": epochs}
    return {cell: student_config(replace(profile, **small), cell, 0, teacher) for cell in cells}


def _no_submitting(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        pytest.fail("something was submitted")
    monkeypatch.setattr(cluster.submitit, "AutoExecutor", refuse)


def _squeue(job_id: str) -> str:
    return subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job_id}",
                           "--format=%T"], capture_output=True, text=True).stdout.strip()


def _requeued(job_id: str) -> bool:
    """Slurm has put the job back in the queue: pending, restarted once, held until its
    BeginTime (set once the old task has ended)."""
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                          text=True).stdout.split()
    return {"JobState=PENDING", "Reason=BeginTime", "Restarts=1"} <= set(show)


# --------------------------------------------------------------------------- on the cluster


@needs_slurm
def test_a_grid_trains_as_one_job_array_and_the_second_call_is_cache_hits(store, monkeypatch,
                                                                           capsys):
    configs = _smoke_configs()
    settings = Executor(kind="slurm", partition=PARTITION, timeout_min=10)
    started = time.monotonic()
    runs = train_array(configs, settings, root=store, progress=True)
    took = time.monotonic() - started
    assert list(runs) == list(configs)
    for key, cfg in configs.items():
        run_dir = RunDir.for_config(cfg, store)
        assert runs[key].dir.path == run_dir.path and run_dir.is_complete
        assert [r["epoch"] for r in run_dir.records()] == [0, 1]
    err = capsys.readouterr().err
    assert "submitted job array" in err and "finished 2" in err
    arrays = list((store / cluster.SUBMITIT_DIR).iterdir())
    assert [p.name for p in arrays if p.is_dir()] == ["1"], arrays
    print(f"2-run array on the 1-node Slurm: {took:.1f} s")

    # no_wait (--no-wait): a third run is submitted; the two complete ones come back at once
    new = _smoke_configs(("no-KD",), epochs=1)["no-KD"]
    capsys.readouterr()
    back = train_array({**configs, "new": new}, dataclasses.replace(
        settings, no_wait=True, collect="ddkit controls --publish-only"), root=store)
    assert list(back) == list(configs) and not RunDir.for_config(new, store).is_complete
    out = capsys.readouterr().out.strip().splitlines()
    said = re.fullmatch(r"submitted Slurm job array (\d+) \(1 run\(s\); .*\); once it is done, "
                        r"collect the runs with: ddkit controls --publish-only", out[-1])
    assert len(out) == 1 and said, out
    assert _squeue(said[1]) in ("PENDING", "CONFIGURING", "RUNNING"), "returned without waiting"
    subprocess.run(["scancel", said[1]], check=True)

    _no_submitting(monkeypatch)
    stamps = {k: RunDir.for_config(c, store).summary.stat().st_mtime_ns for k, c in configs.items()}
    again = train_array(configs, settings, root=store, progress=False)
    assert [r.dir.path for r in again.values()] == [r.dir.path for r in runs.values()]
    assert {k: RunDir.for_config(c, store).summary.stat().st_mtime_ns
            for k, c in configs.items()} == stamps


@needs_slurm
def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(store, monkeypatch,
                                                                      tmp_path):
    cfg = _smoke_configs(("no-KD",), epochs=6)["no-KD"]
    run_dir = RunDir.for_config(cfg, store)
    events = store / "events.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(events))    # sbatch passes the environment on
    submitted = train_array({"one": cfg}, Executor(kind="slurm", partition=PARTITION),
                            root=store, wait=False)
    job = submitted.jobs["one"]
    deadline = time.monotonic() + 60
    while not (run_dir.log.exists() and len(run_dir.records()) >= 2):   # 2 epochs done
        assert time.monotonic() < deadline, f"no epoch in 60 s; squeue: {_squeue(job.job_id)}"
        time.sleep(0.3)
    logged = len(run_dir.records())
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    deadline = time.monotonic() + 30
    while not _requeued(job.job_id):
        assert time.monotonic() < deadline, "not requeued in 30 s:\n" + (job.stderr() or "")
        time.sleep(0.3)
    # Slurm holds a requeued job 2 minutes (BeginTime); a real cluster waits, the test does not
    subprocess.run(["scontrol", "update", f"jobid={job.job_id}", "StartTime=now"], check=True)
    started = time.monotonic()
    failures = cluster._wait({"one": job}, {"one": cfg}, {}, submitted.job_id, False, "", 1)
    assert failures == {}, failures
    print(f"requeued task finished {time.monotonic() - started:.1f} s after its release")
    assert run_dir.is_complete
    assert [r["epoch"] for r in run_dir.records()] == list(range(6)), "every epoch once"
    starts = [e for e in map(json.loads, events.read_text().splitlines())
              if e["event"] == "run_start"]
    assert [e["resumed_from"] for e in starts][0] == 0 and len(starts) == 2, starts
    # `logged` epochs were logged when the signal was sent (the checkpoint is written just after
    # the log, and an epoch may end before the signal lands): resumed, not trained from scratch
    assert logged - 1 <= starts[1]["resumed_from"] < cfg.optim.epochs, (logged, starts)
    logs = (job.stdout() or "") + (job.stderr() or "")
    assert "this job is preempted" in logs and "Calling checkpoint method" in logs
    assert "Requeued job" in logs

    # the same config trained here without a break, on one thread as the task was
    # (--cpus-per-task 1: torch splits some sums by thread), ends with the same weights
    monkeypatch.delenv(PROGRESS_ENV)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = train(cfg, progress=False, root=tmp_path / "uninterrupted")
    finally:
        torch.set_num_threads(threads)
    requeued, uninterrupted = load_file(run_dir.final_weights), load_file(whole.dir.final_weights)
    assert requeued.keys() == uninterrupted.keys()
    for name in requeued:
        assert torch.equal(requeued[name], uninterrupted[name]), name
    assert ([{k: v for k, v in r.items() if k != "elapsed_s"} for r in run_dir.records()]
            == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in whole.records])


@needs_slurm
def test_a_task_of_two_processes_trains_one_run_with_ddp(store):
    cfg = tiny_config(epochs=2)      # 128 images, a 2-block ViT of width 16, on the CPU (gloo)
    settings = Executor(kind="slurm", partition=PARTITION, tasks_per_node=2, timeout_min=10)
    assert settings.parameters()["tasks_per_node"] == 2 and settings.world_size == 2
    runs = train_array({"ddp": cfg}, settings, root=store, progress=False)
    summary = runs["ddp"].summary
    assert summary["world_size"] == 2, summary
    assert [r["epoch"] for r in runs["ddp"].records] == [0, 1]
    # both processes ran train and returned: rank 1's result is the same run folder
    (array,) = [p for p in (store / cluster.SUBMITIT_DIR).iterdir() if p.is_dir()]
    results = {re.search(r"_(\d+)_result\.pkl$", p.name)[1]: pickle_load(p)
               for p in array.glob("*_result.pkl")}     # <job id>_<task>_result.pkl
    assert results == {"0": ("success", str(runs["ddp"].dir.path)),
                       "1": ("success", str(runs["ddp"].dir.path))}, results


# --------------------------------------------------------------------------- before submitting


def _fake_sinfo(folder: Path, monkeypatch, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sinfo = folder / "sinfo"
    sinfo.write_text("#!/bin/sh\n" + script + "\n")
    sinfo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


@pytest.fixture
def shared(tmp_path):
    """A run store outside /tmp (as a shared filesystem would be)."""
    root = Path(tempfile.mkdtemp(prefix="ddkit-cluster-check-", dir=SUBMIT_DIR))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_an_unknown_partition_is_refused_before_anything_is_submitted(tmp_path, shared,
                                                                       monkeypatch):
    _fake_sinfo(tmp_path / "bin", monkeypatch, "printf 'debug*\\ngpu\\n'")
    _no_submitting(monkeypatch)
    assert check_slurm(Executor(kind="slurm", partition="gpu"), shared) == ["debug", "gpu"]
    with pytest.raises(ClusterError, match=r"unknown Slurm partition 'a100'.*debug, gpu"):
        train_array(_smoke_configs(("no-KD",)), Executor(kind="slurm", partition="a100"),
                    root=shared)
    assert not list(shared.iterdir()), "nothing written to the run store"


def test_a_run_store_under_tmp_is_refused(tmp_path, monkeypatch):
    _fake_sinfo(tmp_path / "bin", monkeypatch, "echo debug")
    _no_submitting(monkeypatch)
    with pytest.raises(ClusterError, match=r"run store /tmp/\S+ is under /tmp, which the "
                                           "cluster's nodes cannot see"):
        train_array(_smoke_configs(("no-KD",)), Executor(kind="slurm"), root=tmp_path / "runs")


def test_an_unreachable_slurm_is_named(tmp_path, shared, monkeypatch):
    _fake_sinfo(tmp_path / "bin", monkeypatch,
                "echo 'slurm_load_partitions: Unable to contact slurm controller' >&2; exit 1")
    with pytest.raises(ClusterError, match="Unable to contact slurm controller"):
        check_slurm(Executor(kind="slurm"), shared)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ClusterError, match="`sinfo` is not on PATH"):
        check_slurm(Executor(kind="slurm"), shared)


def test_the_cli_says_why_in_one_line(tmp_path, shared, monkeypatch, capsys):
    _fake_sinfo(tmp_path / "bin", monkeypatch, "echo debug")
    _no_submitting(monkeypatch)
    # --retrain-published: the committed tables hold this setting's runs, else skipped
    code = main(["controls", "--only", "MAE teacher, head untrained", "--retrain-published",
                 "--executor", "slurm", "--partition", "nope", "--timeout-min", "5",
                 "--runs-dir", str(shared)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: cannot submit to Slurm (nothing was "
                                            "submitted): unknown Slurm partition 'nope'"), err


@pytest.mark.parametrize("command", ["controls", "phase-map"])
def test_teachers_only_on_slurm_checks_slurm_first(tmp_path, shared, monkeypatch, capsys,
                                                   command):
    _fake_sinfo(tmp_path / "bin", monkeypatch, "echo debug")
    _no_submitting(monkeypatch)
    from ddkit.studies import controls, phase_map
    for module in (controls, phase_map):
        monkeypatch.setattr(module, "teachers", lambda *a, **k: pytest.fail("teachers ran"))
    code = main([command, "--teachers-only", "--executor", "slurm", "--partition", "nope",
                 "--runs-dir", str(shared)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: cannot submit to Slurm (nothing was "
                                            "submitted): unknown Slurm partition 'nope'"), err


class _FakeArray:
    """submitit.AutoExecutor that submits nothing: map_array gives jobs of array 4242."""

    def __init__(self, folder, cluster):
        self.params = {}

    def update_parameters(self, **params):
        self.params = params

    def map_array(self, fn, items):
        return [SimpleNamespace(job_id=f"4242_{i}") for i in range(len(items))]


def test_no_wait_prints_the_array_and_the_command_that_collects_it(tmp_path, shared,
                                                                    monkeypatch, capsys):
    _fake_sinfo(tmp_path / "bin", monkeypatch, "echo debug")
    monkeypatch.setattr(cluster.submitit, "AutoExecutor", _FakeArray)
    published = []
    monkeypatch.setattr(grid, "publish", lambda profile, done, folder, **kw: published.append(
        dict(done)) or {grid.RESULTS_CSV: []})     # the committed tables stay as they are
    code = main(["controls", "--only", "MAE teacher, head untrained", "--retrain-published",
                 "--executor", "slurm", "--no-wait", "--partition", "debug", "--set", "seeds=[0]",
                 "--runs-dir", str(shared)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and published == [{}], (code, published)
    said = re.fullmatch(r"submitted Slurm job array 4242 \((\d+) run\(s\); `squeue -j 4242` "
                        r"shows it\); once it is done, collect the runs with: (.+)", out[0])
    assert said and int(said[1]) >= 1, out
    collect = shlex.split(said[2])
    assert collect == ["ddkit", "controls", "--profile", "controls", "--set", "seeds=[0]",
                       "--runs-dir", str(shared.resolve()), "--publish-only"]
    args = build_parser().parse_args(collect[1:])
    assert args.publish_only and not args.no_wait and args.overrides == ["seeds=[0]"]
    with pytest.raises(ClusterError, match="--no-wait.*needs --executor slurm"):
        cli._executor(build_parser().parse_args(["controls", "--no-wait"]))


def test_the_executor_travels_in_the_environment_to_the_grids(monkeypatch):
    settings = Executor(kind="slurm", partition="gpu", gpus_per_node=2, nodes=2, mem_gb=8.5,
                        timeout_min=30, folder="/shared/submitit", tasks_per_node=4)
    monkeypatch.setenv(EXECUTOR_ENV, settings.to_env())
    assert Executor.from_env() == settings and settings.world_size == 8
    used = []
    fake = lambda configs, executor, **kw: used.append((list(configs), executor)) or {}  # noqa: E731
    monkeypatch.setattr(study, "train_array", fake)
    monkeypatch.setattr(grid, "train_array", fake)
    profile = load_profile("smoke")
    study.student_runs(profile, cells=["no-KD"], seeds=[0], progress=False)
    cfg = student_config(profile, "no-KD", 0, None)
    monkeypatch.setattr(grid, "configs", lambda profile, only=None, teachers=None, world_size=None: {
        ("base", "no-KD", 0): cfg})
    grid.runs(profile, progress=False)
    assert used == [([("no-KD", 0)], settings), ([("base", "no-KD", 0)], settings)]

    monkeypatch.delenv(EXECUTOR_ENV)      # unset: this machine's pool, as before
    assert Executor.from_env() is None
    study.student_runs(profile, cells=["no-KD"], seeds=[0], progress=False, workers=1)
    grid.runs(profile, progress=False, workers=1)
    assert [executor for _, executor in used[2:]] == [Executor(workers=1)] * 2

    for text, error in (('{"kind": "slurm", "gpus": 1}', r"unknown field\(s\) \['gpus'\]"),
                        ("slurm", "is not JSON"), ('["slurm"]', "JSON object"),
                        ('{"kind": "slurm", "nodes": 0}', "nodes=0 must be a positive")):
        monkeypatch.setenv(EXECUTOR_ENV, text)
        with pytest.raises(ClusterError, match=error):
            Executor.from_env()


def test_notebooks_hand_the_executor_to_their_kernels(tmp_path, shared, monkeypatch, capsys):
    _fake_sinfo(tmp_path / "bin", monkeypatch, "echo debug")
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    seen = []
    monkeypatch.setattr(cli, "run_notebooks", lambda paths, profile, extra: seen.append(
        (Executor.from_env(), [p.name[:2] for p in paths])) or tmp_path)
    argv = ["notebooks", "--profile", "smoke", "--only", "01", "--runs-dir", str(shared)]
    assert main([*argv, "--executor", "slurm", "--partition", "debug", "--cpus-per-task", "2",
                 "--timeout-min", "20"]) == 0
    assert seen == [(Executor(kind="slurm", partition="debug", cpus_per_task=2,
                              timeout_min=20), ["01"])]
    assert EXECUTOR_ENV not in os.environ, "the variable is the kernels' only"
    monkeypatch.setenv(EXECUTOR_ENV, Executor(kind="slurm").to_env())
    assert main(argv) == 0 and seen[-1][0] is None, "--executor local (the default) wins"
    assert os.environ[EXECUTOR_ENV] == Executor(kind="slurm").to_env(), "and is put back"
    seen.clear()
    code = main([*argv, "--executor", "slurm", "--partition", "nope"])
    assert code == 2 and not seen, "a bad partition stops before any notebook"
    assert "unknown Slurm partition 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):                   # the notebooks need their runs: no --no-wait
        build_parser().parse_args([*argv, "--executor", "slurm", "--no-wait"])


def test_local_executor_is_the_process_pool(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cluster, "train_many", lambda configs, workers, **kw: calls.append(
        (dict(configs), workers, kw["root"])) or {})
    train_array({"a": 1}, Executor(workers=3), root=tmp_path)
    assert calls == [({"a": 1}, 3, tmp_path)]
    with pytest.raises(ClusterError, match="choose one of"):
        Executor(kind="pbs")
    with pytest.raises(ClusterError, match="timeout_min=0"):
        Executor(kind="slurm", timeout_min=0)
    with pytest.raises(ClusterError, match="tasks_per_node=0"):
        Executor(kind="slurm", tasks_per_node=0)
    with pytest.raises(ClusterError, match="--no-wait.*needs --executor slurm"):
        Executor(no_wait=True)
    assert Executor(kind="slurm", gpus_per_node=4).parameters()["tasks_per_node"] == 4
    assert parallel.RunsFailed  # the failures of an array are reported as the pool's
