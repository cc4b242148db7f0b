"""Teacher and student models, built with timm.

The kit's small presets are registered with timm (``@register_model``), so configs, notebooks and
tests share one namespace: ``timm.create_model("ddkit_vit_teacher_fmnist")`` works like any timm
name. The paper pair is timm's own ``cait_s24_224`` (teacher) and ``deit_tiny_patch16_224``
(student). Any other timm ViT with ``forward_intermediates`` works too, also under timm's source
prefixes: ``hf-hub:org/model`` (the Hugging Face Hub; needs the network or its cache) and
``local-dir:/path`` (a folder with timm's ``config.json`` and the weights, as ``save_for_hf``
writes it).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.cait import Cait
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ddkit.core.sources import arch_name, model_source, timm_create

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SHIPPED_DIR = PACKAGE_DIR / "shipped"


@dataclass(frozen=True)
class ShippedTeacher:
    """A teacher the kit trained and commits under ``ddkit/shipped/``: its weights, the run's
    record (config, hash, accuracy, wall time, command), its per-epoch log and the per-layer
    metrics of its kept checkpoints. ``timm.create_model(f"{model}.shipped", pretrained=True)``
    loads it."""
    model: str      # the preset it is an instance of
    stem: str       # file stem under ddkit/shipped/
    profile: str    # the profile whose teacher recipe trained it
    command: str    # the command that trains and ships it

    weights = property(lambda self: SHIPPED_DIR / f"{self.stem}.safetensors")
    record = property(lambda self: SHIPPED_DIR / f"{self.stem}.json")
    log = property(lambda self: SHIPPED_DIR / f"{self.stem}_log.jsonl")
    dynamics = property(lambda self: SHIPPED_DIR / f"{self.stem}_dynamics.csv")


SHIPPED_TEACHERS = {t.model: t for t in (
    ShippedTeacher("ddkit_vit_teacher_fmnist", "teacher_fmnist", "default",
                   "./run_all.sh --retrain-teacher"),
    ShippedTeacher("ddkit_cait_teacher_fmnist", "cait_teacher_fmnist", "paper_shaped",
                   "ddkit ship-teacher --profile paper_shaped"),
    ShippedTeacher("ddkit_vit_mae_teacher_fmnist", "mae_teacher_fmnist", "controls",
                   "ddkit controls --teachers-only"),
    ShippedTeacher("ddkit_vit_mae_probed_teacher_fmnist", "mae_probed_teacher_fmnist", "controls",
                   "ddkit controls --teachers-only"),
    *(ShippedTeacher(f"ddkit_vit_teacher_mosaic{k}", f"teacher_mosaic{k}", "phase_map",
                     "ddkit phase-map --teachers-only") for k in (10, 100, 1000)),
)}
SHIPPED_TEACHER = SHIPPED_TEACHERS["ddkit_vit_teacher_fmnist"].weights  # the default teacher


def shipped_teacher(model: str, must_exist: bool = True) -> ShippedTeacher:
    """The shipped teacher of preset ``model``; ValueError naming the shipped ones when there is
    none, FileNotFoundError with the command that makes it when its weights are missing."""
    name = model.split(".")[0]
    if name not in SHIPPED_TEACHERS:
        raise ValueError(f"no shipped teacher for model {model!r}; shipped teachers: "
                         f"{sorted(SHIPPED_TEACHERS)} (or set teacher_source: train)")
    teacher = SHIPPED_TEACHERS[name]
    if must_exist and not teacher.weights.exists():
        raise FileNotFoundError(f"shipped teacher weights missing at {teacher.weights}; make them "
                                f"with `{teacher.command}` (or set "
                                "teacher_source: train)")
    return teacher

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)

# Embedded default pair: the teacher has 2x the student's width and 2x its depth (as CaiT-S24
# 384/24 vs DeiT-Tiny 192/12), both see a 7x7 token grid (patch 4 on 28x28 Fashion-MNIST).
_FMNIST_COMMON = dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, mlp_ratio=4.0)
_MOSAIC_COMMON = dict(img_size=56, patch_size=7, in_chans=1, mlp_ratio=4.0)
PRESET_ARGS = {
    "ddkit_vit_teacher_fmnist": dict(_FMNIST_COMMON, embed_dim=96, depth=8, num_heads=4),
    "ddkit_vit_student_fmnist": dict(_FMNIST_COMMON, embed_dim=48, depth=4, num_heads=2),
    # The self-supervised control (docs/design.md §10): the default teacher's architecture,
    # pre-trained as a masked autoencoder; shipped with its head untrained (the official "MAE"
    # setting) and, as a second preset, with its head fitted by a linear probe.
    "ddkit_vit_mae_teacher_fmnist": dict(_FMNIST_COMMON, embed_dim=96, depth=8, num_heads=4),
    "ddkit_vit_mae_probed_teacher_fmnist": dict(_FMNIST_COMMON, embed_dim=96, depth=8, num_heads=4),
    # Paper-shaped pair: the depths of CaiT-S24 (24 self-attention blocks with LayerScale, then 2
    # class-attention blocks) and DeiT-Tiny (12 blocks), width ratio 2 (CaiT-S24 384 : DeiT-Tiny
    # 192), 16 channels per head in both; the same 7x7 token grid as the default pair.
    "ddkit_cait_teacher_fmnist": dict(_FMNIST_COMMON, embed_dim=64, depth=24, num_heads=4,
                                      init_values=1e-5, depth_token_only=2),
    "ddkit_deit_student_fmnist": dict(_FMNIST_COMMON, embed_dim=32, depth=12, num_heads=2),
    # The phase map's pairs (docs/design.md §11): the default pair's shapes on 56x56 mosaics of
    # Fashion-MNIST items (patch 7: an 8x8 token grid), one teacher per task complexity K; the
    # student's width and K are set by its kwargs (embed_dim, num_classes).
    **{f"ddkit_vit_teacher_mosaic{k}": dict(_MOSAIC_COMMON, num_classes=k, embed_dim=96, depth=8,
                                            num_heads=4) for k in (10, 100, 1000)},
    "ddkit_vit_student_mosaic": dict(_MOSAIC_COMMON, num_classes=10, embed_dim=48, depth=4,
                                     num_heads=2),
}
PRESET_CLASSES = {"ddkit_cait_teacher_fmnist": Cait}

# The paper pair (docs/design.md §1): teacher CaiT-S24 at 224, student DeiT-Tiny from scratch.
PAPER_TEACHER = "cait_s24_224"
PAPER_STUDENT = "deit_tiny_patch16_224"


def _fmnist_cfg(**kwargs) -> dict:
    kwargs = {"num_classes": 10, "input_size": (1, 28, 28), **kwargs}
    return dict(mean=FMNIST_MEAN, std=FMNIST_STD, interpolation="bilinear", crop_pct=1.0, **kwargs)


def _mosaic_cfg(k: int, **kwargs) -> dict:
    return _fmnist_cfg(num_classes=k, input_size=(1, 56, 56), **kwargs)


default_cfgs = generate_default_cfgs({
    # `.shipped` loads the teacher trained by ddkit and committed with the kit.
    **{f"{t.model}.shipped": _fmnist_cfg(file=str(t.weights)) for t in SHIPPED_TEACHERS.values()
       if "mosaic" not in t.model},
    **{f"ddkit_vit_teacher_mosaic{k}.shipped": _mosaic_cfg(
        k, file=str(SHIPPED_TEACHERS[f"ddkit_vit_teacher_mosaic{k}"].weights)) for k in (10, 100, 1000)},
    "ddkit_vit_student_mosaic": _mosaic_cfg(10),
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
def ddkit_vit_mae_teacher_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Self-supervised teacher: the default teacher's ViT 96/8, pre-trained as a masked
    autoencoder on Fashion-MNIST; shipped with its classifier head untrained."""
    return _create("ddkit_vit_mae_teacher_fmnist", pretrained, **kwargs)


@register_model
def ddkit_vit_mae_probed_teacher_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """The masked-autoencoder teacher with its classifier head fitted by a linear probe (every
    other weight frozen): the same features, class-informative logits."""
    return _create("ddkit_vit_mae_probed_teacher_fmnist", pretrained, **kwargs)


@register_model
def ddkit_cait_teacher_fmnist(pretrained: bool = False, **kwargs) -> Cait:
    """Paper-shaped teacher: CaiT 64-dim, 24 LayerScale self-attention blocks + 2 class-attention
    blocks, 4 heads, patch 4 on 1x28x28 (7x7 tokens)."""
    return _create("ddkit_cait_teacher_fmnist", pretrained, **kwargs)


@register_model
def ddkit_deit_student_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Paper-shaped student: ViT 32-dim, 12 blocks (DeiT-Tiny's depth), 2 heads, 7x7 tokens."""
    return _create("ddkit_deit_student_fmnist", pretrained, **kwargs)


def _mosaic_teacher(k: int):
    def create(pretrained: bool = False, **kwargs) -> VisionTransformer:
        return _create(f"ddkit_vit_teacher_mosaic{k}", pretrained, **kwargs)
    create.__name__ = f"ddkit_vit_teacher_mosaic{k}"
    create.__doc__ = (f"Phase-map teacher for K = {k}: ViT 96-dim, 8 blocks, 4 heads, patch 7 on "
                      "1x56x56 mosaics (8x8 tokens).")
    return register_model(create)


ddkit_vit_teacher_mosaic10, ddkit_vit_teacher_mosaic100, ddkit_vit_teacher_mosaic1000 = (
    _mosaic_teacher(k) for k in (10, 100, 1000))


@register_model
def ddkit_vit_student_mosaic(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Phase-map student: ViT 48-dim, 4 blocks, 2 heads, patch 7 on 1x56x56 mosaics (8x8
    tokens); set ``embed_dim`` (the width the map varies) and ``num_classes`` (K) by kwargs."""
    return _create("ddkit_vit_student_mosaic", pretrained, **kwargs)


class ModelInputError(ValueError):
    """A model a user named or sized that ddkit cannot use as asked (a usage error, exit 2)."""


def check_model_name(name: str) -> None:
    """Raise ModelInputError listing close valid names when ``name`` is not a timm model.
    ``hf-hub:`` names pass (the hub is asked when the model is built); a ``local-dir:`` folder
    must hold timm's config.json."""
    source = model_source(name)
    if source == "hf-hub":
        if not name.partition(":")[2].strip():
            raise ModelInputError(f"model name {name!r}: name the repository, e.g. "
                                  "hf-hub:timm/deit_tiny_patch16_224.fb_in1k")
        return
    if source == "local-dir":
        folder = Path(name.partition(":")[2]).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelInputError(f"model {name!r}: no config.json in {folder}; a local-dir: model "
                                  "is a folder with timm's config.json and the weights (as "
                                  "timm.models.save_for_hf or a Hub download writes it)")
        return
    arch = name.split(".")[0]
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.6)
    raise ModelInputError(f"unknown model name {name!r}; ddkit presets: {sorted(PRESET_ARGS)}; "
                          f"close timm names: {close}")


def create_model(name: str, pretrained: bool = False, checkpoint: str | Path | None = None,
                 **kwargs) -> nn.Module:
    """Build a timm model by name; optionally load hub weights or a local weights file.

    ``pretrained=True`` downloads hub weights (needs internet) or, for a preset with a
    shipped teacher (``SHIPPED_TEACHERS``), loads that. ``checkpoint`` is a local
    ``.safetensors`` or ``.pt``/``.pth`` state dict (a ddkit checkpoint's ``model`` entry works).
    """
    check_model_name(name)
    if pretrained and name in SHIPPED_TEACHERS:
        name = f"{shipped_teacher(name).model}.shipped"
    try:
        model = timm_create(name, pretrained=pretrained, **kwargs)
    except TypeError as err:  # an argument the model class does not take
        raise ValueError(f"model {name!r}: {err}; model arguments go to timm.create_model "
                         "(check their names)") from None
    if checkpoint is not None:
        load_weights(model, checkpoint)
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None and not getattr(patch_embed, "dynamic_img_size", False):
        size = getattr(patch_embed, "img_size", None)
        if size is not None:
            check_patch_grid(patch_embed, int(size[0] if not isinstance(size, int) else size),
                             "img_size")
    return model


def create_with_checkpoint(name: str, checkpoint: str | Path, **kwargs) -> nn.Module:
    """Build ``name`` and load the local weights file ``checkpoint`` through timm's pretrained
    route (``pretrained_cfg_overlay=dict(file=...)``): the model's ``filter_fn`` resamples the
    position embeddings to the grid the model is built for (weights trained at another image
    size load), and the input convolution and classifier are adapted as timm adapts hub
    weights. ``num_classes`` and ``in_chans`` default to the file's own (its classifier and
    input convolution); a file that does not fit otherwise raises WeightsFileError."""
    state = load_state_dict(checkpoint)           # unreadable or missing: named here
    with torch.device("meta"):
        probe = timm_create(arch_name(name), pretrained=False, **kwargs)
    cfg = dict(getattr(probe, "pretrained_cfg", None) or {})
    classifier, first_conv = cfg.get("classifier"), cfg.get("first_conv")
    head = state.get(f"{classifier}.weight") if isinstance(classifier, str) else None
    conv = state.get(f"{first_conv}.weight") if isinstance(first_conv, str) else None
    overlay = {"file": str(checkpoint)}
    if head is not None:
        overlay["num_classes"] = int(head.shape[0])
        kwargs.setdefault("num_classes", int(head.shape[0]))
    if conv is not None and conv.ndim == 4:
        size = tuple(cfg.get("input_size") or (3, 224, 224))[1:]
        overlay["input_size"] = (int(conv.shape[1]), *size)
        kwargs.setdefault("in_chans", int(conv.shape[1]))
    try:
        return timm_create(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except TypeError as err:
        raise ValueError(f"model {name!r}: {err}; model arguments go to timm.create_model "
                         "(check their names)") from None
    except RuntimeError as err:   # load_state_dict: missing / unexpected keys, shapes
        raise WeightsFileError(f"{checkpoint}: does not fit {name} ({str(err).splitlines()[0]} "
                               f"{_first_lines(err)}); pass the model name and arguments the "
                               "weights were trained with") from None


def check_patch_grid(patch_embed: nn.Module, size: int, key: str) -> None:
    """Raise ModelInputError when ``size`` px images do not split into whole patches (timm would
    floor the grid and leave the last pixels of each row and column unseen), unless the
    embedding pads (``dynamic_img_pad``)."""
    patch = getattr(patch_embed, "patch_size", None)
    if patch is None or getattr(patch_embed, "dynamic_img_pad", False):
        return
    p = int(patch if isinstance(patch, int) else patch[0])
    if size % p:
        down, up = size - size % p, size - size % p + p
        raise ModelInputError(f"{key}={size} is not divisible by the patch size {p}: the last "
                              f"{size % p} px of each row and column would never be seen; use "
                              f"{key}={down} or {key}={up} (or dynamic_img_pad=true)")


def create_from_config(cfg, checkpoint: str | Path | None = None) -> nn.Module:
    """``create_model`` from a ``config.ModelConfig`` (name, pretrained, checkpoint, kwargs);
    ``checkpoint`` overrides the config's weights file."""
    return create_model(cfg.name, pretrained=cfg.pretrained,
                        checkpoint=checkpoint or cfg.checkpoint, **cfg.kwargs)


class WeightsFileError(ValueError):
    """A weights file is unreadable (truncated, corrupt) or does not fit the model."""


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (a ddkit checkpoint works).

    A missing file raises FileNotFoundError; an unreadable one WeightsFileError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors, zip, pickle and OS errors all mean "unreadable"
        raise WeightsFileError(f"{path}: unreadable weights file, truncated or corrupt "
                               f"({type(err).__name__}: {err}); write or download it "
                               "again") from None
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state.get("model", state.get("state_dict", state))


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights file ``path`` into ``model``; a file that does not fit the model raises
    WeightsFileError naming the file and the first mismatching keys."""
    try:
        model.load_state_dict(load_state_dict(path))
    except RuntimeError as err:
        raise WeightsFileError(f"{path}: does not fit {type(model).__name__} "
                               f"({str(err).splitlines()[0]} {_first_lines(err)}); pass the "
                               "model name and arguments the weights were trained with") from None
    return model


def _first_lines(err: Exception, n: int = 3) -> str:
    lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    return " ".join(lines[:n])[:400]


# --------------------------------------------------------------------------- ViT-likeness

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


def model_depth(name: str, **kwargs) -> int:
    """Number of residual blocks of a timm model, built on the meta device (no compute, no weights)."""
    check_model_name(name)
    with torch.device("meta"):
        return num_blocks(timm_create(arch_name(name), pretrained=False, **kwargs))


def model_width(name: str, **kwargs) -> int | None:
    """The residual stream's channels (``embed_dim``) of a timm model, built on the meta device;
    None for a model without ``embed_dim``."""
    check_model_name(name)
    with torch.device("meta"):
        return getattr(timm_create(arch_name(name), pretrained=False, **kwargs),
                       "embed_dim", None)


def describe(model: nn.Module) -> dict:
    """Parameters, depth, width and token grid of a ViT-like model (for tables in notebooks)."""
    grid = tuple(model.patch_embed.grid_size)
    return dict(parameters=sum(p.numel() for p in model.parameters()), depth=num_blocks(model),
                width=model.embed_dim, token_grid=f"{grid[0]}x{grid[1]}",
                num_classes=model.num_classes)
