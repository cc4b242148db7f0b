"""Models and feature access: presets, the paper pair, recorder == timm's forward_intermediates."""
import pytest
import timm
import torch

from ddkit.core.anatomy import describe, model_depth
from ddkit.core.hooks import FeatureRecorder, block_features, forward_with_features, tokens_to_map
from ddkit.core.models import PAPER_STUDENT, PAPER_TEACHER, create_model


def test_default_pair_shapes():
    teacher, student = (describe(create_model(n)) for n in
                        ("ddkit_vit_teacher_fmnist", "ddkit_vit_student_fmnist"))
    assert teacher["width"] == 2 * student["width"] and teacher["depth"] == 2 * student["depth"]
    assert teacher["token_grid"] == student["token_grid"] == "7x7"


def test_presets_are_timm_models():
    model = timm.create_model("ddkit_vit_student_fmnist", depth=1)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"unknown model name 'deit_tiny_patch16'.*deit_tiny_patch16_224"):
        create_model("deit_tiny_patch16")


def test_paper_depths_without_weights():
    assert model_depth(PAPER_TEACHER) == 24 and model_depth(PAPER_STUDENT) == 12


@pytest.fixture(scope="module")
def paper_pair():
    torch.manual_seed(0)
    return (create_model(PAPER_TEACHER).eval(), create_model(PAPER_STUDENT).eval())


def test_paper_presets_give_the_papers_feature_shapes(paper_pair):
    teacher, student = paper_pair
    x = torch.randn(1, 3, 224, 224)
    t = block_features(teacher, x, layers=[0, 23])
    s = block_features(student, x, layers=[0, 11])
    assert t.shape == (2, 1, 384, 14, 14) and s.shape == (2, 1, 192, 14, 14)


@pytest.mark.parametrize("which", ["vit", "deit", "cait"])
def test_recorder_equals_forward_intermediates(which, paper_pair):
    if which == "vit":
        model = create_model("ddkit_vit_teacher_fmnist").eval()
        x = torch.randn(3, 1, 28, 28)
    else:
        model = paper_pair[0] if which == "cait" else paper_pair[1]
        x = torch.randn(1, 3, 224, 224)
    depth = len(model.blocks)
    layers = [0, depth // 2, depth - 1]
    ours = block_features(model, x, layers)
    _, theirs = model.forward_intermediates(x, indices=layers, norm=False, output_fmt="NCHW")
    torch.testing.assert_close(ours, torch.stack(theirs), rtol=0, atol=0)
    logits, feats = forward_with_features(model, x, layers)
    torch.testing.assert_close(logits, model(x), rtol=1e-5, atol=1e-5)
    assert sorted(feats) == layers


def test_gradients_match_autograd():
    model = create_model("ddkit_vit_student_fmnist").eval()
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 5, 9])
    raw = {}
    handle = model.blocks[1].register_forward_hook(lambda m, i, o: raw.setdefault("out", o))
    with FeatureRecorder(model, layers=[1, 3], gradients=True) as rec:
        score = model(x)[torch.arange(4), y].sum()        # the target-class logit
        expected = torch.autograd.grad(score, raw["out"], retain_graph=True)[0]
        score.backward()
    handle.remove()
    torch.testing.assert_close(rec.gradients[1], tokens_to_map(expected, (7, 7)))
    assert rec.stacked("gradients").shape == (2, 4, 48, 7, 7)


def test_attention_maps_and_fused_flag_restored():
    model = create_model("ddkit_vit_student_fmnist").eval()
    fused_before = [b.attn.fused_attn for b in model.blocks]
    with FeatureRecorder(model, attention=True) as rec:
        model(torch.randn(2, 1, 28, 28))
    att = rec.stacked("attention")                           # [L, B, heads, N, N]
    assert att.shape == (4, 2, 2, 50, 50)
    torch.testing.assert_close(att.sum(-1), torch.ones(4, 2, 2, 50))
    assert [b.attn.fused_attn for b in model.blocks] == fused_before


def test_hooks_removed_even_when_the_body_raises():
    model = create_model("ddkit_vit_student_fmnist")
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureRecorder(model, gradients=True, attention=True):
            raise RuntimeError("boom")
    for block in model.blocks:
        assert not block._forward_hooks and not block._backward_hooks
        assert not block.attn.attn_drop._forward_hooks


def test_bad_layer_index_and_kind():
    model = create_model("ddkit_vit_student_fmnist")
    with pytest.raises(ValueError, match=r"layer index 4 out of range.*0\.\.3"):
        FeatureRecorder(model, layers=[4])
    with FeatureRecorder(model) as rec:
        pass
    with pytest.raises(ValueError, match="kind='weights'"):
        rec.stacked("weights")
    with pytest.raises(RuntimeError, match="run a forward"):
        rec.stacked("features")
