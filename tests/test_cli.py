"""The command line a researcher expects: listed subcommands, --set with dotted errors,
--runs-dir, --device, a line on cache hits and resumes, one `error:` line for expected failures."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import interrupted_at_epoch, nan_loss_after_steps

from ddkit import cli
from ddkit.core.config import ConfigError, load_profile, parse_override
from ddkit.runs.store import RunDir

ROOT = Path(__file__).resolve().parent.parent
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
