"""The follow-up's encoding-mismatch dimension (``signals.mismatch.followup_dim``) against a
plain-numpy reference written from its definition, hand-worked cases where it differs from the
centred dimension, and the rank-k target of the controlled-dimension design."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ddkit.core.config import ConfigError, DistillConfig, ModelConfig, RunConfig, config_hash, replace, validate
from ddkit.core.losses import DistillationLoss, RankTarget, pool_channels
from ddkit.signals import metrics
from ddkit.signals.mismatch import followup_dim, pair_rows


def reference(x: np.ndarray, energy: float = 0.95, q: float = 0.99) -> tuple[np.ndarray, float, int]:
    """The definition, written plainly: x [images, tokens, channels]. Uncentred second moment over
    every token, its eigenvectors by descending eigenvalue; per image the smallest d whose top-d
    directions hold >= energy of that image's energy; the q percentile over images; the global d."""
    images, tokens, channels = x.shape
    moment = np.zeros((channels, channels))
    for img in x:
        moment += img.T @ img
    moment /= images * tokens
    values, vectors = np.linalg.eigh(moment)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    dims = []
    for img in x:
        total = (img ** 2).sum()
        for d in range(1, channels + 1):
            if ((img @ vectors[:, :d]) ** 2).sum() >= energy * total:
                dims.append(d)
                break
        else:
            dims.append(channels)
    share = np.cumsum(values) / values.sum()
    global_dim = next(d for d in range(1, channels + 1) if share[d - 1] >= energy)
    return np.array(dims), float(np.percentile(dims, 100 * q)), global_dim


def as_maps(x: np.ndarray, grid: int) -> torch.Tensor:
    """[images, tokens, channels] -> [images, channels, grid, grid]."""
    t = torch.tensor(x, dtype=torch.float32)
    return t.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid, grid)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_followup_dim_matches_the_plain_reference(seed):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(24, 24)) * np.geomspace(3, 0.05, 24)[:, None]   # decaying spectrum
    x = rng.normal(size=(40, 16, 24)) @ mixing + rng.normal(size=24)           # plus a mean
    dims, p99, global_dim = reference(x.astype(np.float32).astype(np.float64))
    got = followup_dim(as_maps(x, 4))
    np.testing.assert_array_equal(got.per_image, dims)
    assert got.quantile == pytest.approx(p99)
    assert got.global_dim == global_dim
    assert got.width == 24


def test_a_strong_mean_direction_makes_the_uncentred_dimension_small():
    """Rank-3 codes riding on a large common mean: the uncentred basis puts the mean first, so a
    few directions hold 95 % of every image's energy; the centred dimension ignores the mean and
    counts the code's 3 directions."""
    rng = np.random.default_rng(0)
    mean = np.zeros(16)
    mean[0] = 20.0
    code = rng.normal(size=(30, 49, 3)) @ np.eye(3, 16, k=1)                  # directions 1-3
    x = mean + code
    got = followup_dim(as_maps(x, 7))
    assert got.global_dim == 1 and got.quantile == 1.0
    centred = metrics.pca_dims([as_maps(x, 7)], 0.95, fractional=True).item()
    assert 2.5 < centred <= 3.0


def test_images_whose_tokens_are_all_equal():
    """Each image's tokens are one vector (its own rank is 1), on channel i % 4. The shared basis
    orders the channels by their energy over the data set (channel 3 first, 0 last), and an
    image's d counts the shared directions from the top, so it is that channel's rank there: the
    per-image dimension is taken in the shared basis, not in the image's own."""
    x = np.zeros((8, 9, 6))
    for i in range(8):
        x[i, :, i % 4] = 1.0 + i          # channel energies 26, 40, 58, 80: a strict order
    got = followup_dim(as_maps(x, 3))
    np.testing.assert_array_equal(got.per_image, [4 - i % 4 for i in range(8)])
    assert got.quantile == 4.0 and got.global_dim == 4
    zero = followup_dim(as_maps(np.zeros((3, 9, 6)), 3))
    assert (zero.per_image == 6).all()    # no energy: never reached, counted as C (as released)


def test_one_outlying_image_moves_the_99th_percentile():
    """99 images on two directions and one spread over all 12: numpy's linear 99th percentile of
    the 100 per-image dimensions is 2 + 0.01 · (d_outlier - 2)."""
    rng = np.random.default_rng(1)
    x = np.zeros((100, 16, 12))
    x[:99, :, :2] = rng.normal(size=(99, 16, 2)) * [4.0, 3.0]
    x[99] = rng.normal(size=(16, 12))
    got = followup_dim(as_maps(x, 4))
    outlier = int(got.per_image[99])
    assert (got.per_image[:99] == 2).all() and outlier > 6
    assert got.quantile == pytest.approx(2 + 0.01 * (outlier - 2))
    assert followup_dim(as_maps(x[:99], 4)).quantile == 2.0


def test_pair_rows_give_the_followup_ratio_and_the_targets_dimensions():
    rng = np.random.default_rng(2)
    teacher = as_maps(rng.normal(size=(50, 16, 32)) * np.geomspace(2, 0.1, 32), 4)
    student = as_maps(rng.normal(size=(50, 16, 8)), 4)
    row = pair_rows([(0, 0)], [teacher], [student])[0]
    assert row["teacher_dim_followup"] == followup_dim(teacher).quantile
    assert row["ratio"] == pytest.approx(row["teacher_dim_followup"] / 8)
    assert row["teacher_dim_global"] == followup_dim(teacher).global_dim
    assert row["ratio_centred"] == pytest.approx(row["teacher_dim_centred"] / 8)
    # SpectralKD's target is the teacher pooled to the student's width: never above 8
    assert row["target_dim_spectralkd"] == followup_dim(pool_channels(teacher, 8)).quantile <= 8
    assert row["target_dim_projectorkd"] == row["teacher_dim_followup"]


# --------------------------------------------------------------------------- the rank-k target

def test_rank_target_projects_onto_the_top_k_shared_directions():
    rng = np.random.default_rng(3)
    f = as_maps(rng.normal(size=(20, 16, 12)) * np.geomspace(3, 0.2, 12), 4)
    target = RankTarget(12, 3)
    with pytest.raises(RuntimeError, match="fit"):
        target(f)
    target.fit(f)
    out = target(f)
    assert out.shape == f.shape
    tokens = f.flatten(2).transpose(1, 2).reshape(-1, 12).double()
    values, vectors = np.linalg.eigh((tokens.T @ tokens / len(tokens)).numpy())
    top = vectors[:, np.argsort(values)[::-1][:3]]
    expected = tokens.numpy() @ top @ top.T
    got = out.flatten(2).transpose(1, 2).reshape(-1, 12).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert followup_dim(out).global_dim <= 3
    full = RankTarget(12, 12)
    full.fit(f)
    torch.testing.assert_close(full(f), f, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="rank"):
        RankTarget(12, 13)


def test_the_loss_aligns_with_the_projected_target():
    f_s, f_t = torch.randn(6, 4, 3, 3), torch.randn(6, 16, 3, 3)
    loss = DistillationLoss(kd="soft", feature="spectral", layer_pairs=[(0, 0)], student_dims=4,
                            teacher_dims=16, target_rank=2)
    assert loss.needs_fit
    loss.fit({0: f_t})
    assert not loss.needs_fit
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    out = loss(logits, y, logits, {0: f_s}, {0: f_t})
    plain = DistillationLoss(kd="soft", feature="spectral", layer_pairs=[(0, 0)])
    projected = loss.targets[0](f_t)
    expected = plain(logits, y, logits, {0: f_s}, {0: projected})
    torch.testing.assert_close(out["loss_feat/0-0"], expected["loss_feat/0-0"])
    with pytest.raises(ValueError, match="target_rank"):
        DistillationLoss(kd="soft", feature="none", target_rank=2)


def test_target_rank_is_validated_and_leaves_other_hashes_alone():
    teacher = ModelConfig(name="ddkit_vit_teacher_fmnist")
    cfg = RunConfig(distill=DistillConfig(kd="soft", feature="spectral", layers="last", teacher=teacher))
    assert config_hash(replace(cfg, **{"distill.target_rank": None})) == config_hash(cfg)
    ranked = replace(cfg, **{"distill.target_rank": 4})
    assert config_hash(ranked) != config_hash(cfg)
    validate(ranked)
    with pytest.raises(ConfigError, match="target_rank"):
        validate(replace(cfg, **{"distill.target_rank": 97}))
    with pytest.raises(ConfigError, match="target_rank"):
        validate(replace(cfg, **{"distill.feature": "none", "distill.layers": "none",
                                 "distill.target_rank": 4}))
