"""Experiment configuration: one dataclass tree, YAML profiles, validation and hashing.

A run is fully described by a `RunConfig`. Profiles (`smoke`, `default`, `paper`, YAML files in
``ddkit/profiles/``) hold the recipe of a whole study and produce the teacher's and each
student's `RunConfig`. Every check happens here, before any compute: unknown keys, wrong types,
unknown names and layer indices out of range raise `ConfigError` naming the key and the valid
choices.

Over 450 lines on purpose: the dataclasses, YAML loading, overrides, hashing and validation of
one config tree, which change together.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ddkit.core.anatomy import block_widths, model_depth, model_width
from ddkit.core.data import AUGMENT_RECIPES, DATASETS
from ddkit.core.losses import (
    DIRECT_KINDS,
    FEATURE_KINDS,
    FEATURE_NORMS,
    KD_KINDS,
    LAYER_SPECS,
    PROJECTOR_MODES,
    resolve_layer_pairs,
)
from ddkit.core.models import build_problem, check_model_name
from ddkit.core.students import STUDENTS, student_kwargs

PROFILE_DIR = Path(__file__).resolve().parents[1] / "profiles"

LAYER_MAPS = LAYER_SPECS
DEVICES = ("auto", "cpu", "cuda")
TEACHER_SOURCES = ("train", "shipped", "hub")
TRAINABLE = ("all", "head")
# Fields added after runs were cached: left out of a run's identity while they hold their
# default, so every run hashed before they existed keeps its hash (and its cache folder).
IDENTITY_DEFAULTS = {("mae",): None, ("optim", "trainable"): "all",
                     ("distill", "feature_until"): None, ("distill", "target_rank"): None,
                     ("distill", "feature_norm"): "none",
                     ("optim", "lr_base"): None, ("optim", "lr_base_size"): 512,
                     ("optim", "grad_accum_steps"): 1, ("optim", "global_batch"): None,
                     ("world_size",): 1}
# Fields that never change a run's result (where it runs and what it writes beside its log).
NOT_IDENTITY = ("device", "tensorboard", "wandb")
# A mapping given to a plain-dict field merges into it, as dotted keys do, except in the fields
# marked WHOLE: a selection (a profile's cell_seeds and sweep settings, its measured numbers),
# which a mapping names whole.
WHOLE = {"whole": True}

# The cells of the negative-transfer ablation (names as in the official release's tables):
# no-KD, SoftKD, SpectralKD-{First, Last, First+Last}, ProjectorKD-{First, Last, First+Last};
# each is the recipe a profile's student_config is called with.
LAYER_NAMES = {"first": "First", "last": "Last", "first_last": "First+Last"}
# The phase-aware remedy's feature weight reaches zero at this fraction of the schedule: the
# official late-alignment runs cross SoftKD at 53-59 % of theirs (docs/design.md §11).
PHASE_UNTIL = 0.5
CELLS: dict[str, dict] = {
    "no-KD": dict(kd="none"),
    "SoftKD": dict(kd="soft"),
    **{f"{m}KD-{name}": dict(kd="soft", feature=m.lower(), layers=layers)
       for m in ("Spectral", "Projector") for layers, name in LAYER_NAMES.items()},
    # the remedies of the phase map (docs/design.md §11), each at the last pair. LossLift is an
    # ablation, not the follow-up's Lift: its Linear + LayerNorm lift lives in the loss only and
    # the student keeps its own head (feature kind "lift", the name it was trained under)
    "LossLift-Last": dict(kd="soft", feature="lift", layers="last"),
    "GenKD-Last": dict(kd="soft", feature="generate", layers="last"),
    "TopPCKD-Last": dict(kd="soft", feature="top_pc", layers="last"),
    "PhasedKD-Last": dict(kd="soft", feature="spectral", layers="last", feature_until=PHASE_UNTIL),
    # the follow-up's remedies as its release builds them: the student itself changes
    # (``student``, ddkit.core.models): Lift (a lift and a new head on its last block, SpectralKD
    # on the lifted tokens) and WideLast (its last block as wide as the teacher's, plain MSE)
    "Lift-Last": dict(kd="soft", feature="spectral", layers="last", student="lift"),
    "WideLast-Last": dict(kd="soft", feature="mse", layers="last", student="widelast"),
    # controls of the remedies: extra width alone (UniformWide, the release's reviewer control:
    # every block wider, WideLast's parameters, SpectralKD-Last) and GenKD's generator trained
    # against another image's teacher tokens (GenKD-Shuffled)
    "UniformWide": dict(kd="soft", feature="spectral", layers="last", student="uniformwide"),
    "GenKD-Shuffled-Last": dict(kd="soft", feature="generate_shuffled", layers="last"),
}
REMEDIES = ("Lift-Last", "WideLast-Last", "LossLift-Last", "GenKD-Last", "PhasedKD-Last",
            "TopPCKD-Last")
REMEDY_CONTROLS = ("UniformWide", "GenKD-Shuffled-Last")
# remedy -> the control that keeps everything but the remedy's own ingredient
CONTROL_OF = {"Lift-Last": "UniformWide", "WideLast-Last": "UniformWide",
              "GenKD-Last": "GenKD-Shuffled-Last"}
# cells that are ablations of a remedy, not the remedy its source defines
ABLATIONS = {"LossLift-Last": "ablation: the follow-up's lift applied inside the loss only, "
                              "the student's own head kept (not the follow-up's Lift)"}
# the paper's ablation grid: what a study trains when it names no cells
ABLATION = tuple(c for c in CELLS if c not in REMEDIES + REMEDY_CONTROLS)
METHODS = {"spectral": "SpectralKD", "projector": "ProjectorKD", "lift": "LossLift",
           "generate": "GenKD", "top_pc": "TopPCKD", "mse": "MSE",
           "generate_shuffled": "GenKD-Shuffled"}
STUDENT_METHODS = {"lift": "Lift", "widelast": "WideLast", "uniformwide": "UniformWide"}


def cell_parts(cell: str) -> dict:
    """``{"method", "layers"}`` of a cell name, for grouping tables."""
    spec = CELLS[cell]
    feature = spec.get("feature", "none")
    if spec.get("student", "plain") != "plain":
        method = STUDENT_METHODS[spec["student"]]
    elif feature == "none":
        method = "SoftKD" if spec["kd"] == "soft" else "no-KD"
    else:
        method = "PhasedKD" if spec.get("feature_until") else METHODS[feature]
    return {"method": method, "layers": spec.get("layers", "none")}


def check_cells(cells) -> list[str]:
    """``cells`` as a list; ConfigError naming the unknown ones and the valid names."""
    cells = list(cells)
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise ConfigError(f"unknown cell(s) {unknown}; valid cells: {list(CELLS)}")
    return cells


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and the valid choices."""


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion_mnist"
    root: str | None = None           # explicit dataset folder; None = the usual places
    train_subset: int | None = None   # class-balanced subset of the training split; None = all
    eval_subset: int | None = None    # class-balanced subset of the test split; None = all
    img_size: int | None = None       # None = the dataset's native size
    augment: bool | str = False       # false | true (the dataset's standard) | "official" (DeiT's)
    batch_size: int = 128             # per process
    eval_batch_size: int = 500
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "ddkit_vit_student_fmnist"
    pretrained: bool = False           # hub weights (internet) or, for the ddkit teacher, shipped ones
    checkpoint: str | None = None      # local weights file (.safetensors / .pt)
    kwargs: dict = field(default_factory=dict)  # extra timm.create_model arguments


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 10
    lr: float = 5e-4                  # peak learning rate, used as given when lr_base is null
    lr_base: float | None = None      # set: the peak lr is lr_base * global batch / lr_base_size
    lr_base_size: int = 512           # (timm and DeiT: 5e-4 at 512 images, the official recipe)
    grad_accum_steps: int = 1         # micro-batches per optimizer step in each process
    global_batch: int | None = None   # set: images per optimizer step over all processes; the
                                      # accumulation is derived (batch_size x world_size x steps)
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    clip_grad: float | None = None
    sched_per_step: bool = False      # False: lr set once per epoch (official); True: every step
    trainable: str = "all"            # all | head (a linear probe: every other weight frozen)


@dataclass(frozen=True)
class DistillConfig:
    """Loss recipe. alpha weights the KD term: total = (1-a)CE + bw*feat + a*T^2*KL."""
    kd: str = "none"                  # none | soft | hard
    alpha: float = 0.9
    tau: float = 1.0
    feature: str = "none"             # none | spectral | projector
    layers: Any = "none"              # none | first | last | first_last | [[s, t], ...]
    feature_weight: float = 0.2       # beta * w
    projector_mode: str = "faithful"  # faithful (frozen random, as the official code) | learnable
    teacher: ModelConfig | None = None
    feature_until: float | None = None  # phase-aware: the feature weight decays to 0 by this
                                        # fraction of the schedule (half cosine); None = constant
    target_rank: int | None = None    # the teacher's tokens projected on their top-k shared
                                      # directions before the feature loss; None = all of them
    feature_norm: str = "none"        # none | target_energy: each pair loss divided by that of an
                                      # all-zero prediction (spectral and mse)


@dataclass(frozen=True)
class MaeConfig:
    """Masked-autoencoder pre-training (``ddkit.core.mae``): no labels, no teacher; the run's weights
    are the encoder's (its head stays at initialisation)."""
    mask_ratio: float = 0.75
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 2
    norm_pix_loss: bool = True
    knn_bank: int = 5000              # class-balanced training images of the kNN monitor (k=20)


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0
    save_every: int = 1               # keep weights every K epochs for dynamics (0 = last only)
    device: str = "auto"              # auto | cpu | cuda (not part of the run's identity)
    amp: bool = True                  # bf16 autocast, CUDA only
    channels_last: bool = True        # CUDA only
    share_teacher_pass: bool = True   # un-augmented data: teacher outputs computed once, reused
    mae: MaeConfig | None = None      # set: pre-train the model as a masked autoencoder
    world_size: int = 1               # processes training the run together (DDP); torchrun's
                                      # WORLD_SIZE is taken over when this is left at 1
    tensorboard: bool = True          # TensorBoard events beside metrics.jsonl (not identity)
    wandb: str | None = None          # a W&B project to log to (optional package; not identity)

    @property
    def uses_teacher(self) -> bool:
        return self.distill.kd != "none" or self.distill.feature != "none"


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


# a scalar field's type: (accepts a YAML value, what an error calls it, conversion); bool is
# never an int or a float here, though Python counts it as one
_SCALARS = {
    bool: (lambda v: isinstance(v, bool), "true/false", lambda v: v),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", lambda v: v),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float),
    str: (lambda v: isinstance(v, str), "a string", lambda v: v),
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (dicts -> dataclasses)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(o) for o in options)}, "
                          f"got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp in _SCALARS:
        accepts, what, convert = _SCALARS[tp]
        if not accepts(value):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
        return convert(value)
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key(s) {[where + k for k in unknown]}; "
                          f"valid keys{' of ' + prefix if prefix else ''}: {names}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _section_type(tp: Any) -> type | None:
    """The dataclass an annotation names (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [o for o in typing.get_args(tp) if dataclasses.is_dataclass(o)]
        return found[0] if len(found) == 1 else None
    return None


def replace(cfg: Any, _prefix: str = "", **changes: Any) -> Any:
    """``dataclasses.replace`` with dotted keys: ``replace(run, **{"optim.epochs": 3})``.

    A mapping given to a section merges into it (``data={"batch_size": 64}`` changes only the
    batch size), a dataclass or a plain-dict field alike (``student.model.kwargs={"embed_dim":
    16}`` keeps the other model arguments), except the ``WHOLE`` fields, which a mapping names
    whole (a profile's ``cell_seeds``: a setting's cells are its keys); a dotted key may also
    reach into a mapping field
    (``{"student.model.kwargs.depth": 6}``) or into an unset section, which starts from its
    defaults (``distill.teacher.name``). Errors are ConfigErrors naming the full dotted key:
    ``student.optim.lr: expected a number, got 'fast'``.
    """
    nested: dict[str, dict] = {}
    flat = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    if isinstance(cfg, dict):
        out = dict(cfg)
        out.update(flat)
        for head, sub in nested.items():
            inner = out.get(head, {})
            if not isinstance(inner, dict):
                raise ConfigError(f"{_prefix}{head}={inner!r} is not a section; cannot set "
                                  f"{[_prefix + head + '.' + k for k in sub]}")
            out[head] = replace(inner, f"{_prefix}{head}.", **sub)
        return out
    if not dataclasses.is_dataclass(cfg):
        raise ConfigError(f"{_prefix[:-1]}={cfg!r} is not a section; cannot set "
                          f"{[_prefix + k for k in changes]}")
    valid = [f.name for f in dataclasses.fields(cfg)]
    for key in [*flat, *nested]:
        if key not in valid:
            where = f" of {_prefix[:-1]}" if _prefix else ""
            raise ConfigError(f"unknown key {_prefix + key!r}; valid keys{where}: {valid}")
    hints = typing.get_type_hints(type(cfg))
    whole = {f.name for f in dataclasses.fields(cfg) if f.metadata.get("whole")}
    for key in list(flat):   # a mapping into a set section merges, as dotted keys would
        current = getattr(cfg, key)
        if isinstance(flat[key], dict) and (dataclasses.is_dataclass(current) or (
                isinstance(current, dict) and key not in whole)):
            nested[key] = {**flat.pop(key), **nested.get(key, {})}
    out = {k: _coerce(v, hints[k], _prefix + k) for k, v in flat.items()}
    for head, sub in nested.items():
        current = out.get(head, getattr(cfg, head))
        section = _section_type(hints[head])
        if current is None and section is not None:
            current = section()
        out[head] = replace(current, f"{_prefix}{head}.", **sub)
    return dataclasses.replace(cfg, **out)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_override(text: str) -> tuple[str, Any]:
    """``"student.optim.lr=1e-3"`` -> ``("student.optim.lr", 0.001)``: the value is read as YAML
    (numbers, true/false, null, lists ``[0, 1]``, mappings ``{depth: 6}``), where ``1e-3`` counts
    as a number too."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected dotted.key=value, e.g. "
                          "student.optim.lr=0.001")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"{key}: cannot read {raw!r} as a value ({err.problem})") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    return key, value


# --------------------------------------------------------------------------- validation


def _choice(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of {list(choices)}")


def _positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


# A name that becomes a path (a run folder, its lock file, figures/<profile>/) is one plain
# folder name: no separator, no leading dot (no "..", no hidden lock-file names), not too long.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")


def check_name(name: Any, key: str = "name") -> str:
    """``name`` when it is one safe folder name (``SAFE_NAME``), else ConfigError."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{key}={name!r} must be one folder name (it names run folders, lock "
                          "files and figures/<name>/): letters, digits and _ . + -, not starting "
                          "with '.', at most 100 characters")
    return name


@dataclass(frozen=True)
class BatchPlan:
    """How a run's images per optimizer step come about, and the learning rate they imply."""
    per_process: int     # data.batch_size: images of one forward/backward in one process
    world_size: int      # processes (DDP)
    accum: int           # micro-batches accumulated per optimizer step
    global_batch: int    # per_process x world_size x accum
    lr: float            # the peak learning rate the optimizer gets
    lr_base: float | None = None
    lr_base_size: int = 512

    def line(self) -> str:
        """One line for the start of a run: the global batch and the learning rate it implies."""
        lr = f"peak lr {self.lr:g}"
        if self.lr_base is not None:
            lr += f" = lr_base {self.lr_base:g} x {self.global_batch} / {self.lr_base_size}"
        return (f"global batch {self.global_batch} = {self.per_process} per process x "
                f"{self.world_size} process(es) x {self.accum} accumulation step(s); {lr}")


def _largest_fitting_batch(global_batch: int, world: int, batch: int) -> int | None:
    """The largest per-process batch <= ``batch`` that reaches ``global_batch`` on ``world``
    processes with a whole number of accumulation steps (None: ``world`` does not divide it)."""
    if global_batch % world:
        return None
    return next((b for b in range(min(batch, global_batch // world), 0, -1)
                 if (global_batch // world) % b == 0), None)


def batch_plan(cfg: RunConfig) -> BatchPlan:
    """The run's global batch (``data.batch_size`` x ``world_size`` x accumulation) and peak
    learning rate (``optim.lr``, or ``optim.lr_base`` x global batch / ``optim.lr_base_size``).
    ``optim.global_batch`` asks for a global batch and derives the accumulation; a per-process
    batch that cannot reach it raises ConfigError naming one that can."""
    o, batch, world = cfg.optim, cfg.data.batch_size, cfg.world_size
    per_step = batch * world
    if o.global_batch is not None:
        if o.grad_accum_steps != 1:
            raise ConfigError(f"optim.global_batch={o.global_batch} and optim.grad_accum_steps="
                              f"{o.grad_accum_steps}: set one of them (global_batch derives the "
                              "accumulation steps)")
        if o.global_batch % per_step:
            fits = _largest_fitting_batch(o.global_batch, world, batch)
            how = (f"set data.batch_size={fits} (or another divisor of "
                   f"{o.global_batch // world})" if fits else
                   f"run on a number of processes that divides {o.global_batch}")
            over = o.global_batch < per_step
            raise ConfigError(
                f"data.batch_size={batch} per process x {world} process(es) = {per_step} images "
                f"per step {'exceeds' if over else 'does not divide'} optim.global_batch="
                f"{o.global_batch}{'' if over else ' (no whole number of accumulation steps)'}: "
                f"{how}")
        accum = o.global_batch // per_step
    else:
        accum = o.grad_accum_steps
    global_batch = per_step * accum
    lr = o.lr if o.lr_base is None else o.lr_base * global_batch / o.lr_base_size
    return BatchPlan(batch, world, accum, global_batch, lr, o.lr_base, o.lr_base_size)


def with_world_size(cfg: RunConfig, world: int) -> RunConfig:
    """``cfg`` as trained by ``world`` processes: a config left at ``world_size: 1`` takes the
    launch's world size (torchrun's ``WORLD_SIZE``), one planned for another raises ConfigError."""
    if cfg.world_size == world:
        return cfg
    if cfg.world_size == 1:
        return dataclasses.replace(cfg, world_size=world)
    raise ConfigError(f"world_size={cfg.world_size}: run {cfg.name!r} is planned for "
                      f"{cfg.world_size} processes but {world} were launched; start it with "
                      f"torchrun --nproc_per_node {cfg.world_size} (or plan it for {world})")


def validate(cfg: RunConfig) -> RunConfig:
    """Check every value of a run before any compute; return it unchanged or raise ConfigError."""
    check_name(cfg.name)
    _choice(cfg.data.name, tuple(DATASETS), "data.name")
    if isinstance(cfg.data.augment, str):
        _choice(cfg.data.augment, AUGMENT_RECIPES, "data.augment")
    _choice(cfg.device, DEVICES, "device")
    for key in ("train_subset", "eval_subset", "img_size"):
        _positive(getattr(cfg.data, key), f"data.{key}")
    _positive(cfg.data.batch_size, "data.batch_size")
    _positive(cfg.data.eval_batch_size, "data.eval_batch_size")
    _positive(cfg.data.num_workers, "data.num_workers", allow_zero=True)
    _positive(cfg.optim.epochs, "optim.epochs")
    _positive(cfg.optim.lr, "optim.lr")
    _positive(cfg.optim.lr_base, "optim.lr_base")
    for key in ("lr_base_size", "grad_accum_steps", "global_batch"):
        _positive(getattr(cfg.optim, key), f"optim.{key}")
    _positive(cfg.world_size, "world_size")
    if cfg.wandb is not None:
        _check_wandb()
    batch_plan(cfg)
    _positive(cfg.optim.weight_decay, "optim.weight_decay", allow_zero=True)
    _positive(cfg.optim.warmup_epochs, "optim.warmup_epochs", allow_zero=True)
    if not 0 <= cfg.optim.label_smoothing < 1:
        raise ConfigError(f"optim.label_smoothing={cfg.optim.label_smoothing} must be in [0, 1)")
    _positive(cfg.save_every, "save_every", allow_zero=True)
    _choice(cfg.optim.trainable, TRAINABLE, "optim.trainable")
    if cfg.mae is not None:
        if not 0 < cfg.mae.mask_ratio < 1:
            raise ConfigError(f"mae.mask_ratio={cfg.mae.mask_ratio} must be in (0, 1)")
        if cfg.uses_teacher:
            raise ConfigError("mae: masked-autoencoder pre-training takes no teacher; set "
                              "distill.kd and distill.feature to none")
        for key in ("decoder_dim", "decoder_depth", "decoder_heads", "knn_bank"):
            _positive(getattr(cfg.mae, key), f"mae.{key}")
    _checked_model(cfg.model, "model", check_model_name)

    d = cfg.distill
    _choice(d.kd, KD_KINDS, "distill.kd")
    _choice(d.feature, FEATURE_KINDS, "distill.feature")
    _choice(d.projector_mode, PROJECTOR_MODES, "distill.projector_mode")
    _choice(d.feature_norm, FEATURE_NORMS, "distill.feature_norm")
    if d.feature_norm != "none" and d.feature not in DIRECT_KINDS:
        raise ConfigError(f"distill.feature_norm={d.feature_norm!r} needs distill.feature in "
                          f"{list(DIRECT_KINDS)}, got {d.feature!r}")
    if not 0 <= d.alpha <= 1:
        raise ConfigError(f"distill.alpha={d.alpha} must be in [0, 1]")
    _positive(d.tau, "distill.tau")
    _positive(d.feature_weight, "distill.feature_weight", allow_zero=True)
    if d.feature_until is not None and not 0 < d.feature_until <= 1:
        raise ConfigError(f"distill.feature_until={d.feature_until} must be in (0, 1] (a fraction "
                          "of the schedule) or null")
    if d.target_rank is not None:
        if d.feature not in ("spectral", "projector"):
            raise ConfigError(f"distill.target_rank={d.target_rank} needs distill.feature "
                              f"spectral or projector, got {d.feature!r}")
        w_t = model_width(d.teacher.name, **d.teacher.kwargs) if d.teacher else None
        if d.target_rank < 1 or (w_t and d.target_rank > w_t):
            raise ConfigError(f"distill.target_rank={d.target_rank} must be in [1, the teacher's "
                              f"{w_t} channels]")
    if cfg.uses_teacher:
        if d.teacher is None:
            raise ConfigError("distill.teacher is required when distill.kd or distill.feature "
                              "is not 'none' (e.g. {name: ddkit_vit_teacher_fmnist, pretrained: true})")
        _checked_model(d.teacher, "distill.teacher", check_model_name)
    if d.feature != "none":
        if isinstance(d.layers, str):
            _choice(d.layers, LAYER_MAPS[1:], "distill.layers")
        n_s = model_depth(cfg.model.name, **cfg.model.kwargs)
        n_t = model_depth(d.teacher.name, **d.teacher.kwargs)
        try:
            pairs = resolve_layer_pairs(d.layers, n_s, n_t)
        except ValueError as err:
            raise ConfigError(f"distill.layers: {err}") from None
        if d.feature in ("spectral", "top_pc", "mse"):
            w_s = block_widths(cfg.model.name, **cfg.model.kwargs)
            w_t = block_widths(d.teacher.name, **d.teacher.kwargs)
            for s, t in pairs:
                if w_s and w_t and w_s[s] > w_t[t]:
                    raise ConfigError(
                        f"distill.feature={d.feature!r} needs a student no wider than its teacher "
                        f"at each aligned pair (student block {s}: {w_s[s]}, teacher block {t}: "
                        f"{w_t[t]} channels); use feature: projector or lift for a wider student")
    elif d.layers not in ("none", None, []):
        raise ConfigError(f"distill.layers={d.layers!r} needs distill.feature set to one of "
                          f"{list(FEATURE_KINDS[1:])}")
    return cfg


def _check_wandb() -> None:
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb: logging to Weights & Biases needs the optional package "
                          "(pip install wandb); TensorBoard events are written without it")


def _checked_model(model: ModelConfig, key: str, check_model) -> None:
    try:
        check_model(model.name)
    except ValueError as err:
        raise ConfigError(f"{key}.name: {err}") from None
    _check_builds(model, key)
    if model.checkpoint is not None and not Path(model.checkpoint).is_file():
        raise ConfigError(f"{key}.checkpoint: no file at {model.checkpoint}")


# --------------------------------------------------------------------------- identity


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes (read in 1 MiB blocks); remembered per (path, size,
    modification time), so planning a grid of hundreds of runs reads each teacher once."""
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of_file(path)


def sha256_of_file(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes as they are now, read in 1 MiB blocks (no memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def identity(value: Any) -> Any:
    """Config as plain data, with weights files replaced by their content digest."""
    if isinstance(value, dict):
        out = {k: identity(v) for k, v in value.items()}
        if out.get("checkpoint"):
            out["checkpoint"] = "sha256:" + file_digest(value["checkpoint"])
        return out
    if isinstance(value, (list, tuple)):
        return [identity(v) for v in value]
    return value


def config_hash(cfg: RunConfig) -> str:
    """12-hex digest of everything that changes a run's result (not device or logging, not the
    path of a weights file but its content; the world size and accumulation, which set the
    global batch, are in it). Same hash = same run = trained once."""
    data = identity(to_dict(cfg))
    for key in NOT_IDENTITY:
        data.pop(key, None)
    for path, default in IDENTITY_DEFAULTS.items():
        *parents, key = path
        section = data
        for part in parents:
            section = section[part]
        if section.get(key, default) == default:
            section.pop(key, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class RoleConfig:
    """What differs between the teacher and the students inside one profile."""
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: dict = field(default_factory=dict)    # overrides of the profile's data section
    mae: MaeConfig | None = None                # teacher: pre-train as a masked autoencoder


@dataclass(frozen=True)
class AnalysisConfig:
    """The keys a profile's ``analysis`` section may hold (checked when the profile loads): only
    keys something reads, so a key that no longer matters is refused, not silently ignored."""
    n_images: int = 200           # analysis images of the dynamics tables (test split)
    paper_faithful: bool = False  # the first n_images in order instead of a balanced sample
    n_boot: int = 2000            # image resamples of the percentile bootstrap (notebook 05)


@dataclass(frozen=True)
class Profile:
    """A study recipe: data, teacher, student, the distillation defaults and the seeds.

    ``distill``: the loss parameters every student shares, and in ``kd``/``feature``/``layers``
    the recipe ``ddkit train`` trains when no ``--kd/--feature/--layers`` is given (``kd``
    defaults to ``soft`` in a profile); the ablation grid's cells set their own kd, feature and
    layers. ``analysis``: the keys of ``AnalysisConfig``.
    """
    name: str = "default"
    description: str = ""
    command: str = ""
    measured: dict = field(default_factory=dict, metadata=WHOLE)  # wall times / numbers seen
    data: DataConfig = field(default_factory=DataConfig)
    teacher: RoleConfig = field(default_factory=RoleConfig)
    student: RoleConfig = field(default_factory=RoleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seeds: list = field(default_factory=lambda: [0])
    cell_seeds: dict = field(default_factory=dict, metadata=WHOLE)  # {cell: seeds} where a cell
                                                    # needs more; a setting's cells are its keys
    teacher_source: str = "train"   # train (the teacher run) | shipped (committed) | hub (distill.teacher)
    save_every: int = 1
    device: str = "auto"
    workers: int | None = None      # runs trained at once (ddkit.runs.parallel); None = the CPU
                                    # cores, or on GPUs one run at a time over all of them
    tensorboard: bool = True        # every run writes TensorBoard events (not identity)
    wandb: str | None = None        # a W&B project every run logs to (needs wandb installed)
    analysis: dict = field(default_factory=dict)    # AnalysisConfig keys, for the notebooks
    sweep: dict = field(default_factory=dict, metadata=WHOLE)  # {setting: {dotted key: value}}
    # the name of the profile itself as a setting beside its sweep's (tables, figures, documents):
    # what it is, e.g. "MAE teacher, head untrained"; "" = "<name> profile"
    base_name: str = ""
    probe: RoleConfig | None = None # a linear probe of the teacher's head (the controls profile)

    @property
    def own_setting(self) -> str:
        """The profile itself as a setting beside its sweep's: ``base_name``, else "<name> profile"."""
        return self.base_name or f"{self.name} profile"

    def seeds_for(self, cell: str) -> list[int]:
        """The seeds of one ablation cell: ``cell_seeds[cell]`` when given, else ``seeds``."""
        return list(self.cell_seeds.get(cell, self.seeds))

    def _logging(self) -> dict:
        return {"tensorboard": self.tensorboard, "wandb": self.wandb}

    def _data(self, role: RoleConfig) -> DataConfig:
        return from_dict(DataConfig, {**to_dict(self.data), **role.data}, "data")

    def teacher_config(self) -> RunConfig:
        """The run that trains this profile's teacher (when it is not loaded pretrained)."""
        return RunConfig(name=f"{self.name}-teacher", model=self.teacher.model,
                         data=self._data(self.teacher), optim=self.teacher.optim,
                         seed=self.seeds[0], save_every=self.save_every, device=self.device,
                         mae=self.teacher.mae, **self._logging())

    def probe_config(self, encoder_weights: str | Path) -> RunConfig:
        """The run that fits a head on the frozen encoder ``encoder_weights`` (``probe``)."""
        if self.probe is None:
            raise ConfigError(f"profile {self.name!r} has no probe section")
        model = dataclasses.replace(self.probe.model, checkpoint=str(encoder_weights))
        return RunConfig(name=f"{self.name}-teacher-probe", model=model,
                         data=self._data(self.probe), optim=self.probe.optim,
                         seed=self.seeds[0], save_every=self.save_every, device=self.device,
                         **self._logging())

    def student_config(self, kd: str = "none", feature: str = "none", layers: Any = "none",
                       seed: int | None = None, teacher: ModelConfig | None = None,
                       student: str = "plain", **distill: Any) -> RunConfig:
        """A student run: ``kd``/``feature``/``layers`` pick the ablation cell; ``student`` the
        follow-up's architecture built on the profile's student (``core.models.student_kwargs``:
        plain, lift, widelast, uniformwide), sized by the teacher's width."""
        feature_part = "" if feature == "none" else f"-{feature}-{_layers_tag(layers)}"
        if distill.get("feature_until") is not None:
            feature_part += f"-until{distill['feature_until']:g}"
        name = f"{self.name}-student-{kd}{feature_part}"
        recipe = dataclasses.replace(self.distill, kd=kd, feature=feature, layers=layers,
                                     teacher=teacher or self.distill.teacher, **distill)
        if feature == "none":          # a rank-k target and a normalisation shape a feature loss
            recipe = dataclasses.replace(recipe, target_rank=None, feature_norm="none")
        else:
            if recipe.target_rank is not None:
                name += f"-rank{recipe.target_rank}"
            if recipe.feature_norm != "none":
                name += "-tnorm"
        model = self.student.model
        if student != "plain":
            _choice(student, STUDENTS, "student")
            if recipe.teacher is None:
                raise ConfigError(f"student={student!r} is sized by the teacher's width: give "
                                  "the student config a teacher")
            width = model_width(recipe.teacher.name, **recipe.teacher.kwargs)
            try:
                kwargs = student_kwargs(student, model.name, model.kwargs, width)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"student={student!r} on {model.name}: {err}") from None
            model = dataclasses.replace(model, kwargs=kwargs)
            name += f"-{student}"
        if kd == "none" and feature == "none":
            recipe = dataclasses.replace(recipe, teacher=None)
        return RunConfig(name=name, model=model, data=self._data(self.student),
                         optim=self.student.optim, distill=recipe,
                         seed=self.seeds[0] if seed is None else seed,
                         save_every=self.save_every, device=self.device, **self._logging())


def _layers_tag(layers: Any) -> str:
    if isinstance(layers, str):
        return layers
    return "_".join(f"s{s}t{t}" for s, t in layers)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


# Profile keys that change no result: a profile differing from the kit's only in these is still
# that profile (its runs hash the same, it publishes where the kit's does).
NOT_RESULTS = (*NOT_IDENTITY, "workers")


def override_digest(profile: Profile) -> str:
    """6 hex digits of a profile's values (``NOT_RESULTS`` aside): what ``<name>-set-<digest>``
    names an overridden profile by (``ddkit notebooks``, the grid commands)."""
    data = json.loads(json.dumps(to_dict(profile)))
    text = json.dumps({k: v for k, v in data.items() if k not in NOT_RESULTS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def published_name(profile: Profile) -> str:
    """The name a profile's results are published under (``figures/<name>/``): its own when it
    is the kit's profile of that name unchanged (``NOT_RESULTS`` aside) or the kit has no profile
    of that name; else ``<name>-set-<digest>``, so the committed results of the kit's profile
    are only ever written by that profile."""
    if profile.name not in profile_names():
        return profile.name
    def results(p: Profile) -> dict:
        data = json.loads(json.dumps(to_dict(p)))
        return {k: v for k, v in data.items() if k not in NOT_RESULTS}
    if results(profile) == results(load_profile(profile.name)):
        return profile.name
    return f"{profile.name}-set-{override_digest(profile)}"


def load_profile(name_or_path: str | Path, **overrides: Any) -> Profile:
    """Load a profile by name (``smoke``, ``default``, ``paper``) or from a YAML path.

    ``overrides`` use dotted keys (``{"teacher.optim.epochs": 2}``) and are validated too.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown profile {name_or_path!r}; valid profiles: {profile_names()}")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of profile keys, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    distill = data.get("distill", {})
    if isinstance(distill, dict):          # a profile's recipe is SoftKD unless it says otherwise
        data["distill"] = {"kd": "soft", **distill}
    profile = from_dict(Profile, data, "")
    profile = replace(profile, **overrides) if overrides else profile
    check_profile(profile)
    return profile


def check_profile(profile: Profile) -> Profile:
    """Every value of a loaded profile, before any compute: the teacher_source, the analysis
    keys, the seeds, the sweep settings, both roles' data and model (arguments included), and
    the distill recipe with its layer indices range-checked against the two models' depths."""
    check_name(profile.name)
    _choice(profile.teacher_source, TEACHER_SOURCES, "teacher_source")
    from_dict(AnalysisConfig, profile.analysis, "analysis")
    if profile.workers is not None and profile.workers < 1:
        raise ConfigError(f"workers={profile.workers} must be >= 1 (or null: one per CPU core)")
    if profile.own_setting in profile.sweep:
        raise ConfigError(f"base_name={profile.own_setting!r} is also a sweep setting's name: "
                          "the profile's own setting needs a name of its own")
    for setting, changes in profile.sweep.items():
        if not isinstance(changes, dict):
            raise ConfigError(f"sweep.{setting}: expected a mapping of dotted keys to values")
        try:
            variant = replace(profile, **changes)
            for role in ("teacher", "student"):
                _check_builds(getattr(variant, role).model, f"{role}.model")
        except ConfigError as err:
            raise ConfigError(f"sweep.{setting}: {err}") from None
    for key, seeds in [("seeds", profile.seeds),
                       *((f"cell_seeds.{c}", s) for c, s in profile.cell_seeds.items())]:
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"{key}={seeds!r} must be a non-empty list of integers")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{key}={seeds!r} lists a seed twice")
    if profile.cell_seeds:
        try:
            check_cells(profile.cell_seeds)
        except ConfigError as err:
            raise ConfigError(f"cell_seeds: {err}") from None
    _check_roles(profile)
    return profile


def _check_roles(profile: Profile) -> None:
    """Both roles' data overrides and models, and the profile's default student recipe."""
    for role in ("teacher", "student"):
        config = getattr(profile, role)
        from_dict(DataConfig, {**to_dict(profile.data), **config.data}, f"{role}.data")
        _check_builds(config.model, f"{role}.model")
    d = profile.distill
    if d.teacher is not None:
        _check_builds(d.teacher, "distill.teacher")
    # the teacher the students will distil from (study.teacher_model), without weights yet
    teacher = d.teacher if profile.teacher_source == "hub" else profile.teacher.model
    if teacher is None:
        raise ConfigError("teacher_source: hub needs distill.teacher in the profile")
    teacher = dataclasses.replace(teacher, checkpoint=None)
    student = profile.student_config(kd=d.kd, feature=d.feature, layers=d.layers, teacher=teacher)
    validate(profile.teacher_config())
    validate(student)


def _check_builds(model: ModelConfig, key: str) -> None:
    """The model name exists and timm builds it with its arguments (on the meta device: no
    compute, no weights); a width the heads do not divide, or one of 0 or below, is refused."""
    try:
        check_model_name(model.name)
    except ValueError as err:
        raise ConfigError(f"{key}.name: {err}") from None
    problem = build_problem(model.name, **model.kwargs)
    if problem:
        raise ConfigError(f"{key}.kwargs={model.kwargs!r}: {problem}")
