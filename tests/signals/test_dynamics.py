"""dynamics.analyze: every metric per layer, equal to the metrics on the recorded features."""
import pytest
import torch

from ddkit.core.data import build_dataset
from ddkit.core.hooks import block_features
from ddkit.core.models import create_model
from ddkit.runs.store import save_weights
from ddkit.signals import dynamics, metrics

METRICS = {"token_entropy", "token_entropy_per_layer", "spectrum_intensity",
           "activation_magnitude", "intensity_over_magnitude", "gradient_magnitude",
           "dlogamp_high", "effective_rank", "pca_dims", "pca_dims_95", "energy_concentration_50",
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


# --------------------------------------------------------------------------- prefix tokens


def _reference_magnitudes(model, x, y):
    """Plain reference: mean |block output| and mean |d score / d block output| over every token
    (prefix included) and over the patch tokens only, from raw forward hooks and autograd."""
    outputs = []
    handles = [b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in model.blocks]
    score = model(x).gather(1, y[:, None]).sum()
    grads = torch.autograd.grad(score, outputs)
    for h in handles:
        h.remove()
    n_patches = outputs[0].shape[1] - (0 if type(model).__name__ == "Cait" else model.num_prefix_tokens)
    keep = [(o.abs().mean().item(), g.abs().mean().item()) for o, g in zip(outputs, grads)]
    drop = [(o[:, -n_patches:].abs().mean().item(), g[:, -n_patches:].abs().mean().item())
            for o, g in zip(outputs, grads)]
    return keep, drop


@pytest.mark.parametrize("name, kwargs, prefix", [
    ("vit_tiny_patch16_224", {"depth": 3}, 1),
    ("deit_tiny_distilled_patch16_224", {"depth": 2}, 2),
    ("cait_xxs24_224", {"depth": 2, "depth_token_only": 1}, 0),
])
def test_prefix_tokens_keep_and_drop_match_a_plain_reference(name, kwargs, prefix):
    torch.manual_seed(0)
    model = create_model(name, img_size=32, num_classes=10, **kwargs).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 5, 9])
    keep, drop = _reference_magnitudes(model, x, y)
    rec = dynamics.record_blocks(model, x, y)
    assert rec.prefix.shape[2] == prefix
    for mode, reference in (("keep", keep), ("drop", drop)):
        got = dynamics.magnitudes(rec, mode)
        torch.testing.assert_close(got["activation_magnitude"].double(),
                                   torch.tensor([a for a, _ in reference], dtype=torch.float64))
        torch.testing.assert_close(got["gradient_magnitude"].double(),
                                   torch.tensor([g for _, g in reference], dtype=torch.float64))
    if prefix:    # the head reads the prefix tokens: the last block's patch tokens get no gradient
        assert drop[-1][1] == 0 and keep[-1][1] > 0
    else:         # CaiT's self-attention blocks hold no prefix token: both averages agree
        assert keep == drop


def test_every_table_row_states_its_prefix_tokens(test_set):
    model = _student()
    table = dynamics.analyze(model, test_set, n=20, prefix_tokens="keep")
    magnitude = table.metric.isin(["activation_magnitude", "gradient_magnitude"])
    assert set(table[magnitude].prefix_tokens) == {"keep"}
    assert set(table[~magnitude].prefix_tokens) == {"drop"}
    with pytest.raises(ValueError, match="prefix_tokens='all'"):
        dynamics.analyze(model, test_set, n=20, prefix_tokens="all")


# --------------------------------------------------------------------------- paper-faithful


def _values(table, metric):
    return torch.tensor(table[table.metric == metric].sort_values("layer")["value"].to_numpy())


def test_paper_faithful_follows_the_official_analysis(test_set):
    """Entropy and spectrum on the first 32 images with float32 bin edges; magnitudes on the
    first 5, each passed alone (score: its own target logit), prefix tokens kept."""
    model = _student()
    table = dynamics.analyze(model, test_set, paper_faithful=True)
    x, y = dynamics.sample_batch(test_set, 32, paper_faithful=True)
    feats = block_features(model, x)
    torch.testing.assert_close(_values(table, "token_entropy"), metrics.token_entropy(
        feats, range_dtype=torch.float32).double(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(_values(table, "spectrum_intensity"),
                               metrics.channel_spectrum(feats)[1].double(), rtol=1e-5, atol=1e-7)
    singles = [_reference_magnitudes(model, x[i:i + 1], y[i:i + 1])[0] for i in range(5)]
    expected = torch.tensor(singles, dtype=torch.float64).mean(0)          # [L, 2]
    torch.testing.assert_close(_values(table, "activation_magnitude"), expected[:, 0])
    torch.testing.assert_close(_values(table, "gradient_magnitude"), expected[:, 1])
    assert set(table.prefix_tokens[table.metric == "gradient_magnitude"]) == {"keep"}


def test_paper_faithful_is_honoured_for_a_batch(test_set):
    model = _student()
    x, y = dynamics.sample_batch(test_set, 40, paper_faithful=True)
    from_batch = dynamics.analyze(model, (x, y), paper_faithful=True)
    from_dataset = dynamics.analyze(model, test_set, paper_faithful=True)
    assert from_batch["value"].tolist() == from_dataset["value"].tolist()
    plain = dynamics.analyze(model, (x, y))
    assert not plain["value"].equals(from_batch["value"])


def test_analyze_leaves_the_model_as_it_came(test_set, tmp_path):
    model = _student().train()
    model.blocks[1].eval()                                 # a mixed state is restored too
    modes = [m.training for m in model.modules()]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    other = tmp_path / "other.safetensors"
    save_weights(other, create_model("ddkit_vit_student_fmnist", depth=3).state_dict())
    dynamics.analyze(model, test_set, n=20, checkpoints=[other])
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batch_size_does_not_change_the_numbers(test_set):
    model = _student()
    whole = dynamics.analyze(model, test_set, n=20)
    chunked = dynamics.analyze(model, test_set, n=20, batch_size=7)
    torch.testing.assert_close(torch.tensor(chunked["value"].to_numpy()),
                               torch.tensor(whole["value"].to_numpy()), rtol=1e-5, atol=1e-7)
