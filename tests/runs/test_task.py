"""ddkit.runs.task: the training task is the student's forward and the loss, nothing else: its loss
is the criterion's on the student's and the frozen teacher's outputs."""
from __future__ import annotations

import torch

from ddkit.core.hooks import forward_with_features
from ddkit.core.losses import DistillationLoss
from ddkit.core.mae import MaskedAutoencoder
from ddkit.core.models import create_from_config
from ddkit.runs.task import DistillationTask, MaeTask
from tests.helpers import TINY_STUDENT, TINY_TEACHER

X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
Y = torch.tensor([0, 1, 2, 3])


def _task(feature: str = "spectral"):
    student, teacher = create_from_config(TINY_STUDENT), create_from_config(TINY_TEACHER)
    pairs = [(1, 3)] if feature != "none" else []
    criterion = DistillationLoss(feature=feature, layer_pairs=pairs, student_dims=16,
                                 teacher_dims=32)
    return DistillationTask(student, criterion, teacher, pairs), student, teacher, criterion


def test_the_loss_is_the_criterions_on_student_and_teacher():
    task, student, teacher, criterion = _task()
    out = task(X, Y)
    t_logits, t_feats = task.teacher_outputs(X)
    assert set(t_feats) == {3}
    assert torch.allclose(t_logits, teacher(X), atol=1e-6)
    logits, s_feats = forward_with_features(student, X, [1])
    assert torch.allclose(out["output"], logits, atol=1e-6)
    expected = criterion(logits, Y, teacher_logits=t_logits, student_feats=s_feats,
                         teacher_feats=t_feats)
    assert set(out) == set(expected) | {"output"}
    for key, value in expected.items():
        assert torch.allclose(out[key], value, atol=1e-6), key
    assert expected["loss_fft"] > 0


def test_the_teacher_stays_frozen_and_out_of_training():
    task, student, teacher, _ = _task("none")
    task.train()
    assert student.training and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert task.get_eval_model() is student
    task(X, Y)["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


def test_progress_reaches_the_criterion_and_no_teacher_means_no_teacher_pass():
    task, _, _, criterion = _task("none")
    task.set_progress(0.25)
    assert criterion.progress == 0.25
    alone = DistillationTask(create_from_config(TINY_STUDENT), DistillationLoss(kd="none"))
    assert alone.teacher_outputs(X) == (None, None)
    assert set(alone(X, Y)) >= {"loss", "output"}


def test_the_mae_task_keeps_the_encoder_and_returns_the_reconstruction_loss():
    encoder = create_from_config(TINY_STUDENT)
    mae = MaskedAutoencoder(encoder, 0.75, 16, 1, 2, True)
    task = MaeTask(mae)
    assert task.get_eval_model() is encoder and task.teacher is None
    torch.manual_seed(0)
    out = task(X, Y)
    torch.manual_seed(0)
    assert torch.equal(out["loss"], mae(X)["loss"])
