"""Tests for ddkit.core.losses: hand-computed values and independent loop/numpy references."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddkit.core.losses import (
    DistillationLoss,
    ProjectorKD,
    feature_loss_diagnostics,
    hard_kd_loss,
    pool_channels,
    resolve_layer_pairs,
    soft_kd_loss,
    spectral_kd_loss,
)

E = math.e


# ----------------------------------------------------------------------------- logit KD

def test_soft_kd_hand_value():
    # row 0: p_t = softmax([3,2,1]), p_s = softmax([1,2,3]) share the normaliser Z, so
    # log p_t - log p_s = [2, 0, -2] and KL = 2 (e^3 - e) / (e^3 + e^2 + e); row 1: KL = 0.
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]])
    kl_row0 = 2 * (E ** 3 - E) / (E ** 3 + E ** 2 + E)
    assert soft_kd_loss(s, t).item() == pytest.approx(kl_row0 / 2, rel=1e-6)  # batchmean
    # tau = 2: scaled logits differ by [1, 0, -1]; KL = (e^1.5 - e^0.5) / (e^1.5 + e + e^0.5)
    kl_tau2 = (E ** 1.5 - E ** 0.5) / (E ** 1.5 + E + E ** 0.5)
    assert soft_kd_loss(s, t, tau=2.0).item() == pytest.approx(4 * kl_tau2 / 2, rel=1e-6)


def test_soft_kd_zero_for_equal_logits_and_tau_squared_scaling():
    torch.manual_seed(0)
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    assert soft_kd_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)
    for tau in (0.5, 2.0, 4.0):
        unscaled = F.kl_div(F.log_softmax(s / tau, -1), F.softmax(t / tau, -1), reduction="sum") / 5
        assert soft_kd_loss(s, t, tau).item() == pytest.approx(tau ** 2 * unscaled.item(), rel=1e-5)


def test_soft_kd_teacher_gets_no_gradient():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    soft_kd_loss(s, t).backward()
    assert s.grad is not None and t.grad is None


def test_hard_kd_hand_value():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 5.0]])  # argmax 0 and 2
    row0 = math.log(E + E ** 2 + E ** 3) - 1.0
    row1 = math.log(3.0)
    assert hard_kd_loss(s, t).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_logit_kd_shape_errors():
    with pytest.raises(ValueError, match="teacher_logits"):
        soft_kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="tau"):
        soft_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), tau=0.0)
    with pytest.raises(ValueError, match="teacher_logits"):
        hard_kd_loss(torch.zeros(2, 3), torch.zeros(3, 3))


# ----------------------------------------------------------------------------- SpectralKD

def reference_spectral(f_s: np.ndarray, f_t: np.ndarray) -> float:
    """Plain reference: loop pooling with floor/ceil windows, numpy rfft2, manual MSE."""
    c_s, c_t = f_s.shape[1], f_t.shape[1]
    pooled = np.empty((f_t.shape[0], c_s) + f_t.shape[2:])
    for i in range(c_s):
        lo, hi = (i * c_t) // c_s, -((-(i + 1) * c_t) // c_s)  # floor, ceil
        pooled[:, i] = f_t[:, lo:hi].mean(axis=1)
    x_s = np.fft.rfft2(f_s, norm="ortho")
    x_t = np.fft.rfft2(pooled, norm="ortho")
    diffs = np.concatenate([(x_s.real - x_t.real).ravel(), (x_s.imag - x_t.imag).ravel()])
    return float(np.sum(diffs ** 2) / diffs.size)


@pytest.mark.parametrize("c_s,c_t,h,w", [(4, 8, 5, 6), (3, 8, 4, 7), (5, 12, 3, 3), (6, 6, 4, 4)])
def test_spectral_matches_plain_reference(c_s, c_t, h, w):
    g = torch.Generator().manual_seed(c_s * 100 + c_t)
    f_s = torch.randn(2, c_s, h, w, generator=g, dtype=torch.float64)
    f_t = torch.randn(2, c_t, h, w, generator=g, dtype=torch.float64) * 3
    expected = reference_spectral(f_s.numpy(), f_t.numpy())
    assert spectral_kd_loss(f_s, f_t).item() == pytest.approx(expected, rel=1e-5)


def test_pool_channels_windows():
    f = torch.arange(5.0).view(1, 5, 1, 1)  # channels 0..4
    # 5 → 3 windows: [0, 2), [1, 4), [3, 5)
    assert pool_channels(f, 3).flatten().tolist() == pytest.approx([0.5, 2.0, 3.5])


def test_spectral_parseval_relationship():
    # Ortho rfft2 keeps columns k_w = 0 … W//2. The full spectrum has the energy of the map
    # (Parseval); each dropped column mirrors a kept one, except the self-conjugate columns
    # k_w = 0 and (W even) k_w = W/2. Hence, with D = f_s - f_t and S_half the half-spectrum
    # energy:  sum(D²) = 2·S_half - |col 0|² - |col W/2|²,
    # and loss = S_half / (B·C·H·(W//2+1)·2).
    torch.manual_seed(1)
    for w in (6, 7):
        f_s = torch.randn(2, 3, 5, w, dtype=torch.float64)
        f_t = torch.randn(2, 3, 5, w, dtype=torch.float64)
        d = (f_s - f_t).numpy()
        spec = np.fft.rfft2(d, norm="ortho")
        self_conj = np.sum(np.abs(spec[..., 0]) ** 2)
        if w % 2 == 0:
            self_conj += np.sum(np.abs(spec[..., w // 2]) ** 2)
        s_half = spectral_kd_loss(f_s, f_t).item() * (2 * 3 * 5 * (w // 2 + 1) * 2)
        assert 2 * s_half - self_conj == pytest.approx(np.sum(d ** 2), rel=1e-9)
        # so the spectral loss is within a factor 2 of the spatial squared error per bin
        assert s_half <= np.sum(d ** 2) <= 2 * s_half


def test_spectral_zero_for_identical_and_detaches_teacher():
    f = torch.randn(2, 4, 3, 3)
    assert spectral_kd_loss(f, f.clone()).item() == pytest.approx(0.0, abs=1e-10)
    f_s = torch.randn(2, 4, 3, 3, requires_grad=True)
    f_t = torch.randn(2, 8, 3, 3, requires_grad=True)
    spectral_kd_loss(f_s, f_t).backward()
    assert f_s.grad is not None and f_t.grad is None


@pytest.mark.parametrize("f_s,f_t", [
    (torch.zeros(2, 8, 3, 3), torch.zeros(2, 4, 3, 3)),  # C_s > C_t
    (torch.zeros(2, 4, 3, 3), torch.zeros(3, 8, 3, 3)),  # B differs
    (torch.zeros(2, 4, 3, 3), torch.zeros(2, 8, 3, 4)),  # W differs
    (torch.zeros(2, 4, 9), torch.zeros(2, 8, 9)),  # rank 3
])
def test_spectral_bad_shapes(f_s, f_t):
    with pytest.raises(ValueError, match=r"student \(.*teacher \("):
        spectral_kd_loss(f_s, f_t)


def test_feature_loss_diagnostics():
    torch.manual_seed(2)
    f_t = torch.randn(2, 8, 4, 4)
    f_s = pool_channels(f_t, 4) * 0.5  # half the pooled teacher: cosine 1, relative 0.25
    d = feature_loss_diagnostics(f_s, f_t)
    assert d["raw"] == pytest.approx(spectral_kd_loss(f_s, f_t).item())
    assert d["zero"] == pytest.approx(spectral_kd_loss(torch.zeros_like(f_s), f_t).item())
    assert d["relative"] == pytest.approx(0.25, rel=1e-5)
    assert d["cosine"] == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- ProjectorKD

def test_projector_faithful_is_frozen_but_passes_gradients():
    torch.manual_seed(3)
    kd = ProjectorKD(4, 8)
    assert kd.mode == "faithful"
    assert not any(p.requires_grad for p in kd.parameters())
    assert kd.bn_s.weight is None and kd.bn_t.weight is None  # γ=1, β=0
    f_s = torch.randn(2, 4, 3, 3, requires_grad=True)
    f_t = torch.randn(2, 8, 3, 3, requires_grad=True)
    kd.eval()  # batch statistics are used regardless of mode
    loss = kd(f_s, f_t)
    loss.backward()
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0 and f_t.grad is None
    # independent route: per-token matmul, batch-norm by hand, MSE
    y = torch.einsum("bchw,oc->bohw", f_s, kd.proj.weight) + kd.proj.bias.view(1, -1, 1, 1)

    def bn(x):
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5)

    assert loss.item() == pytest.approx(((bn(y) - bn(f_t)) ** 2).mean().item(), rel=1e-5)


def test_projector_learnable_and_bad_mode():
    kd = ProjectorKD(4, 8, mode="learnable")
    names = {n for n, p in kd.named_parameters() if p.requires_grad}
    assert names == {"proj.weight", "proj.bias", "bn_s.weight", "bn_s.bias",
                     "bn_t.weight", "bn_t.bias"}
    with pytest.raises(ValueError, match="faithful.*learnable"):
        ProjectorKD(4, 8, mode="trained")
    with pytest.raises(ValueError, match="ProjectorKD"):
        kd(torch.zeros(2, 5, 3, 3), torch.zeros(2, 8, 3, 3))


# ----------------------------------------------------------------------------- layer maps

def test_layer_pairs_deit_tiny_cait_s24():
    assert resolve_layer_pairs("first", 12, 24) == [(0, 0)]
    assert resolve_layer_pairs("last", 12, 24) == [(11, 23)]
    assert resolve_layer_pairs("first_last", 12, 24) == [(0, 0), (11, 23)]
    assert resolve_layer_pairs("none", 12, 24) == []
    assert resolve_layer_pairs([(3, -1), [-2, 5]], 12, 24) == [(3, 23), (10, 5)]


@pytest.mark.parametrize("spec,match", [
    ("middle", "middle.*first_last"),
    ([(12, 0)], "student block index 12.*-12 … 11"),
    ([(0, -25)], "teacher block index -25.*-24 … 23"),
    ([(0, 1, 2)], "pair"),
    ([(0.5, 1)], "student block index must be an int"),
    ([(0, 0), (-12, -24)], "twice"),
])
def test_layer_pairs_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_layer_pairs(spec, 12, 24)


# ----------------------------------------------------------------------------- total loss

def _batch(b=4, k=5, c_s=4, c_t=8):
    g = torch.Generator().manual_seed(4)
    s = torch.randn(b, k, generator=g, requires_grad=True)
    t = torch.randn(b, k, generator=g)
    y = torch.randint(0, k, (b,), generator=g)
    fs = {i: torch.randn(b, c_s, 3, 3, generator=g, requires_grad=True) for i in range(3)}
    ft = {i: torch.randn(b, c_t, 3, 3, generator=g) for i in range(6)}
    return s, t, y, fs, ft


def test_distillation_loss_defaults():
    loss = DistillationLoss()
    assert (loss.kd, loss.alpha, loss.tau, loss.feature) == ("soft", 0.9, 1.0, "none")
    assert loss.feature_weight == 0.2
    assert loss.base_criterion.smoothing == 0.1


@pytest.mark.parametrize("kd", ["soft", "hard", "none"])
@pytest.mark.parametrize("feature", ["none", "spectral", "projector"])
def test_distillation_loss_parts_add_up(kd, feature):
    s, t, y, fs, ft = _batch()
    pairs = [] if feature == "none" else [(0, 0), (2, 5)]
    crit = DistillationLoss(kd=kd, feature=feature, layer_pairs=pairs,
                            student_dims=4, teacher_dims=8)
    out = crit(s, y, t, fs, ft)
    assert out["loss"].item() == pytest.approx(
        (out["loss_base"] + out["loss_dist"] + out["loss_fft"]).item(), rel=1e-6)
    ce = F.cross_entropy(s, y, label_smoothing=0.1)  # same as timm's smoothing for 1-hot targets
    base = ce if kd == "none" else 0.1 * ce
    assert out["loss_base"].item() == pytest.approx(base.item(), rel=1e-5)
    dist = {"soft": 0.9 * soft_kd_loss(s, t), "hard": 0.9 * hard_kd_loss(s, t),
            "none": torch.tensor(0.0)}[kd]
    assert out["loss_dist"].item() == pytest.approx(dist.item(), rel=1e-6)
    if feature == "none":
        assert out["loss_fft"].item() == 0.0 and not any(k.startswith("loss_feat/") for k in out)
    else:
        raw = [out["loss_feat/0-0"], out["loss_feat/2-5"]]
        if feature == "spectral":
            assert raw[1].item() == pytest.approx(spectral_kd_loss(fs[2], ft[5]).item())
        assert out["loss_fft"].item() == pytest.approx(0.2 * (raw[0] + raw[1]).item() / 2, rel=1e-6)
    out["loss"].backward()
    assert s.grad is not None


def test_distillation_loss_no_smoothing_uses_plain_ce():
    s, t, y, _, _ = _batch()
    out = DistillationLoss(kd="none", label_smoothing=0.0)(s, y)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kd="kl"), "kd.*soft"),
    (dict(feature="attention"), "feature.*spectral"),
    (dict(alpha=1.5), "alpha"),
    (dict(tau=0.0), "tau"),
    (dict(feature="spectral"), "layer_pairs"),
    (dict(feature="projector", layer_pairs=[(0, 0)]), "student_dims"),
    (dict(feature="projector", layer_pairs=[(0, 0)], student_dims=4), "teacher_dims"),
    (dict(projector_mode="frozen"), "projector_mode.*faithful"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(feature="spectral", layer_pairs=[(-1, 0)]), "layer_pairs"),
])
def test_distillation_loss_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillationLoss(**kwargs)


def test_distillation_loss_missing_inputs():
    s, t, y, fs, ft = _batch()
    with pytest.raises(ValueError, match="teacher_logits"):
        DistillationLoss(kd="soft")(s, y)
    crit = DistillationLoss(kd="none", feature="spectral", layer_pairs=[(0, 0)])
    with pytest.raises(ValueError, match="student_feats"):
        crit(s, y)
    with pytest.raises(ValueError, match="teacher_feats has no block 0"):
        crit(s, y, student_feats=fs, teacher_feats={3: ft[3]})
