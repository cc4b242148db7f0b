"""Where the entropy U forms, in the documents (claims C1-depth and C6-deep; docs/design.md §13):
the README's verdict rows and cost line, generated from the committed ``figures/u_formation/``
(``u_formation.csv``: the U statistics per checkpoint; ``entropy.csv``: the depth design's
per-block entropy; ``runs.csv``: its published runs).

A depth is judged (C1-depth) once it has two seeds; before that each run is read alone, with its
interval over the analysis images, and the row says how much of the design is published.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ddkit.core.config import load_profile
from ddkit.core.tables import TITLES
from ddkit.publish.map_docs import students_cost
from ddkit.studies import grid
from ddkit.studies import u_formation as uf
from ddkit.verdicts import claims
from ddkit.verdicts.claims import fmt
from ddkit.verdicts.sesoi import Paper, sesoi_c1

PROFILE = "u_formation"
COMMAND = "ddkit u-formation"
CAIT = "ddkit_cait_teacher_fmnist"


def load(figures: Path) -> dict | None:
    """The committed U-formation tables (None before ``u_formation.csv`` exists); ``entropy`` and
    ``runs`` are None until the depth design has published runs."""
    folder = Path(figures) / PROFILE
    if not (folder / uf.TABLE).is_file():
        return None
    return {name: pd.read_csv(folder / f) if (folder / f).is_file() else None
            for name, f in (("table", uf.TABLE), ("entropy", "entropy.csv"),
                            ("runs", grid.RESULTS_CSV))}


def planned_runs() -> int:
    """The depth design's planned run count (its profile's settings x cells x seeds)."""
    return len(grid.configs(load_profile(PROFILE)))


def _interval(r) -> str:
    return f"{fmt(r['estimate'])} [{fmt(r['lo95'])}, {fmt(r['hi95'])}] bits"


def c1_depth_row(data: dict, planned: int) -> str:
    """``C1-depth``: the verdict per depth with two seeds or more, else each published run read
    alone; the CaiT-shaped teacher's own U beside it."""
    u = data["table"][data["table"]["statistic"] == "U depth"]
    teacher = u[(u["model"] == CAIT) & (u["interval"] == "images")]
    parts = []
    entropy = data["entropy"]
    judged = (claims.judge(uf.c1_depth_evidence(entropy)) if entropy is not None
              else pd.DataFrame())
    for r in judged.to_dict("records"):
        parts.append(f"{r['claim'].split()[-1]} blocks: {r['verdict']} "
                     f"({r['variant'].split(' students')[0]}, {_interval(r)}, n = {int(r['n'])})")
    published = 0 if data["runs"] is None else len(data["runs"])
    if judged.empty:
        ones = u[u["source"] == "one run"].sort_values(["depth", "cell"], ascending=[False, True])
        reads = [f"{int(r['depth'])} blocks, {r['cell']}: {_interval(r)} ({uf.shape(r)})"
                 for r in ones.to_dict("records")]
        parts.append(f"not judged yet: it needs two seeds at a depth; one run each, interval over "
                     f"{int(ones['n'].iloc[0])} test images: " + "; ".join(reads)
                     + f"; C1's SESOI is {sesoi_c1(Paper()).value:.3f} bits" if reads else
                     f"not trained yet: `{COMMAND}`")
    head = "; ".join(parts)
    if published < planned:
        head += f" ({published} of {planned} planned runs published)"
    if len(teacher):
        t = teacher.iloc[0]
        head += (f". The 24-block CaiT-shaped teacher: {_interval(t)} over {int(t['n'])} images "
                 f"({uf.shape(t)})")
    return (f"| C1-depth | {TITLES['C1']}, by the student's depth (4, 12, 24 blocks; 60k images, "
            f"10 epochs) | {head} |")


def c6_deep_row(data: dict) -> str:
    """``C6-deep``: judged where the SoftKD students have a U and SpectralKD-Last ran there."""
    entropy, table = data["entropy"], data["table"]
    delta = sesoi_c1(Paper()).value
    where = uf.located(table, delta)
    if where["depth"] is None or entropy is None:
        text = ("not trained yet: SpectralKD-Last joins the depth design at the depth where the "
                "SoftKD students' U forms (C1-depth), not located yet")
    else:
        judged = claims.judge(uf.c6_deep_evidence(entropy, where["setting"]))
        text = ("; ".join(f"{r['variant']}: {r['verdict']}, {_interval(r)}"
                          for r in judged.to_dict("records"))
                or f"not trained yet: SpectralKD-Last at {where['setting']}")
    return f"| C6-deep | {TITLES['C6']}, where the students have a U | {text} |"


def verdict_rows(data: dict | None, planned: int) -> list[str]:
    """The README verdict table's U-formation rows (none before the table is committed)."""
    if data is None:
        return []
    return [c1_depth_row(data, planned), c6_deep_row(data)]


def cost_line(data: dict | None) -> list[str]:
    """The README cost block's line for the depth design (none before it has published runs)."""
    if data is None or data["runs"] is None or data["runs"].empty:
        return []
    return [f"- `{COMMAND}`: " + students_cost(data["runs"])]
