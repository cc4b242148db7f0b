"""`ddkit analyze` as timm users expect: ``hf-hub:`` and ``local-dir:`` names go to timm (an
unreachable hub is one error line), and ``--checkpoint`` loads through timm's pretrained route, so
weights trained at another image size load with resampled position embeddings."""
import json

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models import save_for_hf

from ddkit import cli
from ddkit.core.models import ModelInputError, WeightsFileError, check_model_name, load_weights
from ddkit.publish import report

SMALL = dict(img_size=28, patch_size=4, depth=2, in_chans=1, num_classes=10)   # a 7x7 grid


def _cli(capsys, *argv):
    code = cli.main(["analyze", *argv])
    return code, capsys.readouterr().err


def test_an_offline_hf_hub_name_is_one_line_naming_the_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    check_model_name("hf-hub:ddkit-test/no-such-vit")          # accepted: timm resolves it
    code, err = _cli(capsys, "hf-hub:ddkit-test/no-such-vit", "--n", "4", "--no-figures",
                     "--out", str(tmp_path / "out"))
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == cli.EXIT_ERROR and len(lines) == 1, err
    assert "'hf-hub:ddkit-test/no-such-vit'" in lines[0]
    assert "needs the network, or a local copy" in lines[0] and "local-dir:" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_local_dir_model_saved_by_timm_is_analysed(capsys, tmp_path):
    saved = timm.create_model("vit_tiny_patch16_224", **SMALL)
    folder = tmp_path / "my-vit"
    save_for_hf(saved, str(folder), model_args=SMALL, safe_serialization=True)
    name = f"local-dir:{folder}"
    model, described = report.load_model(report.ModelSource(name, pretrained=True),
                                         {"in_chans": 1, "num_classes": 10})
    assert torch.equal(model.pos_embed, saved.pos_embed) and "hub weights" in described
    out = tmp_path / "out"
    code, err = _cli(capsys, name, "--pretrained", "--n", "6", "--no-figures", "--out", str(out))
    assert code == 0, err
    assert json.loads((out / "settings.json").read_text())["img_size"] == 28
    with pytest.raises(ModelInputError, match=r"no config\.json in .*save_for_hf"):
        check_model_name(f"local-dir:{tmp_path / 'empty'}")
    code, err = _cli(capsys, f"local-dir:{tmp_path / 'empty'}", "--out", str(out))
    assert code == cli.EXIT_USAGE and err.count("error:") == 1 and "config.json" in err


def test_a_checkpoint_at_another_image_size_loads_with_resampled_position_embeddings(
        capsys, tmp_path):
    trained = timm.create_model("vit_tiny_patch16_224", **SMALL)     # 28 px: 7x7 tokens
    path = tmp_path / "at28.safetensors"
    save_file(trained.state_dict(), str(path))
    args = dict(img_size=56, patch_size=4, depth=2)                  # 56 px: 14x14 tokens
    source = report.ModelSource("vit_tiny_patch16_224", checkpoint=str(path), kwargs=args)
    model, _ = report.load_model(source, {"in_chans": 1, "num_classes": 10})
    assert model.pos_embed.shape == (1, 1 + 14 * 14, 192)
    expected = resample_abs_pos_embed(trained.pos_embed, (14, 14), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, expected)
    for key, value in trained.state_dict().items():                 # everything else as saved
        if key != "pos_embed":
            assert torch.equal(model.state_dict()[key], value), key
    # the strict load the kit used before refuses it
    with pytest.raises(WeightsFileError, match="pos_embed"):
        load_weights(timm.create_model("vit_tiny_patch16_224", **{**SMALL, **args}), path)
    out = tmp_path / "out"
    code, err = _cli(capsys, "vit_tiny_patch16_224", "--checkpoint", str(path), "--model-arg",
                     "img_size=56", "--model-arg", "patch_size=4", "--model-arg", "depth=2",
                     "--n", "6", "--no-figures", "--out", str(out))
    assert code == 0, err
    settings = json.loads((out / "settings.json").read_text())
    assert settings["img_size"] == 56 and settings["images"] == 6
    code, err = _cli(capsys, "vit_tiny_patch16_224", "--checkpoint", str(path), "--model-arg",
                     "depth=3", "--model-arg", "img_size=28", "--model-arg", "patch_size=4",
                     "--out", str(out / "bad"))
    assert code != 0 and err.count("error:") == 1 and "does not fit" in err
