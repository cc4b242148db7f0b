"""The paper's numbers in the kit's quantities, and each claim's smallest effect of interest
(SESOI) with its reason, fixed before any kit data is looked at (docs/design.md §8). Values come
from the official release's tables (``ddkit.verdicts.reference``); the fractions and reasons live here.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ddkit.core.tables import PILOT_CSV
from ddkit.runs.store import FIGURES
from ddkit.verdicts import claims
from ddkit.verdicts.claims import Sesoi
from ddkit.verdicts.reference import FEATURE_WEIGHT, official_entropy, official_logs

# the official schedule and the paper's early epoch (C5's sensitivity view): epoch 9 of 300
PAPER_EPOCHS = 300
PAPER_EARLY_EPOCH = 9
PAPER_WARMUP = 5     # the official (DeiT) warm-up epochs: the logged lr rises through epoch 5
# C5's early window, fixed before the kit's data: the epochs after the learning-rate warm-up up
# to this fraction of the schedule (the official 5..49 of 300, where every aligned run still
# leads SoftKD in the release's curves; the kit's 12-epoch schedule: epoch 1). The margin and the
# paper column are both read over the paper's epochs of the same window.
C5_EARLY_UNTIL = 1 / 6
ALIGNED = ("SpectralKD-Last", "SpectralKD-First+Last", "SpectralKD-First", "ProjectorKD-Last",
           "ProjectorKD-First+Last", "ProjectorKD-First")

# SESOI rules, fixed before any kit data is looked at (docs/design.md §8). Values are computed
# from the official release's tables by ``sesoi``; the fractions and their reasons live here.
C1_FRACTION = 0.25   # of the official SoftKD student's U depth at its best checkpoint
C2_PER_CHANNEL = 0.10  # of the width: effective rank / C and PCA dims / C lie in (0, 1]
C4_LOG_FRACTION = 0.5  # of the paper's log last/first loss ratio
C4_COSINE = 0.10     # token cosine, range [-1, 1]; the paper gives no number
C5_FRACTION = 0.5    # of the paper's early cell - SoftKD gap over its early window
C6_FRACTION = 0.5    # of the paper's SpectralKD-Last - SoftKD entropy drops


# --------------------------------------------------------------------------- the paper's numbers


@dataclass
class Paper:
    """The official release's numbers, in the kit's quantities (``ddkit.verdicts.reference`` tables)."""

    logs: pd.DataFrame = field(default_factory=official_logs)
    entropy: pd.DataFrame = field(default_factory=official_entropy)

    def profile(self, model: str, checkpoint: str = "model_best") -> np.ndarray:
        """Token entropy per layer (bits, global range) of an official student: [L]."""
        g = self.entropy[(self.entropy["model"] == model) & (self.entropy["checkpoint"] == checkpoint)]
        if g.empty:
            raise KeyError(f"no official entropy for {model!r} at {checkpoint!r}")
        return g.sort_values("layer")["value"].to_numpy()

    def run(self, name: str) -> pd.DataFrame:
        g = self.logs[self.logs["run"] == name]
        if g.empty:
            raise KeyError(f"run {name!r} not in the official logs")
        return g.sort_values("epoch").set_index("epoch")

    def accuracy(self, name: str, which: str) -> float:
        """Top-1 (%) of an official run at its final epoch or its best epoch."""
        acc = self.run(name)["test_acc1"]
        return float(acc.iloc[-1] if which == "final" else acc.max())

    def acc_at(self, name: str, epoch: int) -> float:
        return float(self.run(name).loc[epoch, "test_acc1"])

    def final_feature_loss(self, name: str) -> float:
        """The raw feature loss at the last epoch: train_loss_fft / w (the log holds w·L_feat)."""
        return float(self.run(name)["train_loss_fft"].iloc[-1] / FEATURE_WEIGHT)


def matched_early_epoch(epochs: int) -> int:
    """The logged epoch (0-based) whose end lies at the fraction of the schedule nearest the
    paper's early epoch: 10/300 = 3.3 % (epoch 9 of 300)."""
    target = (PAPER_EARLY_EPOCH + 1) / PAPER_EPOCHS
    return int(np.argmin([abs((e + 1) / epochs - target) for e in range(epochs)]))


def early_window(epochs: int, warmup: int, until: float = C5_EARLY_UNTIL) -> list[int]:
    """C5's early window of a schedule of ``epochs`` (0-based): the epochs after ``warmup``
    whose end lies within ``until`` of the schedule; the first epoch after the warm-up when none
    does (a schedule too short for the window)."""
    window = [e for e in range(warmup, epochs) if (e + 1) / epochs <= until + 1e-12]
    return window or [min(warmup, epochs - 1)]


def paper_epoch_at(epoch: int, epochs: int) -> int:
    """The official log epoch at the same fraction of the schedule as the kit's ``epoch``."""
    return max(0, min(PAPER_EPOCHS - 1, round((epoch + 1) / epochs * PAPER_EPOCHS) - 1))


# --------------------------------------------------------------------------- SESOI


def sesoi_c1(paper: Paper) -> Sesoi:
    depth = claims.u_depth_of(paper.profile("SoftKD"))
    early = claims.u_depth_of(paper.profile("SoftKD", "checkpoint_epoch_30"))
    return Sesoi(C1_FRACTION * depth,
                 f"a quarter of the official SoftKD student's U depth at its best checkpoint "
                 f"({depth:.3f} bits); its epoch-30 profile, which the paper calls still "
                 f"monotone, has {early:.3f} bits: a dip below a quarter of a real U is no U")


def sesoi_c2() -> Sesoi:
    return Sesoi(C2_PER_CHANNEL,
                 "no paper number; a tenth of the width-normalised scale (0 to 1): the code must "
                 "span at least a tenth more of the channels to count as more distributed")


def sesoi_c3(paper: Paper, method: str, which: str) -> Sesoi:
    gap = paper.accuracy("SoftKD", which) - paper.accuracy(f"{method}-Last", which)
    return Sesoi(gap, f"the paper's own SoftKD - {method}-Last gap at the {which} epoch "
                      f"({gap:.3f} pt): 'absent' excludes an effect as large as the paper's")


def sesoi_c3_early(paper: Paper, method: str, which: str) -> Sesoi:
    gap = sesoi_c3(paper, method, which).value
    return Sesoi(gap, f"the paper's late-alignment effect for {method} at the {which} epoch "
                      f"({gap:.3f} pt), so 'neutral' is narrower than the effect it is contrasted with")


def sesoi_c4(paper: Paper) -> Sesoi:
    ratio = paper.final_feature_loss("SpectralKD-Last") / paper.final_feature_loss("SpectralKD-First")
    return Sesoi(ratio ** C4_LOG_FRACTION,
                 f"half the paper's last/first loss ratio ({ratio:.1f}x) on the log scale, "
                 f"{ratio ** C4_LOG_FRACTION:.2f}x: the geometric midpoint between equally fitted "
                 f"pairs and the paper's ratio")


def sesoi_c4_cosine() -> Sesoi:
    return Sesoi(C4_COSINE, "no paper number; a tenth of the cosine's positive range (0 to 1)")


def paper_early_gap(paper: Paper, cell: str, until: float = C5_EARLY_UNTIL) -> float:
    """The paper's ``cell`` - SoftKD top-1 (pt), averaged over its early window (``early_window``
    of the official 300 epochs with their 5 warm-up epochs)."""
    window = early_window(PAPER_EPOCHS, PAPER_WARMUP, until)
    return float(np.mean([paper.acc_at(cell, e) - paper.acc_at("SoftKD", e) for e in window]))


def sesoi_c5(paper: Paper, cell: str, until: float = C5_EARLY_UNTIL) -> Sesoi:
    gap = paper_early_gap(paper, cell, until)
    window = early_window(PAPER_EPOCHS, PAPER_WARMUP, until)
    return Sesoi(C5_FRACTION * gap,
                 f"half the paper's {cell} - SoftKD gap over its early window (epochs "
                 f"{window[0]}-{window[-1]} of {PAPER_EPOCHS}, after the warm-up up to "
                 f"{until:.1%} of the schedule: {gap:.2f} pt)")


def sesoi_c5_caught_up(paper: Paper) -> Sesoi:
    gap = paper.accuracy("SoftKD", "final") - paper.accuracy("SpectralKD-Last", "final")
    return Sesoi(abs(gap), f"the size of the paper's final SoftKD - SpectralKD-Last gap "
                           f"({abs(gap):.3f} pt): caught up = the aligned cell's final lead is "
                           "below the paper's own final difference")


def sesoi_c5_overtake(paper: Paper) -> Sesoi:
    gap = paper.accuracy("SoftKD", "final") - paper.accuracy("SpectralKD-Last", "final")
    return Sesoi(gap, f"the paper's final SoftKD - SpectralKD-Last gap ({gap:.3f} pt), as in C3")


def _c6_paper(paper: Paper) -> tuple[float, float]:
    soft, last = paper.profile("SoftKD"), paper.profile("SpectralKD-Last")
    return float(soft[-1] - last[-1]), float(claims.interior_min(soft) - claims.interior_min(last))


def sesoi_c6(paper: Paper, part: str) -> Sesoi:
    end, mid = _c6_paper(paper)
    value = end if part == "last layer" else mid
    return Sesoi(C6_FRACTION * value,
                 f"half the paper's SoftKD - SpectralKD-Last drop in the {part} entropy "
                 f"({value:.3f} bits)")


def gaussian_intensity_over_magnitude(C: int) -> float:
    """Spectrum intensity ÷ mean |activation| of i.i.d. Gaussian channels at width ``C``: with
    X = fft(x)/C, the DC (and for even C the Nyquist) bin is real N(0, 1/C), E|X| = sqrt(2/(πC));
    the others are complex with N(0, 1/(2C)) parts, E|X| = sqrt(π/(4C)) (Rayleigh); intensity is
    their mean over the C bins and E|x| = sqrt(2/π)."""
    real_bins = 2 if C % 2 == 0 else 1
    intensity = (real_bins * math.sqrt(2 / (math.pi * C))
                 + (C - real_bins) * math.sqrt(math.pi / (4 * C))) / C
    return intensity / math.sqrt(2 / math.pi)


# --------------------------------------------------------------------------- the pilot's spread


def pilot_from_table(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The replicate SD of every seed-paired row of a judged claims table (its rule says "paired
    t over n seed(s)"), recovered from its printed 95 % t interval: sd = half-width / t(0.975,
    n-1) · sqrt(n), on the log scale for ratio rows. Rows (claim, variant, scale, sd, n, source):
    the spread a later study's power assumes, fixed before that study's data."""
    rows = []
    for r in table.to_dict("records"):
        n = int(r["n"])
        if "paired t over" not in str(r["rule"]) or n < 2:
            continue
        lo, hi = (math.log(r["lo95"]), math.log(r["hi95"])) if r["scale"] == "log" else \
            (r["lo95"], r["hi95"])
        q = float(scipy_stats.t.ppf(0.975, n - 1))
        rows.append({"claim": r["claim"], "variant": r["variant"], "scale": r["scale"],
                     "sd": (hi - lo) / 2 / q * math.sqrt(n), "n": n, "source": source})
    return pd.DataFrame(rows, columns=["claim", "variant", "scale", "sd", "n", "source"])


def load_pilot(path: Path = FIGURES / PILOT_CSV) -> pd.DataFrame | None:
    """The committed pilot (``figures/pilot_sd.csv``), or None when there is none."""
    return pd.read_csv(path) if Path(path).is_file() else None


def with_pilot(evidence: Sequence[claims.Evidence], pilot: pd.DataFrame | None,
               ) -> list[claims.Evidence]:
    """``evidence`` with each seed-paired row's ``planned_sd`` from the pilot row of the same
    claim and variant (``pilot_from_table``); a row the pilot lacks keeps the observed spread
    and says so."""
    if pilot is None:
        return list(evidence)
    planned = {(r["claim"], r["variant"]): r for r in pilot.to_dict("records")}
    out = []
    for e in evidence:
        row = planned.get((e.claim, e.variant))
        out.append(dataclasses.replace(
            e, planned_sd=float(row["sd"]),
            sd_source=f"pilot: {row['source']}, n = {int(row['n'])}") if row is not None else
            dataclasses.replace(e, sd_source="no pilot row"))
    return out
