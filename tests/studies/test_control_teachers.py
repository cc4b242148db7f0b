"""ddkit.studies.controls: the controls' two teachers (the MAE encoder and its probed head), read
from ddkit/shipped/ when their records hold the recipes' hashes; nothing is trained here."""
from __future__ import annotations

import pytest

from ddkit.core.config import ConfigError, load_profile
from ddkit.core.models import shipped_teacher
from ddkit.studies import controls, study


def test_the_shipped_encoder_and_probe_are_the_teachers_with_no_training(monkeypatch):
    monkeypatch.setattr(study, "train", lambda *a, **k: pytest.fail("nothing is trained"))
    profile = load_profile("controls")
    got = controls.teachers(profile, progress=False, train=False)
    encoder, probe = profile.teacher.model.name, profile.probe.model.name
    assert list(got) == [encoder, probe]
    assert got[encoder] == shipped_teacher(encoder).weights
    assert got[probe] == shipped_teacher(probe).weights


def test_each_preset_has_its_recipe_and_another_has_none():
    profile = load_profile("controls")
    owner, run = controls.teacher_recipe(profile, profile.teacher.model.name, progress=False)
    assert owner is profile and run == profile.teacher_config()
    owner, run = controls.teacher_recipe(profile, profile.probe.model.name, progress=False)
    assert owner.teacher.model == profile.probe.model
    assert run == profile.probe_config(shipped_teacher(profile.teacher.model.name).weights)
    assert controls.teacher_recipe(profile, "ddkit_vit_teacher_fmnist") is None


def test_a_profile_without_mae_and_probe_is_refused():
    with pytest.raises(ConfigError, match="needs teacher.mae and probe"):
        controls.teachers(load_profile("default"), train=False)
    with pytest.raises(ConfigError, match="needs teacher.mae and probe"):
        controls.teacher_recipe(load_profile("default"), "x")
