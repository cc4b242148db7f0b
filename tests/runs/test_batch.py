"""The learning rate follows the global batch as in timm and DeiT: ``optim.lr_base`` at
``optim.lr_base_size`` images, ``optim.grad_accum_steps`` (or ``optim.global_batch``, which derives
it), and the world size part of a run's identity."""
import json
import logging

import pytest
import torch
from safetensors.torch import load_file

import ddkit.runs.train as train_mod
from ddkit.core.config import (
    ConfigError,
    batch_plan,
    config_hash,
    load_profile,
    replace,
    validate,
    with_world_size,
)
from ddkit.runs.store import RunDir
from ddkit.runs.train import train
from tests.helpers import tiny_config


def _paper_student(world: int):
    profile = load_profile("paper")
    cfg = profile.student_config(kd="soft", feature="spectral", layers="last",
                                 teacher=profile.distill.teacher)
    return with_world_size(cfg, world)


@pytest.mark.parametrize("world, accum", [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_the_paper_profile_reaches_the_official_batch_and_lr_on_1_2_4_8_gpus(world, accum):
    plan = batch_plan(_paper_student(world))
    assert (plan.per_process, plan.world_size, plan.accum) == (256, world, accum)
    assert plan.global_batch == 2048
    assert plan.lr == pytest.approx(5e-4 * 2048 / 512) == pytest.approx(2e-3)
    assert plan.line() == (f"global batch 2048 = 256 per process x {world} process(es) x "
                           f"{accum} accumulation step(s); peak lr 0.002 = lr_base 0.0005 x "
                           "2048 / 512")


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_lr_base_scales_with_batch_world_size_and_accumulation(world):
    cfg = replace(tiny_config(), **{"optim.lr_base": 5e-4, "optim.grad_accum_steps": 3})
    plan = batch_plan(with_world_size(cfg, world))
    assert plan.global_batch == 32 * world * 3
    assert plan.lr == pytest.approx(5e-4 * 32 * world * 3 / 512)
    assert batch_plan(with_world_size(tiny_config(), world)).lr == tiny_config().optim.lr  # as given


def test_the_same_recipe_on_another_world_size_is_another_run():
    cfg = tiny_config()
    assert config_hash(with_world_size(cfg, 1)) == config_hash(cfg)
    hashes = {config_hash(with_world_size(cfg, w)) for w in (1, 2, 4, 8)}
    assert len(hashes) == 4
    paper = {config_hash(_paper_student(w)) for w in (1, 2, 4, 8)}
    assert len(paper) == 4, "a 4-GPU run must not be a cache hit for the 8-GPU recipe"
    assert config_hash(replace(cfg, **{"optim.grad_accum_steps": 2})) != config_hash(cfg)
    assert config_hash(replace(cfg, **{"optim.lr_base": 5e-4})) != config_hash(cfg)


def test_new_keys_at_their_defaults_keep_every_existing_hash():
    cfg = tiny_config()
    same = replace(cfg, **{"optim.lr_base": None, "optim.lr_base_size": 512,
                           "optim.grad_accum_steps": 1, "optim.global_batch": None,
                           "world_size": 1, "tensorboard": False, "wandb": None})
    assert config_hash(same) == config_hash(cfg)
    # pinned: the tiny run's hash from before these keys existed
    assert config_hash(cfg) == "6c6bca2f749d"


def test_a_world_size_other_than_the_planned_one_is_refused():
    with pytest.raises(ConfigError, match=r"world_size=4: .*planned for 4 processes but 2 were"):
        with_world_size(replace(tiny_config(), world_size=4), 2)


@pytest.mark.parametrize("world, said", [
    (3, r"data\.batch_size=256 per process x 3 process\(es\) = 768 images per step does not "
        r"divide optim\.global_batch=2048 .*: run on a number of processes that divides 2048"),
    (16, r"data\.batch_size=256 per process x 16 process\(es\) = 4096 images per step exceeds "
         r"optim\.global_batch=2048: set data\.batch_size=128"),
    (6, r"does not divide optim\.global_batch=2048 .*processes that divides 2048"),
])
def test_a_per_device_batch_that_cannot_fit_the_global_batch_is_refused(world, said):
    with pytest.raises(ConfigError, match=said):
        validate(_paper_student(world))


def test_a_global_batch_that_cannot_be_reached_stops_train_before_any_data(monkeypatch):
    monkeypatch.setattr(train_mod, "build_dataset", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setenv("WORLD_SIZE", "2")     # as torchrun sets it (rank 0 of 2)
    cfg = replace(tiny_config(), **{"optim.global_batch": 96})
    with pytest.raises(ConfigError, match=r"64 images per step does not divide "
                                          r"optim\.global_batch=96.*set data\.batch_size=24"):
        train(cfg, progress=False)
    with pytest.raises(ConfigError, match="set one of them"):
        validate(replace(cfg, **{"optim.grad_accum_steps": 2}))


def test_two_accumulated_micro_batches_train_as_one_batch_of_both(tmp_path, caplog):
    base = replace(tiny_config(epochs=2), **{"optim.lr_base": 1e-3, "optim.lr_base_size": 64})
    big = replace(base, **{"data.batch_size": 64})
    small = replace(base, **{"optim.global_batch": 64})        # 32 x 1 process x 2 steps
    with caplog.at_level(logging.INFO, logger="ddkit"):
        a = train(big, progress=False, root=tmp_path / "big")
        b = train(small, progress=False, root=tmp_path / "small")
    assert "global batch 64 = 32 per process x 1 process(es) x 2 accumulation step(s); peak " \
           "lr 0.001 = lr_base 0.001 x 64 / 64" in caplog.text
    summary = json.loads(RunDir(b.dir.path).summary.read_text())
    assert (summary["global_batch"], summary["grad_accum_steps"], summary["lr"]) == (64, 2, 1e-3)
    wa, wb = load_file(str(a.dir.final_weights)), load_file(str(b.dir.final_weights))
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)
    assert [r["train_lr"] for r in a.records] == pytest.approx([r["train_lr"] for r in b.records])
    assert a.records[-1]["test_acc1"] == b.records[-1]["test_acc1"]


def test_a_global_batch_larger_than_the_data_is_refused_before_training(monkeypatch):
    cfg = replace(tiny_config(), **{"optim.global_batch": 256})     # 128 images, 32 x 8 steps
    with pytest.raises(ConfigError, match=r"128 training images give no optimizer step .*"
                                          r"global batch of 256"):
        train(cfg, progress=False)
    assert not RunDir.for_config(cfg).path.exists()
