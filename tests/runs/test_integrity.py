"""Inputs that used to give a wrong result with exit 0 (or a bare traceback): a grid that drops
pixels, a mapping override that reset its section, a dotted key into a value, a cache hit on
foreign weights or an edited config, two trainers on one run, and the minor cases. Each bad
input now ends in one ``error:`` line naming the fix, and nothing computed before is changed."""
import argparse
import dataclasses
import functools
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ddkit.runs.train as train_mod
from ddkit import cli
from ddkit.core.config import ConfigError, Profile, load_profile, replace
from ddkit.core.models import create_model
from ddkit.runs.store import RunBusyError, RunDir, RunFileError, run_lock
from ddkit.runs.train import train
from tests.helpers import interrupted_at_epoch, tiny_config


def _digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(args, capsys):
    code = cli.main(args)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- 1. the patch grid


@pytest.mark.parametrize("kwargs", [{"img_size": 30}, {"img_size": 32, "patch_size": 5}])
def test_an_image_size_the_patch_does_not_divide_is_refused(kwargs):
    with pytest.raises(ValueError, match=r"not divisible by the patch size .*img_size="):
        create_model("vit_tiny_patch16_224", depth=2, **kwargs)


def test_analyze_refuses_a_grid_that_drops_pixels_before_any_compute(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr("ddkit.publish.report.build_dataset",
                        lambda *a, **k: pytest.fail("data loaded for a bad grid"))
    code, err = _cli(["analyze", "vit_tiny_patch16_224", "--model-arg", "img_size=30",
                      "--model-arg", "depth=2", "--n", "4", "--no-figures",
                      "--out", str(tmp_path / "out")], capsys)
    assert code == cli.EXIT_USAGE and err.count("error:") == 1 and "30" in err
    code, err = _cli(["analyze", "vit_tiny_patch16_224", "--model-arg", "img_size=32",
                      "--model-arg", "depth=2", "--model-arg", "dynamic_img_size=true",
                      "--img-size", "30", "--n", "4", "--no-figures",
                      "--out", str(tmp_path / "out")], capsys)
    assert code == cli.EXIT_USAGE and "not divisible by the patch size 16" in err
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_data_size_the_patch_does_not_divide(runs_dir):
    cfg = replace(tiny_config(), **{"data.img_size": 30})
    with pytest.raises(ConfigError, match=r"data.img_size=30 is not divisible by the patch size 4"):
        train(cfg, progress=False)
    assert not RunDir.for_config(cfg).path.exists()


# --------------------------------------------------------------------------- 2.-3. overrides


def test_a_mapping_override_merges_into_its_section():
    smoke = load_profile("smoke")
    merged = replace(smoke, data={"name": "fashion_mnist"})
    assert merged.data == smoke.data
    assert replace(smoke, data={"batch_size": 7}).data.train_subset == smoke.data.train_subset
    run = replace(smoke.student_config(), optim={"epochs": 3})
    assert run.optim.lr == smoke.student.optim.lr and run.optim.epochs == 3


def test_a_mapping_override_in_the_cli_keeps_the_profile_section():
    args = argparse.Namespace(profile="smoke", overrides=["data={name: fashion_mnist}"])
    assert cli._profile(args).data == load_profile("smoke").data


@pytest.mark.parametrize("key", ["student.optim.lr.x", "data.name.x", "seeds.x",
                                 "student.model.name.y"])
def test_a_dotted_key_into_a_value_is_a_config_error(key):
    with pytest.raises(ConfigError, match=rf"{key.rsplit('.', 1)[0]}=.* is not a section"):
        replace(load_profile("smoke"), **{key: 1})


def test_a_dotted_key_into_an_unset_section_starts_from_its_defaults():
    profile = replace(load_profile("smoke"), **{"distill.teacher.name": "deit_tiny_patch16_224"})
    assert profile.distill.teacher.name == "deit_tiny_patch16_224"
    assert profile.distill.teacher.kwargs == {}


def test_cli_dotted_key_into_a_value_is_one_error_line(capsys):
    code, err = _cli(["train", "--profile", "smoke", "--set", "seeds.x=1"], capsys)
    assert code == cli.EXIT_USAGE and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


_KEYS = ["data", "data.train_subset", "data.batch_size", "data.name", "data.augment",
         "student", "student.optim", "student.optim.lr", "student.optim.epochs",
         "student.model", "student.model.name", "student.model.kwargs",
         "student.model.kwargs.depth", "teacher.optim.epochs", "distill", "distill.alpha",
         "distill.teacher", "distill.teacher.name", "distill.layers", "seeds", "cell_seeds",
         "cell_seeds.SoftKD", "save_every", "device", "analysis", "nosuch", "data.nosuch",
         "seeds.x", "device.x", "student.optim.lr.x",
         # the plain-dict fields: a mapping merges into them as into a dataclass section
         "teacher.data", "teacher.data.train_subset", "student.data", "teacher.model.kwargs",
         "teacher.model.kwargs.embed_dim", "student.model.kwargs.num_heads", "analysis.n_images"]
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 50), st.floats(-1, 10, allow_nan=False),
              st.sampled_from(["", "x", "fashion_mnist", "cpu", "first", "soft", "true"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["name", "lr", "epochs", "depth",
                                                             "x", "batch_size", "train_subset",
                                                             "augment", "embed_dim",
                                                             "num_heads", "n_images"]), inner,
                                            max_size=3)),
    max_leaves=6)


@functools.lru_cache(maxsize=1)
def _override_base() -> Profile:
    """The smoke profile with every plain-dict field holding keys an override could drop."""
    return replace(load_profile("smoke"), **{
        "student.model.kwargs": {"depth": 2, "num_heads": 2},
        "teacher.model.kwargs": {"embed_dim": 64, "depth": 4},
        "teacher.data": {"augment": True, "train_subset": None},
        "student.data": {"eval_subset": 100}})


def _get(obj, key: str):
    for part in key.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _same(got, value) -> bool:
    return got == value or (isinstance(got, float) and not isinstance(value, (dict, list, str))
                            and value is not None and got == float(value)) \
        or (isinstance(got, tuple) and list(got) == value)


def _whole(owner, key: str) -> bool:
    """Whether ``key`` of ``owner`` (a dataclass) is a WHOLE field: a mapping replaces it."""
    return dataclasses.is_dataclass(owner) and any(
        f.name == key and f.metadata.get("whole") for f in dataclasses.fields(owner))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(_KEYS), _VALUES, min_size=1, max_size=3))
def test_override_parser_gives_a_profile_or_a_config_error(changes):
    """Any dotted keys and values: a Profile whose overridden leaves hold what was asked, or a
    ConfigError; never another exception, never a silent reset of a section: a mapping merges
    into a dataclass section and a plain-dict field alike (``RoleConfig.data``,
    ``ModelConfig.kwargs``), keeping every key it does not name, as dotted keys do."""
    base = _override_base()
    try:
        out = replace(base, **changes)
    except ConfigError:
        return
    assert isinstance(out, Profile)
    for key, value in changes.items():
        if any(k != key and k.startswith(key + ".") for k in changes):
            continue      # a section and a key inside it: the later one wins, by design
        if any(key.startswith(k + ".") for k in changes):
            continue      # inside a section another change gives whole
        got = _get(out, key)
        if not isinstance(value, dict):
            assert _same(got, value), (key, got, value)
            continue
        parent, _, leaf = key.rpartition(".")
        try:
            before = _get(base, key)
        except (KeyError, AttributeError):
            continue      # a key the base does not hold: set from nothing
        if _whole(_get(base, parent) if parent else base, leaf) or before is None:
            continue      # a selection named whole, or a section set from its defaults
        if not (isinstance(before, dict) or dataclasses.is_dataclass(before)):
            assert got == value, (key, got, value)    # a value inside a plain dict: replaced
            continue
        for name, leaf_value in value.items():    # every key the mapping names holds its value
            if not isinstance(leaf_value, dict):
                assert _same(_get(got, name), leaf_value), (key, name, got, leaf_value)
        kept = list(before) if isinstance(before, dict) else [
            f.name for f in dataclasses.fields(before)]
        for name in kept:                          # and every key it does not name is kept
            if name not in value:
                assert _same(_get(got, name), _get(before, name)), (key, name, got, before)
    for section in ("data", "student", "teacher"):
        if not any(k == section or k.startswith(section + ".") for k in changes):
            assert getattr(out, section) == getattr(base, section)


# --------------------------------------------------------------------------- 4. cache hits


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    cfg, other = tiny_config(epochs=1), replace(tiny_config(epochs=1), seed=4)
    return cfg, train(cfg, progress=False, root=root).dir.path, \
        train(other, progress=False, root=root).dir.path


def _copied(two_runs, runs_dir):
    cfg, source, other = two_runs
    target = RunDir.for_config(cfg, runs_dir)
    shutil.copytree(source, target.path)
    return cfg, target, other


def test_a_run_records_the_digests_of_its_config_and_final_weights(two_runs):
    _, source, _ = two_runs
    summary = json.loads((source / "summary.json").read_text())
    assert summary["config_sha256"] == hashlib.sha256((source / "config.json").read_bytes()
                                                      ).hexdigest()
    assert summary["weights_sha256"] == hashlib.sha256(
        (source / "model.safetensors").read_bytes()).hexdigest()


def test_foreign_final_weights_are_no_cache_hit(two_runs, runs_dir, monkeypatch):
    cfg, target, other = _copied(two_runs, runs_dir)
    shutil.copyfile(other / "model.safetensors", target.final_weights)
    before = _digests(target.path)
    monkeypatch.setattr(train_mod, "build_dataset",
                        lambda *a, **k: pytest.fail("data loaded for a damaged run"))
    with pytest.raises(RunFileError, match=r"model.safetensors: its digest .* differs .* "
                                           r"Remove the run folder"):
        train(cfg, progress=False)
    assert _digests(target.path) == before


@pytest.mark.parametrize("edit", [("model", "name", "ddkit_vit_teacher_fmnist"),
                                  ("optim", "epochs", 9)])
def test_an_edited_config_json_is_no_cache_hit(two_runs, runs_dir, edit):
    cfg, target, _ = _copied(two_runs, runs_dir)
    data = json.loads(target.config.read_text())
    section, key, value = edit
    data["config"][section][key] = value
    target.config.write_text(json.dumps(data))
    before = _digests(target.path)
    with pytest.raises(RunFileError, match=r"config.json: .*(edited|differs)"):
        train(cfg, progress=False)
    assert _digests(target.path) == before


DIGESTS = ("config_sha256", "weights_sha256", "log_sha256", "kept_sha256", "summary_sha256")


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused_unchanged(cfg, target, pattern, monkeypatch=None):
    """A cache hit on ``target`` is refused with ``pattern``, before any compute, and nothing in
    the run folder is changed."""
    before = _digests(target.path)
    if monkeypatch is not None:
        monkeypatch.setattr(train_mod, "build_dataset",
                            lambda *a, **k: pytest.fail("data loaded for a damaged run"))
    with pytest.raises(RunFileError, match=pattern):
        train(cfg, progress=False)
    assert _digests(target.path) == before


def _as_legacy(target):
    """The run's summary.json as a run from before the digests wrote it (no digests at all)."""
    summary = json.loads(target.summary.read_text())
    target.summary.write_text(json.dumps({k: v for k, v in summary.items() if k not in DIGESTS}))


def test_a_run_records_the_digests_of_its_log_and_every_kept_weights_file(two_runs):
    _, source, _ = two_runs
    summary = json.loads((source / "summary.json").read_text())
    assert summary["log_sha256"] == _sha(source / "metrics.jsonl")
    kept = sorted((source / "weights").glob("epoch_*.safetensors"))
    assert kept and summary["kept_sha256"] == {p.name: _sha(p) for p in kept}


def test_a_foreign_log_is_no_cache_hit(two_runs, runs_dir, monkeypatch):
    cfg, target, other = _copied(two_runs, runs_dir)
    shutil.copyfile(other / "metrics.jsonl", target.log)
    _refused_unchanged(cfg, target, r"metrics.jsonl: its digest .* differs .* Remove the run "
                                    r"folder", monkeypatch)


def test_foreign_kept_weights_are_no_cache_hit(two_runs, runs_dir, monkeypatch):
    cfg, target, other = _copied(two_runs, runs_dir)
    shutil.copyfile(other / "weights" / "epoch_0000.safetensors", target.epoch_weights(0))
    _refused_unchanged(cfg, target, r"epoch_0000.safetensors: its digest .* differs",
                       monkeypatch)


def test_an_added_epoch_weights_file_is_no_cache_hit(two_runs, runs_dir, monkeypatch):
    cfg, target, other = _copied(two_runs, runs_dir)
    shutil.copyfile(other / "weights" / "epoch_0000.safetensors", target.epoch_weights(3))
    _refused_unchanged(cfg, target, r"epoch_0003.safetensors: not in the run's record",
                       monkeypatch)


def test_a_missing_epoch_weights_file_is_no_cache_hit(two_runs, runs_dir):
    cfg, target, _ = _copied(two_runs, runs_dir)
    target.epoch_weights(0).unlink()
    _refused_unchanged(cfg, target, r"epoch_0000.safetensors: missing")


@pytest.mark.parametrize("cut", ["drop", "add"])
def test_a_log_whose_records_are_not_the_runs_epochs_is_no_cache_hit(two_runs, runs_dir, cut):
    """Even for a run from before the log digest (the count is checked on its own): the log
    holds exactly one record per epoch, 0 .. epochs-1."""
    cfg, target, _ = _copied(two_runs, runs_dir)
    _as_legacy(target)
    lines = target.log.read_text().splitlines(keepends=True)
    extra = json.dumps({**json.loads(lines[-1]), "epoch": 1}) + "\n"
    target.log.write_text("" if cut == "drop" else "".join(lines) + extra)
    _refused_unchanged(cfg, target, r"metrics.jsonl: holds epochs \[.*\] for a run of 1 "
                                    r"epoch")


def test_an_interrupted_run_whose_log_was_deleted_is_refused_before_compute(runs_dir,
                                                                            monkeypatch):
    cfg = tiny_config(epochs=3)
    with interrupted_at_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    target = RunDir.for_config(cfg)
    target.log.unlink()
    _refused_unchanged(cfg, target, r"metrics.jsonl: .*epochs 0..1 .* checkpoint.*Remove the "
                                    r"run folder", monkeypatch)


def test_an_edited_final_acc1_in_summary_json_is_no_cache_hit(two_runs, runs_dir):
    cfg, target, _ = _copied(two_runs, runs_dir)
    summary = json.loads(target.summary.read_text())
    target.summary.write_text(json.dumps({**summary, "final_acc1": 99.9}))
    _refused_unchanged(cfg, target, r"summary.json: .*(edited|differs)")
    _as_legacy(target)               # without its digests: the log still says otherwise
    _refused_unchanged(cfg, target, r"summary.json: final_acc1 99.9 .* metrics.jsonl")


def test_removed_digests_and_swapped_weights_are_no_cache_hit(two_runs, runs_dir):
    cfg, target, other = _copied(two_runs, runs_dir)
    _as_legacy(target)
    shutil.copyfile(other / "model.safetensors", target.final_weights)
    _refused_unchanged(cfg, target, r"model.safetensors: the final weights differ from epoch_0000")


# --------------------------------------------------------------------------- 5. one trainer


def test_a_locked_run_is_refused_with_no_wait(runs_dir):
    cfg = tiny_config(epochs=1)
    run_dir = RunDir.for_config(cfg)
    with run_lock(run_dir, wait=False):
        with pytest.raises(RunBusyError, match=r"another process .* --no-wait"):
            train(cfg, progress=False, wait=False)
    assert not run_dir.summary.exists()


def test_a_second_trainer_waits_then_takes_the_cache_hit(runs_dir, monkeypatch):
    cfg = tiny_config(epochs=1)
    epochs = []
    real = train_mod._train_epoch
    monkeypatch.setattr(train_mod, "_train_epoch",
                        lambda *a, **k: (epochs.append(1), time.sleep(0.5), real(*a, **k))[2])
    first = threading.Thread(target=train, args=(cfg,), kwargs={"progress": False})
    first.start()
    while not RunDir.for_config(cfg).config.exists():
        time.sleep(0.05)
    second = train(cfg, progress=False)           # waits on the lock, then reads the cache
    first.join()
    assert second.dir.is_complete and len(epochs) == 1


def test_a_lock_left_by_a_killed_process_is_taken_over(runs_dir):
    cfg = tiny_config(epochs=1)
    run_dir = RunDir.for_config(cfg)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from ddkit.runs.store import RunDir, run_lock\n"
        f"with run_lock(RunDir(Path({str(run_dir.path)!r})), wait=False):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert train(cfg, progress=False, wait=False).dir.is_complete


# --------------------------------------------------------------------------- 6. the minor ones


def test_an_unfinished_run_with_a_garbage_config_is_not_rewritten(runs_dir, monkeypatch):
    cfg = tiny_config(epochs=2)
    with interrupted_at_epoch(monkeypatch, 1), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    run_dir = RunDir.for_config(cfg)
    run_dir.config.write_text("{not json")
    with pytest.raises(RunFileError, match="config.json: unreadable"):
        train(cfg, progress=False)
    assert run_dir.config.read_text() == "{not json"


def test_a_failed_start_leaves_no_folder(runs_dir, monkeypatch):
    cfg = tiny_config(epochs=1)
    with interrupted_at_epoch(monkeypatch, 0), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert not RunDir.for_config(cfg).path.exists()


def test_a_model_whose_blocks_drop_the_class_token_is_refused_with_the_fix(tmp_path, capsys):
    code, err = _cli(["analyze", "convit_tiny", "--model-arg", "depth=2",
                      "--model-arg", "local_up_to_layer=1", "--n", "4", "--no-figures",
                      "--out", str(tmp_path / "out")], capsys)
    assert code == cli.EXIT_USAGE and "pick a model whose every block" in err


def test_an_unknown_model_exits_the_same_in_analyze_and_train(tmp_path, capsys):
    analyze, _ = _cli(["analyze", "nosuchmodel", "--n", "4", "--out", str(tmp_path)], capsys)
    trained, _ = _cli(["train", "--profile", "smoke", "--set", "student.model.name=nosuchmodel"],
                      capsys)
    assert analyze == trained == cli.EXIT_USAGE
