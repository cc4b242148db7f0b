"""The failure modes a new user's probing found: each silent or bare failure now has a clear
error naming what was wrong and the fix, and nothing computed is overwritten."""
import errno
import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import ddkit.runs.train as train_mod
from ddkit.core.anatomy import NotViTLikeError
from ddkit.core.config import ConfigError, load_profile
from ddkit.core.hooks import FeatureRecorder, block_features
from ddkit.core.models import WeightsFileError, create_model
from ddkit.runs.store import RunDir, RunFileError, check_safetensors
from ddkit.runs.train import load_run, train
from tests.helpers import interrupted_at_epoch, tiny_config

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- feature grids


def test_dynamic_img_size_grid_follows_the_input():
    model = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=2, num_classes=10,
                              dynamic_img_size=True).eval()
    x = torch.randn(2, 3, 96, 96)                               # 6x6 patches + 1 class token
    ours = block_features(model, x)
    _, theirs = model.forward_intermediates(x, indices=[0, 1], norm=False, output_fmt="NCHW")
    assert ours.shape == (2, 2, 192, 6, 6)
    torch.testing.assert_close(ours, torch.stack(theirs), rtol=0, atol=0)


@pytest.mark.parametrize("name, kwargs", [
    ("xcit_nano_12_p16_224", {"depth": 2}),
    ("efficientnet_b0", {}),
    ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1)}),
])
def test_non_vits_are_refused_clearly(name, kwargs):
    model = timm.create_model(name, **kwargs)
    with pytest.raises(NotViTLikeError, match=r"is not a timm ViT-like model \(.*\); ddkit "
                                              r"needs one such as VisionTransformer"):
        with FeatureRecorder(model):
            pass


# --------------------------------------------------------------------------- damaged run files


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished tiny run (1 epoch), copied by each test that damages it."""
    root = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(epochs=1)
    return cfg, train(cfg, progress=False, root=root).dir.path


def _copy_run(finished_run, runs_dir):
    cfg, source = finished_run
    target = RunDir.for_config(cfg, runs_dir)
    shutil.copytree(source, target.path)
    return cfg, target


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path.read_bytes()


def _no_compute(monkeypatch):
    monkeypatch.setattr(train_mod, "build_dataset",
                        lambda *a, **k: pytest.fail("data loaded for a damaged run"))


def test_truncated_checkpoint_names_the_file_and_the_fix(runs_dir, monkeypatch):
    cfg = tiny_config(epochs=3)
    run_dir = RunDir.for_config(cfg, runs_dir)
    run_dir.path.mkdir(parents=True)
    torch.save({"trainable": {}, "epoch": 0}, run_dir.checkpoint)
    damaged = _truncate(run_dir.checkpoint)
    _no_compute(monkeypatch)
    with pytest.raises(RunFileError, match=rf"{run_dir.checkpoint}: unreadable checkpoint.*"
                                           rf"Remove the run folder {run_dir.path}.*--force"):
        train(cfg, progress=False)
    assert run_dir.checkpoint.read_bytes() == damaged          # nothing overwritten
    assert not run_dir.config.exists()


def test_truncated_model_safetensors_is_no_cache_hit(finished_run, runs_dir, monkeypatch):
    cfg, run_dir = _copy_run(finished_run, runs_dir)
    damaged = _truncate(run_dir.final_weights)
    _no_compute(monkeypatch)
    with pytest.raises(RunFileError, match=rf"{run_dir.final_weights}: unreadable weights file.*"
                                           r"Remove the run folder"):
        train(cfg, progress=False)
    assert run_dir.final_weights.read_bytes() == damaged
    with pytest.raises(WeightsFileError, match=rf"{run_dir.final_weights}: unreadable"):
        load_run(run_dir.path).load_model()


def test_truncated_kept_weights_are_found_by_the_cache_check(finished_run, runs_dir):
    cfg, run_dir = _copy_run(finished_run, runs_dir)
    kept = run_dir.epoch_weights(0)
    _truncate(kept)
    with pytest.raises(RunFileError, match=rf"{kept}: unreadable weights file"):
        train(cfg, progress=False)


def test_broken_config_json_names_the_file(finished_run, runs_dir):
    cfg, run_dir = _copy_run(finished_run, runs_dir)
    run_dir.config.write_text('{"hash": "abc", "config": {')
    with pytest.raises(RunFileError, match=rf"{run_dir.config}: unreadable \(JSONDecodeError.*"
                                           r"Remove the run folder"):
        load_run(run_dir.path)
    with pytest.raises(RunFileError, match=rf"{run_dir.config}: unreadable"):
        train(cfg, progress=False)
    assert run_dir.config.read_text() == '{"hash": "abc", "config": {'
    with pytest.raises(RunFileError, match="is not a ddkit run folder: it has no config.json"):
        load_run(runs_dir)


def test_broken_summary_json_names_the_file(finished_run, runs_dir):
    cfg, run_dir = _copy_run(finished_run, runs_dir)
    run_dir.summary.write_text("{")
    with pytest.raises(RunFileError, match=rf"{run_dir.summary}: unreadable"):
        train(cfg, progress=False)


def test_truncated_teacher_cache_names_the_file(tmp_path):
    from ddkit.runs.teacher_cache import load_or_compute
    path = tmp_path / "teacher-cache" / "key.pt"
    path.parent.mkdir()
    torch.save({"logits": torch.zeros(8, 10), "feats": {"0": torch.zeros(8, 4, 2, 2)}}, path)
    teacher = create_model("ddkit_vit_student_fmnist", depth=1)
    data = [(torch.zeros(1, 28, 28), 0)] * 8
    outputs = load_or_compute(path, teacher, data, [0], torch.device("cpu"))
    assert outputs.logits.shape == (8, 10)                       # a whole file is read back
    with pytest.raises(RunFileError, match=rf"{path}: teacher cache does not fit.*9 images.*"
                                           r"block 3 missing.*delete"):
        load_or_compute(path, teacher, data + data[:1], [0, 3], torch.device("cpu"))
    damaged = _truncate(path)
    with pytest.raises(RunFileError, match=rf"{path}: unreadable teacher cache.*delete {path}"):
        load_or_compute(path, teacher, data, [0], torch.device("cpu"))
    assert path.read_bytes() == damaged


def test_truncated_weights_file_for_create_model(tmp_path):
    from ddkit.runs.store import save_weights
    path = tmp_path / "w.safetensors"
    save_weights(path, create_model("ddkit_vit_student_fmnist", depth=1).state_dict())
    with pytest.raises(WeightsFileError, match=rf"{path}: does not fit VisionTransformer"):
        create_model("ddkit_vit_student_fmnist", depth=2, checkpoint=path)
    _truncate(path)
    with pytest.raises(WeightsFileError, match=rf"{path}: unreadable weights file"):
        create_model("ddkit_vit_student_fmnist", depth=1, checkpoint=path)


# --------------------------------------------------------------------------- profile keys


def _profile(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text("data: {name: fashion_mnist}\n"
                    "teacher: {model: {name: ddkit_vit_teacher_fmnist}}\n"
                    "student: {model: {name: ddkit_vit_student_fmnist}}\n"
                    "device: cpu\n" + text)
    return path


def test_analysis_typo_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"analysis\.n_imgs.*valid keys of analysis.*n_images"):
        load_profile(_profile(tmp_path, "analysis: {n_imgs: 50}\n"))
    with pytest.raises(ConfigError, match=r"analysis\.n_images: expected an integer"):
        load_profile(_profile(tmp_path, "analysis: {n_images: many}\n"))
    assert load_profile(_profile(tmp_path, "analysis: {n_images: 50}\n")).analysis == {"n_images": 50}
    with pytest.raises(ConfigError, match=r"analysis\.early_epoch"):   # read by nothing since
        load_profile(_profile(tmp_path, "analysis: {early_epoch: 1}\n"))   # C5 follows the schedule


def test_profile_distill_layers_are_range_checked_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"distill\.layers: teacher block index 9 out of range "
                                          r"for 8 blocks"):
        load_profile(_profile(tmp_path, "distill: {feature: spectral, layers: [[0, 9]]}\n"))
    with pytest.raises(ConfigError, match=r"distill\.layers='first'.*needs distill\.feature"):
        load_profile(_profile(tmp_path, "distill: {layers: first}\n"))


def test_profile_role_keys_are_checked_at_load(tmp_path):
    path = tmp_path / "roles.yaml"
    path.write_text("teacher: {model: {name: ddkit_vit_teacher_fmnist}, data: {batchsize: 3}}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['teacher\.data\.batchsize'\]"):
        load_profile(path)
    path.write_text("student: {model: {name: ddkit_vit_student_fmnist, kwargs: {dept: 2}}}\n")
    with pytest.raises(ConfigError, match=r"student\.model\.kwargs=\{'dept': 2\}.*dept"):
        load_profile(path)


class Captured(Exception):
    """Carries the config ``train`` was called with, instead of training it."""


def test_profile_distill_recipe_is_what_train_trains(tmp_path, monkeypatch):
    from ddkit import cli

    def capture(cfg, **kwargs):
        raise Captured(cfg)
    monkeypatch.setattr(cli, "train", capture)            # the CLI imports train at its top
    path = _profile(tmp_path, "teacher_source: shipped\n"
                              "distill: {feature: spectral, layers: [[0, 7]]}\n")
    with pytest.raises(Captured) as caught:
        cli.main(["train", "--profile", str(path)])
    d = caught.value.args[0].distill
    assert (d.kd, d.feature, d.layers) == ("soft", "spectral", [[0, 7]])
    with pytest.raises(Captured) as caught:                   # the command line still wins
        cli.main(["train", "--profile", str(path), "--feature", "none", "--layers", "none"])
    d = caught.value.args[0].distill
    assert (d.kd, d.feature, d.layers) == ("soft", "none", "none")


# --------------------------------------------------------------------------- analysis


def test_recorder_leaves_the_model_as_found():
    model = create_model("ddkit_vit_student_fmnist", depth=2)
    with FeatureRecorder(model, gradients=True) as rec:
        model(torch.randn(2, 1, 28, 28)).sum().backward()
    assert rec.stacked("gradients").shape == (2, 2, 48, 7, 7)
    handle = model.blocks[0].register_backward_hook(lambda *a: None)   # PyTorch accepts it
    handle.remove()


# --------------------------------------------------------------------------- issue 26: resume files


def _interrupted(monkeypatch, epochs=3, at=2):
    cfg = tiny_config(epochs=epochs)
    with interrupted_at_epoch(monkeypatch, at), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    return cfg, RunDir.for_config(cfg)


def test_the_resume_checkpoint_is_tensors_and_plain_numbers(runs_dir, monkeypatch):
    _, run_dir = _interrupted(monkeypatch)
    state = torch.load(run_dir.checkpoint, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and {"trainable", "optimizer", "scheduler", "rng"} <= set(state)


def test_an_old_format_checkpoint_is_refused_not_unpickled(runs_dir, monkeypatch):
    cfg, run_dir = _interrupted(monkeypatch)
    state = torch.load(run_dir.checkpoint, map_location="cpu", weights_only=True)
    state["rng"] = {"numpy": np.random.get_state(), "python": random.getstate(),
                    "torch": torch.get_rng_state()}          # what ddkit wrote before
    torch.save(state, run_dir.checkpoint)
    before = run_dir.checkpoint.read_bytes()
    _no_compute(monkeypatch)
    with pytest.raises(RunFileError, match=rf"{run_dir.checkpoint}: not loaded: .*(older "
                                           rf"ddkit|not written by ddkit).*Remove the run "
                                           rf"folder {run_dir.path}"):
        train(cfg, progress=False)
    assert run_dir.checkpoint.read_bytes() == before


class _Payload:
    """A pickle that runs a command when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code(runs_dir, monkeypatch, tmp_path):
    cfg, run_dir = _interrupted(monkeypatch)
    marker = tmp_path / "ran"
    torch.save({"trainable": {}, "optimizer": _Payload(marker), "epoch": 1}, run_dir.checkpoint)
    _no_compute(monkeypatch)
    with pytest.raises(RunFileError, match=r"checkpoint.pt: not loaded"):
        train(cfg, progress=False)
    assert not marker.exists()


def test_a_resume_checkpoint_given_as_weights_says_to_pass_the_run_folder(runs_dir, monkeypatch):
    _, run_dir = _interrupted(monkeypatch)
    with pytest.raises(WeightsFileError, match=rf"{run_dir.checkpoint} is a run's resume file.*"
                                               rf"pass the run folder {run_dir.path}"):
        create_model("ddkit_vit_student_fmnist", checkpoint=run_dir.checkpoint,
                     **tiny_config().model.kwargs)


# --------------------------------------------------------------------------- issue 26: store I/O


def _cli_lines(argv):
    """Run the CLI in a fresh process; ``(exit code, stderr lines)``."""
    done = subprocess.run([sys.executable, "-c", argv], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def test_a_read_only_run_store_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    from ddkit import cli
    store = tmp_path / "ro"
    store.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def read_only(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(str(store)) and (real is real_mkdir or args[0] & (
                    os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *args, **kwargs)
        return call
    monkeypatch.setattr(os, "open", read_only(real_open))
    monkeypatch.setattr(os, "mkdir", read_only(real_mkdir))
    code = cli.main(["train", "--profile", "smoke", "--role", "teacher", "--set",
                     "teacher.optim.epochs=1", "--runs-dir", str(store)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and err[-1].startswith("error: ") and "Traceback" not in "".join(err), err
    assert str(store) in err[-1] and "--runs-dir" in err[-1] and "read-only" in err[-1]
    assert not list(store.iterdir())


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from ddkit.cli import main
sys.exit(main({argv!r}))
"""


def test_a_full_disk_is_one_line_leaves_no_half_file_and_the_rerun_matches(tmp_path):
    """Files may grow to 20 kB only (as on a disk that fills up): the first resume checkpoint
    does not fit. One line names the folder; nothing half-written is left; once there is room,
    the same command finishes with the weights of a run that never hit the limit."""
    profile = tmp_path / "tiny.yaml"
    profile.write_text("data: {name: fashion_mnist, train_subset: 64, eval_subset: 50, "
                       "batch_size: 32}\nteacher: {model: {name: ddkit_vit_teacher_fmnist, "
                       "kwargs: {embed_dim: 16, depth: 2, num_heads: 2}}, optim: {epochs: 2, "
                       "warmup_epochs: 0}}\nsave_every: 1\ndevice: cpu\n")
    args = ["train", "--profile", str(profile), "--role", "teacher"]
    full, reference = tmp_path / "full", tmp_path / "reference"
    code, err = _cli_lines(FULL_DISK.format(limit=20_000, argv=[*args, "--runs-dir", str(full)]))
    assert code == 1 and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    assert "full" in err[-1] and str(full) in err[-1] and "run the same command again" in err[-1]
    assert not list(full.rglob("*.tmp")) and not list(full.rglob(".*.tmp"))
    for weights in full.rglob("*.safetensors"):
        check_safetensors(weights)
    code, _ = _cli_lines(FULL_DISK.format(limit=resource.RLIM_INFINITY,
                                          argv=[*args, "--runs-dir", str(full)]))
    assert code == 0
    code, _ = _cli_lines(FULL_DISK.format(limit=resource.RLIM_INFINITY,
                                          argv=[*args, "--runs-dir", str(reference)]))
    assert code == 0
    (a,), (b,) = full.glob("*/model.safetensors"), reference.glob("*/model.safetensors")
    assert a.read_bytes() == b.read_bytes()
