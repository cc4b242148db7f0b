"""What the tests share beyond fixtures: tiny run configs (seconds on 2 cores), and a training
interrupted at an epoch or whose loss turns NaN. ``from tests.helpers import tiny_config``."""
from __future__ import annotations

import contextlib

import ddkit.runs.train as train_mod
from ddkit.core.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig
from ddkit.core.losses import DistillationLoss

TINY_STUDENT = ModelConfig(name="ddkit_vit_student_fmnist",
                           kwargs={"embed_dim": 16, "depth": 2, "num_heads": 2})
TINY_TEACHER = ModelConfig(name="ddkit_vit_teacher_fmnist",
                           kwargs={"embed_dim": 32, "depth": 4, "num_heads": 2})


def tiny_config(epochs: int = 2, **distill) -> RunConfig:
    """A student run on 128 Fashion-MNIST images; ``distill`` sets the loss recipe."""
    recipe = DistillConfig(teacher=TINY_TEACHER, **distill) if distill else DistillConfig()
    return RunConfig(
        name="tiny", model=TINY_STUDENT,
        data=DataConfig(train_subset=128, eval_subset=100, batch_size=32, augment=True),
        optim=OptimConfig(epochs=epochs, lr=1e-3, warmup_epochs=1, sched_per_step=True),
        distill=recipe, seed=3, device="cpu")


@contextlib.contextmanager
def interrupted_at_epoch(monkeypatch, epoch: int):
    """Inside the block, training raises KeyboardInterrupt (as Ctrl-C would) when it reaches
    ``epoch`` (0-based); the real epoch loop is back when the block ends."""
    real = train_mod._train_epoch

    def stop(task, loader, optimizer, scheduler, cfg, device, at, *rest):
        if at == epoch:
            raise KeyboardInterrupt
        return real(task, loader, optimizer, scheduler, cfg, device, at, *rest)
    monkeypatch.setattr(train_mod, "_train_epoch", stop)
    try:
        yield
    finally:
        monkeypatch.setattr(train_mod, "_train_epoch", real)


def nan_loss_after_steps(monkeypatch, steps: int) -> None:
    """Every distillation loss after the first ``steps`` training steps is NaN."""
    real = DistillationLoss.forward
    calls = {"n": 0}

    def nan_later(self, *args, **kwargs):
        parts = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > steps:
            parts["loss"] = parts["loss"] * float("nan")
        return parts
    monkeypatch.setattr(DistillationLoss, "forward", nan_later)
