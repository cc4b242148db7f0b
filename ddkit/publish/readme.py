"""The generated documents: every number and verdict in the README and docs/results.md comes
from the committed tables under ``figures/`` (and the default profile, and the shipped teachers'
records), written between marker comments ``<!-- NAME:begin -->`` / ``<!-- NAME:end -->``
(``PAGES`` says which page holds which block):

    verdicts  (README) each claim's headline on the default pair and each control's reading

    setup     the study's size and the teacher, from ddkit/profiles/default.yaml and ddkit/shipped/
    claims    one paragraph per claim: its headline verdict and the sentence for each primary
              variant (a template per verdict), from figures/claims_table.csv
    sweep     the scale-sweep table, from figures/scale_sweep.csv
    results   every row of the claims table
    controls  the negative-transfer controls' verdicts, dose and cost, from figures/controls/

The pipeline (``./run_all.sh``) calls :func:`update` after its notebooks have written the CSVs;
``python -m ddkit.publish.readme`` does the same by hand. ``tests/publish/test_readme.py`` regenerates the blocks
from the committed CSVs and fails when the README says anything else.

Over 450 lines on purpose: one template per generated block, sharing the number and interval
formatting that keeps every page consistent.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

from ddkit.core.config import ABLATION, load_profile
from ddkit.core.models import shipped_teacher
from ddkit.core.tables import (
    CLAIM_ORDER,
    CLAIMS_CSV,
    CONTROLS_DIR,
    FORMATION_CSV,
    STUDY_DIR,
    SWEEP_CSV,
    TITLES,
    fmt_minutes,
    read_table,
)
from ddkit.publish import map_docs, remedy_docs, u_docs
from ddkit.runs.store import FIGURES, REPO_ROOT, TIMES_CSV, write_text
from ddkit.studies import control_verdicts, grid
from ddkit.studies.regime import compare, headlines, pair_claims, unexplored, where_claims_appear
from ddkit.studies.study import shipped_teacher_record
from ddkit.studies.sweep import base_name
from ddkit.verdicts.claims import (
    ABSENT,
    DIRECTIONAL,
    EQUIVALENCE,
    INCONCLUSIVE,
    OPPOSITE,
    REPRODUCED,
    SMALLER,
    fmt,
)

README = REPO_ROOT / "README.md"
RESULTS = REPO_ROOT / "docs" / "results.md"
# which generated blocks each page holds
PAGES = {README: ("costs", "verdicts"),
         RESULTS: ("setup", "claims", "sweep", "results", "paper_shaped", "controls", "phase_map",
                   "remedies", "mechanism")}
BLOCKS = tuple(name for names in PAGES.values() for name in names)


DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "imagenet": "ImageNet-1k"}


def marker(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


# --------------------------------------------------------------------------- numbers


def _unit(row) -> str:
    u = row["unit"] if isinstance(row["unit"], str) else ""
    return "" if not u else ("x" if u == "x" else f" {u}")


def _num(x: float, row, signed: bool = True) -> str:
    """A value in the row's display units: "+0.627 pt" (an effect), "0.156 pt" (``signed=False``:
    a size such as the SESOI or the MDE), "2.26x"."""
    if not (isinstance(x, (int, float)) and math.isfinite(x)):
        return "n/a"
    if row.get("scale") == "log":
        return f"{x:.3g}x"
    return f"{fmt(x) if signed else f'{x:.3g}'}{_unit(row)}"


def _ci(row, lo: str = "lo95", hi: str = "hi95") -> str:
    if not (math.isfinite(row[lo]) and math.isfinite(row[hi])):
        return "[no CI]"
    if row.get("scale") == "log":
        return f"[{row[lo]:.3g}, {row[hi]:.3g}]"
    return f"[{fmt(row[lo])}, {fmt(row[hi])}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def _pct(x: float) -> str:
    return f"{x:.0%}" if math.isfinite(x) else "n/a"


def _estimate(row) -> str:
    est = f"{row['estimate']:.3g}x" if row["scale"] == "log" else f"{fmt(row['estimate'])}"
    unit = "" if row["scale"] == "log" else _unit(row)
    paper = f", paper {_num(row['paper'], row)}" if math.isfinite(row["paper"]) else ""
    return f"{est} {_ci(row)}{unit} (n = {int(row['n'])}{paper})"


def base_setting(profile: str) -> str:
    """The name a profile's own setting has in its tables (``sweep.base_name``)."""
    return base_name(load_profile(profile))


# --------------------------------------------------------------------------- sentences

def sentence(row) -> str:
    """One generated sentence for a table row, by its rule kind and verdict."""
    head = f"{row['variant']}: {_estimate(row)}"
    d, hi90 = _num(row["sesoi"], row, signed=False), _num(row["hi90"], row)
    v, kind = row["verdict"], row["kind"]
    power = (f"minimum detectable effect {_num(row['mde'], row, signed=False)}, power {_pct(row['power'])} "
             f"at the SESOI of {d}")
    if kind == DIRECTIONAL:
        text = {
            REPRODUCED: f"in the paper's direction (95 % CI above zero), and an effect of the "
                        f"SESOI ({d}) is not excluded",
            SMALLER: f"in the paper's direction but smaller than the SESOI of {d} (90 % CI up to "
                     f"{hi90})",
            ABSENT: f"no effect shown, and effects of {d} or more are excluded (90 % CI up to "
                    f"{hi90})",
            OPPOSITE: "the opposite of the paper's direction (95 % CI below zero)",
            INCONCLUSIVE: f"neither an effect nor its absence is shown ({power})",
        }[v]
    elif kind == EQUIVALENCE:
        text = {
            REPRODUCED: f"neutral: the 90 % CI lies inside ±{d}",
            OPPOSITE: f"not neutral: the 95 % CI lies beyond ±{d}",
            INCONCLUSIVE: f"neither neutrality within ±{d} nor an effect beyond it is shown "
                          f"(power {_pct(row['power'])} to show neutrality)",
        }[v]
    else:
        text = {
            REPRODUCED: f"caught up: the gap is below {d} (90 % CI up to {hi90})",
            OPPOSITE: f"not caught up: the gap stays above {d} (95 % CI above it)",
            INCONCLUSIVE: f"not shown to be below {d} (power {_pct(row['power'])} at no gap)",
        }[v]
    return f"{head}: {text}."


def claims_markdown(table: pd.DataFrame) -> str:
    """One bullet per claim: the headline, the sentence of each primary variant, the variants
    that point the other way, and the primary rows' notes."""
    lines = []
    for claim in _claims(table):
        rows = table[table["claim"] == claim]
        primary = rows[rows["primary"]]
        parts = [sentence(r) for _, r in primary.iterrows()]
        others = rows["also_opposite"].iloc[0]
        if isinstance(others, str) and others:
            parts.append(f"Opposite in: {others}.")
        notes = [n for n in primary["note"] if isinstance(n, str) and n]
        if notes:
            parts.append("Note: " + "; ".join(dict.fromkeys(notes)) + ".")
        parts.append("SESOI: " + "; ".join(dict.fromkeys(primary["sesoi_reason"])) + ".")
        title = TITLES.get(claim, claim)
        lines.append(f"- **{claim} ({title}): {rows['headline'].iloc[0]}.** " + " ".join(parts))
    return "\n".join(lines) + "\n"


def verdict_text(row) -> str:
    """The verdict, with the call of the unadjusted intervals where Holm changed it and the
    design's flag when it is underpowered."""
    text = row["verdict"]
    if bool(row.get("holm_changed", False)):
        text += f" (intervals alone: {row['verdict_unadjusted']}; Holm changed the call)"
    design = row.get("design", "adequate")
    if isinstance(design, str) and design.startswith("underpowered"):
        text += f"; {design}"
    return text


def mismatch_text(variant: str, mismatch: pd.DataFrame | None, profile: str = "default",
                  setting: str | None = None) -> str:
    """The encoding mismatch (teacher dim at 95 % / student width) of the layer map a variant's
    feature-KD cell aligns, from ``mismatch.csv`` rows of ``profile`` / ``setting`` (default: the
    profile's own setting, its ``base_name``): "0.60" (Last), "0.35 / 0.60" (First+Last); "" for
    a variant without a feature-KD cell."""
    if mismatch is None:
        return ""
    setting = setting if setting is not None else base_setting(profile)
    found = re.search(r"(?:Spectral|Projector)KD-(First\+Last|First|Last)", variant)
    if not found:
        return ""
    maps = {"First": ["first"], "Last": ["last"], "First+Last": ["first", "last"]}[found.group(1)]
    rows = mismatch[(mismatch["profile"] == profile) & (mismatch["setting"] == setting)]
    ratios = [rows.loc[rows["layers"] == m, "ratio"] for m in maps]
    return " / ".join(f"{r.iloc[0]:.2f}" for r in ratios if len(r))


def results_markdown(table: pd.DataFrame, profile: str = "default",
                     mismatch: pd.DataFrame | None = None) -> str:
    """Every row of the claims table (★ = primary), with the encoding mismatch of each
    feature-KD cell's layer map (``mismatch``: rows of ``ddkit.studies.settings_mismatch.profile_mismatch``)."""
    lines = [f"Profile `{profile}`; generated from `figures/{CLAIMS_CSV}` (notebook 05). Effects "
             "are oriented so that the paper's direction is positive; p-values are one-sided and "
             "Holm-adjusted within each claim over its primary variants (★), the secondary ones "
             "a family of their own (support / opposite / below the SESOI). The intervals are "
             "unadjusted: where Holm changed the call they make, the verdict says so; a design "
             "with under 50 % power at its SESOI (at the observed spread) is marked "
             "underpowered, with the replicates it would need. Mismatch: the teacher's "
             "data-set-level PCA dimension at 95 % over the student's width at the layer(s) the "
             "row's feature-KD cell aligns (`ddkit.signals.mismatch`, notebook 08).", "",
             "| claim | variant | paper | kit [95 % CI] | 90 % CI | SESOI | n | MDE | power | "
             "p (Holm) | verdict | paper's value | mismatch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    own = base_setting(profile) if mismatch is not None else None
    for _, r in table.iterrows():
        star = " ★" if r["primary"] else ""
        est = f"{r['estimate']:.3g}x" if r["scale"] == "log" else fmt(r["estimate"])
        ps = " / ".join(_p(r[f"p_{s}_holm"]) for s in ("support", "opposite", "sesoi"))
        lines.append(
            f"| {r['claim']} | {r['variant']}{star} | "
            f"{_num(r['paper'], r) if math.isfinite(r['paper']) else ''} | {est} {_ci(r)} | "
            f"{_ci(r, 'lo90', 'hi90')} | {_num(r['sesoi'], r, False)} | {int(r['n'])} | "
            f"{_num(r['mde'], r, False)} | {_pct(r['power'])} | {ps} | {verdict_text(r)} | "
            f"{r.get('paper_compatible', '') or ''} | "
            f"{mismatch_text(r['variant'], mismatch, profile, own)} |")
    return "\n".join(lines) + "\n"


def sweep_markdown(sweep: pd.DataFrame, mismatch: pd.DataFrame | None = None,
                   profile: str = "default") -> str:
    """The sweep: per setting the training wall time, the last layer's encoding mismatch and
    each claim's primary estimate and verdict, with the claims' headlines."""
    keys = list(dict.fromkeys(zip(sweep.loc[sweep["primary"], "claim"],
                                  sweep.loc[sweep["primary"], "variant"])))
    header = ["setting", "training wall time (s)", "mismatch (Last)",
              *[f"{c}: {v}" for c, v in keys], "headlines"]
    lines = ["Generated from `figures/scale_sweep.csv` (notebook 06): the SoftKD and "
             "SpectralKD-Last students retrained with one change per setting, judged by the "
             f"same rules (Holm within each claim and setting). Every setting but "
             f"`{unexplored(sweep)}` is exploratory (one factor at a time, no correction across "
             "settings): a lead, not a finding.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, rows in sweep.groupby("setting", sort=False):
        cells = []
        for claim, variant in keys:
            r = rows[(rows["claim"] == claim) & (rows["variant"] == variant)]
            cells.append("" if r.empty else
                         f"{_num(r.iloc[0]['estimate'], r.iloc[0])} {_ci(r.iloc[0])} "
                         f"{r.iloc[0]['verdict']}")
        heads = "; ".join(f"{c} {h}" for c, h in
                          rows.groupby("claim", sort=False)["headline"].first().items())
        ratio = mismatch_text("SpectralKD-Last", mismatch, profile, setting)
        lines.append(f"| {setting} | {rows['train_wall_s'].iloc[0]:.0f} | {ratio} | "
                     + " | ".join(cells) + f" | {heads} |")
    return "\n".join(lines) + "\n"


def setup_markdown(profile=None, record: dict | None = None,
                   times: pd.DataFrame | None = None) -> str:
    """The study's size from the default profile and the shipped teacher's record, and each
    notebook's wall time in the last run (``pipeline.record_time``'s table) when there is one."""
    profile = profile or load_profile("default")
    record = record if record is not None else shipped_teacher_record()
    seeds = {c: len(profile.seeds_for(c)) for c in ABLATION}
    by_count: dict[int, list[str]] = {}
    for cell, k in seeds.items():
        by_count.setdefault(k, []).append(cell)
    groups = "; ".join(f"{k} seeds: {', '.join(cells)}" for k, cells in
                       sorted(by_count.items(), reverse=True))
    s, d = profile.student, profile.data
    text = (f"Profile `{profile.name}` (`{profile.command}`): the shipped teacher "
            f"(`{profile.teacher.model.name}`, **{record['final_acc1']:.2f} %** top-1 on the "
            f"{DATASET_NAMES.get(d.name, d.name)} test set after {record['epochs']} epochs, "
            f"{record['wall_time_s']:.0f} s) and "
            f"{sum(seeds.values())} students (`{s.model.name}`, {s.optim.epochs} epochs on "
            f"{d.train_subset} class-balanced training images, tested on {d.eval_subset}; "
            f"{groups}).")
    if times is not None and len(times):
        total = times["wall_s"].sum()
        first, last = times["finished_utc"].min(), times["finished_utc"].max()
        when = f"finished {last}" if first == last else f"finished between {first} and {last}"
        text += (f"\n\nWall time of each notebook in its last run by `{profile.command}` ({when} "
                 f"UTC, {int(times['cpu_count'].max())} CPU cores; "
                 f"{fmt_minutes(total)} in all; runs found in the cache were not trained again):"
                 "\n\n| notebook | wall time | runs trained | runs cached |\n|---|---|---|---|\n")
        text += "".join(f"| `{r.notebook}` | {fmt_minutes(r.wall_s)} | {r.runs_trained} | "
                        f"{r.runs_cached} |\n" for r in times.itertuples())
        return text
    return text + "\n"


def _claims(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table["claim"]))
    return [c for c in CLAIM_ORDER if c in present] + [c for c in present if c not in CLAIM_ORDER]


# --------------------------------------------------------------------------- the paper-shaped study



def formation_end(formation: pd.DataFrame, statistic: str = "U depth") -> pd.DataFrame:
    """One row per model: ``statistic`` at the model's last kept checkpoint."""
    rows = formation[formation["statistic"] == statistic]
    last = rows.groupby("model")["progress"].transform("max")
    return rows[rows["progress"] == last]


def teacher_line(record: dict) -> str:
    """One sentence on a shipped teacher from its record: accuracy, epochs (of how many
    scheduled, when it was shipped before its schedule ended), wall time, device."""
    name = record["config"]["model"]["name"]
    scheduled = record.get("scheduled_epochs", record["epochs"])
    epochs = (f"{record['epochs']} epochs" if record["epochs"] == scheduled else
              f"{record['epochs']} of its {scheduled} scheduled epochs (shipped before the "
              f"schedule ended; the run resumes from its checkpoint)")
    return (f"Teacher `{name}`: **{record['final_acc1']:.2f} %** top-1 on the test set after "
            f"{epochs}, {record['wall_time_s'] / 3600:.1f} h on {record['device']}.")


def study_teacher_record() -> dict | None:
    """The shipped record of the paper-shaped profile's teacher, None before it is shipped."""
    target = shipped_teacher(load_profile(STUDY_DIR).teacher.model.name, must_exist=False)
    return json.loads(target.record.read_text()) if target.record.is_file() else None


def paper_shaped_markdown(default: pd.DataFrame | None, shaped: pd.DataFrame | None,
                          sweep: pd.DataFrame | None, formation: pd.DataFrame | None,
                          teacher: dict | None = None) -> str:
    """The paper-shaped study in the README: its claims beside the default pair's (its full
    claims table, else the regime search's setting of the pair itself), where the followed claims appeared in
    the regime search (settings and their training time), and the U's depth at the end."""
    lines = [f"Generated from `figures/{STUDY_DIR}/` (notebooks 06–07 under `--profile "
             f"{STUDY_DIR}`).", ""]
    if teacher is not None:
        lines += [teacher_line(teacher), ""]
    pair = pair_claims(shaped, sweep)
    if default is not None and pair is not None:
        both = compare(default, pair)
        source = "claims table" if shaped is not None else "regime search, the pair's own setting"
        lines += [f"| claim | default pair | paper-shaped pair ({source}) |", "|---|---|---|"]
        lines += [f"| {c} ({TITLES.get(c, c)}) | {r['default pair']} | {r['paper-shaped pair']} |"
                  for c, r in both.fillna("").iterrows()]
        lines.append("")
    if sweep is not None:
        walls = sweep.drop_duplicates("setting").set_index("setting")["train_wall_s"]
        lines.append(f"Regime search, {len(walls)} settings (students' training time, summed "
                     "over runs): " + ", ".join(f"`{s}` {w / 60:.0f} min" for s, w in walls.items())
                     + ".")
        lines += [f"- {text}." for text in where_claims_appear(sweep).values()]
        lines.append("")
    if formation is not None:
        for _, r in formation_end(formation).iterrows():
            lines.append(f"- {r['model']} students at the last checkpoint (after "
                         f"{int(r['epoch']) + 1} epochs): U depth {fmt(r['estimate'])} bits "
                         f"[{fmt(r['lo95'])}, {fmt(r['hi95'])}] over {int(r['n'])} seeds.")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- blocks


def _control_setting(row: dict) -> str:
    """The controls setting a verdict row judges (named in its variant)."""
    return row["variant"].split("(", 1)[1].rstrip(")")


def verdicts_markdown(table: pd.DataFrame | None, controls: pd.DataFrame | None,
                      more: list[str] = (), sweep_table: pd.DataFrame | None = None) -> str:
    """The README's one table: each claim's headline on the default pair, then each control's
    reading with its interval (``controls``: ``control_verdicts.verdicts`` of the runs), then
    the rows ``more`` (the phase map's and the remedies', ``map_docs.verdict_rows``, and the
    planned claims not trained yet, ``remedy_docs.pending_rows``)."""
    lines = ["| claim | the paper says | the kit finds |", "|---|---|---|"]
    if table is not None:
        heads = headlines(table)
        lines += [f"| {c} | {TITLES.get(c, c)} | {heads[c]} (default pair) |"
                  for c in _claims(table)]
    if controls is not None:
        for r in controls[controls["primary"]].to_dict("records"):
            setting = _control_setting(r)
            lines.append(f"| {r['claim']} | {control_verdicts.question(r['claim'], setting)} | "
                         f"{r['reading']}: {fmt(r['estimate'])} {_ci(r)} pt, n = {r['n']} |")
    own = unexplored(sweep_table) if sweep_table is not None else base_setting("default")
    note = ("\nEach row is the headline of a claim's pre-declared primary variant(s), Holm within "
            "the claim; none is exploratory. The exploratory results (the scale sweep's settings "
            f"other than `{own}`, the paper-shaped regime search, the phase map's single points) "
            "are marked so in `docs/results.md`, beside every row's interval, power and design "
            "flag.")
    return "\n".join([*lines, *more, note]) + "\n"


def controls_markdown(results: pd.DataFrame, table: pd.DataFrame,
                      teacher_s: float | None = None) -> str:
    """The controls' verdicts (``table``: ``control_verdicts.verdicts`` of ``results``; one row
    per claim's primary variant), the dose line and the profile's measured cost, from the
    controls' runs table."""
    lines = [f"Generated from `figures/{CONTROLS_DIR}/runs.csv` (notebook 08 under `--profile "
             "controls`). Effect = SoftKD − the aligned cell, final top-1, paired by seed: "
             "positive = late alignment behind. Each control is its own Holm family.", "",
             "| claim | setting | SoftKD − aligned [95 % CI] | n | SESOI (official gap) | power "
             "| verdict | reading |", "|---|---|---|---|---|---|---|---|"]
    for r in table[table["primary"]].to_dict("records"):
        setting = _control_setting(r)
        lines.append(f"| {r['claim']} | {setting} | {fmt(r['estimate'])} {_ci(r)} pt | {r['n']} "
                     f"| {r['sesoi']:.3g} pt | {_pct(r['power'])} | {r['verdict']} | "
                     f"{r['reading']} |")
    dose = control_verdicts.dose(results)
    if not dose.empty:
        lines += ["", "Dose-response (MAE teacher, SoftKD − SpectralKD-Last by feature weight w): " +
                  "; ".join(f"w = {d['feature_weight']:g}: {fmt(d['estimate'])} {_ci(d)} pt "
                            f"(n = {d['n']})" for d in dose.to_dict("records")) + "."]
    probed = control_verdicts.dose(results, control_verdicts.PROBED, control_verdicts.PROBED_DOSE)
    if len(probed) > 1:
        lines += ["", "Dose-response at the probed head (SoftKD − SpectralKD-Last by feature "
                  "weight w): " + "; ".join(f"w = {d['feature_weight']:g}: {fmt(d['estimate'])} "
                                            f"{_ci(d)} pt (n = {d['n']})"
                                            for d in probed.to_dict("records")) + "."]
    lines += ["", f"Cost measured on this machine's runs: {controls_cost(results, teacher_s)}."]
    return "\n".join(lines) + "\n"


def controls_cost(results: pd.DataFrame, teacher_s: float | None) -> str:
    """The controls' measured cost in words: students' summed training time and teachers'."""
    cost = (f"{len(results)} students, {fmt_minutes(results['wall_time_s'].sum())} of single-run "
            "training time")
    if teacher_s is not None:
        cost += f", plus {fmt_minutes(teacher_s)} for the MAE teacher and its probe (shipped)"
    return cost + "; two run side by side on 2 cores, so the wall time is about half of the students' sum"


def costs_markdown(times: pd.DataFrame | None, controls: pd.DataFrame | None,
                   phase_map: pd.DataFrame | None, figures: Path = FIGURES,
                   more: list[str] = ()) -> str:
    """The README's measured cost of each profile's command, from the committed tables (``more``:
    further studies' lines, e.g. ``u_docs.cost_line``)."""
    lines = ["Measured on this project's 2-core CPU, from the committed tables:", ""]
    if times is not None and len(times):
        lines.append(f"- `./run_all.sh` (default profile): {fmt_minutes(times['wall_s'].sum())} "
                     "in its last run (`docs/results.md` has each notebook's)")
    if controls is not None:
        lines.append("- `./run_all.sh --profile controls --from 08`: "
                     + controls_cost(controls, _controls_teacher_seconds()))
    if phase_map is not None:
        lines.append("- `./run_all.sh --profile phase_map --from 09`: " + map_docs.cost(phase_map))
    for name in ("map_k", "map_replication"):
        runs = Path(figures) / name / "runs.csv"
        if runs.is_file():
            lines.append(f"- `ddkit phase-map --profile {name}`: "
                         + map_docs.students_cost(pd.read_csv(runs)))
    return "\n".join([*lines, *more]) + "\n"


def _controls_teacher_seconds() -> float | None:
    names = ("ddkit_vit_mae_teacher_fmnist", "ddkit_vit_mae_probed_teacher_fmnist")
    if not all(shipped_teacher(name, must_exist=False).record.exists() for name in names):
        return None
    return sum(float(shipped_teacher_record(name)["wall_time_s"]) for name in names)


def _placeholder(csv: str, notebook: str) -> str:
    return (f"_Not generated yet: `./run_all.sh` writes this from `figures/{csv}` "
            f"({notebook})._\n")


def blocks(figures: Path = FIGURES) -> dict[str, str]:
    """Every generated block, from the CSVs under ``figures`` (placeholders where absent)."""
    claims_csv, sweep_csv = Path(figures) / CLAIMS_CSV, Path(figures) / SWEEP_CSV
    times_csv = Path(figures) / TIMES_CSV
    out = {"setup": setup_markdown(times=pd.read_csv(times_csv) if times_csv.is_file() else None)}
    mismatch_csv = Path(figures) / CONTROLS_DIR / "mismatch.csv"
    mismatch = pd.read_csv(mismatch_csv) if mismatch_csv.is_file() else None
    if claims_csv.is_file():
        table = read_table(claims_csv)
        out["claims"] = claims_markdown(table)
        out["results"] = results_markdown(table, mismatch=mismatch)
    else:
        out["claims"] = out["results"] = _placeholder(CLAIMS_CSV, "notebook 05")
    out["sweep"] = (sweep_markdown(read_table(sweep_csv), mismatch) if sweep_csv.is_file()
                    else _placeholder(SWEEP_CSV, "notebook 06"))
    shaped = Path(figures) / STUDY_DIR
    tables = [read_table(p) if p.is_file() else None
              for p in (claims_csv, shaped / CLAIMS_CSV, shaped / SWEEP_CSV)]
    form = shaped / FORMATION_CSV
    if any(t is not None for t in tables[1:]) or form.is_file():
        out["paper_shaped"] = paper_shaped_markdown(
            *tables, pd.read_csv(form) if form.is_file() else None, study_teacher_record())
    else:
        out["paper_shaped"] = (f"_Not generated yet: `./run_all.sh --profile {STUDY_DIR} --from 06` "
                               f"writes this from `figures/{STUDY_DIR}/` (notebooks 06–07)._\n")
    runs_csv = Path(figures) / CONTROLS_DIR / "runs.csv"
    control_runs = pd.read_csv(runs_csv) if runs_csv.is_file() else None
    curves_csv = Path(figures) / CONTROLS_DIR / "curves.csv"
    control_curves = (grid.load(Path(figures) / CONTROLS_DIR, "ddkit controls")[grid.CURVES_CSV]
                      if control_runs is not None and curves_csv.is_file() else None)
    control_table = control_verdicts.verdicts(control_runs) if control_runs is not None else None
    phase_map = map_docs.load(figures, control_runs)
    remedy_data = remedy_docs.tables(control_runs, *((phase_map["results"], phase_map["points"])
                                                     if phase_map else ()))
    remedy_table = remedy_data["remedies"]
    profiles = {name: load_profile(name) for name in (CONTROLS_DIR, map_docs.PROFILE)}
    missing = remedy_docs.missing_runs(profiles[CONTROLS_DIR], control_runs,
                                       profiles[map_docs.PROFILE],
                                       phase_map["results"] if phase_map else None)
    u_formation = u_docs.load(figures)
    more = (map_docs.verdict_rows(phase_map, remedy_table, missing)
            + remedy_docs.pending_rows(profiles[CONTROLS_DIR], control_table, remedy_table,
                                       missing)
            + u_docs.verdict_rows(u_formation, u_docs.planned_runs()))
    out["verdicts"] = verdicts_markdown(read_table(claims_csv) if claims_csv.is_file() else None,
                                        control_table, more,
                                        read_table(sweep_csv) if sweep_csv.is_file() else None)
    out["phase_map"] = map_docs.map_markdown(phase_map)
    out["remedies"] = remedy_docs.remedies_markdown(
        remedy_data, remedy_docs.student_sizes(list(profiles.values())), missing)
    out["mechanism"] = remedy_docs.mechanism_markdown(
        control_runs, control_curves, control_table,
        remedy_docs.mechanism_missing(profiles[CONTROLS_DIR], control_runs))
    out["costs"] = costs_markdown(pd.read_csv(times_csv) if times_csv.is_file() else None,
                                  control_runs, phase_map["results"] if phase_map else None,
                                  figures, u_docs.cost_line(u_formation))
    out["controls"] = (controls_markdown(control_runs, control_table,
                                         _controls_teacher_seconds())
                       if control_runs is not None else
                       "_Not generated yet: `./run_all.sh --profile controls --from 08` writes "
                       f"this from `figures/{CONTROLS_DIR}/` (notebook 08)._\n")
    return out


def render(text: str, new: dict[str, str]) -> str:
    """``text`` with each named block replaced between its markers; a missing or repeated marker
    is an error naming the block."""
    for name, body in new.items():
        begin, end = marker(name)
        if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
            raise ValueError(f"README: need exactly one {begin} before one {end}")
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.S)
        text = pattern.sub(lambda _: f"{begin}\n{body}{end}", text)
    return text


def current(text: str, name: str) -> str:
    """The text between a block's markers (without the markers and the newline after begin)."""
    begin, end = marker(name)
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    return inner[1:] if inner.startswith("\n") else inner


def update(page: Path | None = None, figures: Path = FIGURES) -> bool:
    """Regenerate the blocks of ``page`` (default: every page of ``PAGES``) whose markers it
    holds, from ``figures``; True when a file changed."""
    generated = blocks(figures)
    changed = False
    for path in [Path(page)] if page is not None else list(PAGES):
        old = path.read_text()
        new = render(old, {k: v for k, v in generated.items() if marker(k)[0] in old})
        if new != old:
            write_text(path, new)
            changed = True
    return changed


if __name__ == "__main__":
    changed = update()
    pages = ", ".join(str(p.relative_to(REPO_ROOT)) for p in PAGES)
    print(f"{pages}: {'regenerated' if changed else 'already up to date'}")
    sys.exit(0)
