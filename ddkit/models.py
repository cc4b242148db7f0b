"""Teacher and student models, built with timm.

The kit's small presets are registered with timm (``@register_model``), so configs, notebooks and
tests share one namespace: ``timm.create_model("ddkit_vit_teacher_fmnist")`` works like any timm
name. The paper pair is timm's own ``cait_s24_224`` (teacher) and ``deit_tiny_patch16_224``
(student). Any other timm ViT with ``forward_intermediates`` works too.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.cait import Cait
from timm.models.vision_transformer import VisionTransformer
from torch import nn

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_DIR = PACKAGE_DIR / "shipped"
SHIPPED_TEACHER = SHIPPED_DIR / "teacher_fmnist.safetensors"

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)

# Embedded default pair: the teacher has 2x the student's width and 2x its depth (as CaiT-S24
# 384/24 vs DeiT-Tiny 192/12), both see a 7x7 token grid (patch 4 on 28x28 Fashion-MNIST).
_FMNIST_COMMON = dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, mlp_ratio=4.0)
PRESET_ARGS = {
    "ddkit_vit_teacher_fmnist": dict(_FMNIST_COMMON, embed_dim=96, depth=8, num_heads=4),
    "ddkit_vit_student_fmnist": dict(_FMNIST_COMMON, embed_dim=48, depth=4, num_heads=2),
    # Paper-shaped pair: the depths of CaiT-S24 (24 self-attention blocks with LayerScale, then 2
    # class-attention blocks) and DeiT-Tiny (12 blocks), width ratio 2 (CaiT-S24 384 : DeiT-Tiny
    # 192), 16 channels per head in both; the same 7x7 token grid as the default pair.
    "ddkit_cait_teacher_fmnist": dict(_FMNIST_COMMON, embed_dim=64, depth=24, num_heads=4,
                                      init_values=1e-5, depth_token_only=2),
    "ddkit_deit_student_fmnist": dict(_FMNIST_COMMON, embed_dim=32, depth=12, num_heads=2),
}
PRESET_CLASSES = {"ddkit_cait_teacher_fmnist": Cait}

# The paper pair (docs/design.md §1): teacher CaiT-S24 at 224, student DeiT-Tiny from scratch.
PAPER_TEACHER = "cait_s24_224"
PAPER_STUDENT = "deit_tiny_patch16_224"


def _fmnist_cfg(**kwargs) -> dict:
    return dict(num_classes=10, input_size=(1, 28, 28), mean=FMNIST_MEAN, std=FMNIST_STD,
                interpolation="bilinear", crop_pct=1.0, **kwargs)


default_cfgs = generate_default_cfgs({
    # `.shipped` loads the teacher trained by ddkit and committed with the kit.
    "ddkit_vit_teacher_fmnist.shipped": _fmnist_cfg(file=str(SHIPPED_TEACHER)),
    "ddkit_vit_student_fmnist": _fmnist_cfg(),
    "ddkit_cait_teacher_fmnist": _fmnist_cfg(),
    "ddkit_deit_student_fmnist": _fmnist_cfg(),
})


def _create(variant: str, pretrained: bool, **kwargs) -> nn.Module:
    args = {**PRESET_ARGS[variant], **kwargs}
    model_cls = PRESET_CLASSES.get(variant, VisionTransformer)
    return build_model_with_cfg(model_cls, variant, pretrained, **args)


@register_model
def ddkit_vit_teacher_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Default teacher: ViT 96-dim, 8 blocks, 4 heads, patch 4 on 1x28x28 (7x7 tokens)."""
    return _create("ddkit_vit_teacher_fmnist", pretrained, **kwargs)


@register_model
def ddkit_vit_student_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Default student: ViT 48-dim, 4 blocks, 2 heads, patch 4 on 1x28x28 (7x7 tokens)."""
    return _create("ddkit_vit_student_fmnist", pretrained, **kwargs)


@register_model
def ddkit_cait_teacher_fmnist(pretrained: bool = False, **kwargs) -> Cait:
    """Paper-shaped teacher: CaiT 64-dim, 24 LayerScale self-attention blocks + 2 class-attention
    blocks, 4 heads, patch 4 on 1x28x28 (7x7 tokens)."""
    return _create("ddkit_cait_teacher_fmnist", pretrained, **kwargs)


@register_model
def ddkit_deit_student_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Paper-shaped student: ViT 32-dim, 12 blocks (DeiT-Tiny's depth), 2 heads, 7x7 tokens."""
    return _create("ddkit_deit_student_fmnist", pretrained, **kwargs)


def check_model_name(name: str) -> None:
    """Raise ValueError listing close valid names when ``name`` is not a timm model."""
    arch = name.split(".")[0]
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.6)
    raise ValueError(f"unknown model name {name!r}; ddkit presets: {sorted(PRESET_ARGS)}; "
                     f"close timm names: {close}")


def create_model(name: str, pretrained: bool = False, checkpoint: str | Path | None = None,
                 **kwargs) -> nn.Module:
    """Build a timm model by name; optionally load hub weights or a local weights file.

    ``pretrained=True`` downloads hub weights (needs internet) or, for
    ``ddkit_vit_teacher_fmnist``, loads the shipped teacher. ``checkpoint`` is a local
    ``.safetensors`` or ``.pt``/``.pth`` state dict (a ddkit checkpoint's ``model`` entry works).
    """
    check_model_name(name)
    if pretrained and name == "ddkit_vit_teacher_fmnist":
        name = "ddkit_vit_teacher_fmnist.shipped"
        if not SHIPPED_TEACHER.exists():
            raise FileNotFoundError(f"shipped teacher weights missing at {SHIPPED_TEACHER}; "
                                    "retrain them with ./run_all.sh --retrain-teacher")
    model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
    return model


def create_from_config(cfg, checkpoint: str | Path | None = None) -> nn.Module:
    """``create_model`` from a ``config.ModelConfig`` (name, pretrained, checkpoint, kwargs);
    ``checkpoint`` overrides the config's weights file."""
    return create_model(cfg.name, pretrained=cfg.pretrained,
                        checkpoint=checkpoint or cfg.checkpoint, **cfg.kwargs)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (a ddkit checkpoint works)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state.get("state_dict", state))


def residual_blocks(model: nn.Module) -> nn.Sequential | nn.ModuleList:
    """The residual-stream blocks whose outputs ddkit analyses (CaiT: self-attention blocks only)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"{type(model).__name__} has no `blocks`: ddkit needs a timm ViT-like model")
    return blocks


def num_blocks(model: nn.Module) -> int:
    return len(residual_blocks(model))


def model_depth(name: str, **kwargs) -> int:
    """Number of residual blocks of a timm model, built on the meta device (no compute, no weights)."""
    check_model_name(name)
    with torch.device("meta"):
        return num_blocks(timm.create_model(name.split(".")[0], pretrained=False, **kwargs))


def describe(model: nn.Module) -> dict:
    """Parameters, depth, width and token grid of a ViT-like model (for tables in notebooks)."""
    grid = tuple(model.patch_embed.grid_size)
    return dict(parameters=sum(p.numel() for p in model.parameters()), depth=num_blocks(model),
                width=model.embed_dim, token_grid=f"{grid[0]}x{grid[1]}",
                num_classes=model.num_classes)
