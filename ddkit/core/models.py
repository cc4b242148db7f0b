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
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.cait import Cait
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ddkit.core.sources import ModelUnreachableError, arch_name, model_source, timm_create
from ddkit.core.students import REMEDY_ARGS

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
                   "ddkit ship-teacher --profile controls"),
    ShippedTeacher("ddkit_vit_mae_probed_teacher_fmnist", "mae_probed_teacher_fmnist", "controls",
                   "ddkit ship-teacher --profile controls --teacher "
                   "ddkit_vit_mae_probed_teacher_fmnist"),
    *(ShippedTeacher(f"ddkit_vit_teacher_mosaic{k}", f"teacher_mosaic{k}", "phase_map",
                     f"ddkit ship-teacher --profile phase_map --teacher ddkit_vit_teacher_mosaic{k}")
      for k in (10, 100, 1000)),
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
    chosen = [key for key in REMEDY_ARGS if key in args]
    if len(chosen) > 1:
        raise TypeError(f"{variant}: {chosen} each build another student; give one of them")
    if chosen:
        if model_cls is not VisionTransformer:
            raise TypeError(f"{variant}: {chosen[0]} builds a ViT student, not a {model_cls.__name__}")
        model_cls = REMEDY_ARGS[chosen[0]]
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


def check_builds(name: str, **kwargs) -> None:
    """Raise ModelInputError, naming the arguments, unless timm builds ``name`` with ``kwargs``
    (on the meta device: no compute, no weights). A width the heads do not divide, a zero or
    negative size and an argument the model does not take all fail here, before any compute."""
    problem = build_problem(name, **kwargs)
    if problem:
        raise ModelInputError(f"model {name!r} cannot be built with {kwargs!r}: {problem}")


def build_problem(name: str, **kwargs) -> str | None:
    """Why timm cannot build the model ``name`` with ``kwargs`` (None when it can); an unknown
    name raises ModelInputError."""
    check_model_name(name)
    return _build_problem(arch_name(name), json.dumps(kwargs, sort_keys=True, default=repr))


@functools.lru_cache(maxsize=256)
def _build_problem(arch: str, kwargs_json: str) -> str | None:
    """Why timm cannot build ``arch`` with the JSON ``kwargs_json`` (None when it can); cached,
    since a grid profile checks the same few models once per setting."""
    try:
        with torch.device("meta"):
            timm_create(arch, pretrained=False, **json.loads(kwargs_json))
    except ModelUnreachableError:
        raise
    except TypeError as err:   # an argument the model class does not take
        return f"{err}; model arguments go to timm.create_model (check their names)"
    except Exception as err:  # AssertionError, ZeroDivisionError, RuntimeError: a bad size
        said = str(err) or "no message"
        return (f"{type(err).__name__}: {said}; widths, depths and head counts must be positive "
                "and embed_dim a multiple of num_heads")
    return None


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
    resume_file = (f"{path} is a run's resume file (optimizer and RNG state, not a model's "
                   f"weights): pass the run folder {path.parent} instead (or its "
                   "model.safetensors)")
    if path.name == "checkpoint.pt" and (path.parent / "config.json").is_file():
        raise WeightsFileError(resume_file)
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
    if {"trainable", "optimizer", "scheduler", "rng"} <= set(state):   # renamed or moved
        raise WeightsFileError(resume_file)
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
