"""How the entropy U forms over training: its depth and arms, checkpoint by checkpoint, for the
kit's runs (with intervals over seeds) and for the official release, on one axis of training
progress.

The statistics are claim C1's (``claims.u_depth``, docs/design.md §8), over the interior
blocks 2 … L-1: ``first − min`` = entropy at the first block minus the lowest interior block
(compression), ``last − min`` = the last block minus the lowest interior block (expansion), and
the ``U depth`` = the largest interior dip below both ends, max_k min(first − x_k, last − x_k).
A U has depth > 0; a monotone profile has a negative or zero arm. The interval of each is the
selection-free one of the claims study: valid whichever interior block the data favour.

Inputs are the kit's tidy per-layer tables (``dynamics.analyze``: model, checkpoint, epoch, layer,
metric, value, and a ``seed`` column) and ``reference.official_entropy()``. ``progress`` is the
fraction of the schedule done when the weights were saved: (epoch + 1) / epochs, epochs 0-based
as logged.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ddkit.verdicts import claims
from ddkit.verdicts.reference import official_entropy

STATISTICS = {"U depth": ("first", "last"), "first − min": ("first",), "last − min": ("last",)}
ALPHA = claims.ALPHA_SIGN  # each tail of a 95 % interval


def _profiles(group: pd.DataFrame, over: str) -> np.ndarray:
    """``[S, L]`` profiles of one group, one row per ``over`` value (seed)."""
    return group.pivot_table(index=over, columns="layer", values="value").to_numpy()


def depths(table: pd.DataFrame, metric: str = "token_entropy",
           by: tuple[str, ...] = ("model", "epoch"), over: str = "seed") -> pd.DataFrame:
    """The U depth and both arms of every ``by`` group's profiles, with 95 % intervals over
    ``over`` (NaN bounds with one row). One row per (group, statistic): estimate, lo95, hi95, n,
    in the metric's unit."""
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no {metric!r} rows; metrics present: {sorted(table['metric'].unique())}")
    keys = [k for k in by if k in rows.columns]
    out = []
    for group, g in rows.groupby(keys, sort=True):
        P = _profiles(g, over) if over in g.columns else g.sort_values("layer")["value"].to_numpy()[None]
        label = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        for statistic, arms in STATISTICS.items():
            d = claims.u_depth(P, arms) if len(P) > 1 else None
            point = claims.u_depth_of(P, arms)
            out.append({**label, "statistic": statistic, "estimate": point,
                        "lo95": float(d.lower(ALPHA)) if d else np.nan,
                        "hi95": float(d.upper(ALPHA)) if d else np.nan, "n": len(P)})
    return pd.DataFrame(out)


def with_progress(table: pd.DataFrame, epochs: int | dict[str, int]) -> pd.DataFrame:
    """``table`` with a ``progress`` column, (epoch + 1) / epochs; ``epochs`` per model if a dict."""
    total = table["model"].map(epochs) if isinstance(epochs, dict) else epochs
    if isinstance(total, pd.Series) and total.isna().any():
        missing = sorted(table.loc[total.isna(), "model"].unique())
        raise ValueError(f"no schedule length for model(s) {missing}")
    return table.assign(progress=(table["epoch"] + 1) / total)


def official_depths(entropy: pd.DataFrame | None = None, epochs: int = 300) -> pd.DataFrame:
    """The official students' U depth and arms at every saved checkpoint (``model_best`` left
    out: it is not on the schedule's grid), one run each (no interval), with ``progress``."""
    entropy = official_entropy() if entropy is None else entropy
    saved = entropy[entropy["checkpoint"].str.startswith("checkpoint_epoch_")]
    return with_progress(depths(saved, over="__none__"), epochs)
