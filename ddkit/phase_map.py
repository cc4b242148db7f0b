"""The phase map (profile ``phase_map``; docs/design.md §11): where late feature alignment helps
and where it hurts, over task complexity × student width.

The profile is a grid (``ddkit.grid``): each sweep setting is one point of the map, a (teacher,
student width) pair with its SoftKD, SpectralKD-Last and ProjectorKD-Last students (and, where
alignment hurts, the remedies). Task complexity is the teacher's task: Fashion-MNIST, or its
2×2 mosaics labelled by 1 or 2 quadrants (``ddkit.mosaic``), one shipped teacher each.

    teachers(profile)   # train and ship every mosaic teacher the settings name (once)
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ddkit import grid, study
from ddkit.config import Profile
from ddkit.models import SHIPPED_TEACHERS


def teacher_settings(profile: Profile, only: Iterable[str] | None = None) -> dict[str, Profile]:
    """One setting per distinct teacher preset of ``profile`` (or of its settings ``only``) that
    the kit ships under the phase map's profile (the mosaic teachers): ``{teacher preset:
    setting's profile}``."""
    out = {}
    for name, variant in grid.settings(profile).items():
        teacher = variant.teacher.model.name
        shipped = SHIPPED_TEACHERS.get(teacher)
        if (only is None or name in only) and shipped is not None \
                and shipped.profile == profile.name:
            out.setdefault(teacher, variant)
    return out


def teachers(profile: Profile, only: Iterable[str] | None = None,
             progress: bool = True) -> dict[str, Path]:
    """Train each mosaic teacher of ``profile`` (or of its settings ``only``; cached, resumable)
    and ship it, unless the shipped record already holds the hash of its recipe (then nothing is
    trained). Returns ``{teacher preset: shipped weights}``."""
    return {name: study.train_and_ship(variant, variant.teacher_config(), progress)
            for name, variant in teacher_settings(profile, only).items()}
