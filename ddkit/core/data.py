"""Datasets: Fashion-MNIST from IDX files (embedded default), its 2×2 mosaics (the phase map's
task-complexity dial, ``ddkit.core.mosaic``), CIFAR-10/100, ImageFolder trees.

Fashion-MNIST is found locally (explicit root, Debian's `dataset-fashion-mnist`, the ddkit cache)
or downloaded through torchvision; it is held in memory as uint8 and normalised per item.
CIFAR and ImageFolder use timm's `create_transform` with the paper's DeiT recipe (docs/design.md §2).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import Dataset, Subset
from torchvision import datasets

from ddkit.core import mosaic

DATASETS = ("fashion_mnist", *mosaic.MOSAICS, "cifar10", "cifar100", "imagefolder")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530

# the paper's (DeiT's) training augmentation, for timm's create_transform (random resized crop,
# flip, RandAugment, random erasing); no mixup/cutmix, no repeated augmentation
TRAIN_RECIPE = dict(auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel",
                    interpolation="bicubic")
# data.augment may name a recipe: "official" is TRAIN_RECIPE on any data set, Fashion-MNIST too
AUGMENT_RECIPES = ("official",)
EVAL_CROP_PCT = 0.875  # resize 256 → centre-crop 224
INTERPOLATIONS = ("bicubic", "bilinear")  # eval resize: the kit's (DeiT's) | the official analysis'

# IDX type code → big-endian numpy dtype
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DatasetNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor downloadable."""


class ImageFileError(ValueError):
    """An image of an ImageFolder tree cannot be decoded (corrupt, cut short); names the file."""


def read_image(path: str) -> Image.Image:
    """An ImageFolder image as RGB (torchvision's loader), decoded whole here, so a corrupt or
    cut-short file raises ImageFileError naming it instead of PIL's bare error."""
    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            return image.convert("RGB")
    except OSError as err:   # a missing file is not a damaged one
        if isinstance(err, FileNotFoundError):
            raise
        problem = err
    except Exception as err:  # PIL's SyntaxError, ValueError, zlib.error: all "undecodable"
        problem = err
    raise ImageFileError(f"{path}: cannot decode the image ({type(problem).__name__}: "
                         f"{problem}); remove or replace the file") from None


def default_data_dir() -> Path:
    """Cache folder for downloads: `$DDKIT_DATA` or `~/.cache/ddkit`."""
    return Path(os.environ.get("DDKIT_DATA") or Path.home() / ".cache" / "ddkit")


# ----------------------------------------------------------------------------- IDX files

def _read_maybe_gzip(path: Path) -> bytes:
    """File bytes, gunzipped when the file starts with the gzip magic."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or .gz) into a native-endian array of the header's shape.

    Header: magic 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 dims. Wrong magic,
    an empty array, or a payload shorter/longer than the dims → ValueError naming the file.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000, a type "
                         f"code in {[hex(c) for c in IDX_DTYPES]}, ndim >= 1)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX header (needs {header_len} bytes, has {len(raw)})")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    if 0 in dims:
        raise ValueError(f"{path}: IDX dims {dims} describe an empty array")
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    payload = len(raw) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX payload {what}: {payload} bytes, "
                         f"dims {dims} need {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="))  # native-endian, writable copy


# ----------------------------------------------------------------------------- Fashion-MNIST

def _idx_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem` or `folder/stem.gz`, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_fashion_files(folder: Path) -> bool:
    stems = [s for pair in FASHION_MNIST_FILES.values() for s in pair]
    return all(_idx_file(folder, s) is not None for s in stems)


def _fashion_folder(root: Path) -> Path | None:
    """`root` itself or torchvision's `root/FashionMNIST/raw`, if it holds the four files."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        if _has_fashion_files(folder):
            return folder
    return None


def find_fashion_mnist(root: str | Path | None = None, download: bool = True) -> Path:
    """Folder holding the four Fashion-MNIST IDX files (plain or .gz).

    Looks in order at: an explicit `root` (no fallback when it lacks the files), Debian's
    `/usr/share/datasets/fashion-mnist`, the ddkit cache (`default_data_dir()`), then a
    torchvision download into the cache when `download` is True.
    """
    if root is not None:
        found = _fashion_folder(Path(root))
        if found is None:
            raise DatasetNotFoundError(
                f"no Fashion-MNIST IDX files in {root} "
                f"(nor in {Path(root) / 'FashionMNIST' / 'raw'}); "
                f"expected {[s + '[.gz]' for pair in FASHION_MNIST_FILES.values() for s in pair]}")
        return found
    cache = default_data_dir()
    for candidate in (DEBIAN_FASHION_MNIST, cache):
        found = _fashion_folder(candidate)
        if found is not None:
            return found
    failure = "download=False"
    if download:
        try:
            datasets.FashionMNIST(str(cache), train=True, download=True)
            found = _fashion_folder(cache)
            if found is not None:
                return found
            failure = "torchvision download left no files"
        except Exception as err:  # network errors come in many types
            failure = f"torchvision download failed: {err}"
    raise DatasetNotFoundError(
        "Fashion-MNIST not found. Get it one of three ways: (1) pass root= a folder with the "
        "four IDX files; (2) `apt-get install dataset-fashion-mnist` (installs into "
        f"{DEBIAN_FASHION_MNIST}); (3) go online and let the torchvision download fill "
        f"{cache} (set $DDKIT_DATA to move it). [{failure}]")


def load_fashion_mnist(split: str = "train", root: str | Path | None = None,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST `split` ("train" 60k | "test" 10k).

    Returns (images uint8 [N, 28, 28], labels int64 [N]); counts and label range are checked.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; "
                         f"valid: {tuple(FASHION_MNIST_FILES)}")
    folder = find_fashion_mnist(root, download)
    image_path, label_path = (_idx_file(folder, s) for s in FASHION_MNIST_FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)  # [N, 28, 28], [N]
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"{image_path}, {label_path}: expected images [N, H, W] and labels [N], "
                         f"got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{image_path} has {len(images)} images but "
                         f"{label_path} has {len(labels)} labels")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{label_path}: labels outside 0..9 ({labels.min()}..{labels.max()})")
    return (torch.from_numpy(images.astype(np.uint8, copy=False)),
            torch.from_numpy(labels.astype(np.int64, copy=False)))


class FashionMNISTDataset(Dataset):
    """In-memory Fashion-MNIST: item → (float image [1, S, S] normalised, int label).

    augment: False; True = a random crop of the 2-pixel zero-padded image and a horizontal flip
    with p=0.5, drawn from torch's global RNG (reproducible under torch.manual_seed);
    "official" = the paper's DeiT recipe (``TRAIN_RECIPE`` through timm's ``create_transform``
    on the grayscale image: random resized crop, flip, RandAugment m9, random erasing 0.25),
    drawn from Python's, numpy's and torch's RNGs (all seeded and checkpointed by training).
    Images are resized bilinearly to `img_size` when it is not 28 (the official recipe crops
    straight to `img_size`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, img_size: int = 28,
                 augment: bool | str = False):
        if augment not in (False, True, *AUGMENT_RECIPES):
            raise ValueError(f"augment={augment!r}: expected false, true or one of {AUGMENT_RECIPES}")
        self.images, self.labels = images, labels  # [N, 28, 28] uint8, [N] int64
        self.targets = labels.tolist()
        self.img_size, self.augment = img_size, augment
        self.recipe = (create_transform(img_size, is_training=True, mean=(FASHION_MNIST_MEAN,),
                                        std=(FASHION_MNIST_STD,), **TRAIN_RECIPE)
                       if augment == "official" else None)

    def __len__(self) -> int:
        return len(self.labels)

    def _augment(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        padded = F.pad(img, (2, 2, 2, 2))  # [1, H+4, W+4], zero = background
        dy, dx = torch.randint(0, 5, (2,)).tolist()
        img = padded[:, dy:dy + h, dx:dx + w]  # [1, H, W]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.recipe is not None:
            image = Image.fromarray(self.images[index].numpy(), mode="L")
            return self.recipe(image), int(self.labels[index])  # [1, S, S] normalised
        img = self.images[index].unsqueeze(0)  # [1, 28, 28] uint8
        if self.augment:
            img = self._augment(img)
        img = (img.float() / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD  # [1, 28, 28]
        if img.shape[-1] != self.img_size:
            img = F.interpolate(img[None], size=(self.img_size, self.img_size), mode="bilinear",
                                align_corners=False)[0]  # [1, S, S]
        return img, int(self.labels[index])


# ----------------------------------------------------------------------------- subsets

def balanced_subset(labels: torch.Tensor | Sequence[int], n: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded, class-balanced subset of size `n`.

    Each of the K classes present gets n // K samples; the n % K remaining go one each to the
    first classes in sorted class order. Samples within a class are drawn without replacement
    by a generator seeded with `seed`.
    """
    labels = torch.as_tensor(labels)  # [N]
    if not 0 < n <= len(labels):
        raise ValueError(f"subset size n={n} must be in 1..{len(labels)}")
    classes = torch.unique(labels)  # [K] sorted
    per_class, remainder = divmod(n, len(classes))
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for rank, cls in enumerate(classes.tolist()):
        members = torch.nonzero(labels == cls).flatten()  # [N_cls]
        want = per_class + (1 if rank < remainder else 0)
        if want > len(members):
            raise ValueError(f"class {cls} has {len(members)} samples, subset needs {want}")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:want]])
    return torch.cat(chosen).sort().values


# ----------------------------------------------------------------------------- factory

def dataset_info(name: str, root: str | Path | None = None) -> dict:
    """Static facts of a data set: num_classes, in_chans, img_size (default), mean, std.

    For "imagefolder" num_classes is 1000 (ImageNet-1k) unless `root` is given, then the
    number of class folders in `image_folder_split(root, ...)` (train/, else val/).
    """
    imagenet = dict(in_chans=3, mean=tuple(IMAGENET_DEFAULT_MEAN), std=tuple(IMAGENET_DEFAULT_STD))
    infos = {
        "fashion_mnist": dict(num_classes=10, in_chans=1, img_size=28,
                              mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,)),
        **{name: dict(num_classes=mosaic.num_classes(name), in_chans=1, img_size=mosaic.SIZE,
                      mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,))
           for name in mosaic.MOSAICS},
        "cifar10": dict(num_classes=10, img_size=32, **imagenet),
        "cifar100": dict(num_classes=100, img_size=32, **imagenet),
        "imagefolder": dict(num_classes=1000, img_size=224, **imagenet),
    }
    if name not in infos:
        raise ValueError(f"unknown dataset {name!r}; valid names: {DATASETS}")
    info = dict(infos[name])
    if name == "imagefolder" and root is not None:
        try:
            folder = image_folder_split(root, held_out=False)
        except DatasetNotFoundError:
            folder = image_folder_split(root, held_out=True)
        info["num_classes"] = sum(p.is_dir() for p in folder.iterdir())
    return info


def image_folder_split(root: str | Path, held_out: bool) -> Path:
    """The ImageFolder tree of a split: `root/train`, or for the held-out split `root/val` (else
    `root/test`); a `root` without such folders that holds class folders itself (e.g. ImageNet's
    val/ alone) serves as the held-out split."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"ImageFolder root {root} is not a folder")
    names = ("val", "test") if held_out else ("train",)
    for name in names:
        if (root / name).is_dir():
            return root / name
    has_splits = any((root / s).is_dir() for s in ("train", "val", "test"))
    if held_out and not has_splits and any(p.is_dir() for p in root.iterdir()):
        return root
    raise DatasetNotFoundError(f"ImageFolder split folder {root / names[0]} does not exist "
                               f"(expected {root}/train and {root}/val, each holding one folder "
                               "per class)")


def build_transform(name: str, img_size: int, augment: bool | str,
                    interpolation: str = "bicubic"):
    """timm transform for the RGB data sets: DeiT training recipe (augment true or "official",
    the same here), or the eval resize to img_size / 0.875 (256 for 224) with
    ``interpolation``, then a centre crop of img_size."""
    info = dataset_info(name)
    if augment:
        return create_transform(img_size, is_training=True, mean=info["mean"], std=info["std"],
                                **TRAIN_RECIPE)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r}; choose one of {INTERPOLATIONS}")
    return create_transform(img_size, is_training=False, crop_pct=EVAL_CROP_PCT,
                            interpolation=interpolation, mean=info["mean"], std=info["std"])


def _held_out(split: str) -> bool:
    """True for the evaluation split ("test" or "val"), False for "train"."""
    if split not in ("train", "test", "val"):
        raise ValueError(f"unknown split {split!r}; valid: ('train', 'test', 'val')")
    return split != "train"


def _torchvision_dataset(name: str, held_out: bool, root: str | Path | None, transform,
                         download: bool) -> Dataset:
    """CIFAR-10/100 via torchvision, or an ImageFolder `root/train` | `root/val` tree."""
    if name == "imagefolder":
        if root is None:
            raise ValueError("dataset 'imagefolder' needs root= a folder with train/ and val/")
        folder = image_folder_split(root, held_out)
        return datasets.ImageFolder(str(folder), transform=transform, loader=read_image)
    root = Path(root) if root is not None else default_data_dir()
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=not held_out, transform=transform, download=download)
    except Exception as err:
        raise DatasetNotFoundError(f"{name} not found in {root} and not downloaded "
                                   f"(download={download}; needs internet): {err}") from err


def _mosaics(name: str, held_out: bool, root, img_size: int, n: int | None, seed: int,
             augment: bool | str, download: bool) -> mosaic.MosaicDataset:
    """``n`` seeded, class-balanced mosaics (default: as many as the split has items) of one
    Fashion-MNIST split; the held-out mosaics draw from another stream than the training ones."""
    if img_size != mosaic.SIZE:
        raise ValueError(f"{name}: mosaics are {mosaic.SIZE} px; img_size={img_size} is not "
                         "supported (leave data.img_size unset)")
    if augment not in (False, True):
        raise ValueError(f"{name}: data.augment={augment!r}; mosaics take true (item flips and "
                         "a 2-px shift) or false")
    images, labels = load_fashion_mnist("test" if held_out else "train", root, download)
    items, targets = mosaic.draw(labels, n or len(labels), mosaic.MOSAICS[name],
                                 seed=2 * seed + int(held_out))
    return mosaic.MosaicDataset(images, items, targets, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                                augment)


def build_dataset(name: str, split: str, root: str | Path | None = None,
                  img_size: int | None = None, subset: int | None = None, seed: int = 0,
                  augment: bool | str = False, download: bool = True,
                  interpolation: str = "bicubic") -> Dataset:
    """Data set `name` (one of DATASETS) for `split` ("train" | "test"/"val", the held-out split).

    Items are (float image [C, H, W], int label). img_size defaults to dataset_info's; augment
    selects the training augmentation; subset=n keeps a seeded class-balanced subset of n items
    (for a mosaic data set: draws n class-balanced mosaics).
    interpolation: the un-augmented RGB resize, "bicubic" (the kit's) or "bilinear" (the
    official analysis'); Fashion-MNIST is always resized bilinearly.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {DATASETS}")
    held_out = _held_out(split)
    img_size = img_size or dataset_info(name)["img_size"]
    if name == "fashion_mnist":
        images, labels = load_fashion_mnist("test" if held_out else "train", root, download)
        if subset is not None:
            keep = balanced_subset(labels, subset, seed)  # [n]
            images, labels = images[keep], labels[keep]
        return FashionMNISTDataset(images, labels, img_size, augment)
    if name in mosaic.MOSAICS:
        return _mosaics(name, held_out, root, img_size, subset, seed, augment, download)
    transform = build_transform(name, img_size, augment, interpolation)
    dataset = _torchvision_dataset(name, held_out, root, transform, download)
    if subset is not None:
        dataset = Subset(dataset, balanced_subset(dataset.targets, subset, seed).tolist())
    return dataset
