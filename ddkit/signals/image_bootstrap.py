"""The image bootstrap of a teacher's per-layer metrics: resamples of the analysis images (with
replacement), each metric recomputed per resample from per-image contributions (mean-type
metrics) or per-image channel Grams (effective rank, PCA dimensions, through ``ddkit.signals.metrics``),
so thousands of resamples cost one feature pass. Its intervals are over images of one model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ddkit.signals import metrics
from ddkit.signals.dynamics import record

BOOTSTRAP_METRICS = ("token_entropy", "token_entropy_per_layer", "spectrum_intensity",
                     "activation_magnitude", "intensity_over_magnitude", "effective_rank", "pca_dims")
PCA_ENERGY = 0.9


def resample_counts(n: int, n_boot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(index [n_boot, n], counts [n_boot, n])``: resamples of n units with replacement from
    ``numpy.random.default_rng(seed)``, and how often each unit appears in each."""
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 2):
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    index = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n))
    counts = np.zeros((int(n_boot), n))
    np.add.at(counts, (np.arange(int(n_boot))[:, None], index), 1.0)
    return index, counts


def per_image_entropy(feats: torch.Tensor) -> torch.Tensor:
    """Each image's token entropy per layer ``[L, B]`` (bits; mean over the image's tokens) with
    the paper's one global range over the whole batch ``feats [L, B, C, H, W]``, so the mean over
    images is ``metrics.token_entropy(feats)``."""
    L, B, C, H, W = feats.shape
    flat = feats.reshape(L * B, 1, C, H, W)
    return metrics.token_entropy(flat, value_range=(float(feats.min()), float(feats.max()))).reshape(L, B)


def _per_image(feats: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image contributions ``[L, B]`` of the mean-type metrics: each image's token-mean entropy
    (global range and per-layer ranges both held at the full batch's), intensity and |F|."""
    L, B, C, H, W = feats.shape
    flat = feats.reshape(L * B, 1, C, H, W)  # every (layer, image) as its own "layer"
    per_layer = [metrics.token_entropy(feats[l].unsqueeze(1),
                                       value_range=(float(feats[l].min()), float(feats[l].max())))
                 for l in range(L)]
    return {"token_entropy": per_image_entropy(feats),
            "token_entropy_per_layer": torch.stack(per_layer),
            "spectrum_intensity": metrics.channel_spectrum(flat)[1].reshape(L, B),
            "activation_magnitude": metrics.activation_magnitude(flat).reshape(L, B)}


def layer_metrics_resampled(feats: torch.Tensor, counts: np.ndarray,
                            chunk: int = 250) -> dict[str, np.ndarray]:
    """``BOOTSTRAP_METRICS`` of ``feats`` [L, B, C, H, W] for each resample given as ``counts``
    [R, B] (copies of each image), without recomputing from features: mean-type metrics average
    their per-image values with the counts as weights; effective rank and PCA dimensions come from
    per-image channel Grams summed with the counts. → ``{metric: [R, L]}``. The entropy bins use
    the full batch's ranges (global, and per layer), not each resample's: the range is a property
    of the analysis batch, and holding it fixed keeps every resample on the same bins.
    """
    L, B, C, H, W = feats.shape
    w = torch.as_tensor(counts, dtype=torch.float64)                        # [R, B]
    if w.ndim != 2 or w.shape[1] != B:
        raise ValueError(f"counts: expected [R, {B}], got {tuple(w.shape)}")
    per_image = _per_image(feats)
    out = {name: (w @ per_image[name].double().T / w.sum(1, keepdim=True)).numpy()  # [R, L]
           for name in per_image}
    out["intensity_over_magnitude"] = out["spectrum_intensity"] / out["activation_magnitude"]
    tokens = w.sum(1) * H * W                                               # [R]
    ranks, dims = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batched small eigvalsh: threads only contend (10x slower on 2 cores)
    try:
        for l in range(L):
            ranks_l, dims_l = _gram_metrics(feats[l], w, tokens, chunk)
            ranks.append(ranks_l)
            dims.append(dims_l)
    finally:
        torch.set_num_threads(threads)
    out["effective_rank"] = torch.stack(ranks, 1).numpy()
    out["pca_dims"] = torch.stack(dims, 1).numpy()
    return out


def _gram_metrics(f: torch.Tensor, w: torch.Tensor, tokens: torch.Tensor,
                  chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective rank and PCA dims [R] of one layer ``f`` [B, C, H, W] under resample weights
    ``w`` [R, B]: per-image channel Grams and column sums, summed with the weights."""
    B, C, H, W = f.shape
    m = f.double().reshape(B, C, H * W)                                     # [B, C, HW]
    gram = torch.einsum("bct,bdt->bcd", m, m).reshape(B, C * C)             # [B, C²]
    colsum = m.sum(-1)                                                      # [B, C]
    ranks, dims = [], []
    for s in range(0, w.shape[0], chunk):
        wc = w[s:s + chunk]
        g = (wc @ gram).reshape(-1, C, C)                                   # [r, C, C]
        col = wc @ colsum                                                   # [r, C]
        centred = g - col[:, :, None] * col[:, None, :] / tokens[s:s + chunk, None, None]
        ranks.append(metrics.effective_rank_of_gram(g))
        dims.append(metrics.pca_dims_of_gram(centred, PCA_ENERGY, fractional=True))
    return torch.cat(ranks), torch.cat(dims)


def bootstrap_layer_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, name: str,
                            n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per-layer metrics of ``model`` on ``n_boot`` resamples (with replacement) of the analysis
    images, and on the full batch: rows (model, replicate, layer, metric, value, n_images),
    replicate -1 = the full batch. The same ``seed`` gives every model the same resamples (paired by replicate).
    Percentile intervals over these are conditional on the one model (one teacher run)."""
    feats, _ = record(model, x, y)                                          # [L, B, C, H, W]
    L, B = feats.shape[:2]
    _, counts = resample_counts(B, n_boot, seed)
    counts = np.vstack([np.ones((1, B)), counts])                           # row 0: the full batch
    values = layer_metrics_resampled(feats, counts)
    frames = [pd.DataFrame({"model": name, "replicate": np.repeat(np.arange(-1, n_boot), L),
                            "layer": np.tile(np.arange(L), n_boot + 1), "metric": metric,
                            "value": v.reshape(-1), "n_images": B})
              for metric, v in values.items()]
    return pd.concat(frames, ignore_index=True)
