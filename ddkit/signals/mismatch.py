"""Encoding mismatch (docs/design.md §10): how many dimensions the teacher's code needs at an
aligned layer, against the width of the student block asked to copy it.

The default is the follow-up's own number (arXiv 2511.15572, its Table 1 "Dataset 95 %"):

    teacher_dim_followup  the shared basis of the teacher block's tokens (``core.subspace``:
                          uncentred second moment over every patch token of every image); for
                          each image the smallest d whose top-d shared directions hold >= 95 % of
                          *that image's* token energy; the 99th percentile of d over images
                          (numpy's linear percentile; an integer d per image)
    teacher_dim_global    the smallest d whose top-d eigenvalues hold >= 95 % of the energy
                          (uncentred, data-set level)
    teacher_dim_centred   the kit's older number, a labelled secondary: ``metrics.pca_dims(
                          fractional=True)``, centred, fractional, data-set level
    student_width         channels of the aligned student block
    ratio                 teacher_dim_followup / student_width (``ratio_centred``: the centred one's)
    target_dim_<loss>     the follow-up's dimension of the target as the loss sees it: SpectralKD
                          pools the teacher's channels to the student's width first, ProjectorKD
                          compares with the teacher block itself

The follow-up proposes the ratio as what decides late-layer alignment: above 1 the student cannot
hold the teacher's code at that layer, below 1 it can. Shapes: features ``[B, C, H, W]`` (B
images, C channels, the patch grid); tokens ``[B, N, C]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ddkit.core.anatomy import num_blocks
from ddkit.core.hooks import block_features
from ddkit.core.losses import RankTarget, pool_channels, resolve_layer_pairs
from ddkit.core.subspace import shared_basis, tokens_of
from ddkit.signals import metrics

ENERGY = 0.95   # the follow-up's level; 90 % is the kit's older capacity metric
QUANTILE = 0.99  # the follow-up's Table 1: the 99th percentile of the per-image dimension
IMAGES = 500    # test images: 500 × 49 tokens is 250 tokens per teacher channel


@dataclass(frozen=True)
class FollowupDim:
    """The follow-up's dimensions of one block's tokens at one energy level."""
    per_image: np.ndarray   # [B] int: smallest d with E_i(d) >= energy (C when never reached)
    quantile: float         # the ``q``-quantile of per_image over images (linear interpolation)
    global_dim: int         # smallest d with the top-d eigenvalues' share >= energy
    width: int              # C


def followup_dim(f: torch.Tensor, energy: float = ENERGY, q: float = QUANTILE) -> FollowupDim:
    """The follow-up's data-set dimension of ``f`` (``[B, C, H, W]`` maps or ``[B, N, C]`` tokens).

    Shared basis V of every token (uncentred, ``core.subspace.shared_basis``); per image i,
    ``E_i(d) = ‖X_i V_d‖²_F / ‖X_i‖²_F`` and its smallest d with ``E_i(d) >= energy``; then the
    ``q`` percentile over images. An image whose tokens are all zero never reaches the level
    and counts as C (as the release does). Float64 throughout."""
    if not 0 < energy <= 1 or not 0 <= q <= 1:
        raise ValueError(f"energy must be in (0, 1] and q in [0, 1]; got {energy}, {q}")
    values, basis = shared_basis(f)
    tokens = tokens_of(f).double()                                          # [B, N, C]
    per_dir = (tokens @ basis).square().sum(1)                              # [B, C]
    captured = per_dir.cumsum(1) / per_dir.sum(1, keepdim=True).clamp_min(1e-12)
    hit = captured >= energy
    width = int(per_dir.shape[1])
    dims = torch.where(hit.any(1), hit.double().argmax(1) + 1, torch.tensor(width)).numpy()
    share = (values.cumsum(0) / values.sum().clamp_min(1e-12)).numpy()
    return FollowupDim(per_image=dims.astype(np.int64), quantile=float(np.percentile(dims, 100 * q)),
                       global_dim=int(np.searchsorted(share, energy) + 1), width=width)


def pair_rows(pairs: Sequence[tuple[int, int]], teacher_feats: torch.Tensor,
              student_feats: torch.Tensor, energy: float = ENERGY) -> list[dict]:
    """The mismatch of each (student_block, teacher_block) pair from recorded features
    (``[L, B, C, H, W]`` stacks or per-block lists, indexed by block): the teacher's follow-up,
    global and centred dimensions, the student's own (same images, follow-up), the student's
    width, both ratios and the target's dimension as each feature loss sees it."""
    rows = []
    for s, t in pairs:
        f_t, f_s = teacher_feats[t], student_feats[s]
        width = int(f_s.shape[1])
        teacher = followup_dim(f_t, energy)
        centred = metrics.pca_dims([f_t], energy, fractional=True).item()
        pooled = followup_dim(pool_channels(f_t, min(width, int(f_t.shape[1]))), energy)
        rows.append({"student_block": s, "teacher_block": t, "energy": energy,
                     "teacher_dim_followup": teacher.quantile,
                     "teacher_dim_global": teacher.global_dim, "teacher_dim_centred": centred,
                     "student_dim_followup": followup_dim(f_s, energy).quantile,
                     "student_width": width, "teacher_width": int(f_t.shape[1]),
                     "ratio": teacher.quantile / width, "ratio_centred": centred / width,
                     "target_dim_spectralkd": pooled.quantile,
                     "target_dim_projectorkd": teacher.quantile,
                     "images": int(f_t.shape[0])})
    return rows


def pair_mismatch(teacher: nn.Module, student: nn.Module, x: torch.Tensor,
                  layers="last", energy: float = ENERGY, target_rank: int | None = None,
                  fit_images: torch.Tensor | None = None) -> pd.DataFrame:
    """:func:`pair_rows` of the pairs of ``layers`` (a layer map of
    ``ddkit.core.losses.resolve_layer_pairs``) on images ``x`` (eval mode, no grad). With
    ``target_rank`` the teacher's blocks are read as the controlled-dimension design's target:
    projected onto their top-``target_rank`` shared directions (``core.losses.RankTarget``),
    fitted on the teacher's tokens of ``fit_images`` as training fits it."""
    pairs = resolve_layer_pairs(layers, num_blocks(student), num_blocks(teacher))
    t_blocks, s_blocks = sorted({t for _, t in pairs}), sorted({s for s, _ in pairs})
    ft = dict(zip(t_blocks, block_features(teacher.eval(), x, t_blocks)))
    fs = dict(zip(s_blocks, block_features(student.eval(), x, s_blocks)))
    if target_rank is not None:
        if fit_images is None:
            raise ValueError("pair_mismatch: target_rank needs fit_images (the training images "
                             "its basis is fitted on)")
        for t, fit_feats in zip(t_blocks, block_features(teacher.eval(), fit_images, t_blocks)):
            target = RankTarget(int(fit_feats.shape[1]), target_rank)
            target.fit(fit_feats)
            ft[t] = target(ft[t])
    return pd.DataFrame(pair_rows(pairs, ft, fs, energy)).assign(target_rank=target_rank)


def layer_dims(model: nn.Module, x: torch.Tensor,
               energies: Sequence[float] = (0.9, ENERGY)) -> pd.DataFrame:
    """A model's data-set-level dimension at every residual block, on the images ``x``: the
    follow-up's (``followup_dim``: 99th percentile per image, and global, uncentred) and the
    centred fractional one, at each of ``energies``. Rows (layer, energy, dim_followup,
    dim_global, dim_centred, width)."""
    blocks = list(range(num_blocks(model)))
    feats = block_features(model.eval(), x, blocks)                        # [L, B, C, H, W]
    rows = []
    for energy in energies:
        centred = metrics.pca_dims(list(feats), energy, fractional=True).tolist()
        for l, f in enumerate(feats):
            fd = followup_dim(f, energy)
            rows.append({"layer": l, "energy": energy, "dim_followup": fd.quantile,
                         "dim_global": fd.global_dim, "dim_centred": float(centred[l]),
                         "width": int(feats.shape[2])})
    return pd.DataFrame(rows)
