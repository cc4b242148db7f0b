"""Experiment tracking: every run writes TensorBoard events beside metrics.jsonl that TensorBoard's
own reader loads, a key turns them off without changing the run's identity, W&B logs when the
optional package is there, and ``ddkit tb`` names the command."""
import importlib.machinery
import sys
import types

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddkit import cli
from ddkit.core.config import ConfigError, load_profile, replace, validate
from ddkit.runs.store import RunDir
from ddkit.runs.tracking import event_files
from ddkit.runs.train import train
from tests.helpers import interrupted_at_epoch, tiny_config

DISTILL = dict(kd="soft", feature="spectral", layers="last")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_every_run_writes_events_that_tensorboards_reader_loads():
    run = train(tiny_config(**DISTILL), progress=False)
    assert event_files(run.dir.path), "no events file beside metrics.jsonl"
    scalars = _scalars(run.dir.path)
    for key in ("train_lr", "train_loss", "train_loss_fft", "test_loss", "test_acc1",
                "test_acc5", "train_loss_feat/1-3"):
        assert key in scalars, (key, sorted(scalars))
        assert [step for step, _ in scalars[key]] == [0, 1]
        assert [v for _, v in scalars[key]] == pytest.approx([r[key] for r in run.records],
                                                             rel=1e-6)


def test_tensorboard_off_writes_none_and_is_the_same_run(tmp_path):
    cfg = tiny_config(epochs=1)
    off = train(replace(cfg, tensorboard=False), progress=False, root=tmp_path / "off")
    assert not event_files(off.dir.path)
    assert off.dir.path.name == RunDir.for_config(cfg).path.name   # not part of the identity


def test_a_resumed_run_continues_its_events_without_repeating_an_epoch(monkeypatch):
    cfg = tiny_config(epochs=3)
    with interrupted_at_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    run = train(cfg, progress=False)
    assert [step for step, _ in _scalars(run.dir.path)["test_acc1"]] == [0, 1, 2]


class _FakeWandb(types.ModuleType):
    """What ddkit calls of wandb: init(...) -> a run with log(...) and finish()."""

    def __init__(self):
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        fake = self
        return types.SimpleNamespace(log=lambda data, step: fake.calls.append(("log", step, data)),
                                     finish=lambda: fake.calls.append(("finish",)))


def test_log_wandb_logs_every_epoch_when_wandb_is_installed(monkeypatch):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = train(replace(tiny_config(), wandb="ddkit-test"), progress=False)
    init, *logs, finish = fake.calls
    assert init[0] == "init" and init[1]["project"] == "ddkit-test"
    assert init[1]["name"] == run.dir.path.name and finish == ("finish",)
    assert [step for _, step, _ in logs] == [0, 1]
    assert logs[-1][2]["test_acc1"] == run.records[-1]["test_acc1"]


def test_log_wandb_without_wandb_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)     # import wandb fails
    with pytest.raises(ConfigError, match=r"pip install wandb"):
        validate(replace(tiny_config(), wandb="p"))
    code = cli.main(["train", "--profile", "smoke", "--log-wandb", "p", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and err.count("error:") == 1 and "pip install wandb" in err


def test_the_cli_turns_tracking_off_or_on_and_names_the_tensorboard_command(capsys, runs_dir):
    args = cli.build_parser().parse_args(["train", "-c", "smoke", "--no-tensorboard"])
    profile = cli._profile(args)
    assert profile.name == "smoke" and profile.tensorboard is False
    assert profile.student_config().tensorboard is False
    args = cli.build_parser().parse_args(["train", "--config", "smoke"])
    assert cli._profile(args).tensorboard is True and cli._profile(args).wandb is None
    assert load_profile("smoke", tensorboard=False).teacher_config().tensorboard is False
    assert cli.main(["tb", "--print", "--", "--port", "6007"]) == 0
    assert capsys.readouterr().out.strip() == f"tensorboard --logdir {runs_dir} --port 6007"
