"""Encoding mismatch (docs/design.md §10): how many dimensions the teacher's code needs at an
aligned layer, against the width of the student block asked to copy it.

    teacher_dim    ``metrics.pca_dims(fractional=True)`` at ``energy`` (default 95 %) of the
                   teacher block's output: the patch tokens of all analysed images pooled into one
                   centred token × channel matrix (data-set level, not per image)
    student_width  channels of the aligned student block
    ratio          teacher_dim / student_width

The authors' follow-up (arXiv 2511.15572) proposes this ratio as what decides late-layer
alignment: above 1 the student cannot hold the teacher's code at that layer, and copying it
costs the student its own; below 1 it can. The rows of :func:`profile_mismatch` put the ratio
beside every feature-KD setting a profile runs, so the notebooks can set it against the measured
effect of the alignment.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from ddkit.core.hooks import block_features
from ddkit.core.losses import resolve_layer_pairs
from ddkit.core.models import num_blocks
from ddkit.signals import metrics

ENERGY = 0.95   # the follow-up's level; 90 % is the kit's older capacity metric
IMAGES = 500    # test images: 500 × 49 tokens is 250 tokens per teacher channel


def pair_rows(pairs: Sequence[tuple[int, int]], teacher_feats: torch.Tensor,
              student_feats: torch.Tensor, energy: float = ENERGY) -> list[dict]:
    """The mismatch of each (student_block, teacher_block) pair from recorded features
    (``[L, B, C, H, W]`` stacks or per-block lists, indexed by block): teacher_dim, student_dim
    (the student's own, same images), student_width, ratio."""
    rows = []
    for s, t in pairs:
        t_dim = metrics.pca_dims([teacher_feats[t]], energy, fractional=True).item()
        s_dim = metrics.pca_dims([student_feats[s]], energy, fractional=True).item()
        width = int(student_feats[s].shape[1])
        rows.append({"student_block": s, "teacher_block": t, "energy": energy,
                     "teacher_dim": t_dim, "student_dim": s_dim, "student_width": width,
                     "ratio": t_dim / width, "images": int(teacher_feats[t].shape[0])})
    return rows


def pair_mismatch(teacher: nn.Module, student: nn.Module, x: torch.Tensor,
                  layers="last", energy: float = ENERGY) -> pd.DataFrame:
    """:func:`pair_rows` of the pairs of ``layers`` (a layer map of
    ``ddkit.core.losses.resolve_layer_pairs``) on images ``x`` (eval mode, no grad)."""
    pairs = resolve_layer_pairs(layers, num_blocks(student), num_blocks(teacher))
    t_blocks, s_blocks = sorted({t for _, t in pairs}), sorted({s for s, _ in pairs})
    ft = dict(zip(t_blocks, block_features(teacher.eval(), x, t_blocks)))
    fs = dict(zip(s_blocks, block_features(student.eval(), x, s_blocks)))
    return pd.DataFrame(pair_rows(pairs, ft, fs, energy))


def layer_dims(model: nn.Module, x: torch.Tensor,
               energies: Sequence[float] = (0.9, ENERGY)) -> pd.DataFrame:
    """A model's data-set-level dimension at every residual block: fractional PCA dimension of
    the block's patch tokens over the images ``x`` (pooled, centred) at each of ``energies``.
    Rows (layer, energy, dim, width)."""
    blocks = list(range(num_blocks(model)))
    feats = block_features(model.eval(), x, blocks)                        # [L, B, C, H, W]
    rows = []
    for energy in energies:
        dims = metrics.pca_dims(list(feats), energy, fractional=True)
        rows += [{"layer": l, "energy": energy, "dim": float(d), "width": int(feats.shape[2])}
                 for l, d in enumerate(dims.tolist())]
    return pd.DataFrame(rows)
