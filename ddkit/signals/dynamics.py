"""Model + data -> a tidy per-layer table of every distillation-dynamics metric.

``analyze`` returns rows ``(model, checkpoint, epoch, layer, metric, value, prefix_tokens)``:
layer is 0-based, one row per metric and block, for one model or every kept checkpoint of a run
(the analogue of the official per-checkpoint student entropy tables). Metrics (``ddkit.signals.metrics``;
docs/design.md §2):

    token_entropy            bits, 100 bins over one range shared by all layers (the paper's)
    token_entropy_per_layer  bits, each layer binned over its own range (scale-controlled)
    spectrum_intensity       mean |FFT along channels| / C over bins, then (b, h, w)
    activation_magnitude     mean |block output|
    intensity_over_magnitude spectrum_intensity / mean |F| on the same images and patch tokens
    gradient_magnitude       mean |d target-logit / d block output|
    dlogamp_high             spatial ΔLogAmp at the highest spatial frequency (a different axis)
    effective_rank, energy_concentration_50, energy_concentration_90
    pca_dims                 data-set-level PCA dimension at 90 % energy, interpolated on the
                             cumulative energy (``metrics.pca_dims(fractional=True)``)
    pca_dims_95              data-set-level PCA dimension at 95 % energy, interpolated (the
                             encoding-mismatch numerator, ``ddkit.signals.mismatch``)

``prefix_tokens`` says which tokens a row averages over: every metric reads the patch-token grid
("drop"), except the two magnitudes, which can also average over the whole block output, prefix
(class, distillation, register) tokens included ("keep", as the official analysis does).

Sampling (docs/design.md §2, "Analysis input"): by default ``n`` = 200 class-balanced images,
every metric on the same images, prefix tokens dropped. ``paper_faithful=True`` follows the
official analysis: entropy, spectrum and the capacity metrics on the first ``n`` = 32 images in
order; activation and gradient magnitudes on the first 5 images, each passed alone with the
score the logit of its own class, prefix tokens kept; float32 histogram edges.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ddkit.core.data import balanced_subset
from ddkit.core.hooks import FeatureRecorder
from ddkit.core.models import load_weights
from ddkit.signals import metrics

COLUMNS = ["model", "checkpoint", "epoch", "layer", "metric", "value", "prefix_tokens"]
PREFIX_TOKENS = ("drop", "keep")
MAGNITUDES = ("activation_magnitude", "gradient_magnitude")
DEFAULT_IMAGES = 200
PAPER_IMAGES = 32             # the official entropy / spectrum batch
PAPER_MAGNITUDE_IMAGES = 5    # the official magnitude images, each passed alone


def sample_batch(dataset: Dataset, n: int = DEFAULT_IMAGES, paper_faithful: bool = False,
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


@dataclass
class Recording:
    """What one pass over the analysis images records, every block stacked:
    ``feats``/``grads`` ``[L, B, C, H, W]`` on the patch-token grid, ``prefix``/``prefix_grads``
    ``[L, B, P, C]`` the P prefix tokens (P = 0 for CaiT's self-attention blocks). Gradients are
    of the score, the sum over images of each image's target-class logit; None when not asked."""
    feats: torch.Tensor
    prefix: torch.Tensor
    grads: torch.Tensor | None = None
    prefix_grads: torch.Tensor | None = None


def _check_labels(logits: torch.Tensor, y: torch.Tensor) -> None:
    k = logits.shape[1]
    if int(y.max()) >= k or int(y.min()) < 0:
        raise ValueError(f"labels {int(y.min())}..{int(y.max())} do not index the model's {k} "
                         "logits: build the model with num_classes matching the data")


def record_blocks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                  gradients: bool = True, batch_size: int | None = None,
                  progress: bool = False) -> Recording:
    """Record every block of ``model`` (put in eval mode for the pass, then left as it came) on
    ``x [B, C, H, W]`` with labels ``y [B]``, ``batch_size`` images at a time (default all).
    Gradients come from ``torch.autograd.grad``: no parameter's ``.grad`` is touched. Images do
    not interact in eval mode, so the result does not depend on ``batch_size``; with
    ``batch_size=1`` every image is passed alone and scored by its own target logit."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x has {len(x)} images and y {len(y)} labels; need the same, >= 1")
    step = batch_size or len(x)
    parts: list[Recording] = []
    with _modes_restored(model):
        model.eval()
        chunks = range(0, len(x), step)
        for start in tqdm(chunks, desc="recording blocks", leave=False,
                          disable=not progress or len(chunks) < 2):
            xb, yb = x[start:start + step], y[start:start + step]
            with FeatureRecorder(model, gradients=gradients, prefix=True) as rec:
                if gradients:
                    with torch.enable_grad():
                        xb = xb.detach().requires_grad_(True)   # so every block output has a grad
                        logits = model(xb)                       # [b, K]
                        _check_labels(logits, yb)
                        score = logits.gather(1, yb[:, None]).sum()
                        torch.autograd.grad(score, xb)           # fills the recorder's tensor hooks
                else:
                    with torch.no_grad():
                        _check_labels(model(xb), yb)
            parts.append(Recording(rec.stacked("features"), rec.stacked("prefix"),
                                   rec.stacked("gradients") if gradients else None,
                                   rec.stacked("prefix_gradients") if gradients else None))
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: (None if getattr(parts[0], name) is None
                        else torch.cat([getattr(p, name) for p in parts], dim=1))
    return Recording(cat("feats"), cat("prefix"), cat("grads"), cat("prefix_grads"))


def record(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and gradients ``[L, B, C, H, W]`` of every block; score = target-class logit."""
    rec = record_blocks(model, x, y)
    return rec.feats, rec.grads


def _with_prefix(patch_mean: torch.Tensor, prefix: torch.Tensor, grid_tokens: int) -> torch.Tensor:
    """Mean |.| over the whole block output from the patch-grid mean ``[L]`` and the prefix
    tokens ``[L, B, P, C]``: (mean_patch * HW + mean_prefix * P) / (HW + P)."""
    p = prefix.shape[2]
    if p == 0:
        return patch_mean
    prefix_mean = metrics.activation_magnitude(prefix.permute(0, 1, 3, 2).unsqueeze(-1))  # [L]
    return (patch_mean * grid_tokens + prefix_mean.to(patch_mean.dtype) * p) / (grid_tokens + p)


def magnitudes(rec: Recording, prefix_tokens: str = "drop") -> dict[str, torch.Tensor]:
    """Activation and gradient magnitude ``[L]``: mean |.| over (b, c, h, w) of the patch grid
    (``"drop"``) or over (b, token, c) of the whole block output (``"keep"``)."""
    if prefix_tokens not in PREFIX_TOKENS:
        raise ValueError(f"prefix_tokens={prefix_tokens!r}; choose one of {PREFIX_TOKENS}")
    grid_tokens = rec.feats.shape[3] * rec.feats.shape[4]
    out = {"activation_magnitude": metrics.activation_magnitude(rec.feats)}
    if rec.grads is not None:
        out["gradient_magnitude"] = metrics.gradient_magnitude(rec.grads)
    if prefix_tokens == "keep":
        out["activation_magnitude"] = _with_prefix(out["activation_magnitude"], rec.prefix,
                                                   grid_tokens)
        if rec.grads is not None:
            out["gradient_magnitude"] = _with_prefix(out["gradient_magnitude"],
                                                     rec.prefix_grads, grid_tokens)
    return out


def layer_metrics(feats: torch.Tensor, grads: torch.Tensor | None = None, *,
                  range_dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Every per-layer metric of ``feats`` ``[L, B, C, H, W]`` as ``{name: [L]}``; magnitudes
    over the patch grid. ``range_dtype``: dtype of the entropy's histogram range (float32 = the
    official analysis' edges, see ``metrics.token_entropy``)."""
    _, intensity = metrics.channel_spectrum(feats)
    magnitude = metrics.activation_magnitude(feats)
    concentration = metrics.channel_energy_concentration(feats, levels=(0.5, 0.9))   # [L, 2]
    out = {
        "token_entropy": metrics.token_entropy(feats, value_range="global",
                                               range_dtype=range_dtype),
        "token_entropy_per_layer": metrics.token_entropy(feats, value_range="per_layer",
                                                         range_dtype=range_dtype),
        "spectrum_intensity": intensity,
        "activation_magnitude": magnitude,
        "intensity_over_magnitude": intensity / magnitude,
        "dlogamp_high": metrics.spatial_log_amplitude(feats)[:, -1],
        "effective_rank": metrics.effective_rank(feats),
        "pca_dims": metrics.pca_dims(feats, energy=0.9, fractional=True).float(),
        "pca_dims_95": metrics.pca_dims(feats, energy=0.95, fractional=True).float(),
        "energy_concentration_50": concentration[:, 0],
        "energy_concentration_90": concentration[:, 1],
    }
    if grads is not None:
        out["gradient_magnitude"] = metrics.gradient_magnitude(grads)
    return out


def _rows(values: Mapping[str, torch.Tensor], model: str, checkpoint: str,
          epoch: int | None, prefix_tokens: str) -> list[dict]:
    return [{"model": model, "checkpoint": checkpoint, "epoch": epoch, "layer": layer,
             "metric": name, "value": float(v),
             "prefix_tokens": prefix_tokens if name in MAGNITUDES else "drop"}
            for name, per_layer in values.items() for layer, v in enumerate(per_layer.tolist())]


def analysis_images(data, n: int | None = None, paper_faithful: bool = False,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ``analyze`` reads: from a Dataset, ``n`` (default 200) class-balanced or,
    paper-faithful, the first ``n`` (default 32); from an ``(x, y)`` batch, all of it or,
    paper-faithful, its first ``n`` (default 32) in the order given."""
    if n is not None and n < 1:
        raise ValueError(f"n={n}: the analysis batch needs at least one image")
    default = PAPER_IMAGES if paper_faithful else DEFAULT_IMAGES
    if isinstance(data, Dataset):
        return sample_batch(data, n or default, paper_faithful, seed)
    try:
        x, y = data
    except (TypeError, ValueError):
        raise TypeError(f"data: expected a Dataset or an (x, y) batch, got "
                        f"{type(data).__name__}") from None
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
        raise ValueError(f"data: expected x [B, C, H, W] and y [B], got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if paper_faithful:
        x, y = x[:n or PAPER_IMAGES], y[:n or PAPER_IMAGES]
    elif n is not None:
        x, y = x[:n], y[:n]
    return x, y


@contextmanager
def _modes_restored(model: nn.Module) -> Iterator[None]:
    """Every submodule's train/eval mode as it was, on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _left_as_found(model: nn.Module, device: torch.device, keep_weights: bool) -> Iterator[None]:
    """Move ``model`` to ``device`` for the body; afterwards its modes, device and (with
    ``keep_weights``) weights are those it came with."""
    first = next(model.parameters(), None)
    home = first.device if first is not None else device
    saved = ({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
             if keep_weights else None)
    with _modes_restored(model):
        try:
            yield
        finally:
            if saved is not None:
                model.load_state_dict(saved)
            model.to(home)


def analyze(model: nn.Module, data, *, name: str = "model",
            checkpoints: Mapping[int, str | Path] | Sequence[str | Path] | None = None,
            n: int | None = None, paper_faithful: bool = False, prefix_tokens: str | None = None,
            seed: int = 0, device: str | torch.device = "cpu", batch_size: int | None = None,
            progress: bool = False) -> pd.DataFrame:
    """Tidy per-layer metrics of ``model`` (as it is) or of each of its ``checkpoints``.

    ``data``: a Dataset or an ``(x, y)`` batch (``analysis_images``). ``checkpoints``:
    ``{epoch: weights file}`` (``Run.checkpoints()``) or a list of files, each loaded into
    ``model`` in turn. ``paper_faithful`` follows the official analysis (module docstring), with
    a Dataset and with a batch. ``prefix_tokens``: "drop" | "keep" for the two magnitudes
    (default "keep" when paper-faithful, else "drop"). ``batch_size``: images per pass (memory
    only; results do not change). The model comes back as it went in: train/eval mode, device
    and weights. Returns columns ``COLUMNS``.
    """
    prefix_tokens = prefix_tokens or ("keep" if paper_faithful else "drop")
    if prefix_tokens not in PREFIX_TOKENS:
        raise ValueError(f"prefix_tokens={prefix_tokens!r}; choose one of {PREFIX_TOKENS}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    x, y = analysis_images(data, n, paper_faithful, seed)
    device = torch.device(device)
    x, y = x.to(device), y.to(device)
    range_dtype = torch.float32 if paper_faithful else torch.float64
    if checkpoints is None:
        targets = [("final", None, None)]
    elif isinstance(checkpoints, Mapping):
        targets = [(f"epoch_{e}", e, p) for e, p in sorted(checkpoints.items())]
    else:
        targets = [(Path(p).stem, None, p) for p in checkpoints]
    rows = []
    with _left_as_found(model, device, keep_weights=checkpoints is not None):
        model.to(device)
        for label, epoch, path in tqdm(targets, desc=f"analysing {name}", leave=False,
                                       disable=not progress or len(targets) < 2):
            if path is not None:
                load_weights(model, path)
            rec = record_blocks(model, x, y, gradients=not paper_faithful, batch_size=batch_size,
                                progress=progress)
            values = layer_metrics(rec.feats, range_dtype=range_dtype)
            if paper_faithful:   # magnitudes: the first 5 images, each alone
                k = PAPER_MAGNITUDE_IMAGES
                rec = record_blocks(model, x[:k], y[:k], batch_size=1)
            values.update(magnitudes(rec, prefix_tokens))
            rows += _rows(values, name, label, epoch, prefix_tokens)
    return pd.DataFrame(rows, columns=COLUMNS)


def spectra(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Whole-spectrum views for figures: channel ``spectrum [L, C]``, spatial ``dlogamp [L, K]``."""
    feats = record_blocks(model, x, y, gradients=False, batch_size=batch_size).feats
    spectrum, _ = metrics.channel_spectrum(feats)
    return {"spectrum": spectrum, "dlogamp": metrics.spatial_log_amplitude(feats)}


def cka(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor,
        batch_size: int | None = None) -> torch.Tensor:
    """Linear CKA ``[L_a, L_b]`` between every block of two models on the same images."""
    feats = [record_blocks(m, x, y, gradients=False, batch_size=batch_size).feats
             for m in (model_a, model_b)]
    return metrics.linear_cka(*feats)
