"""Configs: profiles load, bad values fail before compute with the key and valid choices named."""
import pytest

from ddkit.core.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    config_hash,
    from_dict,
    load_profile,
    profile_names,
    replace,
    validate,
)
from ddkit.studies.sweep import settings
from tests.helpers import TINY_TEACHER, tiny_config


@pytest.mark.parametrize("name", ["smoke", "default", "extended", "paper"])
def test_profiles_load_and_produce_valid_runs(name):
    profile = load_profile(name)
    teacher = profile.teacher_config()
    assert teacher.name == f"{name}-teacher"
    student = profile.student_config(kd="soft", feature="spectral", layers="last",
                                     teacher=profile.distill.teacher or TINY_TEACHER)
    assert student.distill.kd == "soft" and student.distill.layers == "last"
    if name != "paper":   # the paper profile points at ImageNet, absent here
        validate(teacher)


def test_profile_names():
    assert {"smoke", "default", "paper"} <= set(profile_names())


def test_default_profile_states_its_recipe():
    p = load_profile("default")
    assert p.data.name == "fashion_mnist" and len(p.seeds) >= 3
    assert p.teacher.model.name == "ddkit_vit_teacher_fmnist"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*smoke"):
        load_profile("nope")


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(ConfigError, match=r"data\.batchsize.*valid keys.*batch_size"):
        from_dict(RunConfig, {"data": {"batchsize": 3}})


@pytest.mark.parametrize("data, key", [
    ({"seed": "zero"}, "seed"),
    ({"optim": {"epochs": 2.5}}, "optim.epochs"),
    ({"data": {"augment": 3}}, "data.augment"),
    ({"model": {"kwargs": [1]}}, "model.kwargs"),
])
def test_wrong_types_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(RunConfig, data)


@pytest.mark.parametrize("change, pattern", [
    ({"distill.kd": "medium"}, r"distill\.kd='medium'.*'none', 'soft', 'hard'"),
    ({"distill.feature": "fft"}, r"distill\.feature='fft'.*spectral"),
    ({"distill.layers": "middle", "distill.feature": "spectral"}, r"distill\.layers='middle'.*first_last"),
    ({"distill.layers": [[0, 9]], "distill.feature": "spectral"}, r"distill\.layers.*9"),
    ({"data.name": "mnist"}, r"data\.name='mnist'.*fashion_mnist"),
    ({"model.name": "vit_tiyn_patch16_224"}, r"model\.name.*vit_tiny_patch16_224"),
    ({"optim.lr": -1.0}, r"optim\.lr"),
    ({"distill.alpha": 1.5}, r"distill\.alpha"),
    ({"device": "tpu"}, r"device='tpu'.*cpu"),
])
def test_bad_values_fail_naming_key_and_choices(change, pattern):
    cfg = replace(tiny_config(kd="soft"), **change)
    with pytest.raises(ConfigError, match=pattern):
        validate(cfg)


def test_teacher_required_when_distilling():
    cfg = replace(tiny_config(), **{"distill.kd": "soft"})
    with pytest.raises(ConfigError, match="distill.teacher is required"):
        validate(cfg)


def test_missing_checkpoint_file_is_named(tmp_path):
    cfg = replace(tiny_config(), **{"model.checkpoint": str(tmp_path / "w.safetensors")})
    with pytest.raises(ConfigError, match=r"model\.checkpoint: no file at .*w\.safetensors"):
        validate(cfg)


def test_replace_checks_types():
    with pytest.raises(ConfigError, match="seed"):
        replace(tiny_config(), seed="1")


def test_hash_tracks_results_not_placement(tmp_path):
    cfg = tiny_config()
    assert config_hash(cfg) == config_hash(tiny_config())
    assert config_hash(cfg) != config_hash(replace(cfg, seed=4))
    assert config_hash(cfg) == config_hash(replace(cfg, device="cuda"))
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"same weights")
    b.write_bytes(b"same weights")
    with_a = replace(cfg, model=ModelConfig(name=cfg.model.name, checkpoint=str(a)))
    with_b = replace(cfg, model=ModelConfig(name=cfg.model.name, checkpoint=str(b)))
    assert config_hash(with_a) == config_hash(with_b)      # weights content, not path
    b.write_bytes(b"other weights")
    assert config_hash(with_a) != config_hash(with_b)


def test_profile_overrides_are_validated():
    p = load_profile("smoke", **{"teacher.optim.epochs": 1})
    assert p.teacher_config().optim.epochs == 1
    with pytest.raises(ConfigError, match="epochs"):
        load_profile("smoke", **{"teacher.optim.epochs": "1"})
    assert isinstance(p.data, DataConfig)


def test_sweep_settings_are_checked_when_the_profile_loads(tmp_path):
    p = load_profile("default")
    variants = settings(p)
    assert variants["default pair"] is p and len(variants) == 1 + len(p.sweep)
    assert variants["wider gap (student 32-dim)"].student.model.kwargs["embed_dim"] == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep:\n  typo: {student.optim.epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"sweep\.typo: unknown key 'student\.optim\.epoch'"):
        load_profile(bad)


def test_each_profile_names_its_own_setting_by_what_it_is(tmp_path):
    """``base_name``: the profile itself as a setting in tables and figures, never a bare "base";
    not part of any run's hash, and never a sweep setting's name."""
    for name in profile_names():
        p = load_profile(name)
        assert p.base_name and p.own_setting == p.base_name, name
        assert p.own_setting.lower() != "base" and p.own_setting not in p.sweep, name
    p = load_profile("controls")
    assert p.own_setting == "MAE teacher, head untrained"
    assert load_profile("controls", base_name="x").student_config() == p.student_config()
    assert load_profile("smoke", base_name="").own_setting == "smoke profile"
    with pytest.raises(ConfigError, match="base_name='longer \\(3 epochs\\)' is also a sweep"):
        load_profile("smoke", base_name="longer (3 epochs)")


def test_cell_seeds_override_the_profile_seeds_for_their_cell():
    profile = load_profile("smoke", cell_seeds={"SoftKD": [0, 1, 2]})
    assert profile.seeds_for("SoftKD") == [0, 1, 2]
    assert profile.seeds_for("no-KD") == profile.seeds


@pytest.mark.parametrize("cell_seeds,message", [
    ({"Soft": [0]}, "cell_seeds: unknown cell"),
    ({"SoftKD": []}, "cell_seeds.SoftKD"),
    ({"SoftKD": [1, 1]}, "lists a seed twice"),
])
def test_bad_cell_seeds_are_refused(cell_seeds, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", cell_seeds=cell_seeds)


# --------------------------------------------------------------------------- issue 26


def _with_kwargs():
    """The smoke profile with a student whose kwargs and teacher data both hold two keys."""
    return replace(load_profile("smoke"), **{
        "student.model.kwargs": {"embed_dim": 48, "num_classes": 10},
        "teacher.data": {"train_subset": None, "augment": True}})


@pytest.mark.parametrize("key, value, dotted", [
    ("student.model.kwargs", {"embed_dim": 16}, {"student.model.kwargs.embed_dim": 16}),
    ("teacher.data", {"train_subset": 256}, {"teacher.data.train_subset": 256}),
    ("analysis", {"n_images": 20}, {"analysis.n_images": 20}),
])
def test_a_mapping_override_merges_into_a_plain_dict_field_as_dotted_keys_do(key, value, dotted):
    base = _with_kwargs()
    merged, by_dots = replace(base, **{key: value}), replace(base, **dotted)
    assert merged == by_dots
    got, before = merged, base
    for part in key.split("."):
        got, before = getattr(got, part), getattr(before, part)
    assert got == {**before, **value} and len(got) > len(value)


def test_a_whole_mapping_override_keeps_the_teachers_augmentation_and_the_students_classes():
    base = load_profile("phase_map")
    out = load_profile("phase_map", **{"teacher.data": {"train_subset": 256}})
    data = out.teacher_config().data
    assert data.train_subset == 256 and data.augment is True and data.eval_subset is None
    assert base.teacher.data == {"train_subset": None, "eval_subset": None, "augment": True}
    mosaic = settings(base)["mosaic K=100, width 16"]
    narrower = replace(mosaic, **{"student.model.kwargs": {"embed_dim": 8}})
    assert narrower.student.model.kwargs == {"embed_dim": 8, "num_classes": 100}


def test_a_mapping_given_to_cell_seeds_names_the_whole_selection():
    profile = load_profile("controls")
    assert replace(profile, cell_seeds={"SoftKD": [0]}).cell_seeds == {"SoftKD": [0]}


def test_the_committed_grid_runs_keep_their_hashes():
    """Every run the committed tables of the grid profiles hold is still one the profile plans
    (same config, same hash): a change to the override semantics or the profiles moved none."""
    import pandas as pd

    from ddkit.runs.store import figure_dir
    from ddkit.studies import grid
    for name in ("phase_map", "controls"):
        committed = set(pd.read_csv(figure_dir(name) / "runs.csv")["run"])
        assert committed <= set(grid.names(load_profile(name))), name


@pytest.mark.parametrize("name", ["../../../tmp/x", "/tmp/abs", "a/b", "..", ".", ".hidden",
                                  "", "a\\b", "tab\there", "x" * 101])
def test_a_name_that_is_not_one_safe_path_component_is_refused(name, tmp_path):
    with pytest.raises(ConfigError, match=r"^name=.*one (file|folder) name"):
        load_profile("smoke", name=name)
    path = tmp_path / "p.yaml"
    path.write_text(f"name: {name!r}\n" if name else "name: ''\n")
    with pytest.raises(ConfigError, match=r"^name="):
        load_profile(path)
    with pytest.raises(ConfigError, match=r"^name="):
        validate(replace(tiny_config(), name=name))


@pytest.mark.parametrize("embed_dim", [15, 0, -4])
def test_a_width_the_heads_do_not_divide_or_not_positive_is_a_config_error(embed_dim):
    key = "student.model.kwargs.embed_dim"
    with pytest.raises(ConfigError, match=rf"student\.model\.kwargs=.*embed_dim.*{embed_dim}"):
        load_profile("smoke", **{key: embed_dim})
    with pytest.raises(ConfigError, match=r"model\.kwargs="):
        validate(replace(tiny_config(), **{"model.kwargs.embed_dim": embed_dim}))


def test_a_sweep_setting_whose_model_cannot_be_built_is_refused_at_load(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sweep:\n  narrow: {student.model.kwargs: {embed_dim: 15}}\n")
    with pytest.raises(ConfigError, match=r"sweep\.narrow: student\.model\.kwargs=.*15"):
        load_profile(path)
