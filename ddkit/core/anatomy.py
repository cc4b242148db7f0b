"""A ViT-like model's anatomy as ddkit reads it: whether it is ViT-like at all, its residual
blocks (CaiT: the self-attention blocks only), the prefix tokens before its patch tokens, its input
size, depth and per-block width (built on the meta device from a name: no compute, no weights).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from timm.models.cait import Cait
from torch import nn

from ddkit.core.models import ModelInputError, check_model_name
from ddkit.core.sources import arch_name, meta_model

VIT_LIKE = ("VisionTransformer (ViT, DeiT, DeiT-distilled, register-token ViTs), Cait, Eva "
            "(EVA-02): a `blocks` stack over a `patch_embed` token grid, with "
            "`forward_intermediates`")


class NotViTLikeError(ModelInputError):
    """The model is not a timm ViT-like model (no token grid of residual blocks to read)."""


def check_vit_like(model: nn.Module) -> None:
    """Raise NotViTLikeError unless ``model`` has what ddkit reads: a non-empty ``blocks`` stack,
    a ``patch_embed`` with a ``grid_size`` (timm's patch-token embedding) and timm's
    ``forward_intermediates``. Swin, XCiT, CNNs (EfficientNet, ResNet) and friends fail here."""
    name = type(model).__name__
    blocks = getattr(model, "blocks", None)
    patch_embed = getattr(model, "patch_embed", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        reason = "no `blocks` stack"
    elif patch_embed is None or getattr(patch_embed, "grid_size", None) is None:
        reason = ("no `patch_embed` with a token grid" if patch_embed is None else
                  f"its patch embedding {type(patch_embed).__name__} has no `grid_size`")
    elif not callable(getattr(model, "forward_intermediates", None)):
        reason = "no `forward_intermediates`"
    else:
        return
    raise NotViTLikeError(f"{name} is not a timm ViT-like model ({reason}); ddkit needs one "
                          f"such as {VIT_LIKE}")


def residual_blocks(model: nn.Module) -> nn.Sequential | nn.ModuleList:
    """The residual-stream blocks whose outputs ddkit analyses (CaiT: self-attention blocks only).
    Raises NotViTLikeError for a model that is not ViT-like (``check_vit_like``)."""
    check_vit_like(model)
    return model.blocks


def block_prefix_tokens(model: nn.Module) -> int:
    """How many prefix (class, distillation, register) tokens precede the patch tokens in a
    residual block's output: CaiT's self-attention blocks see patch tokens only (0), every other
    ViT-like model ``num_prefix_tokens``."""
    if isinstance(model, Cait):
        return 0
    return int(getattr(model, "num_prefix_tokens", 0))


def input_size(model: nn.Module) -> int | None:
    """The square image size a ViT-like model was built for (``patch_embed.img_size``)."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    if h != w:
        raise ValueError(f"{type(model).__name__} expects {h}x{w} images; ddkit's data sets "
                         "give square images")
    return int(h)


def num_blocks(model: nn.Module) -> int:
    return len(residual_blocks(model))


@dataclass(frozen=True)
class Shape:
    """What a name and its arguments build, read without weights: residual blocks, the residual
    stream's channels (None without ``embed_dim``) and each block's output channels."""
    depth: int
    width: int | None
    widths: tuple[int, ...] | None


def model_shape(name: str, **kwargs) -> Shape:
    """``Shape`` of a timm model, built once on the meta device per name and arguments (timm's
    weight initialisation on the meta device takes about a second per model, and a grid profile
    asks for the same few models for each of its hundreds of runs)."""
    check_model_name(name)
    return _shape(arch_name(name), json.dumps(kwargs, sort_keys=True, default=repr))


@functools.lru_cache(maxsize=256)
def _shape(arch: str, kwargs_json: str) -> Shape:
    model = meta_model(arch, **json.loads(kwargs_json))
    width = getattr(model, "embed_dim", None)
    return Shape(num_blocks(model), None if width is None else int(width), widths_of(model))


def model_depth(name: str, **kwargs) -> int:
    """Number of residual blocks of a timm model (``model_shape``)."""
    return model_shape(name, **kwargs).depth


def model_width(name: str, **kwargs) -> int | None:
    """The residual stream's channels (``embed_dim``) of a timm model (``model_shape``); None for
    a model without ``embed_dim``."""
    return model_shape(name, **kwargs).width


def widths_of(model: nn.Module) -> tuple[int, ...] | None:
    """Each residual block's output channels: ``block_widths`` of the follow-up's students, else
    ``embed_dim`` for every block; None for a model without ``embed_dim``."""
    widths = getattr(model, "block_widths", None)
    if widths is not None:
        return tuple(widths)
    width = getattr(model, "embed_dim", None)
    return None if width is None else (int(width),) * num_blocks(model)


def block_widths(name: str, **kwargs) -> tuple[int, ...] | None:
    """``widths_of`` a timm model (``model_shape``)."""
    return model_shape(name, **kwargs).widths


def describe(model: nn.Module) -> dict:
    """Parameters, depth, width and token grid of a ViT-like model (for tables in notebooks)."""
    grid = tuple(model.patch_embed.grid_size)
    return dict(parameters=sum(p.numel() for p in model.parameters()), depth=num_blocks(model),
                width=model.embed_dim, token_grid=f"{grid[0]}x{grid[1]}",
                num_classes=model.num_classes)
