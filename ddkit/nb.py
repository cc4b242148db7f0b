"""What every notebook does in its first cell: check the parameters, load the profile, say where
figures go. Papermill only warns about parameters a notebook does not have; ``start`` stops the
notebook instead, naming the parameter and the valid ones, before any compute.
"""
from __future__ import annotations

import platform
import types
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from IPython import get_ipython
from IPython.display import Image, display

from ddkit.core.config import ConfigError, Profile, load_profile, profile_names
from ddkit.core.data import find_fashion_mnist
from ddkit.core.mosaic import MOSAICS
from ddkit.core.tables import CLAIMS_CSV, SWEEP_CSV, read_table
from ddkit.publish import readme
from ddkit.publish.plots import SAVE_DPI, plt, save_figure  # plots sets the backend before pyplot
from ddkit.runs.store import profile_figure_dir, write_text
from ddkit.verdicts.claims import VERDICTS

_NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """A notebook parameter is unknown or of the wrong type."""


@dataclass(frozen=True)
class Session:
    """A notebook's checked parameters and its profile."""
    params: dict
    profile: Profile
    figures: Path

    def save(self, fig, name: str, paper: bool = False) -> Path:
        """Write ``fig`` to the profile's figure folder as PNG (and PDF for paper figures), then
        show that PNG file in the notebook and close the figure, so what a reader sees inline is
        byte for byte the file in ``figures/``. The image output carries the file name in its
        metadata (``ddkit_figure``). Returns the PNG's path."""
        png = save_figure(fig, name, self.figures, pdf=paper)[0]
        plt.close(fig)
        show_png(png, scale=100 / SAVE_DPI, metadata={FIGURE_KEY: png.name})
        return png


FIGURE_KEY = "ddkit_figure"  # output metadata naming the figure file an image output shows


def show_png(path: Path, scale: float = 1.0, metadata: dict | None = None) -> None:
    """Display a PNG file in the running notebook at ``scale`` of its pixel width (nothing
    outside a kernel)."""
    if get_ipython() is None:
        return
    data = Path(path).read_bytes()
    width = int.from_bytes(data[16:20], "big")  # the PNG IHDR chunk's width field
    display(Image(data=data, format="png", width=round(width * scale)), metadata=metadata)


def _user_names(namespace: dict) -> dict:
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _NOTEBOOK_NAMES
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def check_parameters(namespace: dict, schema: dict[str, type]) -> dict:
    """The notebook's parameters from ``namespace`` (its globals), checked against ``schema``."""
    found = _user_names(namespace)
    unknown = sorted(set(found) - set(schema))
    if unknown:
        raise ParameterError(f"unknown notebook parameter(s) {unknown}; this notebook takes "
                             f"{sorted(schema)}")
    missing = sorted(set(schema) - set(found))
    if missing:
        raise ParameterError(f"parameter(s) {missing} missing: keep the notebook's parameters cell")
    for name, kind in schema.items():
        value = found[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise ParameterError(f"parameter {name}={value!r} should be {kind.__name__}")
    return {name: found[name] for name in schema}


def _check_data(profile: Profile) -> None:
    if profile.data.name == "fashion_mnist" or profile.data.name in MOSAICS:
        find_fashion_mnist(profile.data.root, download=True)


def start(namespace: dict, **schema: type) -> Session:
    """Check parameters (``profile`` is required), load the profile, check its data is there."""
    params = check_parameters(namespace, {"profile": str, **schema})
    try:
        profile = load_profile(params["profile"])
    except ConfigError as err:
        raise ParameterError(f"profile={params['profile']!r}: {err}") from None
    _check_data(profile)
    torch.manual_seed(profile.seeds[0])
    return Session(params, profile, profile_figure_dir(profile))


def environment() -> dict:
    """Versions and device, for the record at the top of a notebook."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "cuda": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(), "profiles": profile_names()}


# --------------------------------------------------------------------------- short summaries
# Notebook cells marked NBVAL_CHECK_OUTPUT print these: stable, rounded invariants only.


def profile_summary(profile: Profile) -> dict:
    return {"command": profile.command, "data": profile.data.name,
            "train_subset": profile.data.train_subset, "teacher": profile.teacher.model.name,
            "teacher_source": profile.teacher_source, "student": profile.student.model.name,
            "student_epochs": profile.student.optim.epochs, "seeds": profile.seeds}


def dataset_summary(dataset, split: str) -> str:
    labels = torch.as_tensor(dataset.targets)
    counts = torch.bincount(labels)
    x, _ = dataset[0]
    return (f"{split}: {len(dataset)} images of shape {tuple(x.shape)}, {len(counts)} classes, "
            f"{int(counts.min())}-{int(counts.max())} per class")


def first_per_class(dataset, per_class: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of every class, in dataset order."""
    labels = torch.as_tensor(dataset.targets)
    index = torch.cat([torch.nonzero(labels == c).flatten()[:per_class]
                       for c in labels.unique()])
    items = [dataset[int(i)] for i in index]
    return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items])


def runs_summary(runs: dict) -> str:
    cells = sorted({c for c, _ in runs}, key=list(dict.fromkeys(c for c, _ in runs)).index)
    seeds = sorted({s for _, s in runs})
    epochs = sorted({r.summary["epochs"] for r in runs.values()})
    complete = all(len(r.records) == r.summary["epochs"] for r in runs.values())
    return (f"{len(runs)} runs: cells {cells} x seeds {seeds}; epochs {epochs}; "
            f"every log complete: {complete}")


def table_summary(table) -> str:
    return (f"{table['model'].nunique()} model(s) x {table['layer'].nunique()} layers x "
            f"{table['metric'].nunique()} metrics, {len(table)} rows, all finite: "
            f"{bool(table['value'].notna().all() and table['value'].abs().lt(float('inf')).all())}")


def layer_pivot(table, metric: str, model: str):
    """Checkpoints x layers (L1..) of one metric: the shape of the official entropy CSVs."""
    rows = table[(table["metric"] == metric) & (table["model"] == model)]
    wide = rows.pivot_table(index="epoch", columns="layer", values="value")
    wide.columns = [f"L{c + 1}" for c in wide.columns]
    return wide


def reference_summary(logs, entropy) -> str:
    return (f"official logs: {logs['run'].nunique()} runs, {len(logs)} epoch rows; entropy: "
            f"{entropy['model'].nunique()} models x {entropy['checkpoint'].nunique()} checkpoints x "
            f"{entropy['layer'].nunique()} layers")


# --------------------------------------------------------------------------- claims output


def write_claims(session: Session, table) -> None:
    """Write the claims table (CSV + Markdown) to the profile's figures (the pipeline regenerates
    the documents from it)."""
    session.figures.mkdir(parents=True, exist_ok=True)
    write_text(session.figures / CLAIMS_CSV, table.to_csv(index=False))
    text = readme.results_markdown(read_table(session.figures / CLAIMS_CSV),
                                   session.profile.name)
    write_text(session.figures / "claims.md", text)


def write_sweep(session: Session, table) -> None:
    """Write the sweep table as CSV (the pipeline regenerates the documents from it)."""
    write_table(session, table, SWEEP_CSV.removesuffix(".csv"))


def verdict_summary(table) -> str:
    """Stable at any size: rows per claim, the primary variants, and that every row carries its
    SESOI, n and a verdict from the vocabulary."""
    per_claim = table.groupby("claim", sort=False).size().to_dict()
    primary = table[table["primary"]].groupby("claim", sort=False)["variant"].apply(list).to_dict()
    ok = bool(table["sesoi"].gt(0).all() and table["n"].ge(1).all()
              and table["verdict"].isin(VERDICTS).all() and table["headline"].isin(VERDICTS).all())
    return (f"rows per claim: {per_claim}\nprimary: {primary}\n"
            f"every row has a SESOI, n and a verdict from the vocabulary: {ok}")


def write_table(session: Session, table, name: str) -> None:
    """Write a result table as ``<figures>/<name>.csv``."""
    session.figures.mkdir(parents=True, exist_ok=True)
    write_text(session.figures / f"{name}.csv", table.to_csv(index=False))


def sweep_summary(table) -> str:
    settings = list(dict.fromkeys(table["setting"]))
    return (f"settings: {settings}\nrows per setting: "
            f"{table.groupby('setting', sort=False).size().to_dict()}")


def sweep_as_effects(table):
    """The sweep table in the shape ``plots.plot_effects`` draws: one panel per claim, one row
    per (setting, variant)."""
    return table.assign(variant=table["setting"] + ": " + table["variant"])
