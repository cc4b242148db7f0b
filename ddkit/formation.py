"""How the entropy U forms over training: the arms of each per-layer profile, checkpoint by
checkpoint, for the kit's runs and for the official release, on one axis of training progress.

A profile's arms (``docs/design.md §1``, claim C1): with l* the block of lowest entropy,
``first − min`` = entropy at the first block minus at l* (the left arm, compression) and
``last − min`` = at the last block minus at l* (the right arm, expansion). Both are 0 when the
minimum sits at that end; a U has both arms above 0.

Inputs are the kit's tidy per-layer tables (``dynamics.analyze``: model, checkpoint, epoch, layer,
metric, value; a ``seed`` column where there are several runs) and
``reference.official_entropy()``. ``progress`` is the fraction of the run's schedule done when
the weights were saved: (epoch + 1) / epochs, 0-based epochs as logged.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ARMS = ("first_minus_min", "last_minus_min")


def arms(table: pd.DataFrame, metric: str = "token_entropy",
         by: tuple[str, ...] = ("model", "seed", "epoch")) -> pd.DataFrame:
    """The arms of every profile in ``table``: one row per ``by`` group (those of its columns
    that exist) with ``min_layer`` (1-based), ``first_minus_min`` and ``last_minus_min`` in the
    metric's unit, and ``n_layers``."""
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no {metric!r} rows; metrics present: {sorted(table['metric'].unique())}")
    keys = [k for k in by if k in rows.columns]
    out = []
    for group, g in rows.groupby(keys, sort=True, dropna=False):
        profile = g.sort_values("layer")["value"].to_numpy()  # [L]
        lowest = int(np.argmin(profile))
        out.append({**dict(zip(keys, group if isinstance(group, tuple) else (group,))),
                    "n_layers": len(profile), "min_layer": lowest + 1,
                    "first_minus_min": float(profile[0] - profile[lowest]),
                    "last_minus_min": float(profile[-1] - profile[lowest])})
    return pd.DataFrame(out)


def with_progress(table: pd.DataFrame, epochs: int | dict[str, int]) -> pd.DataFrame:
    """``table`` with a ``progress`` column, (epoch + 1) / epochs; ``epochs`` per model if a dict."""
    total = table["model"].map(epochs) if isinstance(epochs, dict) else epochs
    if isinstance(total, pd.Series) and total.isna().any():
        missing = sorted(table.loc[total.isna(), "model"].unique())
        raise ValueError(f"no schedule length for model(s) {missing}")
    return table.assign(progress=(table["epoch"] + 1) / total)


def official_arms(entropy: pd.DataFrame | None = None, epochs: int = 300) -> pd.DataFrame:
    """The official students' arms at every saved checkpoint (``model_best`` left out: its epoch
    is not on the schedule's grid), with ``progress`` = epoch / 300."""
    from ddkit.reference import official_entropy
    entropy = official_entropy() if entropy is None else entropy
    saved = entropy[entropy["checkpoint"].str.startswith("checkpoint_epoch_")]
    return with_progress(arms(saved, by=("model", "epoch")), epochs)
