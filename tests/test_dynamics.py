"""dynamics.analyze: every metric per layer, equal to the metrics on the recorded features."""
import pytest
import torch

from ddkit import dynamics, metrics
from ddkit.data import build_dataset
from ddkit.hooks import block_features
from ddkit.models import create_model
from ddkit.store import save_weights

METRICS = {"token_entropy", "token_entropy_per_layer", "spectrum_intensity",
           "activation_magnitude", "intensity_over_magnitude", "gradient_magnitude",
           "dlogamp_high", "effective_rank", "pca_dims", "energy_concentration_50",
           "energy_concentration_90"}


@pytest.fixture(scope="module")
def test_set():
    return build_dataset("fashion_mnist", "test", subset=200, seed=0)


def _student():
    torch.manual_seed(0)
    return create_model("ddkit_vit_student_fmnist", depth=3).eval()


def test_analyze_gives_every_metric_per_layer(test_set):
    table = dynamics.analyze(_student(), test_set, name="s", n=40)
    assert list(table.columns) == dynamics.COLUMNS
    assert set(table["metric"]) == METRICS
    for metric, rows in table.groupby("metric"):
        assert sorted(rows["layer"]) == [0, 1, 2], metric
    assert table["value"].map(lambda v: v == v and abs(v) < float("inf")).all()


def test_analyze_matches_metrics_on_recorded_features(test_set):
    model = _student()
    x, y = dynamics.sample_batch(test_set, 40)
    table = dynamics.analyze(model, (x, y), name="s")
    feats = block_features(model, x)                                   # [L, B, C, H, W]
    got = table[table.metric == "token_entropy"].sort_values("layer")["value"].to_numpy()
    torch.testing.assert_close(torch.tensor(got), metrics.token_entropy(feats).double(),
                               rtol=1e-6, atol=1e-6)
    _, intensity = metrics.channel_spectrum(feats)
    got = table[table.metric == "intensity_over_magnitude"].sort_values("layer")["value"].to_numpy()
    expected = intensity / metrics.activation_magnitude(feats)
    torch.testing.assert_close(torch.tensor(got), expected.double(), rtol=1e-5, atol=1e-6)


def test_checkpoints_give_rows_per_epoch(tmp_path, test_set):
    model = _student()
    paths = {}
    for epoch in (0, 4):
        torch.manual_seed(epoch)
        paths[epoch] = tmp_path / f"e{epoch}.safetensors"
        save_weights(paths[epoch], create_model("ddkit_vit_student_fmnist", depth=3).state_dict())
    table = dynamics.analyze(model, test_set, name="s", checkpoints=paths, n=20)
    assert sorted(table["epoch"].unique()) == [0, 4]
    a, b = (table[(table.epoch == e) & (table.metric == "activation_magnitude")]["value"].to_numpy()
            for e in (0, 4))
    assert not (a == b).all()                      # different weights, different numbers


def test_sampling_balanced_or_paper_faithful(test_set):
    _, y = dynamics.sample_batch(test_set, 50, seed=1)
    assert torch.bincount(y).tolist() == [5] * 10
    x, y = dynamics.sample_batch(test_set, 7, paper_faithful=True)
    first = [test_set[i][1] for i in range(7)]
    assert y.tolist() == first and x.shape == (7, 1, 28, 28)
    with pytest.raises(ValueError, match="n=0"):
        dynamics.sample_batch(test_set, 0)


def test_cka_of_a_model_with_itself_has_unit_diagonal(test_set):
    model = _student()
    x, y = dynamics.sample_batch(test_set, 30)
    cka = dynamics.cka(model, model, x, y)
    torch.testing.assert_close(cka.diagonal(), torch.ones(3, dtype=cka.dtype), rtol=1e-4, atol=1e-4)
