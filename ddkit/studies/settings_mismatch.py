"""The encoding mismatch (``ddkit.signals.mismatch``) of every setting a profile runs: the teacher
the setting distils from (or, in the controlled-dimension design, its rank-k target) against the
width of its student, at each aligned layer map."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch

from ddkit.core.config import Profile
from ddkit.core.data import build_dataset
from ddkit.core.models import create_from_config
from ddkit.runs.store import write_text
from ddkit.runs.train import FIT_IMAGES
from ddkit.signals import mismatch
from ddkit.signals.dynamics import sample_batch
from ddkit.studies import study, sweep

IMAGES = mismatch.IMAGES
ENERGY = mismatch.ENERGY


def fit_batch(profile: Profile) -> torch.Tensor:
    """The un-augmented training images a student of ``profile`` fits its feature-target basis
    on (``runs.train.FIT_IMAGES`` of its training subset, its first seed)."""
    d = profile.student_config().data
    plain = build_dataset(d.name, "train", root=d.root, img_size=d.img_size,
                          subset=d.train_subset, seed=profile.seeds[0], augment=False)
    return torch.stack([plain[i][0] for i in range(min(FIT_IMAGES, len(plain)))])


def profile_mismatch(profile: Profile, layers: Iterable[str] = ("first", "last"),
                     n: int = IMAGES, energy: float = ENERGY) -> pd.DataFrame:
    """The mismatch of every setting of ``profile`` (its base and each sweep setting) at each
    layer map in ``layers``: rows (profile, setting, teacher, student, layers, ...pair_mismatch).
    The teacher is the setting's own (``study.teacher_model``: shipped, or its cached run); the
    student is the setting's architecture at initialisation: only its width is read (its own
    dimension would be an untrained student's, so it is left out). Images: ``n`` class-balanced test
    images (seed: the profile's first)."""
    rows = []
    for setting, variant in sweep.settings(profile).items():
        teacher_cfg, _ = study.teacher_model(variant, progress=False)
        teacher = create_from_config(teacher_cfg, checkpoint=teacher_cfg.checkpoint)
        student = create_from_config(variant.student.model)
        test_set = build_dataset(variant.data.name, "test", root=variant.data.root,
                                 img_size=variant.data.img_size)
        x, _ = sample_batch(test_set, n, seed=variant.seeds[0])
        rank = variant.distill.target_rank
        fit_images = fit_batch(variant) if rank is not None else None
        for spec in layers:
            table = mismatch.pair_mismatch(teacher, student, x, spec, energy, rank,
                                           fit_images).drop(columns="student_dim_followup")
            table.insert(0, "layers", spec)
            table.insert(0, "student", variant.student.model.name)
            table.insert(0, "teacher", teacher_cfg.name)
            table.insert(0, "setting", setting)
            table.insert(0, "profile", profile.name)
            rows.append(table)
    return pd.concat(rows, ignore_index=True)


def cached(profiles: Sequence[Profile], path: Path, recompute: bool) -> pd.DataFrame:
    """:func:`profile_mismatch` of each of ``profiles``, written to ``path`` when ``recompute``
    or when ``path`` is missing; else read from it."""
    if recompute or not path.is_file():
        table = pd.concat([profile_mismatch(p) for p in profiles], ignore_index=True)
        write_text(path, table.to_csv(index=False))
    return pd.read_csv(path)
