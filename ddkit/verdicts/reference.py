"""The official release's numbers as compact tables shipped with ddkit, and the paper's headline
numbers computed from them.

Raw release (``distillation-dynamics/``): ``Distillation_Logs/*.txt`` (one JSON line per epoch;
ImageNet-1k, DeiT-Tiny student, CaiT-S24 teacher) and ``Analysis_Results/*.csv`` (student token
entropy per layer and checkpoint). ``build_reference_tables`` turns them into the two files under
``ddkit/reference/``; the loaders read those, so ddkit never needs the raw release at run time.
Regenerate with ``python -m ddkit.verdicts.reference /path/to/distillation-dynamics``.

Conventions (same as the kit's own tables):
- ``epoch`` is 0-based, as in the logs (a 300-epoch run logs epochs 0..299).
- ``test_acc1`` / ``test_acc5`` are in percent, as logged.
- the official checkpoint ``checkpoint_epoch_N`` holds the weights after N epochs, i.e. after log
  epoch ``N - 1``; ``model_best`` is the first epoch with the highest ``test_acc1`` (DeiT keeps it
  on a strict improvement).
- layers are 0-based (``Layer_1`` of the CSVs is layer 0).
"""
from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ddkit.core.config import LAYER_NAMES
from ddkit.runs.store import atomic_write

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
LOGS_FILE = "official_logs.csv.gz"
ENTROPY_FILE = "official_entropy.csv"
# The follow-up's Table 1 (arXiv 2511.15572, "From Per-Image Low-Rank to Encoding Mismatch", its
# released analysis code: last-layer tokens of 1,000 ImageNet validation images): per model its
# channels, the 99th-percentile per-image SVD rank at 95 %, and the 99th-percentile per-image
# dimension under the shared uncentred basis at 80/90/95/99 % of the energy ("Dataset").
FOLLOWUP_FILE = "followup_dims.csv"
DEIT_TINY_WIDTH = 192  # the official student's channels

OFFICIAL_KEYS = ("train_lr", "train_loss", "train_loss_base", "train_loss_fft", "train_loss_dist",
                 "test_loss", "test_acc1", "test_acc5", "epoch", "n_parameters")
RUN_COLUMNS = ("run", "method", "layers", "variant")
# every run of the release, in the order tables and figures list them
RUNS = ("SoftKD", "SpectralKD-First", "SpectralKD-Last", "SpectralKD-First+Last",
        "ProjectorKD-First", "ProjectorKD-Last", "ProjectorKD-First+Last",
        "SoftKD-500ep", "SpectralKD-Last-500ep", "SoftKD-MAE", "SpectralKD-Last-MAE")
VARIANT_SUFFIX = {"standard": "", "500ep": "-500ep", "MAE": "-MAE"}
FEATURE_WEIGHT = 0.2  # w of the official recipe: train_loss_fft = w * mean over pairs of L_feat


def run_name(method: str, layers: str, variant: str) -> str:
    """Normalised run name, e.g. ("SpectralKD", "first_last", "500ep") -> "SpectralKD-First+Last-500ep"."""
    name = method + (f"-{LAYER_NAMES[layers]}" if layers != "none" else "")
    return name + VARIANT_SUFFIX[variant]


def parse_log_name(stem: str) -> tuple[str, str, str]:
    """(method, layers, variant) of an official log file stem, e.g. "SpectralKD_Last_1_MAE"."""
    m = re.fullmatch(r"(SoftKD|SpectralKD|ProjectorKD)((?:_First_1)?)((?:_Last_1)?)(_500_epochs|_MAE)?", stem)
    if m is None:
        raise ValueError(f"unknown official log name {stem!r}")
    method, first, last, suffix = m.groups()
    layers = {(False, False): "none", (True, False): "first", (False, True): "last",
              (True, True): "first_last"}[(bool(first), bool(last))]
    variant = {None: "standard", "_500_epochs": "500ep", "_MAE": "MAE"}[suffix]
    if (method == "SoftKD") != (layers == "none"):
        raise ValueError(f"official log {stem!r}: SoftKD has no feature layers, the others need some")
    return method, layers, variant


def parse_entropy_name(stem: str) -> str:
    """Run name of an entropy CSV stem: "SoftKD", or "SpectralKD<first><last>" with 0/1 flags
    (SpectralKD10 = First, SpectralKD01 = Last, SpectralKD11 = First+Last)."""
    if stem == "SoftKD":
        return "SoftKD"
    m = re.fullmatch(r"SpectralKD([01])([01])", stem)
    if m is None or m.groups() == ("0", "0"):
        raise ValueError(f"unknown official entropy file {stem!r}")
    layers = {("1", "0"): "first", ("0", "1"): "last", ("1", "1"): "first_last"}[m.groups()]
    return run_name("SpectralKD", layers, "standard")


# --------------------------------------------------------------------------- build from raw


def read_official_logs(source_dir: str | Path) -> pd.DataFrame:
    """One row per (run, epoch): run, method, layers, variant, then the official keys.
    A key a run never logged (``train_loss_fft`` of the SoftKD 500-epoch and MAE runs) is NaN."""
    frames = []
    for path in sorted((Path(source_dir) / "Distillation_Logs").glob("*.txt")):
        method, layers, variant = parse_log_name(path.stem)
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        df = pd.DataFrame.from_records(records)
        unknown = set(df.columns) - set(OFFICIAL_KEYS)
        if unknown:
            raise ValueError(f"{path.name}: unexpected keys {sorted(unknown)}")
        df = df.reindex(columns=list(OFFICIAL_KEYS))
        df.insert(0, "run", run_name(method, layers, variant))
        df.insert(1, "method", method)
        df.insert(2, "layers", layers)
        df.insert(3, "variant", variant)
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no Distillation_Logs/*.txt under {source_dir}")
    logs = pd.concat(frames, ignore_index=True)
    order = {name: i for i, name in enumerate(RUNS)}
    logs = logs.sort_values(["run", "epoch"], key=lambda s: s.map(order) if s.name == "run" else s,
                            kind="stable").reset_index(drop=True)
    return logs.astype({"epoch": "int64", "n_parameters": "int64"})


def best_epochs(logs: pd.DataFrame) -> dict[str, int]:
    """{run: first epoch with the highest test_acc1} (the epoch of DeiT's ``model_best``)."""
    return {run: int(g["epoch"].iloc[int(np.argmax(g["test_acc1"].to_numpy()))])
            for run, g in logs.groupby("run", sort=False)}


def read_official_entropy(source_dir: str | Path, logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy rows (model, checkpoint, epoch, layer, metric, value) of the entropy CSVs.
    ``checkpoint_epoch_N`` -> epoch N - 1; ``model_best`` -> the best epoch of the matching log
    (NaN without ``logs``)."""
    best = best_epochs(logs) if logs is not None else {}
    rows = []
    for path in sorted((Path(source_dir) / "Analysis_Results").glob("*.csv")):
        model = parse_entropy_name(path.stem)
        wide = pd.read_csv(path, index_col=0)
        for checkpoint, values in wide.iterrows():
            m = re.fullmatch(r"checkpoint_epoch_(\d+)", checkpoint)
            if m:
                epoch = float(int(m.group(1)) - 1)
            elif checkpoint == "model_best":
                epoch = float(best.get(model, np.nan))
            else:
                raise ValueError(f"{path.name}: unknown checkpoint row {checkpoint!r}")
            for column, value in values.items():
                layer = int(re.fullmatch(r"Layer_(\d+)", column).group(1)) - 1
                rows.append((model, checkpoint, epoch, layer, "token_entropy", float(value)))
    if not rows:
        raise FileNotFoundError(f"no Analysis_Results/*.csv under {source_dir}")
    table = pd.DataFrame(rows, columns=["model", "checkpoint", "epoch", "layer", "metric", "value"])
    order = {name: i for i, name in enumerate(RUNS)}
    return table.sort_values(["model", "epoch", "checkpoint", "layer"], kind="stable",
                             key=lambda s: s.map(order) if s.name == "model" else s
                             ).reset_index(drop=True)


def build_reference_tables(source_dir: str | Path, out_dir: str | Path = REFERENCE_DIR) -> dict[str, Path]:
    """Read the raw release under ``source_dir`` and write ``official_logs.csv.gz`` and
    ``official_entropy.csv`` to ``out_dir`` (byte-reproducible). Returns the paths."""
    out_dir = Path(out_dir)
    logs = read_official_logs(source_dir)
    entropy = read_official_entropy(source_dir, logs)
    paths = {"logs": out_dir / LOGS_FILE, "entropy": out_dir / ENTROPY_FILE}
    packed = gzip.compress(logs.to_csv(index=False).encode(), mtime=0)  # no name, no time: reproducible
    atomic_write(paths["logs"], lambda tmp: Path(tmp).write_bytes(packed))
    atomic_write(paths["entropy"], lambda tmp: entropy.to_csv(tmp, index=False))
    return paths


# --------------------------------------------------------------------------- shipped tables


def official_logs(path: str | Path | None = None) -> pd.DataFrame:
    """The shipped official training logs: one row per (run, epoch); columns run, method, layers,
    variant and the official keys (epoch 0-based, test_acc1/test_acc5 in percent)."""
    df = pd.read_csv(path or REFERENCE_DIR / LOGS_FILE)
    return df.astype({"epoch": "int64", "n_parameters": "int64"})


def official_entropy(path: str | Path | None = None) -> pd.DataFrame:
    """The shipped official student token entropy (bits), tidy: model, checkpoint, epoch
    (0-based log epoch of the weights), layer (0-based), metric="token_entropy", value."""
    df = pd.read_csv(path or REFERENCE_DIR / ENTROPY_FILE)
    return df.astype({"epoch": "float64", "layer": "int64", "value": "float64"})


# --------------------------------------------------------------------------- paper numbers


def paper_numbers(logs: pd.DataFrame | None = None, entropy: pd.DataFrame | None = None) -> pd.DataFrame:
    """The headline numbers behind claims C1, C3-C6 (docs/design.md §1), computed from the tables
    (default: the shipped ones). Columns: claim, quantity, value, source.

    - C1, C6: entropy (bits) of the ``model_best`` checkpoint; layers are reported 1-based (L1..L12)
      as in the paper. "U depth" = L1 minus the profile's minimum.
    - C3: best ``test_acc1`` (%) of each run over all epochs, and differences to SoftKD.
    - C4: the paper's "raw SpectralKD loss" is the logged ``train_loss_fft`` of the last epoch
      divided by the feature weight w = 0.2 (the log holds w·L_feat): 0.0122/0.2 = 0.061 for
      First, 0.456/0.2 = 2.28 for Last.
    - C5: ``test_acc1`` at log epoch 9 (0-based, i.e. the 10th epoch): 32.7 / 37.6 / 38.8 for
      SoftKD / SpectralKD Last / First+Last. Catch-up: the first epoch >= 9 at which SoftKD is at
      least as accurate as SpectralKD Last.
    """
    logs = official_logs() if logs is None else logs
    entropy = official_entropy() if entropy is None else entropy
    rows = []

    def add(claim: str, quantity: str, value: float, source: str) -> None:
        rows.append((claim, quantity, float(value), source))

    def run(name: str) -> pd.DataFrame:
        g = logs[logs["run"] == name].sort_values("epoch")
        if g.empty:
            raise KeyError(f"run {name!r} not in the logs; known: {sorted(logs['run'].unique())}")
        return g.set_index("epoch")

    def profile(model: str, checkpoint: str = "model_best") -> pd.Series:
        g = entropy[(entropy["model"] == model) & (entropy["checkpoint"] == checkpoint)
                    & (entropy["metric"] == "token_entropy")]
        return g.set_index("layer")["value"].sort_index()

    # C1: U-shaped entropy of the SoftKD student, deepening over training
    src = "official_entropy: SoftKD, model_best"
    soft = profile("SoftKD")
    add("C1", "SoftKD entropy argmin layer (1-based)", soft.idxmin() + 1, src)
    add("C1", "SoftKD entropy min (bits)", soft.min(), src)
    for layer in (0, 1, 2, len(soft) - 1):
        add("C1", f"SoftKD entropy L{layer + 1} (bits)", soft[layer], src)
    add("C1", "SoftKD entropy U depth, L1 - min (bits)", soft.iloc[0] - soft.min(), src)
    early = profile("SoftKD", "checkpoint_epoch_30")
    add("C1", "SoftKD entropy U depth at checkpoint_epoch_30, L1 - min (bits)",
        early.iloc[0] - early.min(), "official_entropy: SoftKD, checkpoint_epoch_30")

    # C3: best top-1 of every run; late-layer alignment vs logit KD alone
    best = {name: run(name)["test_acc1"].max() for name in RUNS}
    for name in RUNS:
        add("C3", f"best test_acc1 {name} (%)", best[name], f"official_logs: {name}, max test_acc1")
    for a, b in (("SpectralKD-Last", "SoftKD"), ("SpectralKD-Last-500ep", "SoftKD-500ep"),
                 ("SpectralKD-Last-MAE", "SoftKD-MAE")):
        add("C3", f"best test_acc1 {a} - {b} (pt)", best[a] - best[b], f"official_logs: max test_acc1 of {a}, {b}")

    # C4: raw feature loss at the end of training (train_loss_fft / w)
    for name in ("SpectralKD-First", "SpectralKD-Last"):
        g = run(name)
        add("C4", f"final raw SpectralKD loss {name}", g["train_loss_fft"].iloc[-1] / FEATURE_WEIGHT,
            f"official_logs: {name}, train_loss_fft / {FEATURE_WEIGHT} at epoch {g.index[-1]}")

    # C5: alignment speeds up early training, logit KD catches up
    for name in ("SoftKD", "SpectralKD-Last", "SpectralKD-First+Last"):
        add("C5", f"test_acc1 at epoch 9 {name} (%)", run(name).loc[9, "test_acc1"],
            f"official_logs: {name}, test_acc1 at epoch 9 (0-based)")
    gap = run("SoftKD")["test_acc1"] - run("SpectralKD-Last")["test_acc1"]
    gap = gap[gap.index >= 9]
    add("C5", "first epoch >= 9 with SoftKD >= SpectralKD-Last", gap.index[(gap >= 0).to_numpy()][0],
        "official_logs: test_acc1 of SoftKD, SpectralKD-Last")

    # C6: late-layer alignment distorts the profile
    src = "official_entropy: SpectralKD-Last, model_best"
    last = profile("SpectralKD-Last")
    add("C6", "SpectralKD-Last entropy argmin layer (1-based)", last.idxmin() + 1, src)
    add("C6", "SpectralKD-Last entropy min (bits)", last.min(), src)
    add("C6", f"SpectralKD-Last entropy L{len(last)} (bits)", last.iloc[-1], src)
    add("C6", f"SpectralKD-Last - SoftKD entropy L{len(last)} (bits)", last.iloc[-1] - soft.iloc[-1],
        "official_entropy: SpectralKD-Last, SoftKD, model_best")
    return pd.DataFrame(rows, columns=["claim", "quantity", "value", "source"])


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m ddkit.verdicts.reference /path/to/distillation-dynamics [out_dir]")
    for kind, out in build_reference_tables(*sys.argv[1:]).items():
        print(f"{kind}: {out} ({out.stat().st_size / 1024:.0f} KiB)")


def followup_dims() -> pd.DataFrame:
    """The follow-up's Table 1 (``FOLLOWUP_FILE``): group, model, channels, svd_95, dataset_80,
    dataset_90, dataset_95, dataset_99."""
    return pd.read_csv(REFERENCE_DIR / FOLLOWUP_FILE)


def official_mismatch_points(logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The release's settings on the follow-up's axis, for drawing beside the kit's map: the
    CaiT-S24 teacher (its Table 1 dimension over DeiT-Tiny's 192 channels) with the release's
    final SoftKD - SpectralKD-Last and SoftKD - ProjectorKD-Last gaps, and the MAE teacher (the
    release does not say which MAE: the range of ViT-B/L/H MAE) with its SoftKD - SpectralKD-Last
    gap. Rows (setting, cell, ratio, ratio_lo, ratio_hi, estimate); gaps in pt at the final
    epoch, one seed each (no interval)."""
    logs = official_logs() if logs is None else logs
    final = logs.sort_values("epoch").groupby("run")["test_acc1"].last()
    dims = followup_dims().set_index("model")["dataset_95"]
    cait = dims["CaiT-S24"] / DEIT_TINY_WIDTH
    mae = dims[["ViT-Base (MAE)", "ViT-Large (MAE)", "ViT-Huge (MAE)"]] / DEIT_TINY_WIDTH
    rows = [{"setting": "ImageNet, CaiT-S24 -> DeiT-Tiny", "cell": cell, "ratio": cait,
             "ratio_lo": cait, "ratio_hi": cait, "estimate": final["SoftKD"] - final[cell]}
            for cell in ("SpectralKD-Last", "ProjectorKD-Last")]
    rows.append({"setting": "ImageNet, MAE (B/L/H) -> DeiT-Tiny", "cell": "SpectralKD-Last",
                 "ratio": float(np.exp(np.log(mae).mean())), "ratio_lo": float(mae.min()),
                 "ratio_hi": float(mae.max()),
                 "estimate": final["SoftKD-MAE"] - final["SpectralKD-Last-MAE"]})
    return pd.DataFrame(rows)
