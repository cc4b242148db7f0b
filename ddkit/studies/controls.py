"""The negative-transfer controls (profile ``controls``; docs/design.md §10): the runs that ask
where late feature alignment must hurt.

The profile is a grid (``ddkit.studies.grid``): its base distils from a self-supervised teacher
(``ddkit.core.mae``), and each setting of its ``sweep`` section changes the base by dotted keys and
names its own cells in ``cell_seeds``; a setting is compared with the base's SoftKD runs of the
same teacher when it has none of its own (the dose settings change only the feature loss).
This module adds what is the controls' own:

    teachers(profile)          # pre-train the MAE encoder, probe its head, ship both
"""
from __future__ import annotations

from pathlib import Path

from ddkit.core.config import ConfigError, Profile, replace
from ddkit.studies import study


def teachers(profile: Profile, progress: bool = True) -> dict[str, Path]:
    """Pre-train the profile's teacher as a masked autoencoder, fit its head with the profile's
    probe, and ship both (``ddkit/shipped/``); a teacher whose shipped record already holds its
    recipe's hash is not trained again. Returns ``{"encoder": weights, "probe": weights}``."""
    if profile.teacher.mae is None or profile.probe is None:
        raise ConfigError(f"profile {profile.name!r} needs teacher.mae and probe sections")
    encoder = study.train_and_ship(profile, profile.teacher_config(), progress)
    probed = replace(profile, **{"teacher.model": profile.probe.model})
    probe = study.train_and_ship(probed, profile.probe_config(encoder), progress)
    return {"encoder": encoder, "probe": probe}
