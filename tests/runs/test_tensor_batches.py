"""The in-memory data path of ddkit.runs.train: the same batches as the DataLoader, bit for bit, so a
run trained either way ends with the same weights and the same RNG state."""
import pytest
import torch
from safetensors.torch import load_file

import ddkit.runs.train as train_mod
from ddkit.core.config import replace
from ddkit.core.data import build_dataset
from ddkit.runs.teacher_cache import IndexedDataset
from ddkit.runs.train import TensorBatches, train
from tests.helpers import tiny_config


def _dataset(indexed: bool):
    ds = build_dataset("fashion_mnist", "train", subset=200, seed=3)
    return IndexedDataset(ds) if indexed else ds


@pytest.mark.parametrize("train_order", [True, False])
@pytest.mark.parametrize("indexed", [True, False])
def test_batches_equal_the_dataloader(train_order, indexed):
    ds = _dataset(indexed)
    held = TensorBatches(TensorBatches.collate(ds), 32, train_order, seed=3)
    for epoch in (0, 1):
        torch.manual_seed(epoch)
        loader = train_mod._loader(ds, 32, train_order, 3, epoch, 1, 0, 0, False)
        want = [list(b) for b in loader]
        rng_after_loader = torch.get_rng_state()
        torch.manual_seed(epoch)
        got = list(train_mod._loader(held, 32, train_order, 3, epoch, 1, 0, 0, False))
        assert torch.equal(torch.get_rng_state(), rng_after_loader)  # same RNG draws
        assert len(got) == len(want) == len(held.at_epoch(epoch))
        for a, b in zip(got, want):
            assert len(a) == len(b) == (3 if indexed else 2)
            for ta, tb in zip(a, b):
                assert ta.dtype == tb.dtype and torch.equal(ta, tb)
    # the order changes with the epoch (and only with seed and epoch)
    e0, e1 = (next(iter(held.at_epoch(e)))[1] for e in (0, 1))
    assert not torch.equal(e0, e1) or not train_order


def test_large_sets_stay_on_the_dataloader(monkeypatch):
    monkeypatch.setattr(train_mod, "IN_MEMORY_BYTES", 1000)
    assert TensorBatches.collate(_dataset(False)) is None
    assert isinstance(train_mod._in_memory(_dataset(False), 32, True, 0), type(_dataset(False)))


def test_a_run_trains_to_the_same_weights_on_either_data_path(monkeypatch, tmp_path):
    cfg = replace(tiny_config(epochs=2, kd="soft", feature="spectral", layers="last"),
                  **{"data.augment": False})
    held = train(cfg, progress=False, root=tmp_path / "held")
    monkeypatch.setattr(train_mod, "IN_MEMORY_BYTES", 0)  # every set through the DataLoader
    loaded = train(cfg, progress=False, root=tmp_path / "loader")
    a, b = load_file(str(held.dir.final_weights)), load_file(str(loaded.dir.final_weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda records: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]
    assert strip(held.records) == strip(loaded.records)
    ca = torch.load(held.dir.checkpoint, weights_only=False)["rng"]["torch"]
    cb = torch.load(loaded.dir.checkpoint, weights_only=False)["rng"]["torch"]
    assert torch.equal(ca, cb)
