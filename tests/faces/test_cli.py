"""The command line a researcher expects: listed subcommands, --set with dotted errors,
--runs-dir, --device, a line on cache hits and resumes, one `error:` line for expected failures."""
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from ddkit import cli
from ddkit.core import models
from ddkit.core.config import ConfigError, load_profile, parse_override
from ddkit.runs import store
from ddkit.runs.store import RunDir
from ddkit.studies import grid, study
from tests.helpers import interrupted_at_epoch, nan_loss_after_steps

ROOT = Path(__file__).resolve().parents[2]
TINY_PROFILE = (
    "description: a tiny profile for CLI tests\n"
    "data: {name: fashion_mnist, train_subset: 64, eval_subset: 50, batch_size: 32}\n"
    "teacher: {model: {name: ddkit_vit_teacher_fmnist, kwargs: {embed_dim: 16, depth: 2, "
    "num_heads: 2}}, optim: {epochs: 2, warmup_epochs: 0}}\n"
    "student: {model: {name: ddkit_vit_student_fmnist, kwargs: {embed_dim: 16, depth: 2, "
    "num_heads: 2}}, optim: {epochs: 2, warmup_epochs: 0}}\n"
    "distill: {kd: none}\n"
    "save_every: 1\n"
    "device: cpu\n")


@pytest.fixture
def tiny_profile(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_PROFILE)
    return path


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    """The stderr of a failed command ends in exactly one `error: ...` line (progress bars and
    `[ddkit]` lines may come before it), with no traceback."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    return errors[0]


def test_every_subcommand_is_listed_with_a_help_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.COMMANDS)
    for action in sub._choices_actions:
        assert action.help, f"{action.dest} has no help line"
        assert action.dest in text and action.help.split()[0] in text


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["ddkit"].partition(":")
    assert module == "ddkit.cli" and getattr(cli, function) is cli.main


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "ddkit.cli", "profiles"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "smoke:" in done.stdout and "default:" in done.stdout


@pytest.mark.parametrize("text, key, value", [
    ("student.optim.lr=1e-3", "student.optim.lr", 1e-3),
    ("seeds=[0, 1]", "seeds", [0, 1]),
    ("data.augment=true", "data.augment", True),
    ("student.model.kwargs={depth: 6}", "student.model.kwargs", {"depth": 6}),
    ("data.root=null", "data.root", None),
])
def test_set_values_are_read_as_yaml(text, key, value):
    assert parse_override(text) == (key, value)


def test_set_errors_keep_the_dotted_path(capsys):
    code, _, err = _run(capsys, "train", "--profile", "smoke", "--set", "student.optim.lr=fast")
    assert code == 2
    assert _error_line(err) == "error: student.optim.lr: expected a number, got 'fast'"
    code, _, err = _run(capsys, "train", "--profile", "smoke", "--set", "student.optim.epoch=3")
    assert "unknown key 'student.optim.epoch'; valid keys of student.optim" in _error_line(err)
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_override("student.optim.lr")


def test_set_reaches_into_mappings():
    profile = load_profile("smoke", **dict([parse_override("student.model.kwargs.depth=2"),
                                            parse_override("analysis.n_images=20")]))
    assert profile.student.model.kwargs == {"depth": 2} and profile.analysis["n_images"] == 20
    with pytest.raises(ConfigError, match=r"analysis\.n_imgs"):
        load_profile("smoke", **{"analysis.n_imgs": 20})


def test_runs_dir_cache_hit_and_resume_lines(capsys, tiny_profile, tmp_path, monkeypatch):
    runs = tmp_path / "elsewhere"
    args = ["train", "--profile", str(tiny_profile), "--role", "teacher", "--runs-dir", str(runs)]
    with interrupted_at_epoch(monkeypatch, 1):
        code, _, err = _run(capsys, *args)
    assert code == cli.EXIT_INTERRUPTED and "run the same command again to resume" in err
    code, out, err = _run(capsys, *args)
    assert code == 0
    run = Path(json.loads(out)["run"])
    assert run.parent == runs.resolve()
    assert f"[ddkit] resuming {run} from epoch 1 of 2" in err
    code, out, err = _run(capsys, *args)
    assert code == 0 and f"[ddkit] cache hit: {run}" in err


def test_no_cuda_for_a_cuda_profile_is_one_line(capsys, tiny_profile):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    code, _, err = _run(capsys, "train", "--profile", str(tiny_profile), "--device", "cuda")
    assert code == 1 and "--device cpu" in _error_line(err)
    code, _, err = _run(capsys, "analyze", "vit_tiny_patch16_224", "--device", "cuda")
    assert code == 1 and "no CUDA device" in _error_line(err)


def test_nan_loss_is_one_line_and_keeps_the_last_checkpoint(capsys, tiny_profile, monkeypatch):
    nan_loss_after_steps(monkeypatch, 2)            # 2 steps of 32 images = epoch 0
    code, _, err = _run(capsys, "train", "--profile", str(tiny_profile), "--role", "teacher")
    line = _error_line(err)
    assert code == 1 and "non-finite loss nan" in line and "Lower optim.lr" in line
    run_dir = RunDir.for_config(load_profile(tiny_profile).teacher_config())
    assert torch.load(run_dir.checkpoint, weights_only=False)["epoch"] == 0


def test_damaged_cache_hit_is_one_line_then_force_retrains(capsys, tiny_profile):
    args = ["train", "--profile", str(tiny_profile), "--role", "teacher"]
    assert _run(capsys, *args)[0] == 0
    run_dir = RunDir.for_config(load_profile(tiny_profile).teacher_config())
    weights = run_dir.final_weights
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = _run(capsys, *args)
    line = _error_line(err)
    assert code == 1 and f"{weights}: unreadable weights file" in line and "--force" in line
    code, _, err = _run(capsys, *args, "--force")
    assert code == 0 and f"--force: deleting {run_dir.path}" in err
    run_dir.verify()


def test_bad_input_is_one_line(capsys):
    code, _, err = _run(capsys, "train", "--profile", "nope")
    assert code == 2 and "unknown profile 'nope'" in _error_line(err)
    code, _, err = _run(capsys, "analyze", "vit_tiyn_patch16_224")
    assert code == 2 and "vit_tiny_patch16_224" in _error_line(err)
    code, _, err = _run(capsys, "analyze", "vit_tiny_patch16_224", "--data", "mnist")
    assert code == 1 and "--data 'mnist'" in _error_line(err)


def test_notebooks_get_the_overridden_profile_under_its_own_name(tmp_path):
    profile = load_profile("smoke", **{"student.optim.epochs": 1})
    path = cli._resolved_profile_file(profile, changed=True)
    again = load_profile(path)
    assert again.name.startswith("smoke-set-") and again.student.optim.epochs == 1
    assert cli._resolved_profile_file(load_profile("smoke"), changed=False).stem == "smoke"


# --------------------------------------------------------------------------- issue 26


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def figures(tmp_path, monkeypatch):
    """A copy of the committed grid tables, standing in for figures/ (so a test that writes
    there, or an old build that would, never touches the repository's)."""
    folder = tmp_path / "figures"
    for name in ("controls", "phase_map"):
        shutil.copytree(store.FIGURES / name, folder / name)
    monkeypatch.setattr(store, "FIGURES", folder)
    return folder


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of ddkit/shipped/, standing in for it."""
    folder = tmp_path / "shipped"
    shutil.copytree(models.SHIPPED_DIR, folder)
    monkeypatch.setattr(models, "SHIPPED_DIR", folder)
    return folder


def test_an_overridden_grid_publishes_to_its_own_folder_not_the_committed_one(
        capsys, figures, tmp_path):
    committed = _tree(figures / "controls")
    code, out, err = _run(capsys, "controls", "--publish-only", "--set", "student.optim.epochs=1",
                          "--runs-dir", str(tmp_path / "runs"))
    assert _tree(figures / "controls") == committed
    (own,) = [p for p in figures.iterdir() if p.name.startswith("controls-set-")]
    assert (own / "runs.csv").is_file()
    assert own.name == cli._resolved_profile_file(
        load_profile("controls", **{"student.optim.epochs": 1}), changed=True).stem


def test_the_unchanged_grid_still_publishes_to_figures_profile(capsys, figures, tmp_path):
    committed = _tree(figures / "controls")
    code, out, err = _run(capsys, "controls", "--publish-only", "--device", "cpu",
                          "--runs-dir", str(tmp_path / "runs"))
    assert code == 0 or "planned run(s) collected into" in _error_line(err), err  # runs to come
    assert f"in {figures / 'controls' / 'runs.csv'}" in out
    assert _tree(figures / "controls") == committed       # every committed row kept as it was
    assert sorted(p.name for p in figures.iterdir()) == ["controls", "phase_map"]


def test_the_collect_command_with_runs_missing_exits_non_zero_naming_them(capsys, figures,
                                                                          tmp_path):
    code, _, err = _run(capsys, "controls", "--publish-only", "--set", "student.optim.epochs=1",
                        "--runs-dir", str(tmp_path / "runs"))
    line = _error_line(err)
    planned = grid.names(load_profile("controls", **{"student.optim.epochs": 1}))
    assert code == 1 and f"0 of {len(planned)} planned run(s)" in line
    assert sum(name in line for name in planned) >= 3


TINY_TEACHER = ["--set", "teacher.optim.epochs=1", "--set",
                "teacher.data={train_subset: 64, eval_subset: 50, batch_size: 32}",
                "--set", "teacher.model.kwargs={embed_dim: 16, depth: 1, num_heads: 2}"]


def test_a_teacher_recipe_override_trains_into_the_run_store_and_says_so(capsys, shipped,
                                                                         tmp_path):
    before = _tree(shipped)
    code, _, err = _run(capsys, "phase-map", "--only", "mosaic K=10, width 16", "--teachers-only",
                        *TINY_TEACHER, "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert _tree(shipped) == before                       # ddkit/shipped/ left as it was
    said = [line for line in err.splitlines() if "ddkit_vit_teacher_mosaic10" in line
            and "not the shipped one" in line]
    assert len(said) == 1 and "ddkit ship-teacher" in said[0], err
    (teacher,) = (tmp_path / "runs").glob("phase_map-teacher-*")
    assert (teacher / "summary.json").is_file()


class Trained(Exception):
    """Raised instead of training: the config that would have been trained."""


@pytest.mark.parametrize("command, override", [
    ("phase-map", "seeds=[-1]"), ("controls", "save_every=3"),
    ("phase-map", "data.batch_size=64")])
def test_a_teacher_is_never_retrained_silently(capsys, monkeypatch, shipped, tmp_path, command,
                                               override):
    def trained(cfg, **kwargs):
        raise Trained(cfg)
    monkeypatch.setattr(study, "train", trained)
    with pytest.raises(Trained) as caught:
        cli.main([command, "--teachers-only", "--set", override,
                  "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    name = caught.value.args[0].model.name
    assert f"teacher {name}" in err and "not the shipped one" in err and "run store" in err


def test_ship_teacher_ships_a_grid_teacher_asked_by_name(capsys, shipped, tmp_path):
    code, out, err = _run(capsys, "ship-teacher", "--profile", "phase_map", "--teacher",
                          "ddkit_vit_teacher_mosaic100", *TINY_TEACHER, "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    record = json.loads((shipped / "teacher_mosaic100.json").read_text())
    assert record["epochs"] == 1 and record["config"]["model"]["name"] == \
        "ddkit_vit_teacher_mosaic100"
    assert (shipped / "teacher_mosaic10.json").read_bytes() == \
        (ROOT / "ddkit" / "shipped" / "teacher_mosaic10.json").read_bytes()


def test_train_feature_flag_with_explicit_layer_pairs(capsys, tiny_profile, monkeypatch):
    def capture(cfg, **kwargs):
        raise Trained(cfg)
    monkeypatch.setattr(cli, "train", capture)
    monkeypatch.setattr(cli, "_teacher", lambda profile, force: (
        profile.teacher.model, None))
    with pytest.raises(Trained) as caught:
        cli.main(["train", "--profile", str(tiny_profile), "--kd", "soft", "--feature",
                  "spectral", "--set", "distill.layers=[[0, 1]]"])
    d = caught.value.args[0].distill
    assert (d.kd, d.feature, d.layers) == ("soft", "spectral", [[0, 1]])


@pytest.mark.parametrize("argv", [
    ["train", "--profile", "smoke"], ["controls", "--teachers-only"],
    ["phase-map", "--teachers-only"]])
@pytest.mark.parametrize("width", [15, 0, -4])
def test_a_width_the_heads_do_not_divide_is_one_line_in_every_command(capsys, argv, width):
    code, _, err = _run(capsys, *argv, "--set", f"student.model.kwargs.embed_dim={width}")
    line = _error_line(err)
    assert code == cli.EXIT_USAGE and "student.model.kwargs=" in line and str(width) in line


def test_a_name_that_is_a_path_is_refused_and_nothing_is_written(capsys, tmp_path):
    outside = tmp_path / "outside"
    for name in (str(outside), "../../outside"):
        code, _, err = _run(capsys, "train", "--profile", "smoke", "--set", f"name={name}",
                            "--runs-dir", str(tmp_path / "runs" / "a"))
        assert code == cli.EXIT_USAGE and "name=" in _error_line(err)
    assert not outside.exists() and not (tmp_path / "runs").exists()
