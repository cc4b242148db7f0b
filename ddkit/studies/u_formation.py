"""Where the entropy U forms (claim C1's lead observation; docs/design.md §13): token entropy per
block over training, for every run whose checkpoints the kit holds, one table.

    table = u_formation.read_all(...)     # shipped teachers, committed students, the release
    u_formation.depth_table(runs)         # the depth design's runs (profile u_depth)

The U statistics are claim C1's (``verdicts.claims.u_depth``): the U depth max_k min(x_first -
x_k, x_last - x_k) over the interior blocks, positive for a U, and its two arms. Each row says
what its interval is over: ``seeds`` (several runs of one recipe, t per arm, Bonferroni over
the interior blocks: the intersection-union bound of docs/design.md §8), ``images`` (one run's analysis images,
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

from ddkit.core.anatomy import num_blocks
from ddkit.core.config import ModelConfig, load_profile
from ddkit.core.data import build_dataset
from ddkit.core.hooks import block_features
from ddkit.core.models import SHIPPED_TEACHERS, create_from_config, shipped_teacher
from ddkit.runs import store
from ddkit.runs.store import write_text
from ddkit.runs.train import Run
from ddkit.signals.dynamics import sample_batch
from ddkit.signals.image_bootstrap import per_image_entropy
from ddkit.studies import formation, grid
from ddkit.verdicts import claims
from ddkit.verdicts.claims import DIRECTIONAL, Evidence
from ddkit.verdicts.sesoi import Paper, sesoi_c1, sesoi_c6

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
    own = load_profile("paper_shaped").own_setting   # the pair itself, never a bare "base"
    out = []
    for r in table.to_dict("records"):
        out.append({"source": "paper-shaped students", "model": r.get("model", ""),
                    "setting": r.get("setting", own), "cell": r.get("model", ""),
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


def run_final_rows(runs: Mapping[tuple[str, str, int], Run], x: torch.Tensor) -> list[dict]:
    """Each run of ``runs`` at its final weights, the U statistics with an interval over the
    images ``x`` (source ``one run``, model: the run's folder): whether that one run's profile is a
    U, the reading a setting has before it has two seeds (it says nothing of the spread over
    training runs, which ``depth_rows`` gives)."""
    rows = []
    for (setting, cell, seed), run in runs.items():
        epochs = int(run.summary["epochs"])
        profiles = image_profiles(run.load_model(), x)
        rows += _rows(profiles, "images", source="one run", model=run.dir.path.name, setting=setting,
                      cell=cell, depth=profiles.shape[1], epoch=epochs - 1, epochs=epochs,
                      progress=1.0)
    return rows


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
    x = analysis_images(profile.data.name)
    entropy = run_rows(done, x) if done else pd.DataFrame()
    out = table([shipped_rows(x_of), committed_rows(store.REPO_ROOT / RELEASE_TABLE),
                 official_rows(), depth_rows(entropy) if len(entropy) else [],
                 run_final_rows(done, x)])
    write_text(Path(folder) / TABLE, out.to_csv(index=False))
    if len(entropy):
        write_text(Path(folder) / "entropy.csv", entropy.to_csv(index=False))
    return out


# --------------------------------------------------------------------------- verdicts

def _final_profiles(entropy: pd.DataFrame, setting: str, cell: str) -> pd.DataFrame:
    """[seeds, L] token-entropy profiles of one setting and cell at its last checkpoint."""
    g = entropy[(entropy["setting"] == setting) & (entropy["cell"] == cell)]
    last = g[g["epoch"] == g["epochs"] - 1]
    return last.pivot_table(index="seed", columns="layer", values="value")


def c1_depth_evidence(entropy: pd.DataFrame, paper: Paper | None = None) -> list[Evidence]:
    """One claim per depth (``C1-depth <L>``): the U depth of the SoftKD students' global-range
    entropy profile at the final checkpoint, over seeds (primary), and the no-KD students'
    (secondary), with C1's SESOI."""
    paper = paper or Paper()
    delta = sesoi_c1(paper)
    out = []
    for setting in sorted(entropy["setting"].unique(), key=lambda s: int(s.split()[-1])):
        for cell in ("SoftKD", "no-KD"):
            P = _final_profiles(entropy, setting, cell)
            if len(P) < 2:
                continue
            depth = P.shape[1]
            out.append(Evidence(
                f"C1-depth {depth}", f"{cell} students, {depth} blocks: U depth at the end",
                DIRECTIONAL, claims.u_depth(P.to_numpy()), delta, "bits",
                f"min(first, last) - interior min of the {cell} students' raw entropy profile at "
                "the final checkpoint", primary=cell == "SoftKD",
                note="the depth design (profile u_formation): all 60k images, 10 epochs"))
    return out


def c6_deep_evidence(entropy: pd.DataFrame, setting: str, cell: str = "SpectralKD-Last",
                     paper: Paper | None = None) -> list[Evidence]:
    """``C6-deep`` at ``setting``: SoftKD - ``cell`` in the last block's entropy and at the
    interior minimum, paired by seed (C6's two parts and SESOIs), at the final checkpoint."""
    paper = paper or Paper()
    soft, aligned = _final_profiles(entropy, setting, "SoftKD"), _final_profiles(entropy, setting, cell)
    seeds = sorted(set(soft.index) & set(aligned.index))
    if len(seeds) < 2:
        return []
    S, A = soft.loc[seeds].to_numpy(), aligned.loc[seeds].to_numpy()
    note = f"the depth design's {setting} students (profile u_formation)"
    return [Evidence("C6-deep", f"SoftKD - {cell}, last layer ({setting})", DIRECTIONAL,
                     claims.paired(S[:, -1], A[:, -1]), sesoi_c6(paper, "last layer"), "bits",
                     f"SoftKD - {cell} entropy of the last block", primary=True, note=note),
            Evidence("C6-deep", f"SoftKD - {cell}, interior minimum ({setting})", DIRECTIONAL,
                     claims.paired(claims.interior_min(S), claims.interior_min(A)),
                     sesoi_c6(paper, "interior minimum"), "bits",
                     f"SoftKD - {cell} of the lowest interior block's entropy", primary=True,
                     note=note)]


def located(formation_table: pd.DataFrame, delta: float, cell: str = "SoftKD") -> dict:
    """Where the U forms in the depth design (docs/design.md §13): the smallest depth whose
    ``cell`` students' final U depth has its 95 % lower bound above ``delta``, and the first
    fraction of training from which the lower bound stays above it. ``{"depth": None}`` when no
    depth qualifies."""
    rows = formation_table[(formation_table["source"] == "depth design")
                           & (formation_table["cell"] == cell)
                           & (formation_table["statistic"] == "U depth")]
    for depth, g in sorted(rows.groupby("depth"), key=lambda kv: kv[0]):
        g = g.sort_values("progress")
        above = (g["lo95"] > delta).to_numpy()
        if len(g) and above[-1]:
            first = len(above) - int(np.argmin(above[::-1])) if not above.all() else 0
            return {"depth": int(depth), "setting": g["setting"].iloc[0],
                    "from_progress": float(g["progress"].iloc[first]),
                    "final": float(g["estimate"].iloc[-1]), "lo95": float(g["lo95"].iloc[-1])}
    return {"depth": None}


def run(profile, folder: Path, recompute: bool) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The U-formation table and the depth design's per-checkpoint entropy, as notebook 11 needs
    them. ``recompute`` (the notebook runs under the study's own profile): train the depth design
    (or take it from the run cache), publish its runs and write both tables; otherwise the
    committed tables (None while they are missing)."""
    folder = Path(folder)
    if recompute:
        grid.tables(profile, folder, recompute=True)
        write_table(profile, folder)
    table = pd.read_csv(folder / TABLE) if (folder / TABLE).is_file() else None
    entropy = pd.read_csv(folder / "entropy.csv") if (folder / "entropy.csv").is_file() else None
    return table, entropy


def _bits(r) -> str:
    if np.isnan(r["lo95"]):
        return f"{r['estimate']:+.3f} bits (one run, no interval)"
    return f"{r['estimate']:+.3f} [{r['lo95']:+.3f}, {r['hi95']:+.3f}] bits"


def shape(r) -> str:
    """A U-depth row's shape by its 95 % interval: ``a U`` (above 0), ``monotone`` (below 0),
    else ``no clear shape``."""
    return "a U" if r["lo95"] > 0 else "monotone" if r["hi95"] < 0 else "no clear shape"


def findings(table: pd.DataFrame, entropy: pd.DataFrame | None, delta: float,
             planned: int | None = None) -> list[str]:
    """Sentences about where the U forms, each built from the tables (``planned``: the depth
    design's planned run count, to say how much of it is published)."""
    u = table[table["statistic"] == "U depth"]
    lines = []
    final = u[(u["source"] == "shipped teacher") & (u["interval"] == "images")]
    for r in final.to_dict("records"):
        lines.append(f"shipped teacher {r['model']} ({r['depth']} blocks), final weights: U depth "
                     f"{_bits(r)} over {r['n']} test images: {shape(r)}"
                     + (f", its minimum at block {int(r['min_block']) + 1} of {r['depth']}"
                        if r["lo95"] > 0 else ""))
    release = u[(u["source"] == "release") & (u["cell"] == "SoftKD")].sort_values("progress")
    if len(release):
        above = release[release["estimate"] > delta]
        lines.append("release SoftKD student (12 blocks, one run): U depth "
                     f"{release['estimate'].iloc[-1]:+.3f} bits at the end of 300 epochs; "
                     + (f"above the SESOI from {above['progress'].iloc[0]:.0%} of training"
                        if len(above) else "never above the SESOI"))
    design = u[u["source"] == "depth design"]
    if planned is not None:
        published = int(design.drop_duplicates(["setting", "cell"])["n"].sum()) if len(design) else 0
        lines.append(f"the depth design: {published} of {planned} planned runs published"
                     + ("" if published == planned else
                        " (partial: `ddkit u-formation` trains the rest and resumes)"))
    if design.empty:
        lines.append("the depth design (profile u_formation) is not published yet")
        return lines
    for (depth, cell), g in design.groupby(["depth", "cell"]):
        r = g.sort_values("progress").iloc[-1].to_dict()
        if r["n"] > 1:
            lines.append(f"depth design, {cell} students with {depth} blocks, end of training: "
                         f"U depth {_bits(r)} over {int(r['n'])} seeds")
            continue
        one = u[(u["source"] == "one run") & (u["depth"] == depth) & (u["cell"] == cell)]
        for o in one.to_dict("records"):
            lines.append(f"depth design, one {cell} student with {depth} blocks (one seed, no "
                         f"interval over training runs yet), end of training: U depth "
                         f"{_bits(o)} over {int(o['n'])} test images: {shape(o)}"
                         + (f", its minimum at block {int(o['min_block']) + 1} of {depth}"
                            if o["lo95"] > 0 else ""))
    where = located(table, delta)
    if where["depth"] is not None:
        lines.append(f"the U is located at depth {where['depth']}: its lower bound exceeds the "
                     f"SESOI ({delta:.3f} bits) from {where['from_progress']:.0%} of training on")
    elif (design["n"] > 1).any():
        lines.append(f"no depth forms a U whose 95 % lower bound over seeds exceeds the SESOI "
                     f"({delta:.3f} bits) by the end of training")
    else:
        lines.append("C1-depth is not judged yet: it needs at least two seeds at a depth")
    return lines
