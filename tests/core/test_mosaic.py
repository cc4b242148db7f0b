"""The phase map's task-complexity dial: Fashion-MNIST mosaics (ddkit.core.mosaic, data.build_dataset)."""
import hashlib

import pytest
import torch

from ddkit.core import mosaic
from ddkit.core.config import ConfigError, load_profile, replace
from ddkit.core.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, build_dataset, dataset_info, load_fashion_mnist
from ddkit.runs.train import train
from ddkit.studies import grid, study


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """A normalised image back to uint8 pixels."""
    return ((x * FASHION_MNIST_STD + FASHION_MNIST_MEAN) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name, k", [("fashion_mosaic_k10", 10), ("fashion_mosaic_k100", 100),
                                     ("fashion_mosaic_k1000", 1000)])
def test_labels_decode_to_the_items_in_the_labelled_quadrants(name, k):
    images, item_labels = load_fashion_mnist("train")
    data = build_dataset(name, "train", subset=2 * k + 7, seed=5)
    q = mosaic.MOSAICS[name]
    assert dataset_info(name)["num_classes"] == k and len(data) == 2 * k + 7
    digits = mosaic.decode(data.labels, q)                      # [n, q]
    assert torch.equal(item_labels[data.items[:, :q]], digits)
    # every label twice, the 7 left over one each to the lowest labels
    counts = torch.bincount(data.labels, minlength=k)
    assert counts[:7].tolist() == [3] * 7 and set(counts[7:].tolist()) == {2}
    # the pixels of quadrant (r, c) are the item's
    x, y = data[0]
    assert x.shape == (1, 56, 56) and y == int(data.labels[0])
    pixels = _pixels(x[0])
    for quadrant, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        tile = pixels[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)]
        assert torch.equal(tile, images[data.items[0, quadrant]])


def test_a_seed_fixes_the_mosaics_and_another_changes_them():
    a = build_dataset("fashion_mosaic_k100", "train", subset=500, seed=1)
    b = build_dataset("fashion_mosaic_k100", "train", subset=500, seed=1)
    c = build_dataset("fashion_mosaic_k100", "train", subset=500, seed=2)
    assert torch.equal(a.items, b.items) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.items, c.items)


def test_no_test_item_appears_in_the_training_mosaics():
    train_images, _ = load_fashion_mnist("train")
    seen = {hashlib.md5(img.numpy().tobytes()).digest() for img in train_images}
    test = build_dataset("fashion_mosaic_k100", "test", subset=300, seed=0)
    for i in range(0, 300, 7):
        pixels = _pixels(test[i][0][0])
        for r in (0, 1):
            for c in (0, 1):
                tile = pixels[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)]
                assert hashlib.md5(tile.numpy().tobytes()).digest() not in seen


def test_augmentation_flips_items_in_place_and_never_swaps_quadrants():
    """Each augmented mosaic is exactly some 2-px shift of the mosaic with some items flipped
    left-right, the items in their own quadrants."""
    data = build_dataset("fashion_mosaic_k10", "train", subset=50, seed=0, augment=True)
    images, _ = load_fashion_mnist("train")
    torch.manual_seed(0)
    flips_seen = set()
    for i in range(12):
        x, y = data[i]
        assert y == int(data.labels[i]) and x.shape == (1, 56, 56)
        pixels = _pixels(x[0])
        tiles = images[data.items[i]]                                     # [4, 28, 28]
        matches = []
        for flips in range(16):
            flipped = torch.stack([t.flip(-1) if flips >> q & 1 else t for q, t in enumerate(tiles)])
            padded = torch.nn.functional.pad(mosaic.compose(flipped, torch.arange(4)[None]), (2, 2, 2, 2))
            matches += [(flips, dy, dx) for dy in range(5) for dx in range(5)
                        if torch.equal(padded[0, dy:dy + 56, dx:dx + 56], pixels)]
        assert matches, f"mosaic {i} is not a shift of its items, flipped or not"
        flips_seen.update(m[0] for m in matches)
    assert len(flips_seen) > 2          # items are flipped independently


def test_bad_mosaic_settings_are_refused():
    with pytest.raises(ValueError, match="mosaics are 56 px"):
        build_dataset("fashion_mosaic_k10", "train", subset=10, img_size=28)
    with pytest.raises(ValueError, match="take true"):
        build_dataset("fashion_mosaic_k10", "train", subset=10, augment="official")


def test_a_student_whose_classes_do_not_match_the_mosaics_fails_before_compute():
    variant = grid.settings(load_profile("phase_map"))["mosaic K=100, width 16"]
    cfg = study.student_config(variant, "SoftKD", 0, None)
    cfg = replace(cfg, **{"model.kwargs.num_classes": 10, "distill.teacher": None, "distill.kd": "none"})
    with pytest.raises(ConfigError, match="10 classes.*has 100"):
        train(cfg, progress=False)
