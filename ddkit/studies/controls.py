"""The negative-transfer controls (profile ``controls``; docs/design.md §10): the runs that ask
where late feature alignment must hurt.

The profile is a grid (``ddkit.studies.grid``): its base distils from a self-supervised teacher
(``ddkit.core.mae``), and each setting of its ``sweep`` section changes the base by dotted keys and
names its own cells in ``cell_seeds``; a setting is compared with the base's SoftKD runs of the
same teacher when it has none of its own (the dose settings change only the feature loss).
This module adds what is the controls' own:

    teachers(profile)          # the MAE encoder and its probed head: shipped, or trained
    teacher_recipe(profile, preset)   # the profile and run that make one of them (ship-teacher)
"""
from __future__ import annotations

from pathlib import Path

from ddkit.core.config import ConfigError, Profile, RunConfig, replace
from ddkit.studies import study


def _check(profile: Profile) -> None:
    if profile.teacher.mae is None or profile.probe is None:
        raise ConfigError(f"profile {profile.name!r} needs teacher.mae and probe sections")


def _probed(profile: Profile) -> Profile:
    """The profile as the probed teacher's owner: its teacher preset is the probe's."""
    return replace(profile, **{"teacher.model": profile.probe.model})


def teachers(profile: Profile, progress: bool = True, train: bool = True) -> dict[str, Path | None]:
    """``{preset: weights}`` of the profile's teacher pre-trained as a masked autoencoder and of
    its head fitted by the profile's probe: the shipped files when their records hold the
    recipes' hashes (nothing is trained), else the runs of the recipes in the run store, trained
    when missing (``train``; else None) and said in one line; ddkit/shipped/ is never written
    (``ddkit ship-teacher --profile controls [--teacher PRESET]`` ships them)."""
    _check(profile)
    encoder = study.teacher_weights(profile, profile.teacher_config(), progress, train)
    probe = None if encoder is None else study.teacher_weights(
        _probed(profile), profile.probe_config(encoder), progress, train, owner=profile)
    return {profile.teacher.model.name: encoder, profile.probe.model.name: probe}


def teacher_recipe(profile: Profile, preset: str, progress: bool = True
                   ) -> tuple[Profile, RunConfig] | None:
    """``(owner profile, run)`` that makes ``preset`` for this profile (the probe's run needs the
    encoder: shipped, or from the run store, trained if missing); None for another preset."""
    _check(profile)
    if preset == profile.teacher.model.name:
        return profile, profile.teacher_config()
    if preset == profile.probe.model.name:
        encoder = study.teacher_weights(profile, profile.teacher_config(), progress)
        return _probed(profile), profile.probe_config(encoder)
    return None
