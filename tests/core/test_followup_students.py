"""The follow-up's remedies as its release builds them (ddkit.core.models): Lift, WideLast and
their width control UniformWide, GenKD's shuffled-target control, the plain MSE and the feature
loss normalised by the target's energy; each cell trains end to end from a profile."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from ddkit.core.anatomy import widths_of
from ddkit.core.config import (
    ABLATION,
    CELLS,
    CONTROL_OF,
    REMEDIES,
    ConfigError,
    DataConfig,
    DistillConfig,
    OptimConfig,
    Profile,
    RoleConfig,
    cell_parts,
    config_hash,
    replace,
    validate,
)
from ddkit.core.hooks import FeatureRecorder
from ddkit.core.losses import DistillationLoss, GenerationKD, mse_feature_loss, spectral_kd_loss
from ddkit.core.models import create_model
from ddkit.core.students import (
    LiftViT,
    WideLastViT,
    parameter_count,
    student_kwargs,
    uniform_wide_width,
)
from ddkit.runs.train import build_task, evaluate, train
from ddkit.studies import study
from tests.helpers import TINY_STUDENT, TINY_TEACHER

FOLLOWUP = ("Lift-Last", "WideLast-Last", "UniformWide", "GenKD-Shuffled-Last")


def _profile(epochs: int = 1) -> Profile:
    return Profile(name="tiny", data=DataConfig(train_subset=128, eval_subset=100, batch_size=32),
                   student=RoleConfig(model=TINY_STUDENT, optim=OptimConfig(
                       epochs=epochs, lr=1e-3, warmup_epochs=1, sched_per_step=True)),
                   distill=DistillConfig(kd="soft", teacher=TINY_TEACHER), seeds=[3],
                   device="cpu", save_every=0)


def _cell(cell: str, epochs: int = 1):
    return study.student_config(_profile(epochs), cell, 3, TINY_TEACHER)


# --------------------------------------------------------------------------- the students

def test_lift_evaluates_with_the_new_head_on_the_pooled_lifted_tokens():
    torch.manual_seed(0)
    model = create_model("ddkit_vit_student_fmnist", lift_dim=96).eval()
    assert isinstance(model, LiftViT) and model.head.in_features == 96
    assert widths_of(model) == (48, 48, 48, 96)
    x = torch.randn(3, 1, 28, 28)
    with FeatureRecorder(model, layers=[3], prefix=True) as rec:
        logits = model(x)
    lifted = rec.features[3]                                   # [B, 96, 7, 7]
    assert lifted.shape == (3, 96, 7, 7)
    # the lift is a bias-free Linear + LayerNorm after the last block's own output
    block = model.blocks[3]
    assert block.lift.bias is None and block.lift.weight.shape == (96, 48)
    expected = model.head(lifted.mean((2, 3)))                 # GAP over the patch tokens only
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():                                      # and that head is the one used
        model.head.weight.add_(1.0)
    assert not torch.allclose(model(x), logits)


def test_a_trained_lift_run_is_evaluated_with_its_lifted_head():
    cfg = _cell("Lift-Last")
    assert cfg.model.kwargs["lift_dim"] == 32 and cfg.name.endswith("-lift")
    run = train(cfg, progress=False)
    model = run.load_model()
    assert isinstance(model, LiftViT)
    from ddkit.core.data import build_dataset
    test = build_dataset("fashion_mnist", "test", subset=100, seed=3)
    loader = torch.utils.data.DataLoader(test, batch_size=50)
    assert evaluate(model, loader, torch.device("cpu"))["test_acc1"] == pytest.approx(
        run.summary["final_acc1"])


def test_the_feature_loss_sees_the_lifted_tokens(monkeypatch):
    from timm.models.vision_transformer import Block

    from ddkit.core import losses
    task, _ = build_task(_cell("Lift-Last"), torch.device("cpu"))
    seen = {}

    def spy(f_s, f_t):
        seen["f_s"], seen["f_t"] = f_s, f_t
        return spectral_kd_loss(f_s, f_t)
    monkeypatch.setitem(losses.DIRECT_LOSSES, "spectral", spy)
    last = task.student.blocks[1]
    inputs = []
    last.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    task.eval()
    with FeatureRecorder(task.student, layers=[1]) as rec:
        task(x, y)
    assert seen["f_s"].shape == seen["f_t"].shape == (4, 32, 7, 7)   # lifted to the teacher's 32
    torch.testing.assert_close(seen["f_s"].detach(), rec.features[1])   # what a hook records
    with torch.no_grad():                                             # = LN(W · block(x)), no bias
        tokens = last.lift_norm(last.lift(Block.forward(last, inputs[0])))[:, 1:]
    torch.testing.assert_close(seen["f_s"].detach(), tokens.reshape(4, 7, 7, 32).permute(0, 3, 1, 2))


def test_widelast_widens_the_last_block_to_the_teachers_width_keeping_the_head_width():
    model = create_model("ddkit_vit_student_fmnist", wide_last=96)
    assert isinstance(model, WideLastViT)
    assert widths_of(model) == (48, 48, 48, 96)
    last = model.blocks[-1]
    assert last.attn.num_heads == 4 and last.attn.head_dim == 24   # the student's 48 / 2
    assert last.proj_in.bias is None and last.proj_in.weight.shape == (96, 48)
    assert model.norm.normalized_shape == (96,) and model.head.in_features == 96
    out, feats = model.forward_intermediates(torch.randn(2, 1, 28, 28), indices=[3])
    assert feats[0].shape == (2, 96, 7, 7) and model.forward_head(out).shape == (2, 10)
    with pytest.raises(ValueError, match="one of them"):
        create_model("ddkit_vit_student_fmnist", wide_last=96, lift_dim=96)


def test_uniform_wide_matches_widelast_within_2_percent_and_reproduces_the_releases_219():
    # the release: DeiT-Tiny (192, 3 heads) against CaiT-S24 (384): WideLast 7.31 M, UniformWide 219
    with torch.device("meta"):
        wide = WideLastViT(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3,
                           wide_last=384, num_classes=1000)
    target = sum(p.numel() for p in wide.parameters())
    assert wide.wide_heads == 6 and 7.2e6 < target < 7.4e6
    assert uniform_wide_width("deit_tiny_patch16_224", target) == 219
    # the kit's students at the three settings the remedies run in
    for name, kwargs in (("ddkit_vit_student_fmnist", {}),
                         ("ddkit_vit_student_mosaic", {"embed_dim": 8, "num_classes": 10})):
        uniform = student_kwargs("uniformwide", name, kwargs, 96)
        widelast = parameter_count(name, **student_kwargs("widelast", name, kwargs, 96))
        assert uniform["embed_dim"] % 2 == 0 and uniform["embed_dim"] > kwargs.get("embed_dim", 48)
        assert abs(parameter_count(name, **uniform) / widelast - 1) < 0.02
        # Lift adds far fewer parameters: a new head and the lift, no wider block
        lift = parameter_count(name, **student_kwargs("lift", name, kwargs, 96))
        assert parameter_count(name, **kwargs) < lift < widelast


# --------------------------------------------------------------------------- the losses

def test_mse_pools_the_teacher_like_spectral_kd_and_is_a_plain_mean_square():
    f_s, f_t = torch.randn(2, 3, 4, 4), torch.randn(2, 6, 4, 4)
    pooled = f_t.reshape(2, 3, 2, 4, 4).mean(2)
    assert mse_feature_loss(f_s, f_t).item() == pytest.approx(
        float(((f_s - pooled) ** 2).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="<= teacher"):
        mse_feature_loss(f_t, f_s)


def test_shuffled_generation_asks_each_image_for_another_images_tokens():
    torch.manual_seed(2)
    gen = GenerationKD(4, 6, mask_ratio=0.0, shuffle=True)
    f_s, f_t = torch.randn(3, 4, 3, 3), torch.randn(3, 6, 3, 3)
    aligned = gen.align(f_s.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    generated = gen.generator(aligned)
    expected = F.mse_loss(generated, torch.stack([f_t[2], f_t[0], f_t[1]]))
    assert gen(f_s, f_t).item() == pytest.approx(expected.item(), rel=1e-6)
    assert gen(f_s, f_t).item() != pytest.approx(F.mse_loss(generated, f_t).item(), rel=1e-3)


@pytest.mark.parametrize("feature", ["spectral", "mse"])
def test_the_normalised_feature_loss_divides_by_the_zero_predictions_loss(feature):
    torch.manual_seed(5)
    loss = DistillationLoss(kd="soft", feature=feature, layer_pairs=[(0, 0)],
                            feature_weight=0.2, feature_norm="target_energy")
    logits, y = torch.randn(4, 10), torch.randint(0, 10, (4,))
    f_s, f_t = torch.randn(4, 3, 4, 4), 7.0 * torch.randn(4, 6, 4, 4)
    fn = spectral_kd_loss if feature == "spectral" else mse_feature_loss
    expected = fn(f_s, f_t) / fn(torch.zeros_like(f_s), f_t)
    out = loss(logits, y, torch.randn(4, 10), {0: f_s}, {0: f_t})
    assert out["loss_feat/0-0"].item() == pytest.approx(expected.item(), rel=1e-5)
    scaled = loss(logits, y, torch.randn(4, 10), {0: 10 * f_s}, {0: 10 * f_t})
    assert scaled["loss_feat/0-0"].item() == pytest.approx(expected.item(), rel=1e-4)
    with pytest.raises(ValueError, match="feature_norm"):
        DistillationLoss(feature="projector", layer_pairs=[(0, 0)], student_dims=3,
                         teacher_dims=6, feature_norm="target_energy")


# --------------------------------------------------------------------------- cells and configs

def test_cells_name_their_method_and_are_remedies_or_controls_not_ablation_cells():
    assert cell_parts("Lift-Last") == {"method": "Lift", "layers": "last"}
    assert cell_parts("WideLast-Last")["method"] == "WideLast"
    assert cell_parts("UniformWide")["method"] == "UniformWide"
    assert cell_parts("LossLift-Last")["method"] == "LossLift"
    assert cell_parts("GenKD-Shuffled-Last")["method"] == "GenKD-Shuffled"
    assert CELLS["LossLift-Last"]["feature"] == "lift"           # the feature kind its runs hold
    assert not set(FOLLOWUP + REMEDIES) & set(ABLATION)
    assert CONTROL_OF["GenKD-Last"] == "GenKD-Shuffled-Last"


def test_new_options_leave_every_old_hash_and_settings_plan_distinct_runs():
    cfg = _cell("SpectralKD-Last")
    assert config_hash(cfg) == config_hash(replace(cfg, **{"distill.feature_norm": "none"}))
    normed = replace(cfg, **{"distill.feature_norm": "target_energy"})
    assert config_hash(cfg) != config_hash(normed)
    names = {_cell(c).name for c in ("SpectralKD-Last", *FOLLOWUP)}
    assert len(names) == 5
    # a setting's feature options never reach its SoftKD runs
    soft = study.student_config(replace(_profile(), **{"distill.feature_norm": "target_energy"}),
                                "SoftKD", 3, TINY_TEACHER)
    assert config_hash(soft) == config_hash(_cell("SoftKD"))


def test_bad_follow_up_settings_fail_before_compute():
    with pytest.raises(ConfigError, match="feature_norm"):
        validate(replace(_cell("ProjectorKD-Last"), **{"distill.feature_norm": "target_energy"}))
    wide = replace(_cell("SpectralKD-Last"), **{"model.kwargs.lift_dim": 64})
    with pytest.raises(ConfigError, match="student block 1: 64, teacher block 3: 32"):
        validate(wide)
    no_teacher = dataclasses.replace(_profile(), distill=DistillConfig(kd="soft"))
    with pytest.raises(ConfigError, match="teacher's width"):
        no_teacher.student_config(kd="soft", feature="spectral", layers="last", student="lift")


@pytest.mark.parametrize("cell", FOLLOWUP)
def test_each_follow_up_cell_trains_from_its_profile(cell):
    run = train(_cell(cell), progress=False)
    record = run.records[0]
    assert math.isfinite(record["train_loss"]) and record["train_loss_fft"] > 0
    assert record["train_loss_feat/1-3"] > 0
    widths = widths_of(run.load_model())
    if cell in ("Lift-Last", "WideLast-Last"):
        assert widths == (16, 32)                       # the last block at the teacher's width
    elif cell == "UniformWide":
        assert widths[0] == widths[1] > 16


def test_uniformwide_width_is_the_nearest_parameter_match_in_head_steps():
    assert uniform_wide_width("ddkit_vit_student_fmnist", 205882) == 64
    assert uniform_wide_width("ddkit_vit_student_fmnist", 116938) == 48     # the student itself
    assert uniform_wide_width("ddkit_vit_student_fmnist", 100) == 48        # never narrower
