"""Where the entropy U forms (claim C1's lead observation; docs/design.md §13): token entropy per
block over training, for every run whose checkpoints the kit holds, one table.

    table = u_formation.read_all(...)     # shipped teachers, committed students, the release
    u_formation.depth_table(runs)         # the depth design's runs (profile u_depth)

The U statistics are claim C1's (``verdicts.claims.u_depth``): the U depth max_k min(x_first -
x_k, x_last - x_k) over the interior blocks, positive for a U, and its two arms. Each row says
what its interval is over: ``seeds`` (several runs of one recipe, t per arm, Bonferroni over
the interior blocks: the intersection-union bound of §8), ``images`` (one run's analysis images,
the same bound with images as the independent units), or ``none`` (one run, no interval). The
position of the interior minimum is given as a fraction of the depth, (block + 1) / L.

Sources: the shipped teachers' per-checkpoint dynamics (``ddkit/shipped/*_dynamics.csv``; their
per-epoch weights are not shipped, so their final weights alone get an interval over images), the
paper-shaped students' committed formation table, the release's students
(``formation.official_depths``), and, from the run cache, any run of the depth design.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ddkit.core.config import ModelConfig
from ddkit.core.data import build_dataset
from ddkit.core.hooks import block_features
from ddkit.core.models import SHIPPED_TEACHERS, create_from_config, num_blocks, shipped_teacher
from ddkit.runs import store
from ddkit.runs.store import write_text
from ddkit.runs.train import Run
from ddkit.signals.dynamics import sample_batch
from ddkit.signals.image_bootstrap import per_image_entropy
from ddkit.studies import formation, grid
from ddkit.verdicts import claims

COLUMNS = ("source", "model", "setting", "cell", "depth", "epoch", "epochs", "progress",
           "statistic", "estimate", "lo95", "hi95", "n", "interval", "min_block",
           "min_position")
ALPHA = claims.ALPHA_SIGN


def _minimum(profile: np.ndarray) -> tuple[int, float]:
    """(block, position) of the lowest interior block of a mean profile [L]; position (k+1)/L."""
    k = int(np.argmin(profile[1:-1])) + 1
    return k, (k + 1) / len(profile)


def _rows(profiles: np.ndarray, interval: str, **label) -> list[dict]:
    """The three U statistics of ``profiles`` [S, L] (S seeds or images; S = 1: no interval)."""
    mean = profiles.mean(0)
    block, position = _minimum(mean)
    rows = []
    for statistic, arms in formation.STATISTICS.items():
        point = float(claims.u_depth(np.repeat(mean[None], 2, 0), arms).mean)
        d = claims.u_depth(profiles, arms) if len(profiles) > 1 else None
        rows.append({**label, "statistic": statistic, "estimate": point,
                     "lo95": float(d.lower(ALPHA)) if d else np.nan,
                     "hi95": float(d.upper(ALPHA)) if d else np.nan, "n": len(profiles),
                     "interval": interval if d else "none", "min_block": block,
                     "min_position": position})
    return rows


@torch.no_grad()
def image_profiles(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Per-image token entropy profiles [images, L] (bits; one global range over the batch, as
    the paper's metric, so the mean over images is the profile the dynamics tables give)."""
    feats = block_features(model.eval(), x, list(range(num_blocks(model))))  # [L, B, C, H, W]
    return per_image_entropy(feats).T


def shipped_rows(x_of: Mapping[str, torch.Tensor]) -> list[dict]:
    """Every shipped teacher: its U statistics at each kept checkpoint (point only: one run, and
    its per-checkpoint weights are not shipped) and at its final weights with an interval over
    the images ``x_of[model]`` (models missing from ``x_of`` get no final row)."""
    rows = []
    for name, shipped in SHIPPED_TEACHERS.items():
        if not shipped.dynamics.is_file():
            continue
        record = json.loads(shipped.record.read_text())
        epochs = record["epochs"]
        dyn = pd.read_csv(shipped.dynamics)
        dyn = dyn[dyn["metric"] == "token_entropy"]
        label = dict(source="shipped teacher", model=name, setting="", cell="teacher", epochs=epochs)
        for epoch, g in dyn.groupby("epoch"):
            profile = g.sort_values("layer")["value"].to_numpy()[None]
            rows += _rows(profile, "none", **label, depth=profile.shape[1], epoch=int(epoch),
                          progress=(int(epoch) + 1) / epochs)
        if name in x_of:
            m = record["config"]["model"]
            model = create_from_config(ModelConfig(name=m["name"], kwargs=m.get("kwargs", {})),
                                       checkpoint=shipped_teacher(name).weights)
            profiles = image_profiles(model, x_of[name])
            rows += _rows(profiles, "images", **label, depth=profiles.shape[1], epoch=epochs - 1,
                          progress=1.0)
    return rows


def official_rows() -> list[dict]:
    """The release's SoftKD and SpectralKD-Last students at every saved checkpoint (one run each)."""
    table = formation.official_depths()
    return [{"source": "release", "model": r["model"], "setting": "ImageNet, 300 epochs",
             "cell": r["model"], "depth": 12, "epoch": int(r["epoch"]), "epochs": 300,
             "progress": r["progress"], "statistic": r["statistic"], "estimate": r["estimate"],
             "lo95": np.nan, "hi95": np.nan, "n": 1, "interval": "none", "min_block": np.nan,
             "min_position": np.nan} for r in table.to_dict("records")]


def committed_rows(path: Path) -> list[dict]:
    """The paper-shaped students' formation table (``figures/paper_shaped/u_formation.csv``:
    intervals over seeds), when committed."""
    if not Path(path).is_file():
        return []
    table = pd.read_csv(path)
    out = []
    for r in table.to_dict("records"):
        out.append({"source": "paper-shaped students", "model": r.get("model", ""),
                    "setting": r.get("setting", "base"), "cell": r.get("model", ""),
                    "depth": r.get("depth", 12), "epoch": r.get("epoch"),
                    "epochs": r.get("epochs", np.nan), "progress": r.get("progress"),
                    "statistic": r["statistic"], "estimate": r["estimate"], "lo95": r["lo95"],
                    "hi95": r["hi95"], "n": r["n"], "interval": "seeds" if r["n"] > 1 else "none",
                    "min_block": np.nan, "min_position": np.nan})
    return out


def run_rows(runs: Mapping[tuple[str, str, int], Run], x: torch.Tensor) -> pd.DataFrame:
    """Per-layer token entropy of every kept checkpoint of ``runs`` ({(setting, cell, seed):
    Run}) on images ``x``: rows (setting, cell, seed, depth, epoch, epochs, layer, value)."""
    rows = []
    for (setting, cell, seed), run in runs.items():
        epochs = int(run.summary["epochs"])
        for epoch in sorted(run.checkpoints()):
            profile = image_profiles(run.load_model(epoch), x).mean(0)
            rows += [{"setting": setting, "cell": cell, "seed": seed, "depth": len(profile),
                      "epoch": int(epoch), "epochs": epochs, "layer": l, "value": float(v)}
                     for l, v in enumerate(profile)]
    return pd.DataFrame(rows)


def depth_rows(entropy: pd.DataFrame) -> list[dict]:
    """The U statistics of the depth design per (setting, cell, checkpoint), intervals over the
    seeds that have the checkpoint (``run_rows``' table)."""
    rows = []
    for (setting, cell, epoch), g in entropy.groupby(["setting", "cell", "epoch"]):
        profiles = g.pivot_table(index="seed", columns="layer", values="value").to_numpy()
        epochs = int(g["epochs"].iloc[0])
        rows += _rows(profiles, "seeds", source="depth design", model="", setting=setting,
                      cell=cell, depth=profiles.shape[1], epoch=int(epoch), epochs=epochs,
                      progress=(int(epoch) + 1) / epochs)
    return rows


def table(parts: list[list[dict]]) -> pd.DataFrame:
    """Rows of every source as one table (``COLUMNS``)."""
    return pd.DataFrame([r for part in parts for r in part], columns=list(COLUMNS))


TABLE = "u_formation.csv"
RELEASE_TABLE = Path("figures") / "paper_shaped" / "u_formation.csv"


def analysis_images(data_name: str, n: int = 200) -> torch.Tensor:
    """``n`` class-balanced test images of a data set (seed 0), the analysis batch."""
    return sample_batch(build_dataset(data_name, "test"), n, seed=0)[0]


def write_table(profile, folder: Path) -> pd.DataFrame:
    """The whole U-formation table (``COLUMNS``) into ``folder / TABLE``: the shipped teachers
    (their checkpoints, and their final weights with an interval over 200 test images), the
    paper-shaped students' committed table, the release's students and the depth design's runs
    found complete in the run cache (``grid.finished``)."""
    x_of = {name: analysis_images(json.loads(s.record.read_text())["config"]["data"]["name"])
            for name, s in SHIPPED_TEACHERS.items() if s.record.is_file()}
    done = grid.finished(profile)
    entropy = run_rows(done, analysis_images(profile.data.name)) if done else pd.DataFrame()
    out = table([shipped_rows(x_of), committed_rows(store.REPO_ROOT / RELEASE_TABLE),
                 official_rows(), depth_rows(entropy) if len(entropy) else []])
    write_text(Path(folder) / TABLE, out.to_csv(index=False))
    if len(entropy):
        write_text(Path(folder) / "entropy.csv", entropy.to_csv(index=False))
    return out
