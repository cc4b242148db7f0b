"""Model + data -> a tidy per-layer table of every distillation-dynamics metric.

``analyze`` returns rows ``(model, checkpoint, epoch, layer, metric, value)``: layer is 0-based,
one row per metric and block, for one model or every kept checkpoint of a run (the analogue of
the official per-checkpoint student entropy tables). Metrics (``ddkit.metrics``; docs/design.md §2):

    token_entropy            bits, 100 bins over one range shared by all layers (the paper's)
    token_entropy_per_layer  bits, each layer binned over its own range (scale-controlled)
    spectrum_intensity       mean |FFT along channels| / C over bins, then (b, h, w)
    activation_magnitude     mean |F|
    intensity_over_magnitude spectrum_intensity / activation_magnitude (scale-controlled)
    gradient_magnitude       mean |d target-logit / d F|
    dlogamp_high             spatial ΔLogAmp at the highest spatial frequency (a different axis)
    effective_rank, pca_dims, energy_concentration_50, energy_concentration_90

Sampling: a class-balanced batch by default; ``paper_faithful=True`` takes the first ``n``
images unshuffled, as the official analysis script does (32 ImageNet-val images, one class).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ddkit import metrics
from ddkit.data import balanced_subset
from ddkit.hooks import FeatureRecorder
from ddkit.models import load_state_dict

COLUMNS = ["model", "checkpoint", "epoch", "layer", "metric", "value"]


def sample_batch(dataset: Dataset, n: int = 200, paper_faithful: bool = False,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, C, H, W], y [n])``: class-balanced (seeded) or, paper-faithful, the first n."""
    if n < 1:
        raise ValueError(f"n={n}: the analysis batch needs at least one image")
    if paper_faithful:
        index = torch.arange(min(n, len(dataset)))
    else:
        labels = torch.as_tensor(getattr(dataset, "targets", None) or
                                 [dataset[i][1] for i in range(len(dataset))])
        index = balanced_subset(labels, n, seed)
    items = [dataset[int(i)] for i in index]
    return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items])


def record(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and gradients ``[L, B, C, H, W]`` of every block; score = target-class logit."""
    model.eval()
    with torch.enable_grad(), FeatureRecorder(model, gradients=True) as rec:
        x = x.detach().requires_grad_(True)      # so the first block's gradient hook fires
        logits = model(x)                                           # [B, K]
        logits.gather(1, y[:, None]).sum().backward()
    model.zero_grad(set_to_none=True)
    return rec.stacked("features"), rec.stacked("gradients")


def layer_metrics(feats: torch.Tensor, grads: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every per-layer metric of ``feats`` ``[L, B, C, H, W]`` as ``{name: [L]}``."""
    _, intensity = metrics.channel_spectrum(feats)
    magnitude = metrics.activation_magnitude(feats)
    concentration = metrics.channel_energy_concentration(feats, levels=(0.5, 0.9))   # [L, 2]
    out = {
        "token_entropy": metrics.token_entropy(feats, value_range="global"),
        "token_entropy_per_layer": metrics.token_entropy(feats, value_range="per_layer"),
        "spectrum_intensity": intensity,
        "activation_magnitude": magnitude,
        "intensity_over_magnitude": intensity / magnitude,
        "dlogamp_high": metrics.spatial_log_amplitude(feats)[:, -1],
        "effective_rank": metrics.effective_rank(feats),
        "pca_dims": metrics.pca_dims(feats, energy=0.9).float(),
        "energy_concentration_50": concentration[:, 0],
        "energy_concentration_90": concentration[:, 1],
    }
    if grads is not None:
        out["gradient_magnitude"] = metrics.gradient_magnitude(grads)
    return out


def _rows(values: Mapping[str, torch.Tensor], model: str, checkpoint: str,
          epoch: int | None) -> list[dict]:
    return [{"model": model, "checkpoint": checkpoint, "epoch": epoch, "layer": layer,
             "metric": name, "value": float(v)}
            for name, per_layer in values.items() for layer, v in enumerate(per_layer.tolist())]


def _as_batch(data, n: int, paper_faithful: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, Dataset):
        return sample_batch(data, n, paper_faithful, seed)
    x, y = data
    return x, torch.as_tensor(y)


def analyze(model: nn.Module, data, *, name: str = "model",
            checkpoints: Mapping[int, str | Path] | Sequence[str | Path] | None = None,
            n: int = 200, paper_faithful: bool = False, seed: int = 0,
            device: str | torch.device = "cpu") -> pd.DataFrame:
    """Tidy per-layer metrics of ``model`` (as it is) or of each of its ``checkpoints``.

    ``data``: a Dataset (sampled as described above) or an ``(x, y)`` batch. ``checkpoints``:
    ``{epoch: weights file}`` (``Run.checkpoints()``) or a list of files; each is loaded into
    ``model`` in turn. Returns columns (model, checkpoint, epoch, layer, metric, value).
    """
    x, y = _as_batch(data, n, paper_faithful, seed)
    x, y = x.to(device), y.to(device)
    model = model.to(device)
    if checkpoints is None:
        targets = [("final", None, None)]
    elif isinstance(checkpoints, Mapping):
        targets = [(f"epoch_{e}", e, p) for e, p in sorted(checkpoints.items())]
    else:
        targets = [(Path(p).stem, None, p) for p in checkpoints]
    rows = []
    for label, epoch, path in targets:
        if path is not None:
            model.load_state_dict(load_state_dict(path))
        feats, grads = record(model, x, y)
        rows += _rows(layer_metrics(feats, grads), name, label, epoch)
    return pd.DataFrame(rows, columns=COLUMNS)


def spectra(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Whole-spectrum views for figures: channel ``spectrum [L, C]``, spatial ``dlogamp [L, K]``."""
    feats, _ = record(model, x, y)
    spectrum, _ = metrics.channel_spectrum(feats)
    return {"spectrum": spectrum, "dlogamp": metrics.spatial_log_amplitude(feats)}


def cka(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA ``[L_a, L_b]`` between every block of two models on the same images."""
    return metrics.linear_cka(record(model_a, x, y)[0], record(model_b, x, y)[0])
