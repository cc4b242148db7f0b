"""The phase map's remedies (ddkit.core.losses): each against a plain reference, and each trainable
end to end from a cell name."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddkit.core.config import CELLS, ConfigError, cell_parts, replace, validate
from ddkit.core.losses import (
    DistillationLoss,
    GenerationKD,
    LossLift,
    TopPCKD,
    phase_weight,
    spectral_kd_loss,
)
from ddkit.runs.store import RunDir
from ddkit.runs.train import train
from tests.helpers import interrupted_at_epoch, tiny_config


def _spectral_reference(s: np.ndarray, t: np.ndarray) -> float:
    """SpectralKD with equal channels, by numpy's FFT: MSE over stacked real/imag parts."""
    a, b = np.fft.rfft2(s, norm="ortho"), np.fft.rfft2(t, norm="ortho")
    d = np.stack([(a - b).real, (a - b).imag])
    return float((d ** 2).mean())


def test_lift_is_spectral_kd_of_the_layer_normed_linear_lift():
    torch.manual_seed(1)
    lift = LossLift(4, 6)
    with torch.no_grad():
        lift.norm.weight.uniform_(0.5, 2)
        lift.norm.bias.uniform_(-1, 1)
    f_s, f_t = torch.randn(2, 4, 3, 5), torch.randn(2, 6, 3, 5)
    x = f_s.permute(0, 2, 3, 1).numpy().astype(np.float64) @ lift.lift.weight.detach().numpy().T.astype(np.float64)
    x = x + lift.lift.bias.detach().numpy()
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    x = x * lift.norm.weight.detach().numpy() + lift.norm.bias.detach().numpy()
    expected = _spectral_reference(x.transpose(0, 3, 1, 2), f_t.numpy().astype(np.float64))
    assert lift(f_s, f_t).item() == pytest.approx(expected, rel=1e-4)


def test_generation_without_mask_is_mse_of_the_generated_map():
    torch.manual_seed(2)
    gen = GenerationKD(4, 6, mask_ratio=0.0)
    f_s, f_t = torch.randn(2, 4, 3, 3), torch.randn(2, 6, 3, 3)
    aligned = gen.align(f_s.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    expected = F.mse_loss(gen.generator(aligned), f_t)
    assert gen(f_s, f_t).item() == pytest.approx(expected.item(), rel=1e-6)


def test_generation_masks_about_half_the_tokens_with_the_mask_token():
    torch.manual_seed(3)
    gen = GenerationKD(4, 6, mask_ratio=0.5)
    with torch.no_grad():
        gen.mask_token.fill_(123.0)
    seen = {}
    gen.generator.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    gen(torch.randn(8, 4, 8, 8), torch.randn(8, 6, 8, 8))
    masked = (seen["x"] == 123.0).all(1)                     # [B, H, W]
    assert 0.4 < masked.float().mean().item() < 0.6
    with pytest.raises(ValueError, match="mask_ratio"):
        GenerationKD(4, 6, mask_ratio=1.0)


def test_top_pc_basis_and_target_match_numpy_pca():
    rng = np.random.default_rng(0)
    # teacher tokens with variances 9, 4, 1, 0.25, ... along a random orthonormal basis
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    scales = np.array([3, 2, 1, 0.5, 0.2, 0.1])
    tokens = (rng.normal(size=(500, 6)) * scales) @ q.T + 5.0
    f_t = torch.tensor(tokens.reshape(20, 5, 5, 6).transpose(0, 3, 1, 2), dtype=torch.float32)
    module = TopPCKD(3, 6)
    module.fit(f_t)
    centred = tokens - tokens.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    top = vt[:3].T                                             # [6, 3]
    top = top * np.sign(top[np.abs(top).argmax(0), range(3)])
    np.testing.assert_allclose(module.basis.numpy(), top, atol=1e-4)
    target = (centred @ top).reshape(20, 5, 5, 3).transpose(0, 3, 1, 2)
    f_s = torch.zeros(20, 3, 5, 5)
    expected = _spectral_reference(np.zeros_like(target), target)
    assert module(f_s, f_t).item() == pytest.approx(expected, rel=1e-3)
    # the student that outputs the projection has zero loss
    assert module(torch.tensor(target, dtype=torch.float32), f_t).item() == pytest.approx(0, abs=1e-6)


def test_top_pc_refuses_an_unfitted_basis_and_a_wider_student():
    with pytest.raises(RuntimeError, match="fit"):
        TopPCKD(2, 4)(torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="exceeds"):
        TopPCKD(8, 4)


def test_phase_weight_is_a_half_cosine_to_zero_at_until():
    assert phase_weight(0.0, 0.5) == 1.0
    assert phase_weight(0.25, 0.5) == pytest.approx(0.5)
    assert phase_weight(0.5, 0.5) == 0.0 and phase_weight(0.9, 0.5) == 0.0
    assert phase_weight(0.7, None) == 1.0


def test_the_feature_term_follows_the_phase_weight():
    torch.manual_seed(4)
    loss = DistillationLoss(kd="soft", feature="spectral", layer_pairs=[(0, 0)],
                            feature_weight=0.2, feature_until=0.5)
    logits, y = torch.randn(4, 10), torch.randint(0, 10, (4,))
    fs, ft = {0: torch.randn(4, 3, 2, 2)}, {0: torch.randn(4, 6, 2, 2)}
    raw = spectral_kd_loss(fs[0], ft[0]).item()
    for progress, factor in ((0.0, 1.0), (0.25, 0.5), (0.6, 0.0)):
        loss.progress = progress
        out = loss(logits, y, torch.randn(4, 10), fs, ft)
        assert out["loss_fft"].item() == pytest.approx(0.2 * factor * raw, rel=1e-5, abs=1e-9)


def test_remedy_cells_name_their_method_and_old_hashes_stay():
    assert cell_parts("PhasedKD-Last") == {"method": "PhasedKD", "layers": "last"}
    assert cell_parts("TopPCKD-Last")["method"] == "TopPCKD"
    from ddkit.core.config import config_hash
    cfg = tiny_config(kd="soft", feature="spectral", layers="last")
    assert config_hash(cfg) == config_hash(replace(cfg, **{"distill.feature_until": None}))
    assert config_hash(cfg) != config_hash(replace(cfg, **{"distill.feature_until": 0.5}))


def test_bad_remedy_settings_fail_before_compute():
    with pytest.raises(ConfigError, match="feature_until"):
        validate(tiny_config(kd="soft", feature="spectral", layers="last", feature_until=1.5))
    wide = replace(tiny_config(kd="soft", feature="top_pc", layers="last"),
                   **{"model.kwargs.embed_dim": 64})
    with pytest.raises(ConfigError, match="no wider than its teacher"):
        validate(wide)


@pytest.mark.parametrize("cell", ["LossLift-Last", "GenKD-Last", "PhasedKD-Last"])
def test_each_remedy_trains_from_its_cell(cell):
    """(TopPCKD-Last trains end to end in the resume test below.)"""
    phased = cell == "PhasedKD-Last"
    run = train(tiny_config(epochs=2 if phased else 1, **CELLS[cell]), progress=False)
    records = run.records
    assert all(math.isfinite(r["train_loss"]) for r in records)
    assert records[0]["train_loss_fft"] > 0
    if phased:                       # half the schedule with the feature term, half without
        assert records[1]["train_loss_fft"] == 0 < records[0]["train_loss_fft"]


def test_top_pc_resume_keeps_the_fitted_basis(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=2, kd="soft", feature="top_pc", layers="last")
    whole = train(cfg, progress=False, root=tmp_path / "whole")
    with interrupted_at_epoch(monkeypatch, 1), pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, root=tmp_path / "resumed")
    assert not RunDir.for_config(cfg, tmp_path / "resumed").is_complete
    resumed = train(cfg, progress=False, root=tmp_path / "resumed")
    assert all(math.isfinite(r["train_loss"]) and r["train_loss_fft"] > 0 for r in resumed.records)
    a = torch.load(whole.dir.checkpoint, weights_only=False)["trainable"]
    b = torch.load(resumed.dir.checkpoint, weights_only=False)["trainable"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
