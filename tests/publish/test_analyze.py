"""`ddkit analyze` on random-init timm ViT families (tiny: few blocks, small images, few images),
a teacher/student pair, a kit run folder, an ImageFolder tree; non-ViTs are refused clearly."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ddkit import cli
from ddkit.runs.train import train
from ddkit.signals.dynamics import COLUMNS
from tests.helpers import tiny_config

METRICS = {"token_entropy", "token_entropy_per_layer", "spectrum_intensity",
           "activation_magnitude", "intensity_over_magnitude", "gradient_magnitude",
           "dlogamp_high", "effective_rank", "pca_dims", "pca_dims_95", "energy_concentration_50",
           "energy_concentration_90"}


def _analyze(capsys, out, *argv):
    code = cli.main(["analyze", *argv, "--n", "6", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    table = pd.read_csv(out / "layers.csv")
    assert list(table.columns) == COLUMNS
    settings = json.loads((out / "settings.json").read_text())
    for name in settings["files"]:
        assert (out / name).is_file(), name
    return table, settings, (out / "summary.md").read_text(), err


FAMILIES = {   # name: (timm arguments, residual blocks read, the head reads prefix tokens only)
    "vit_tiny_patch16_224": (["img_size=32", "depth=3"], 3, True),
    "deit_tiny_distilled_patch16_224": (["img_size=32", "depth=2"], 2, True),   # 2 prefix tokens
    "cait_xxs24_224": (["img_size=32", "depth=3", "depth_token_only=2"], 3, False),
    "eva02_tiny_patch14_224": (["img_size=28", "depth=2"], 2, False),           # rope, avg pool
    "vit_small_patch14_reg4_dinov2": (["img_size=28", "depth=2", "embed_dim=32",
                                       "num_heads=2"], 2, True),               # 4 registers
}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("paper_faithful", [False, True], ids=["default", "paper_faithful"])
def test_analyze_a_vit_family(capsys, tmp_path, name, paper_faithful):
    args, depth, prefix_head = FAMILIES[name]
    extra = [f"--model-arg={a}" for a in args]
    extra += ["--paper-faithful", "--no-figures"] if paper_faithful else []   # figures: once
    table, settings, summary, err = _analyze(capsys, tmp_path / "out", name, *extra)
    assert set(table["metric"]) == METRICS
    assert sorted(table["layer"].unique()) == list(range(depth))   # CaiT: class-attention out
    assert table["value"].map(np.isfinite).all()
    magnitude = table.metric.isin(["activation_magnitude", "gradient_magnitude"])
    assert set(table[magnitude].prefix_tokens) == {"keep" if paper_faithful else "drop"}
    assert set(table[~magnitude].prefix_tokens) == {"drop"}
    grad = table[table.metric == "gradient_magnitude"].sort_values("layer")["value"]
    if prefix_head and not paper_faithful:   # the last block's patch tokens get no gradient
        assert grad.iloc[-1] == 0 and "exactly 0" in summary
    else:
        assert grad.iloc[-1] > 0
    assert settings["images"] == 6 and settings["magnitude_images"] == (5 if paper_faithful else 6)
    assert "token entropy, one range for all blocks:" in summary and "effective rank:" in summary
    assert ("paper-faithful | yes" in summary) == paper_faithful
    figures = [f for f in settings["files"] if f.startswith("figures/")]
    assert len(figures) == (0 if paper_faithful else 4)
    assert "recording" in err and "wrote" in err                     # progress lines


@pytest.mark.parametrize("name", ["efficientnet_b0", "xcit_nano_12_p16_224",
                                  "swin_tiny_patch4_window7_224"])
def test_non_vits_are_refused_before_any_compute(capsys, tmp_path, name):
    code = cli.main(["analyze", name, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "error: " in err and "is not a timm ViT-like model" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_dynamic_img_size_model_on_other_images(capsys, tmp_path):
    table, settings, _, _ = _analyze(capsys, tmp_path / "out", "vit_tiny_patch16_224",
                                     "--model-arg=img_size=32", "--model-arg=depth=2",
                                     "--model-arg=dynamic_img_size=true", "--img-size", "48",
                                     "--no-figures")
    assert settings["img_size"] == 48 and len(table) == 2 * len(METRICS)


def test_teacher_student_pair_adds_cka_and_feature_fit(capsys, tmp_path):
    out = tmp_path / "pair"
    table, settings, summary, _ = _analyze(
        capsys, out, "--teacher", "cait_xxs24_224", "--teacher-arg=img_size=32",
        "--teacher-arg=depth=4", "--teacher-arg=depth_token_only=1",
        "--student", "deit_tiny_patch16_224", "--student-arg=img_size=32",
        "--student-arg=depth=2", "--student-arg=embed_dim=96", "--student-arg=num_heads=2")
    assert set(table["model"]) == {"teacher", "student"}
    cka = pd.read_csv(out / "cka.csv", index_col="teacher_block")
    assert cka.shape == (4, 2) and ((cka.to_numpy() >= -1e-6) & (cka.to_numpy() <= 1 + 1e-6)).all()
    fit = pd.read_csv(out / "feature_fit.csv")
    assert fit["pair"].tolist() == ["s0-t0", "s1-t3"]
    assert np.allclose(fit["relative"], fit["raw"] / fit["zero"])
    assert "## teacher vs student" in summary and (out / "figures" / "cka.png").is_file()


def test_pair_with_an_out_of_range_layer_map_fails_before_compute(capsys, tmp_path):
    code = cli.main(["analyze", "--teacher", "vit_tiny_patch16_224", "--teacher-arg=img_size=32",
                     "--teacher-arg=depth=2", "--student", "vit_tiny_patch16_224",
                     "--student-arg=img_size=32", "--student-arg=depth=2", "--layers",
                     "[[0, 5]]", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "teacher block index 5 out of range for 2 blocks" in err
    assert not (tmp_path / "out").exists()


def test_a_kit_run_folder(capsys, tmp_path):
    run = train(tiny_config(epochs=1), progress=False)
    table, settings, summary, _ = _analyze(capsys, tmp_path / "out", str(run.dir.path),
                                           "--no-figures")
    assert sorted(table["layer"].unique()) == [0, 1]
    assert "kit run" in summary and settings["img_size"] == 28


def test_an_image_folder_with_the_paper_faithful_resize(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}.png")
    table, settings, summary, _ = _analyze(
        capsys, tmp_path / "out", "vit_tiny_patch16_224", "--model-arg=img_size=32",
        "--model-arg=depth=2", "--data", str(tmp_path / "images"), "--paper-faithful",
        "--no-figures")
    assert settings["dataset"] == "imagefolder" and settings["images"] == 6
    assert "bilinear resize to 36, centre crop 32" in summary


# --------------------------------------------------------------------------- issue 26


def _error(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


def _images(folder, damage):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                folder / cls / f"{i}.{'jpg' if damage == 'cut jpeg' else 'png'}")
    bad = folder / "dog" / ("1.jpg" if damage == "cut jpeg" else "1.png")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "cut jpeg"
                    else data[:40] + bytes(len(data) - 40))
    return bad


@pytest.mark.parametrize("damage", ["corrupt png", "cut jpeg"])
def test_a_damaged_image_is_named_in_one_line(capsys, tmp_path, damage):
    bad = _images(tmp_path / "images", damage)
    code = cli.main(["analyze", "vit_tiny_patch16_224", "--model-arg=img_size=32",
                     "--model-arg=depth=1", "--data", str(tmp_path / "images"), "--n", "6",
                     "--no-figures", "--out", str(tmp_path / "out")])
    line = _error(capsys)
    assert code == 1 and str(bad) in line and "remove or replace" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out", ["a file", "under a file"])
def test_an_out_that_is_not_a_writable_folder_fails_before_compute(capsys, tmp_path, monkeypatch,
                                                                   out):
    monkeypatch.setattr("ddkit.publish.report.build_dataset",
                        lambda *a, **k: pytest.fail("data loaded for an unwritable --out"))
    (tmp_path / "file").write_text("keep")
    target = tmp_path / "file" if out == "a file" else tmp_path / "file" / "out"
    code = cli.main(["analyze", "vit_tiny_patch16_224", "--model-arg=img_size=32",
                     "--model-arg=depth=1", "--n", "4", "--out", str(target)])
    line = _error(capsys)
    assert code == 1 and "--out" in line and str(tmp_path / "file") in line
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("arg", ["embed_dim=100", "embed_dim=0", "embed_dim=-8"])
def test_a_width_the_heads_do_not_divide_is_one_line_before_compute(capsys, tmp_path,
                                                                    monkeypatch, arg):
    monkeypatch.setattr("ddkit.publish.report.build_dataset",
                        lambda *a, **k: pytest.fail("data loaded for a model that cannot build"))
    code = cli.main(["analyze", "vit_tiny_patch16_224", "--model-arg=img_size=32",
                     "--model-arg=depth=1", f"--model-arg={arg}", "--n", "4",
                     "--out", str(tmp_path / "out")])
    line = _error(capsys)
    assert code == cli.EXIT_USAGE and arg.split("=")[1] in line and "cannot be built" in line
