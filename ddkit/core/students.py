"""The encoding-mismatch follow-up's students: its remedies change the student itself (its
release, ``training/lift/`` and ``training/widelast/``, read as a specification; every line here
is the kit's own). Built from timm's ``Block`` and ``VisionTransformer`` and chosen by a kit
preset's arguments (``ddkit.core.models``), so ``create_model`` builds them like any preset:

    lift_dim=C_t     Lift: a bias-free Linear + LayerNorm lifts the last block's tokens to C_t,
                     global average pooling, a new head on the lifted features
    wide_last=C_t    WideLast: the last block(s) C_t wide, the student's head width kept
    embed_dim=w      UniformWide, the release's reviewer control: every block w wide, w the
                     width whose parameters match WideLast's (``uniform_wide_width``)

``student_kwargs`` maps a cell's ``student`` (plain, lift, widelast, uniformwide) to these
arguments for a given teacher width.
"""
from __future__ import annotations

import functools
import json

import torch
from timm.models.vision_transformer import Block, VisionTransformer, init_weights_vit_timm
from torch import nn

from ddkit.core.sources import meta_model


class LiftBlock(Block):
    """A timm ``Block`` followed by the follow-up's lift: a bias-free ``Linear(C -> lift_dim)``
    and a ``LayerNorm(lift_dim)`` on every token. Placed as the student's last block, its
    output -- what a forward hook on the block, ``forward_intermediates`` and the head all read --
    is the lifted tokens."""

    def __init__(self, dim: int, num_heads: int, lift_dim: int, **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self.lift = nn.Linear(dim, lift_dim, bias=False)
        self.lift_norm = nn.LayerNorm(lift_dim)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.lift_norm(self.lift(super().forward(x, *args, **kwargs)))


class WideBlock(Block):
    """A timm ``Block`` of width ``dim`` fed by a stream of width ``in_dim``: when they differ, a
    bias-free ``Linear(in_dim -> dim)`` and the model's norm first (the follow-up's projection
    shortcut into a wider block)."""

    def __init__(self, dim: int, num_heads: int, in_dim: int, norm_layer=nn.LayerNorm, **kwargs):
        super().__init__(dim, num_heads, norm_layer=norm_layer, **kwargs)
        self.proj_in = nn.Linear(in_dim, dim, bias=False) if in_dim != dim else None
        self.proj_norm = norm_layer(dim) if in_dim != dim else None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.proj_in is not None:
            x = self.proj_norm(self.proj_in(x))
        return super().forward(x, *args, **kwargs)


def _last_blocks(depth: int, count: int, make_last):
    """A timm ``block_fn``: the plain ``Block`` for the first ``depth - count`` blocks,
    ``make_last(first, **kwargs)`` for the others (``first``: the first of them)."""
    def block_fn(**kwargs):
        i = kwargs.get("depth", 0)
        if i < depth - count:
            return Block(**kwargs)
        return make_last(i == depth - count, **kwargs)
    return block_fn


def _replace_head(model: VisionTransformer, width: int, num_classes: int) -> None:
    """A new classifier head of ``width`` inputs, initialised as timm initialises a ViT's."""
    model.num_features = model.head_hidden_size = width
    model.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
    init_weights_vit_timm(model.head)


class LiftViT(VisionTransformer):
    """The follow-up's Lift (``training/lift/``, step expansion at the last block): the student's
    last block ends in a ``LiftBlock`` to ``lift_dim`` channels (the teacher's width), the
    lifted patch tokens are averaged (global average pooling, no norm after it: the lift's
    LayerNorm is the last norm) and a new head on them is the head the model is evaluated with.
    ``block_widths``: each block's output channels (the last one ``lift_dim``)."""

    def __init__(self, *, lift_dim: int, depth: int = 12, num_classes: int = 1000, **kwargs):
        for key in ("global_pool", "fc_norm", "final_norm", "block_fn"):
            if key in kwargs:
                raise TypeError(f"LiftViT sets {key} itself (global average pooling of the "
                                "lifted tokens, no norm after the lift)")
        super().__init__(depth=depth, num_classes=num_classes, global_pool="avg", fc_norm=False,
                         final_norm=False, block_fn=_last_blocks(
                             depth, 1, lambda first, **kw: LiftBlock(lift_dim=lift_dim, **kw)),
                         **kwargs)
        _replace_head(self, lift_dim, num_classes)
        self.lift_dim = lift_dim
        self.block_widths = (self.embed_dim,) * (depth - 1) + (lift_dim,)
        self.feature_info[-1]["num_chs"] = lift_dim


class WideLastViT(VisionTransformer):
    """The follow-up's WideLast (``training/widelast/``, the heads-change step schedule): the
    student's last ``wide_blocks`` block(s) as wide as the teacher (``wide_last`` channels,
    ``WideBlock``: a bias-free projection and norm into the first of them), with the student's
    head width kept (``wide_last / head_dim`` heads) unless ``wide_heads`` is given; the final
    norm and the class-token head at the wide width. ``block_widths``: each block's output
    channels."""

    def __init__(self, *, wide_last: int, wide_blocks: int = 1, wide_heads: int | None = None,
                 embed_dim: int = 768, num_heads: int = 12, depth: int = 12,
                 num_classes: int = 1000, **kwargs):
        if "block_fn" in kwargs:
            raise TypeError("WideLastViT sets block_fn itself")
        if not 1 <= wide_blocks <= depth:
            raise ValueError(f"wide_blocks={wide_blocks} must be in [1, depth={depth}]")
        head_dim = embed_dim // num_heads
        heads = wide_heads or wide_last // head_dim
        if wide_last % heads:
            raise ValueError(f"wide_last={wide_last} is not divisible into {heads} heads (the "
                             f"student's head width {head_dim}); set wide_heads")

        def wide(first: bool, dim: int, num_heads: int, **kw):
            return WideBlock(dim=wide_last, num_heads=heads,
                             in_dim=dim if first else wide_last, **kw)

        super().__init__(embed_dim=embed_dim, num_heads=num_heads, depth=depth,
                         num_classes=num_classes, block_fn=_last_blocks(depth, wide_blocks, wide),
                         **kwargs)
        if not isinstance(self.norm, nn.Identity):
            self.norm = type(self.norm)(wide_last, eps=self.norm.eps)
        if not isinstance(self.fc_norm, nn.Identity):
            self.fc_norm = type(self.fc_norm)(wide_last, eps=self.fc_norm.eps)
        _replace_head(self, wide_last, num_classes)
        self.wide_last, self.wide_heads = wide_last, heads
        self.block_widths = (embed_dim,) * (depth - wide_blocks) + (wide_last,) * wide_blocks
        for info, width in zip(self.feature_info, self.block_widths):
            info["num_chs"] = width


REMEDY_ARGS = {"lift_dim": LiftViT, "wide_last": WideLastViT}   # argument -> the student it builds


def parameter_count(name: str, **kwargs) -> int:
    """Parameters of a timm model, built on the meta device (no compute, no weights), once per
    name and arguments: a grid plans its UniformWide students once per run."""
    return _parameter_count(name.split(".")[0], json.dumps(kwargs, sort_keys=True, default=repr))


@functools.lru_cache(maxsize=256)
def _parameter_count(arch: str, kwargs_json: str) -> int:
    return sum(p.numel() for p in meta_model(arch, **json.loads(kwargs_json)).parameters())


@functools.lru_cache(maxsize=256)
def _uniform_wide_width(name: str, target: int, frozen: tuple) -> int:
    kwargs = dict(frozen)
    model = meta_model(name.split(".")[0], **kwargs)
    step, width = model.blocks[0].attn.num_heads, model.embed_dim
    below = (width, parameter_count(name, **kwargs))
    while below[1] < target:
        width += step
        above = (width, parameter_count(name, **{**kwargs, "embed_dim": width}))
        if above[1] >= target:
            return min(below, above, key=lambda wp: abs(wp[1] - target))[0]
        below = above
    return below[0]


def uniform_wide_width(name: str, target: int, **kwargs) -> int:
    """The follow-up's UniformWide control: the width (a multiple of the student's head count,
    every block the same) whose parameter count is nearest ``target`` (the remedy student's),
    at or above the student's own width (DeiT-Tiny 192 -> 219 against CaiT-S24's WideLast)."""
    return _uniform_wide_width(name, int(target), tuple(sorted(kwargs.items())))


STUDENTS = ("plain", "lift", "widelast", "uniformwide")


def student_kwargs(student: str, name: str, kwargs: dict, teacher_width: int) -> dict:
    """The model arguments that build the follow-up's ``student`` on preset ``name`` (with
    ``kwargs``) for a teacher of ``teacher_width`` channels: ``plain`` (unchanged), ``lift``
    (``lift_dim``: the teacher's width), ``widelast`` (``wide_last``: the teacher's width) or
    ``uniformwide`` (``embed_dim``: the uniform width matching WideLast's parameters, its
    reviewer control)."""
    if student not in STUDENTS:
        raise ValueError(f"unknown student {student!r}; valid: {list(STUDENTS)}")
    if student == "plain":
        return dict(kwargs)
    if student == "lift":
        return {**kwargs, "lift_dim": teacher_width}
    if student == "widelast":
        return {**kwargs, "wide_last": teacher_width}
    target = parameter_count(name, **kwargs, wide_last=teacher_width)
    return {**kwargs, "embed_dim": uniform_wide_width(name, target, **kwargs)}
