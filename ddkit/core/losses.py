"""Distillation losses: SoftKD, hard KD, SpectralKD, ProjectorKD, layer maps, the total loss, and
the remedies of the phase map (LiftKD, GenerationKD, TopPCKD, a phase-aware feature weight).

Definitions follow docs/design.md §2 (as the official Distillation Dynamics code computes them);
the remedies follow docs/design.md §11.
Feature maps are `[B, C, H, W]` over the token grid (prefix tokens dropped). Teacher tensors are
targets: they are detached before any loss is taken.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy

from ddkit.core.subspace import shared_basis

KD_KINDS = ("none", "soft", "hard")
FEATURE_KINDS = ("none", "spectral", "projector", "lift", "generate", "top_pc")
# feature kinds whose pair loss has a module of its own (``DistillationLoss.projectors``)
MODULE_KINDS = ("projector", "lift", "generate", "top_pc")
PROJECTOR_MODES = ("faithful", "learnable")
LAYER_SPECS = ("none", "first", "last", "first_last")

LayerSpec = Union[str, Sequence[Sequence[int]]]
Dims = Union[int, Sequence[int], None]


# ----------------------------------------------------------------------------- logit KD

def soft_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 tau: float = 1.0) -> torch.Tensor:
    """SoftKD: tau² · KL(p_t ‖ p_s) with p = softmax(logits / tau) over classes.

    Reduction 'batchmean': KL summed over classes, then mean over the batch. This is
    num_classes× larger than DeiT's soft distillation (`reduction='sum'` / numel).
    Logits are `[B, K]`; returns a scalar. The teacher is detached.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"soft_kd_loss: student_logits {tuple(student_logits.shape)} and "
                         f"teacher_logits {tuple(teacher_logits.shape)} must both be [B, K]")
    if tau <= 0:
        raise ValueError(f"soft_kd_loss: tau must be > 0, got {tau}")
    log_p_s = F.log_softmax(student_logits / tau, dim=-1)  # [B, K]
    log_p_t = F.log_softmax(teacher_logits.detach() / tau, dim=-1)  # [B, K]
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * tau ** 2


def hard_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Hard KD (DeiT): cross-entropy against the teacher's argmax class, mean over the batch."""
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"hard_kd_loss: student_logits {tuple(student_logits.shape)} and "
                         f"teacher_logits {tuple(teacher_logits.shape)} must both be [B, K]")
    hard_targets = teacher_logits.detach().argmax(dim=-1)  # [B]
    return F.cross_entropy(student_logits, hard_targets)


# ----------------------------------------------------------------------------- SpectralKD

def _check_feature_pair(f_s: torch.Tensor, f_t: torch.Tensor, allow_wider_student: bool) -> None:
    """Both [B, C, H, W] with equal B, H, W; C_s <= C_t unless allowed otherwise."""
    shapes = f"student {tuple(f_s.shape)}, teacher {tuple(f_t.shape)}"
    if f_s.dim() != 4 or f_t.dim() != 4:
        raise ValueError(f"feature maps must be [B, C, H, W]; got {shapes}")
    if f_s.shape[0] != f_t.shape[0] or f_s.shape[2:] != f_t.shape[2:]:
        raise ValueError(f"feature maps must agree in B, H, W; got {shapes}")
    if not allow_wider_student and f_s.shape[1] > f_t.shape[1]:
        raise ValueError(f"student channels must be <= teacher channels; got {shapes}")


def pool_channels(f: torch.Tensor, channels: int) -> torch.Tensor:
    """Average-pool the channel axis of `[B, C, H, W]` to `channels` adaptive windows.

    Window i covers channels [floor(i·C/c), ceil((i+1)·C/c)): what
    `F.adaptive_avg_pool3d(f, (c, None, None))` does on a 4-D tensor. No-op when c == C.
    """
    B, C, H, W = f.shape
    if C == channels:
        return f
    if C % channels == 0:  # equal windows of C // c adjacent channels: a plain mean, faster
        return f.reshape(B, channels, C // channels, H, W).mean(2)  # [B, c, H, W]
    return F.adaptive_avg_pool3d(f, (channels, None, None))  # [B, c, H, W]


def spectral_kd_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """SpectralKD: MSE between the spatial half-spectra of student and channel-pooled teacher.

    f_s `[B, C_s, H, W]`, f_t `[B, C_t, H, W]` with C_s <= C_t. The teacher is pooled to C_s
    channels (`pool_channels`), both maps go through `rfft2(norm="ortho")` over (H, W), real and
    imaginary parts are stacked, and the squared error is averaged over all
    B·C_s·H·(W//2+1)·2 elements. No learned parameters; half precision is upcast to float32.
    """
    _check_feature_pair(f_s, f_t, allow_wider_student=False)
    target = pool_channels(f_t.detach(), f_s.shape[1])  # [B, C_s, H, W]
    diff = f_s - target  # [B, C_s, H, W]; rfft2 is linear: spec(s) - spec(t) = spec(s - t)
    if diff.dtype in (torch.float16, torch.bfloat16):
        diff = diff.float()
    return _half_spectrum_energy(diff) / (2 * diff[..., : diff.shape[-1] // 2 + 1].numel())


def _half_spectrum_energy(d: torch.Tensor) -> torch.Tensor:
    """``sum |rfft2(d, norm="ortho")|^2`` over every kept bin, without an FFT.

    rfft2 keeps columns 0 … W//2 of the 2-D spectrum D of each ``[H, W]`` plane. By Parseval the
    full spectrum holds ``sum d^2``; the other columns mirror the kept ones, so the kept half is
    ``(sum d^2 + |column 0|^2 + |column W/2|^2 [W even]) / 2``, where column 0 is the DFT over H of
    the row sums (energy ``sum_h (sum_w d)^2 / W``) and column W/2 that of the alternating row sums
    (``sum_h (sum_w (-1)^w d)^2 / W``). Equal to the FFT form (tests compare them); much faster on
    small token grids, where per-plane FFTs cost more than the arithmetic.
    """
    W = d.shape[-1]
    energy = d.square().sum() + d.sum(-1).square().sum() / W
    if W % 2 == 0:
        sign = torch.ones(W, dtype=d.dtype, device=d.device)
        sign[1::2] = -1
        energy = energy + (d * sign).sum(-1).square().sum() / W
    return energy / 2


def feature_loss_diagnostics(f_s: torch.Tensor, f_t: torch.Tensor) -> dict[str, float]:
    """Scale-controlled views of the SpectralKD loss for one (student, teacher) feature pair.

    raw: spectral_kd_loss(f_s, f_t); zero: the loss of an all-zero prediction (the pooled
    teacher's half-spectrum energy per element); relative: raw / zero; cosine: cosine
    similarity between each student token vector [C_s] and the channel-pooled teacher token
    vector, averaged over (B, H, W).
    """
    with torch.no_grad():
        raw = spectral_kd_loss(f_s, f_t)
        zero = spectral_kd_loss(torch.zeros_like(f_s), f_t)
        target = pool_channels(f_t, f_s.shape[1])  # [B, C_s, H, W]
        cosine = F.cosine_similarity(f_s.float(), target.float(), dim=1).mean()  # mean of [B, H, W]
    return {"raw": raw.item(), "zero": zero.item(), "relative": (raw / zero).item(),
            "cosine": cosine.item()}


# ----------------------------------------------------------------------------- ProjectorKD

class ProjectorKD(nn.Module):
    """ProjectorKD: Linear(C_s→C_t) per token on the student, BatchNorm2d on both maps, MSE.

    mode="faithful" (official code): the modules are never trained there, so the projector is
    frozen at its random PyTorch-default init (requires_grad False; gradients still flow to the
    student features) and both BNs have no affine parameters (γ=1, β=0).
    mode="learnable" (ddkit addition, not in the paper): trainable projector and affine BNs.
    In both modes the BNs always normalise with batch statistics (no running stats), as BN in
    train mode. Loss: MSE averaged over B·C_t·H·W.
    """

    def __init__(self, student_dim: int, teacher_dim: int, mode: str = "faithful"):
        super().__init__()
        if mode not in PROJECTOR_MODES:
            raise ValueError(f"ProjectorKD: unknown mode {mode!r}; valid modes: {PROJECTOR_MODES}")
        self.mode = mode
        learnable = mode == "learnable"
        self.proj = nn.Linear(student_dim, teacher_dim)
        self.proj.requires_grad_(learnable)
        self.bn_s = nn.BatchNorm2d(teacher_dim, affine=learnable, track_running_stats=False)
        self.bn_t = nn.BatchNorm2d(teacher_dim, affine=learnable, track_running_stats=False)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        _check_feature_pair(f_s, f_t, allow_wider_student=True)
        if f_s.shape[1] != self.proj.in_features or f_t.shape[1] != self.proj.out_features:
            raise ValueError(f"ProjectorKD({self.proj.in_features}→{self.proj.out_features}) got "
                             f"student {tuple(f_s.shape)}, teacher {tuple(f_t.shape)}")
        tokens = f_s.permute(0, 2, 3, 1)  # [B, H, W, C_s]
        projected = self.proj(tokens).permute(0, 3, 1, 2)  # [B, C_t, H, W]
        return F.mse_loss(self.bn_s(projected), self.bn_t(f_t.detach()))


# ----------------------------------------------------------------------------- remedies

def _tokens(f: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H, W, C]``: one channel vector per token."""
    return f.permute(0, 2, 3, 1)


def _grid(tokens: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, C] -> [B, C, H, W]``."""
    return tokens.permute(0, 3, 1, 2)


class LiftKD(nn.Module):
    """A lift before the feature loss (the remedy the encoding-mismatch follow-up proposes): the
    student's tokens go through a learned Linear(C_s→C_t) and LayerNorm(C_t), then SpectralKD
    against the un-pooled teacher map, so the student keeps its own width and the lift carries
    the teacher's extra directions. Loss as ``spectral_kd_loss`` (mean over B·C_t·H·(W//2+1)·2)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.lift = nn.Linear(student_dim, teacher_dim)
        self.norm = nn.LayerNorm(teacher_dim)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        _check_feature_pair(f_s, f_t, allow_wider_student=True)
        return spectral_kd_loss(_grid(self.norm(self.lift(_tokens(f_s)))), f_t)


class GenerationKD(nn.Module):
    """Generation instead of mimicry for the deep layer (ViTKD, Yang et al. 2022): the student's
    tokens are mapped to C_t channels (Linear), a random ``mask_ratio`` of the token positions is
    replaced by a learned mask token (drawn per image from torch's global RNG), and a generator
    (Conv3×3 → ReLU → Conv3×3 over the token grid) predicts the teacher's whole map from what is
    left. Loss: MSE against the teacher map, mean over B·C_t·H·W."""

    def __init__(self, student_dim: int, teacher_dim: int, mask_ratio: float = 0.5):
        super().__init__()
        if not 0 <= mask_ratio < 1:
            raise ValueError(f"GenerationKD: mask_ratio must be in [0, 1), got {mask_ratio}")
        self.mask_ratio = mask_ratio
        self.align = nn.Linear(student_dim, teacher_dim)
        self.mask_token = nn.Parameter(torch.zeros(teacher_dim))
        self.generator = nn.Sequential(nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1),
                                       nn.ReLU(),
                                       nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1))

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        _check_feature_pair(f_s, f_t, allow_wider_student=True)
        tokens = self.align(_tokens(f_s))                                   # [B, H, W, C_t]
        B, H, W, _ = tokens.shape
        masked = torch.rand(B, H, W, 1, device=tokens.device) < self.mask_ratio
        tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        return F.mse_loss(self.generator(_grid(tokens)), f_t.detach())


class TopPCKD(nn.Module):
    """Align only what a narrow student can hold (the kit's remedy): the teacher's tokens are
    projected on their top C_s principal directions (data-set level: pooled over the tokens of
    the images ``fit`` sees, centred), so student channel c is asked for the teacher's c-th
    principal coordinate; then SpectralKD between the two C_s-channel maps. The basis is fitted
    once before training (``fit``) and kept as buffers."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        if student_dim > teacher_dim:
            raise ValueError(f"TopPCKD: the student's width {student_dim} exceeds the teacher's "
                             f"{teacher_dim}; there are only {teacher_dim} principal directions")
        self.register_buffer("mean", torch.zeros(teacher_dim))
        self.register_buffer("basis", torch.zeros(teacher_dim, student_dim))   # [C_t, C_s]
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, f_t: torch.Tensor) -> None:
        """Mean and top-C_s eigenvectors of the channel covariance of ``f_t [N, C_t, H, W]``
        pooled over (N, H, W), in float64; each direction's sign makes its largest loading
        positive, so the basis does not depend on the eigensolver's signs."""
        tokens = _tokens(f_t).reshape(-1, f_t.shape[1]).double()           # [N·H·W, C_t]
        mean = tokens.mean(0)
        centred = tokens - mean
        _, vectors = torch.linalg.eigh(centred.T @ centred / len(tokens))  # ascending
        top = vectors.flip(-1)[:, : self.basis.shape[1]]                   # [C_t, C_s]
        signs = top.gather(0, top.abs().argmax(0, keepdim=True)).sign()
        self.mean.copy_(mean.float())
        self.basis.copy_((top * signs).float())
        self.fitted.fill_(True)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        _check_feature_pair(f_s, f_t, allow_wider_student=False)
        if not bool(self.fitted):
            raise RuntimeError("TopPCKD: call fit(teacher features) before training")
        target = (_tokens(f_t.detach()) - self.mean) @ self.basis                # [B, H, W, C_s]
        return spectral_kd_loss(f_s, _grid(target))


class RankTarget(nn.Module):
    """The teacher block's tokens projected onto their top-``rank`` shared directions: the
    controlled-dimension design's target (docs/design.md §12), whose dimension the design sets
    while the student's width stays fixed. The basis is the follow-up's (``core.subspace``:
    uncentred, pooled over every token of the images ``fit`` sees), fitted once before training
    and kept as a buffer; the projected target keeps the teacher's C_t channels at rank
    ``rank``: ``X V_k V_kᵀ``. Feature maps ``[B, C_t, H, W]`` in, the same shape out."""

    def __init__(self, teacher_dim: int, rank: int):
        super().__init__()
        if not 1 <= rank <= teacher_dim:
            raise ValueError(f"RankTarget: rank must be in [1, {teacher_dim}] (the teacher's "
                             f"channels), got {rank}")
        self.register_buffer("basis", torch.zeros(teacher_dim, rank))          # [C_t, k]
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, f_t: torch.Tensor) -> None:
        """The top-``rank`` shared directions of ``f_t [N, C_t, H, W]``."""
        _, basis = shared_basis(f_t)
        self.basis.copy_(basis[:, : self.basis.shape[1]].float())
        self.fitted.fill_(True)

    def forward(self, f_t: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("RankTarget: call fit(teacher features) before training")
        tokens = _tokens(f_t.detach())                                          # [B, H, W, C_t]
        return _grid(tokens @ self.basis @ self.basis.T)


def phase_weight(progress: float, until: float | None) -> float:
    """The phase-aware feature weight's factor at ``progress`` (0 → 1 through the schedule):
    1 → 0 by a half cosine over [0, until], 0 after; 1 throughout when ``until`` is None."""
    if until is None:
        return 1.0
    if progress >= until:
        return 0.0
    return 0.5 * (1 + math.cos(math.pi * progress / until))


# ----------------------------------------------------------------------------- layer maps

def _normalise_index(value: int, n: int, role: str) -> int:
    """Map a possibly negative block index into [0, n); ValueError when out of range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{role} block index must be an int, got {value!r}")
    if not -n <= value < n:
        raise ValueError(f"{role} block index {value} out of range for {n} blocks "
                         f"(valid: {-n} … {n - 1})")
    return value % n


def resolve_layer_pairs(spec: LayerSpec, n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Resolve a layer map to 0-based, non-negative (student_block, teacher_block) pairs.

    spec: "first" → [(0, 0)], "last" → [(n_s-1, n_t-1)], "first_last" → both, "none" → [],
    or an explicit sequence of (s, t) pairs (negative indices count from the end).
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"n_student and n_teacher must be >= 1, got {n_student}, {n_teacher}")
    if isinstance(spec, str):
        named = {"first": [(0, 0)], "last": [(-1, -1)], "first_last": [(0, 0), (-1, -1)],
                 "none": []}
        if spec not in named:
            raise ValueError(f"unknown layer spec {spec!r}; valid names: {LAYER_SPECS} "
                             "or a list of (student, teacher) index pairs")
        spec = named[spec]
    pairs: list[tuple[int, int]] = []
    for pair in spec:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"layer pair {pair!r} must be a (student, teacher) index pair")
        s = _normalise_index(pair[0], n_student, "student")
        t = _normalise_index(pair[1], n_teacher, "teacher")
        if (s, t) in pairs:
            raise ValueError(f"layer pair {(s, t)} appears twice in {spec!r}")
        pairs.append((s, t))
    return pairs


# ----------------------------------------------------------------------------- total loss

def _dim_for(dims: Dims, block: int, name: str) -> int:
    """Channel count of `block`: `dims` is one int for every block or a per-block sequence."""
    if dims is None:
        raise ValueError(f"{name} is required when feature='projector'")
    if isinstance(dims, int):
        return dims
    if block >= len(dims):
        raise ValueError(f"{name} has {len(dims)} entries, no dim for block {block}")
    return int(dims[block])


class DistillationLoss(nn.Module):
    """Total loss = loss_base + loss_dist + loss_fft (docs/design.md §2).

    loss_base = (1-α)·CE_ls(s, y) when kd != "none", else CE_ls(s, y)
    loss_dist = α·(soft: tau²·KL batchmean | hard: CE vs teacher argmax); 0 when kd="none"
    loss_fft  = feature_weight · phase_weight(progress, feature_until) · mean over layer pairs
                of the pair loss (SpectralKD, ProjectorKD or a remedy; the official logs call it
                `fft` for both); 0 when feature="none". ``progress`` (0 → 1 through the
                schedule) is set by the training loop before each step.
    loss_feat/{s}-{t} = raw, unweighted loss of each pair.
    CE_ls is timm's LabelSmoothingCrossEntropy (mean over batch) when label_smoothing > 0.
    feature_weight is β·w of the paper (1 · 0.2).
    """

    def __init__(self, kd: str = "soft", alpha: float = 0.9, tau: float = 1.0,
                 feature: str = "none", layer_pairs: Sequence[tuple[int, int]] = (),
                 feature_weight: float = 0.2, label_smoothing: float = 0.1,
                 student_dims: Dims = None, teacher_dims: Dims = None,
                 projector_mode: str = "faithful", feature_until: float | None = None,
                 target_rank: int | None = None):
        super().__init__()
        if kd not in KD_KINDS:
            raise ValueError(f"unknown kd {kd!r}; valid choices: {KD_KINDS}")
        if feature not in FEATURE_KINDS:
            raise ValueError(f"unknown feature {feature!r}; valid choices: {FEATURE_KINDS}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if feature_weight < 0:
            raise ValueError(f"feature_weight must be >= 0, got {feature_weight}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if projector_mode not in PROJECTOR_MODES:
            raise ValueError(f"unknown projector_mode {projector_mode!r}; "
                             f"valid choices: {PROJECTOR_MODES}")
        self.layer_pairs = [(int(s), int(t)) for s, t in layer_pairs]
        if feature != "none" and not self.layer_pairs:
            raise ValueError(f"feature={feature!r} needs at least one layer pair in layer_pairs")
        if any(s < 0 or t < 0 for s, t in self.layer_pairs):
            raise ValueError(f"layer_pairs must be resolved (non-negative): {self.layer_pairs}")
        self.kd, self.alpha, self.tau = kd, alpha, tau
        self.feature, self.feature_weight = feature, feature_weight
        self.base_criterion = (LabelSmoothingCrossEntropy(label_smoothing) if label_smoothing > 0
                               else nn.CrossEntropyLoss())
        if feature_until is not None and not 0 < feature_until <= 1:
            raise ValueError(f"feature_until must be in (0, 1], got {feature_until}")
        self.feature_until, self.progress = feature_until, 0.0
        self.projectors = nn.ModuleList()   # the pair modules of MODULE_KINDS, one per pair
        if feature in MODULE_KINDS:
            for s, t in self.layer_pairs:
                dims = (_dim_for(student_dims, s, "student_dims"),
                        _dim_for(teacher_dims, t, "teacher_dims"))
                self.projectors.append(ProjectorKD(*dims, mode=projector_mode)
                                       if feature == "projector" else
                                       {"lift": LiftKD, "generate": GenerationKD,
                                        "top_pc": TopPCKD}[feature](*dims))
        self.targets = nn.ModuleList()      # RankTarget per pair when target_rank is set
        if target_rank is not None:
            if feature not in ("spectral", "projector"):
                raise ValueError(f"target_rank needs feature 'spectral' or 'projector', got "
                                 f"{feature!r}")
            for _, t in self.layer_pairs:
                self.targets.append(RankTarget(_dim_for(teacher_dims, t, "teacher_dims"),
                                               target_rank))

    @property
    def needs_fit(self) -> bool:
        """True when a module must see the teacher's features before training (TopPCKD, a
        RankTarget)."""
        modules = [*self.projectors, *self.targets]
        return any(isinstance(m, (TopPCKD, RankTarget)) and not bool(m.fitted) for m in modules)

    def fit(self, teacher_feats: Mapping[int, torch.Tensor]) -> None:
        """Fit every TopPCKD pair module and RankTarget on the teacher's features
        ``{block: [N, C, H, W]}``."""
        for module, (_, t) in zip(self.projectors, self.layer_pairs):
            if isinstance(module, TopPCKD):
                module.fit(teacher_feats[t])
        for module, (_, t) in zip(self.targets, self.layer_pairs):
            module.fit(teacher_feats[t])

    def _pair_loss(self, index: int, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        if len(self.targets):
            f_t = self.targets[index](f_t)
        if self.feature == "spectral":
            return spectral_kd_loss(f_s, f_t)
        return self.projectors[index](f_s, f_t)

    def _logit_terms(self, student_logits: torch.Tensor, targets: torch.Tensor,
                     teacher_logits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss_base, loss_dist) from the logits."""
        ce = self.base_criterion(student_logits, targets)
        if self.kd == "none":
            return ce, ce.new_zeros(())
        if teacher_logits is None:
            raise ValueError(f"kd={self.kd!r} needs teacher_logits")
        if self.kd == "soft":
            kd_term = soft_kd_loss(student_logits, teacher_logits, self.tau)
        else:
            kd_term = hard_kd_loss(student_logits, teacher_logits)
        return (1 - self.alpha) * ce, self.alpha * kd_term

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor,
                teacher_logits: torch.Tensor | None = None,
                student_feats: Mapping[int, torch.Tensor] | None = None,
                teacher_feats: Mapping[int, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Logits `[B, K]`, targets `[B]`, feats {block: [B, C, H, W]} → dict of scalars."""
        loss_base, loss_dist = self._logit_terms(student_logits, targets, teacher_logits)
        out = {"loss_base": loss_base, "loss_dist": loss_dist}
        loss_fft = loss_base.new_zeros(())
        if self.feature != "none":
            if student_feats is None or teacher_feats is None:
                raise ValueError(f"feature={self.feature!r} needs student_feats and teacher_feats")
            pair_losses = []
            for i, (s, t) in enumerate(self.layer_pairs):
                if s not in student_feats:
                    raise ValueError(f"student_feats has no block {s}; has {sorted(student_feats)}")
                if t not in teacher_feats:
                    raise ValueError(f"teacher_feats has no block {t}; has {sorted(teacher_feats)}")
                pair_loss = self._pair_loss(i, student_feats[s], teacher_feats[t])
                out[f"loss_feat/{s}-{t}"] = pair_loss
                pair_losses.append(pair_loss)
            weight = self.feature_weight * phase_weight(self.progress, self.feature_until)
            loss_fft = weight * torch.stack(pair_losses).mean()
        out["loss_fft"] = loss_fft
        out["loss"] = loss_base + loss_dist + loss_fft
        return out
