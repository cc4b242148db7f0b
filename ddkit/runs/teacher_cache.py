"""One teacher pass shared by every student: the frozen teacher's outputs, computed once.

When the training images are not augmented, the teacher sees the same input for an image at
every epoch and in every student run. Its logits and the features of the blocks the feature
losses use are then computed once per (teacher weights, training set) and read back by index.
Stored in ``<runs>/teacher-cache/<key>.pt`` (atomic write); a run with augmentation or under
DDP computes the teacher on the fly instead. A cached file is checked when read (it loads, and
holds logits and every block for every image); a damaged one raises RunFileError naming it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ddkit.core.hooks import forward_with_features
from ddkit.runs.store import RunFileError, torch_save


class IndexedDataset(Dataset):
    """Wraps a dataset so items are ``(x, y, index)``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        return x, y, index


@dataclass
class TeacherOutputs:
    """Teacher logits ``[N, K]`` and block features ``{block: [N, C, H, W]}`` per training image."""
    logits: torch.Tensor
    feats: dict[int, torch.Tensor]

    def lookup(self, index: torch.Tensor, layers: list[int],
               device: torch.device) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        index = index.cpu()
        return (self.logits[index].to(device),
                {l: self.feats[l][index].to(device) for l in layers})


def cache_key(teacher_identity: dict, data_identity: dict, layers: list[int]) -> str:
    text = json.dumps({"teacher": teacher_identity, "data": data_identity, "layers": layers},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@torch.no_grad()
def compute(teacher: torch.nn.Module, dataset: Dataset, layers: list[int], device: torch.device,
            batch_size: int = 500, progress: bool = True) -> TeacherOutputs:
    """Run the frozen teacher once over ``dataset`` (in order)."""
    teacher.eval()
    logits, feats = [], {l: [] for l in layers}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for x, _ in tqdm(loader, desc="teacher pass (shared by all students)", leave=False,
                     disable=not progress):
        out, blocks = forward_with_features(teacher, x.to(device), layers)
        logits.append(out.float().cpu())
        for l in layers:
            feats[l].append(blocks[l].float().cpu())
    return TeacherOutputs(torch.cat(logits), {l: torch.cat(v) for l, v in feats.items()})


def read(path: Path, n_images: int, layers: list[int]) -> TeacherOutputs:
    """The cached teacher outputs in ``path``, checked to hold ``n_images`` logits and features of
    every block in ``layers``; RunFileError naming the file otherwise."""
    fix = (f"; delete {path} (the teacher pass is computed again by the next run that needs it, "
           "nothing else is lost)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        logits = state["logits"]
        feats = {int(k): v for k, v in state["feats"].items()}
    except Exception as err:  # zip, pickle, OS errors or a wrong layout: the file is unusable
        raise RunFileError(f"{path}: unreadable teacher cache, truncated or corrupt "
                           f"({type(err).__name__}: {err}){fix}") from None
    wrong = [f"logits for {len(logits)} images"] if len(logits) != n_images else []
    wrong += [f"block {l} missing" for l in layers if l not in feats]
    wrong += [f"block {l} for {len(feats[l])} images" for l in layers
              if l in feats and len(feats[l]) != n_images]
    if wrong:
        raise RunFileError(f"{path}: teacher cache does not fit this training set of {n_images} "
                           f"images and blocks {layers} ({', '.join(wrong)}){fix}")
    return TeacherOutputs(logits, feats)


def load_or_compute(path: Path, teacher: torch.nn.Module, dataset: Dataset, layers: list[int],
                    device: torch.device, progress: bool = True) -> TeacherOutputs:
    if path.exists():
        return read(path, len(dataset), layers)
    outputs = compute(teacher, dataset, layers, device, progress=progress)
    torch_save(path, {"logits": outputs.logits,
                      "feats": {str(k): v for k, v in outputs.feats.items()}})
    return outputs
