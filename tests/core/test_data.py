"""Tests for ddkit.core.data: IDX reading, Fashion-MNIST lookup, balanced subsets, data sets."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.core import data
from ddkit.core.data import (
    DATASETS,
    DatasetNotFoundError,
    balanced_subset,
    build_dataset,
    dataset_info,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)

needs_debian = pytest.mark.skipif(not data._has_fashion_files(data.DEBIAN_FASHION_MNIST),
                                  reason="dataset-fashion-mnist is not installed")


def write_idx(path, array: np.ndarray, type_code: int = 0x08, compress: bool = False) -> None:
    """Independent IDX writer: magic, big-endian uint32 dims, big-endian payload."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + payload)


# ----------------------------------------------------------------------------- IDX

@needs_debian
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_installed_fashion_mnist(split, n):
    images, labels = load_fashion_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert labels.min() == 0 and labels.max() == 9
    assert set(labels.tolist()) == set(range(10))
    assert images.max() == 255 and 0.25 < images.float().mean() / 255 < 0.32


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    write_idx(path, images, compress=compress)
    out = read_idx(path)
    assert out.dtype == np.uint8 and np.array_equal(out, images)
    floats = rng.standard_normal((3, 2)).astype(np.float32)
    write_idx(tmp_path / "f.idx", floats, type_code=0x0D)
    assert np.array_equal(read_idx(tmp_path / "f.idx"), floats)


def test_idx_truncated_and_bad_magic(tmp_path):
    images = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    good = tmp_path / "good.idx"
    write_idx(good, images)
    raw = good.read_bytes()
    cases = {
        "short_payload.idx": (raw[:-1], "truncated"),
        "short_header.idx": (raw[:10], "truncated IDX header"),
        "tiny.idx": (raw[:2], "truncated IDX header"),
        "trailing.idx": (raw + b"\0", "trailing"),
        "magic.idx": (b"\x01\x00" + raw[2:], "magic"),
        "type.idx": (raw[:2] + b"\x07" + raw[3:], "magic"),
        "empty.idx": (bytes([0, 0, 8, 1]) + struct.pack(">I", 0), "empty"),
    }
    for name, (content, why) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=why) as info:
            read_idx(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")


# ----------------------------------------------------------------------------- lookup

def _write_fake_fashion(folder, n=20, bad_labels=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), compress=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte",
                  (np.arange(count - bad_labels) % 10).astype(np.uint8))


def test_explicit_root_and_torchvision_layout(tmp_path):
    _write_fake_fashion(tmp_path / "flat")
    assert find_fashion_mnist(tmp_path / "flat") == tmp_path / "flat"
    _write_fake_fashion(tmp_path / "tv" / "FashionMNIST" / "raw")
    assert find_fashion_mnist(tmp_path / "tv") == tmp_path / "tv" / "FashionMNIST" / "raw"
    images, labels = load_fashion_mnist("test", root=tmp_path / "tv")
    assert images.shape == (10, 28, 28) and labels.tolist() == list(range(10))


def test_explicit_root_missing_files_names_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        find_fashion_mnist(missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):  # subclass of FileNotFoundError
        load_fashion_mnist("train", root=missing)


def test_count_mismatch_is_an_error(tmp_path):
    _write_fake_fashion(tmp_path, bad_labels=1)
    with pytest.raises(ValueError, match="images but"):
        load_fashion_mnist("train", root=tmp_path)


def test_nothing_found_lists_three_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setenv("DDKIT_DATA", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as info:
        find_fashion_mnist(download=False)
    message = str(info.value)
    assert "root=" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "torchvision download" in message and "online" in message


def test_cache_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setenv("DDKIT_DATA", str(tmp_path / "cache"))
    _write_fake_fashion(tmp_path / "cache" / "FashionMNIST" / "raw")
    assert find_fashion_mnist(download=False) == tmp_path / "cache" / "FashionMNIST" / "raw"


# ----------------------------------------------------------------------------- subsets

def test_balanced_subset():
    labels = torch.arange(1000) % 10
    idx = balanced_subset(labels, 95, seed=0)
    assert len(idx) == 95 and torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 95
    counts = torch.bincount(labels[idx], minlength=10).tolist()
    assert counts == [10] * 5 + [9] * 5
    assert torch.equal(idx, balanced_subset(labels, 95, seed=0))
    assert not torch.equal(idx, balanced_subset(labels, 95, seed=1))
    assert torch.bincount(labels[balanced_subset(labels, 50, seed=3)]).tolist() == [5] * 10


def test_balanced_subset_errors():
    labels = torch.tensor([0] * 10 + [1] * 2)
    with pytest.raises(ValueError, match="class 1 has 2 samples"):
        balanced_subset(labels, 8, seed=0)
    with pytest.raises(ValueError, match="n=0"):
        balanced_subset(labels, 0, seed=0)


# ----------------------------------------------------------------------------- data sets

@pytest.fixture(scope="module")
def fashion_test():
    if not data._has_fashion_files(data.DEBIAN_FASHION_MNIST):
        pytest.skip("dataset-fashion-mnist is not installed")
    return build_dataset("fashion_mnist", "test")


def test_fashion_item_and_normalisation(fashion_test):
    assert len(fashion_test) == 10000
    img, label = fashion_test[0]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32 and isinstance(label, int)
    batch = torch.stack([fashion_test[i][0] for i in range(2000)])  # [2000, 1, 28, 28]
    assert abs(batch.mean().item()) < 0.05 and abs(batch.std().item() - 1) < 0.05
    raw = load_fashion_mnist("test")[0][0].float() / 255
    assert torch.allclose(img[0], (raw - 0.2860) / 0.3530)


def test_fashion_subset_resize_and_augment(tmp_path):
    _write_fake_fashion(tmp_path, n=40)
    ds = build_dataset("fashion_mnist", "train", root=tmp_path, subset=20, img_size=32, seed=0)
    assert len(ds) == 20 and torch.bincount(ds.labels).tolist() == [2] * 10
    assert ds[0][0].shape == (1, 32, 32)
    aug = build_dataset("fashion_mnist", "train", root=tmp_path, augment=True)
    torch.manual_seed(0)
    first = torch.stack([aug[i][0] for i in range(10)])
    torch.manual_seed(0)
    second = torch.stack([aug[i][0] for i in range(10)])
    assert torch.equal(first, second)
    plain = build_dataset("fashion_mnist", "train", root=tmp_path)
    assert not torch.equal(first, torch.stack([plain[i][0] for i in range(10)]))


def _write_image_folder(root, classes=("cat", "dog"), per_class=3):
    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


def test_imagefolder_eval_and_train(tmp_path):
    _write_image_folder(tmp_path)
    val = build_dataset("imagefolder", "val", root=tmp_path)
    img, label = val[0]
    assert img.shape == (3, 224, 224) and img.dtype == torch.float32 and label in (0, 1)
    train = build_dataset("imagefolder", "train", root=tmp_path, img_size=64, augment=True,
                          subset=4)
    assert len(train) == 4 and train[0][0].shape == (3, 64, 64)
    assert dataset_info("imagefolder", root=tmp_path)["num_classes"] == 2
    with pytest.raises(DatasetNotFoundError, match="val"):
        build_dataset("imagefolder", "val", root=tmp_path / "missing")


def test_transforms_follow_recipe():
    train = repr(data.build_transform("cifar10", 32, augment=True))
    assert "RandAugment" in train and "RandomErasing(p=0.25" in train and "bicubic" in train
    evaluation = repr(data.build_transform("imagefolder", 224, augment=False))
    assert "Resize(size=256, interpolation=bicubic" in evaluation
    assert "CenterCrop(size=(224, 224))" in evaluation


def test_dataset_info_and_bad_names(tmp_path):
    assert DATASETS == ("fashion_mnist", "fashion_mosaic_k10", "fashion_mosaic_k100",
                        "fashion_mosaic_k1000", "cifar10", "cifar100", "imagefolder")
    assert dataset_info("fashion_mnist") == dict(num_classes=10, in_chans=1, img_size=28,
                                                 mean=(0.2860,), std=(0.3530,))
    assert dataset_info("cifar100")["num_classes"] == 100
    for bad in (lambda: dataset_info("mnist"), lambda: build_dataset("mnist", "train")):
        with pytest.raises(ValueError, match="mnist.*fashion_mnist.*imagefolder"):
            bad()
    with pytest.raises(ValueError, match="split"):
        build_dataset("fashion_mnist", "dev")
    with pytest.raises(ValueError, match="root"):
        build_dataset("imagefolder", "train")
    with pytest.raises(DatasetNotFoundError, match="cifar10"):
        build_dataset("cifar10", "train", root=tmp_path, download=False)


def test_official_recipe_augments_fashion_mnist_reproducibly():
    import random

    import numpy as np
    import torch

    from ddkit.core.data import build_dataset

    def draw(seed):
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        ds = build_dataset("fashion_mnist", "train", subset=20, seed=0, augment="official")
        return torch.stack([ds[i][0] for i in range(20)])

    a, b, c = draw(1), draw(1), draw(2)
    assert a.shape == (20, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = build_dataset("fashion_mnist", "train", subset=20, seed=0)
    assert not torch.equal(a, torch.stack([plain[i][0] for i in range(20)]))


def test_unknown_augment_recipe_is_refused():
    from ddkit.core.config import ConfigError, replace, validate
    from tests.helpers import tiny_config
    with pytest.raises(ConfigError, match="data.augment"):
        validate(replace(tiny_config(), **{"data.augment": "heavy"}))
