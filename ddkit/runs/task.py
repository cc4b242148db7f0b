"""The distillation task: a student, an optional frozen teacher, and the paper's loss.

Built on ``timm.task.TrainingTask``: a task returns a dict of loss parts, and
``prepare_distributed`` wraps only what trains (student + any learnable projector) in DDP while
the frozen teacher stays unwrapped. One class serves a teacher trained from scratch, a student
without KD, and every distilled student; ``MaeTask`` serves masked-autoencoder pre-training.
"""
from __future__ import annotations

import torch
from timm.task import TrainingTask
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ddkit.core.hooks import forward_with_features
from ddkit.core.losses import DistillationLoss
from ddkit.core.mae import MaskedAutoencoder


class StudentStep(nn.Module):
    """What DDP wraps: the student forward (with the blocks the loss needs) and the loss."""

    def __init__(self, student: nn.Module, criterion: DistillationLoss,
                 student_layers: list[int]):
        super().__init__()
        self.student, self.criterion, self.student_layers = student, criterion, student_layers

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None,
                teacher_feats: dict[int, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        logits, feats = forward_with_features(self.student, x, self.student_layers)
        parts = self.criterion(logits, y, teacher_logits=teacher_logits, student_feats=feats,
                               teacher_feats=teacher_feats)
        return {**parts, "output": logits}


class _StudentTask(TrainingTask):
    """What every ddkit task shares: ``student`` is the model the run keeps and evaluates, and
    ``prepare_distributed`` wraps only ``trainable_module`` in DDP."""

    def prepare_distributed(self, device_ids: list | None = None, **ddp_kwargs) -> "_StudentTask":
        self.trainable_module = DistributedDataParallel(self.trainable_module,
                                                        device_ids=device_ids, **ddp_kwargs)
        return self

    def get_eval_model(self, module: nn.Module | None = None, ema: bool = False) -> nn.Module:
        return self.student


class DistillationTask(_StudentTask):
    """``task(x, y)`` -> ``{"loss", "loss_base", "loss_dist", "loss_fft", "loss_feat/s-t", "output"}``."""

    def __init__(self, student: nn.Module, criterion: DistillationLoss,
                 teacher: nn.Module | None = None, layer_pairs: list[tuple[int, int]] = (),
                 device: torch.device | None = None):
        super().__init__(device=device, verbose=False)
        self.student, self.criterion = student, criterion
        self.trainable_module = StudentStep(student, criterion, sorted({s for s, _ in layer_pairs}))
        self.teacher = teacher
        self.teacher_layers = sorted({t for _, t in layer_pairs})
        if teacher is not None:
            teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "DistillationTask":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def set_progress(self, fraction: float) -> None:
        """Where the schedule stands (0 → 1), for the phase-aware feature weight."""
        self.criterion.progress = fraction

    @torch.no_grad()
    def fit_feature_targets(self, images: torch.Tensor | None = None,
                            feats: dict[int, torch.Tensor] | None = None) -> None:
        """Fit the loss modules that need the teacher's features before training (TopPCKD), from
        precomputed ``feats`` ``{block: [N, C, H, W]}`` or the teacher on ``images``."""
        if not self.criterion.needs_fit:
            return
        if feats is None:
            feats = {}
            for chunk in images.split(500):
                _, out = self.teacher_outputs(chunk)
                for block, f in out.items():
                    feats.setdefault(block, []).append(f.float())
            feats = {block: torch.cat(f) for block, f in feats.items()}
        self.criterion.fit(feats)

    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor | None, dict | None]:
        if self.teacher is None:
            return None, None
        with torch.no_grad():
            return forward_with_features(self.teacher, x, self.teacher_layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                teacher_out: tuple[torch.Tensor, dict] | None = None) -> dict[str, torch.Tensor]:
        """``teacher_out``: precomputed ``(logits, {block: features})`` (the shared teacher pass);
        computed here when None."""
        teacher_logits, teacher_feats = teacher_out or self.teacher_outputs(x)
        return self.trainable_module(x, y, teacher_logits, teacher_feats)


class MaeTask(_StudentTask):
    """Masked-autoencoder pre-training as a task: ``task(x, y)`` -> ``{"loss", "loss_rec"}``
    (labels unused). ``student`` is the encoder, the model whose weights the run keeps."""

    teacher = None
    teacher_layers: list[int] = []

    def __init__(self, mae: MaskedAutoencoder, device: torch.device | None = None):
        super().__init__(device=device, verbose=False)
        self.student = mae.encoder
        self.trainable_module = mae

    def set_progress(self, fraction: float) -> None:
        """No schedule-dependent loss term in pre-training."""

    def fit_feature_targets(self, images=None, feats=None) -> None:
        """Nothing to fit."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher_out=None) -> dict[str, torch.Tensor]:
        return self.trainable_module(x)
