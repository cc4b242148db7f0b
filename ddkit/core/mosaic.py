"""The task-complexity dial of the phase map (docs/design.md §11): 2×2 mosaics of Fashion-MNIST
items, labelled by the items in 1, 2 or 3 fixed quadrants.

A mosaic is 56×56 px: four 28×28 items in the quadrants top-left (0), top-right (1),
bottom-left (2), bottom-right (3). With patch 7 that is an 8×8 token grid, each item on a 4×4
block of tokens. The label reads the classes of the first ``q`` quadrants as base-10 digits,
quadrant 0 first (``label = c0·10^(q-1) + … + c_{q-1}``), so ``K = 10**q`` classes; the other
quadrants hold distractor items of any class. Everything is drawn from a seed, class-balanced over
the K labels, and from one Fashion-MNIST split only (train mosaics from the training split, test
mosaics from the test split), so no test item is ever seen in training.

Hand-written because no library composes labelled mosaics; the items are held as uint8 and a
mosaic is assembled when it is read (``MosaicDataset``), so 60k mosaics cost 60k×4 indices.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

ITEM = 28                    # px of one Fashion-MNIST item
SIZE = 2 * ITEM              # px of a mosaic
QUADRANTS = 4
# data.name -> labelled quadrants q (K = 10**q classes)
MOSAICS = {"fashion_mosaic_k10": 1, "fashion_mosaic_k100": 2, "fashion_mosaic_k1000": 3}


def num_classes(name: str) -> int:
    """K of a mosaic data set name."""
    return 10 ** MOSAICS[name]


def decode(labels: torch.Tensor, quadrants: int) -> torch.Tensor:
    """The item class of each labelled quadrant: ``[N] -> [N, quadrants]``, quadrant 0 first."""
    powers = 10 ** torch.arange(quadrants - 1, -1, -1)                     # [q]
    return (labels[:, None] // powers) % 10


def draw(item_labels: torch.Tensor, n: int, quadrants: int, seed: int
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` mosaics over a split whose items have classes ``item_labels [M]`` (0..9).

    Returns ``(items [n, 4], labels [n])``: each row the indices of the items in quadrants
    0..3, and the mosaic's label. The K = 10**quadrants labels get ``n // K`` mosaics each, the
    ``n % K`` left over one each to the lowest labels; a labelled quadrant holds an item of its
    digit's class, drawn uniformly within the class, and a distractor quadrant any item, all
    from one generator seeded with ``seed``. Rows are shuffled.
    """
    k = 10 ** quadrants
    if not 0 < n:
        raise ValueError(f"mosaic count n={n} must be > 0")
    gen = torch.Generator().manual_seed(seed)
    per, extra = divmod(n, k)
    labels = torch.cat([torch.arange(k).repeat_interleave(per), torch.arange(extra)])   # [n]
    labels = labels[torch.randperm(n, generator=gen)]
    items = torch.randint(len(item_labels), (n, QUADRANTS), generator=gen)             # [n, 4]
    digits = decode(labels, quadrants)                                                  # [n, q]
    for c in range(10):
        members = torch.nonzero(item_labels == c).flatten()                             # [M_c]
        if len(members) == 0:
            raise ValueError(f"the split has no item of class {c}")
        for q in range(quadrants):
            rows = digits[:, q] == c                                                     # [n]
            items[rows, q] = members[torch.randint(len(members), (int(rows.sum()),),
                                                   generator=gen)]
    return items, labels


def compose(images: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Mosaics ``[n, 56, 56]`` of ``images [M, 28, 28]`` at ``items [n, 4]`` (quadrants
    TL, TR, BL, BR)."""
    tiles = images[items]                                                    # [n, 4, 28, 28]
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=-1)                      # [n, 28, 56]
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2)                                  # [n, 56, 56]


class MosaicDataset(Dataset):
    """Item ``i`` -> (float mosaic [1, 56, 56] normalised with ``mean``/``std``, int label).

    augment=True: each item flipped left-right with p = 0.5 (its class is unchanged, as the
    Fashion-MNIST augmentation flips whole images), then the mosaic shifted by up to 2 px in
    each direction (a random crop of the 2-px zero-padded mosaic); never a flip of the whole
    mosaic, which would swap the labelled quadrants. Drawn from torch's global RNG.
    """

    def __init__(self, images: torch.Tensor, items: torch.Tensor, labels: torch.Tensor,
                 mean: float, std: float, augment: bool = False):
        if augment not in (False, True):
            raise ValueError(f"augment={augment!r}: mosaics take true or false (no recipe)")
        self.images, self.items, self.labels = images, items, labels   # uint8 [M,28,28], [n,4], [n]
        self.targets = labels.tolist()
        self.mean, self.std, self.augment = mean, std, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        tiles = self.images[self.items[index]]                               # [4, 28, 28]
        if self.augment:
            flip = torch.rand(QUADRANTS) < 0.5
            tiles = torch.where(flip[:, None, None], tiles.flip(-1), tiles)
        mosaic = compose(tiles, torch.arange(QUADRANTS)[None])               # [1, 56, 56]
        if self.augment:
            padded = F.pad(mosaic, (2, 2, 2, 2))
            dy, dx = torch.randint(0, 5, (2,)).tolist()
            mosaic = padded[:, dy:dy + SIZE, dx:dx + SIZE]
        return (mosaic.float() / 255 - self.mean) / self.std, int(self.labels[index])
