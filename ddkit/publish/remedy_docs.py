"""The remedies' and the MAE penalty's generated text (``ddkit.publish.readme`` places it): the
README verdict rows of each remedy setting and of the planned claims not trained yet, and the
``remedies`` and ``mechanism`` blocks of docs/results.md, each built from the committed tables
under ``figures/controls/`` and ``figures/phase_map/`` and from the two profiles (what they plan,
and the students' sizes). Where a planned run is missing, the text says so and names the command
that trains it; it never stands in a number.
"""
from __future__ import annotations

import math

import pandas as pd

from ddkit.core.anatomy import model_width
from ddkit.core.config import ABLATIONS, CELLS, REMEDIES, REMEDY_CONTROLS, Profile
from ddkit.core.students import parameter_count, student_kwargs
from ddkit.studies import control_verdicts as cv
from ddkit.studies import grid, mechanism
from ddkit.studies import phase_map as pm
from ddkit.studies import remedy_verdicts as rv
from ddkit.verdicts.claims import fmt, fmt_interval

COMMANDS = {"controls": 'ddkit controls --only "{setting}"',
            "phase_map": 'ddkit phase-map --only "{setting}"'}
FOLLOWUP = REMEDIES + REMEDY_CONTROLS
PENDING_COLUMNS = ["profile", "setting", "cell", "planned", "published", "command"]


def setting_name(setting: str) -> str:
    """A setting as the tables name it (each profile names its own setting, ``base_name``)."""
    return setting


def command(profile: str, setting: str) -> str:
    return COMMANDS.get(profile, "ddkit grid --profile " + profile + ' --only "{setting}"').format(
        setting=setting)


# --------------------------------------------------------------------------- what is planned

def pending(profile: Profile, results: pd.DataFrame | None, cells=None,
            settings=None) -> pd.DataFrame:
    """The planned (setting, cell) pairs of ``profile`` (or only ``cells`` / ``settings``) with
    fewer published seeds in ``results`` (its runs table) than planned, and the command that
    trains them (``PENDING_COLUMNS``)."""
    rows = []
    for setting, variant in grid.settings(profile).items():
        if settings is not None and setting not in settings:
            continue
        for cell, seeds in variant.cell_seeds.items():
            if cells is not None and cell not in cells:
                continue
            have = 0 if results is None else int(
                ((results["setting"] == setting) & (results["cell"] == cell)
                 & results["seed"].isin(seeds)).sum())
            if have < len(seeds):
                rows.append({"profile": profile.name, "setting": setting, "cell": cell,
                             "planned": len(seeds), "published": have,
                             "command": command(profile.name, setting)})
    return pd.DataFrame(rows, columns=PENDING_COLUMNS)


def missing_runs(controls: Profile, control_runs: pd.DataFrame | None, phase_map: Profile,
                 map_runs: pd.DataFrame | None) -> pd.DataFrame:
    """The remedies' planned runs not published yet: every remedy and control cell of both
    profiles, and every cell of the controls' remedy settings (``rv.CONTROL_SETTINGS``)."""
    return pd.concat([
        pending(controls, control_runs, cells=FOLLOWUP),
        pending(controls, control_runs, settings=set(rv.CONTROL_SETTINGS.values())),
        pending(phase_map, map_runs, cells=FOLLOWUP)]).drop_duplicates(
        ["profile", "setting", "cell"]).reset_index(drop=True)


def mechanism_missing(controls: Profile, control_runs: pd.DataFrame | None) -> pd.DataFrame:
    """The mechanism settings' planned runs not published yet."""
    return pending(controls, control_runs, settings=cv.MECHANISM_PLANNED)


def findings(data: dict[str, pd.DataFrame], missing: pd.DataFrame) -> list[str]:
    """The notebook's sentences on the remedies, each built from the tables given: per remedy
    its three comparisons, the controls against SoftKD, and what is not trained yet."""
    lines = []
    for r in data["remedies"].to_dict("records"):
        line = (f"{r['claim']}, {_name(r['remedy'])}: SoftKD − remedy {fmt_interval(r)} pt "
                f"({r['reading']}, n = {r['n']})")
        plain = _comparison(r, "plain")
        if plain:
            line += f"; SpectralKD-Last − remedy {plain}"
        control = _comparison(r, "control")
        if r.get("control"):
            waiting = (r["setting"], r["control"]) in set(zip(missing["setting"], missing["cell"]))
            line += (f"; {r['control']} not trained yet" if waiting else
                     f"; remedy − {r['control']} {control}" if control else "")
        lines.append(line)
    for r in data["controls"].to_dict("records"):
        lines.append(f"control {r['remedy']} ({setting_name(r['setting'])}): SoftKD − control "
                     f"{fmt_interval(r)} pt ({r['reading']}, n = {r['n']}; never counts)")
    for (profile, setting, cmd), g in missing.groupby(["profile", "setting", "command"],
                                                      sort=False):
        lines.append(f"not trained yet, {profile} {setting_name(setting)!r}: "
                     f"{', '.join(g['cell'])} (`{cmd}`)")
    return lines


def student_sizes(profiles: list[Profile]) -> pd.DataFrame:
    """Per setting that trains a follow-up student: the plain student's width and parameters,
    Lift's, WideLast's, and UniformWide's width and parameters (its match to WideLast, the
    release's reviewer control)."""
    rows = []
    students = {c for c in CELLS if CELLS[c].get("student", "plain") != "plain"}
    for profile in profiles:
        for setting, variant in grid.settings(profile).items():
            if not students & set(variant.cell_seeds):
                continue
            m, t = variant.student.model, variant.teacher.model
            width_t = model_width(t.name, **t.kwargs)
            row = {"profile": profile.name, "setting": setting,
                   "width": model_width(m.name, **m.kwargs), "teacher_width": width_t,
                   "plain": parameter_count(m.name, **m.kwargs)}
            for kind in ("lift", "widelast", "uniformwide"):
                kwargs = student_kwargs(kind, m.name, m.kwargs, width_t)
                row[kind] = parameter_count(m.name, **kwargs)
            row["uniformwide_width"] = student_kwargs("uniformwide", m.name, m.kwargs,
                                                      width_t)["embed_dim"]
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the verdicts

def tables(controls: pd.DataFrame | None, map_results: pd.DataFrame | None = None,
           points: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """``remedies`` (``rv.verdicts`` in the controls' settings and the map's hurting points that
    hold remedy runs), ``controls`` (``rv.controls`` there) and ``plain`` (plain SpectralKD-Last
    in each setting, ``pm.plain_alignment``)."""
    sources = []
    if controls is not None:
        sources.append((controls, {c: s for c, s in rv.CONTROL_SETTINGS.items()
                                   if (controls["setting"] == s).any()}))
    if map_results is not None and points is not None:
        sources.append((map_results, pm.remedy_settings(points, map_results)))
    empty = pd.DataFrame(columns=["setting", "cell", "seed", "final_acc1"])
    remedies = [rv.verdicts(r, s) for r, s in sources] or [rv.verdicts(empty, {})]
    held = [rv.controls(r, s) for r, s in sources] or [rv.controls(empty, {})]
    remedies = pd.concat([t for t in remedies if len(t)] or remedies[:1], ignore_index=True)
    held = pd.concat([t for t in held if len(t)] or held[:1], ignore_index=True)
    point_table = points if points is not None else pd.DataFrame(
        columns=["setting", "cell", "estimate", "lo95", "hi95", "n"])
    plain = pm.plain_alignment(point_table, controls if controls is not None else empty, remedies)
    return {"remedies": remedies, "controls": held, "plain": plain}


def _name(remedy: str) -> str:
    return f"{remedy} (ablation)" if remedy in ABLATIONS else remedy


def _extras(r, missing: set[tuple[str, str]]) -> str:
    parts = []
    if r.get("plain_reading"):
        parts.append(r["plain_reading"])
    control = r.get("control") or ""
    if control and (r["setting"], control) in missing:
        parts.append(f"its control {control} not trained yet")
    elif control and r.get("control_reading"):
        parts.append(r["control_reading"])
    return "".join(f"; {p}" for p in parts)


def verdict_rows(remedy_table: pd.DataFrame, missing: pd.DataFrame | None = None) -> list[str]:
    """The README verdict table's row of each remedy setting: the remedies that count (beat
    SoftKD or are non-inferior), each with its reading against plain SpectralKD-Last and its
    control, or the closest one; the planned remedies not trained yet there."""
    missing = set() if missing is None else set(zip(missing["setting"], missing["cell"]))
    rows = []
    for setting, g in (remedy_table.groupby("setting", sort=False) if len(remedy_table) else []):
        claim = g["claim"].iloc[0]
        won = [f"{_name(r['remedy'])} ({r['reading']}, {fmt_interval(r)} pt{_extras(r, missing)})"
               for r in g.to_dict("records") if r["counts"]]
        best = g.loc[g["estimate"].idxmin()]
        text = ("; ".join(won) if won else
                f"none of {len(g)} counts; the closest, {_name(best['remedy'])}, is "
                f"{fmt_interval(best)} pt behind SoftKD")
        untrained = [c for s, c in sorted(missing) if s == setting and c in REMEDIES]
        if untrained:
            text += f"; not trained yet: {', '.join(untrained)}"
        rows.append(f"| {claim} | {rv.QUESTIONS.get(claim, rv.QUESTION)} "
                    f"({setting_name(setting)}) | {text} |")
    return rows


def pending_rows(controls_profile: Profile, control_table: pd.DataFrame | None,
                 remedy_table: pd.DataFrame, missing: pd.DataFrame) -> list[str]:
    """README rows of the planned claims with no published runs yet, each naming the command
    that trains its setting: the controls' claims (``cv.CONTROLS``) and the remedies' claims on
    the controls' settings (``rv.CONTROL_SETTINGS``)."""
    planned = set(grid.settings(controls_profile))
    judged = set() if control_table is None else set(control_table["claim"])
    rows = []
    for claim, (setting, _, _) in cv.CONTROLS.items():
        if setting in planned and claim not in judged:
            rows.append(f"| {claim} | {cv.question(claim, setting)} | not trained yet: "
                        f"`{command(controls_profile.name, setting)}` |")
    tried = set(remedy_table["setting"]) if len(remedy_table) else set()
    for claim, setting in rv.CONTROL_SETTINGS.items():
        waiting = missing[missing["setting"] == setting]
        if setting in planned and setting not in tried and len(waiting):
            rows.append(f"| {claim} | {rv.QUESTIONS.get(claim, rv.QUESTION)} "
                        f"({setting_name(setting)}) | not trained yet: "
                        f"`{command(controls_profile.name, setting)}` |")
    return rows


# --------------------------------------------------------------------------- docs/results.md

def _sizes_markdown(sizes: pd.DataFrame) -> list[str]:
    lines = ["| setting | student width | teacher width | plain | Lift | WideLast | UniformWide "
             "(width) | UniformWide / WideLast |", "|---|---|---|---|---|---|---|---|"]
    for r in sizes.to_dict("records"):
        lines.append(f"| {setting_name(r['setting'])} | {r['width']} | {r['teacher_width']} | "
                     f"{r['plain']:,} | {r['lift']:,} | {r['widelast']:,} | "
                     f"{r['uniformwide']:,} ({r['uniformwide_width']}) | "
                     f"{r['uniformwide'] / r['widelast'] - 1:+.1%} |")
    return lines


def _comparison(r, prefix: str) -> str:
    value = r.get(f"{prefix}_estimate")
    if value is None or not (isinstance(value, float) and math.isfinite(value)):
        return ""
    return (f"{fmt(value)} [{fmt(r[f'{prefix}_lo95'])}, {fmt(r[f'{prefix}_hi95'])}] pt: "
            f"{r[f'{prefix}_reading']}")


def remedies_markdown(data: dict[str, pd.DataFrame], sizes: pd.DataFrame,
                      missing: pd.DataFrame) -> str:
    """docs/results.md's remedies block: the students' sizes, each setting's remedies with their
    three comparisons, the controls against SoftKD, and what is not trained yet."""
    remedies, held = data["remedies"], data["controls"]
    lines = ["Generated from `figures/controls/runs.csv` and `figures/phase_map/runs.csv` "
             "(notebook 10). Effects are final top-1 differences paired by seed with 95 % t "
             "intervals: SoftKD − remedy (> 0: behind SoftKD; Holm over each setting's "
             "remedies), SpectralKD-Last − remedy (> 0: behind plain late alignment) and "
             "remedy − its control (> 0: the control loses the remedy's gain), each a Holm "
             "family of its own; δ = a fifth of the release's MAE penalty.", ""]
    if len(sizes):
        lines += ["Parameters of the students (the follow-up's UniformWide matches WideLast's, "
                  "as the release's DeiT-Tiny 192 → 219 does; Lift adds a lift and a new head "
                  "only):", "", *_sizes_markdown(sizes), ""]
    if len(remedies):
        lines += ["| setting | remedy | SoftKD − remedy [95 % CI] | n | reading | "
                  "SpectralKD-Last − remedy | control: remedy − control |",
                  "|---|---|---|---|---|---|---|"]
        waiting = set(zip(missing["setting"], missing["cell"]))
        for r in remedies.to_dict("records"):
            control = _comparison(r, "control")
            if r.get("control") and not control:
                control = ("not trained yet" if (r["setting"], r["control"]) in waiting else
                           "fewer than 2 seed pairs")
            lines.append(f"| {setting_name(r['setting'])} | {_name(r['remedy'])} | "
                         f"{fmt_interval(r)} pt | {r['n']} | {r['reading']} | "
                         f"{_comparison(r, 'plain')} | "
                         f"{r['control'] + ': ' + control if r.get('control') else ''} |")
        lines.append("")
    if len(held):
        lines.append("Controls against SoftKD (never counted as remedies): " + "; ".join(
            f"{setting_name(r['setting'])}, {r['remedy']}: {fmt_interval(r)} pt ({r['reading']})"
            for r in held.to_dict("records")) + ".")
        lines.append("")
    ablations = "; ".join(f"{cell}: {why}" for cell, why in ABLATIONS.items())
    lines.append(f"Ablations: {ablations}.")
    if len(missing):
        lines += ["", "Not trained yet (planned runs missing from the committed tables; the "
                      "numbers above leave them out):", ""]
        for (profile, setting, cmd), g in missing.groupby(["profile", "setting", "command"],
                                                          sort=False):
            cells = ", ".join(f"{r['cell']} ({r['published']}/{r['planned']} seeds)"
                              for r in g.to_dict("records"))
            lines.append(f"- {profile}, {setting_name(setting)}: {cells}: `{cmd}`")
    return "\n".join(lines) + "\n"


def mechanism_markdown(results: pd.DataFrame | None, curves: pd.DataFrame | None,
                       control_table: pd.DataFrame | None, missing: pd.DataFrame) -> str:
    """docs/results.md's mechanism block: the mechanism and probed-dose claims, the probed
    head's dose line, which loss term dominates when (the controls' runs and the release's MAE
    log), and the mechanism settings not trained yet."""
    if results is None:
        return ("_Not generated yet: `./run_all.sh --profile controls --from 08` writes this "
                "from `figures/controls/`._\n")
    lines = ["Generated from `figures/controls/runs.csv` and `curves.csv` (notebook 10). "
             "C3-MAE-mechanism asks whether the MAE teacher's penalty (SoftKD − SpectralKD-Last) "
             "remains at α = 0, where the loss is labels and features only; C3-MAE-dose-probed "
             "whether a strong feature loss (w = 2) costs with the probed head. Both are judged "
             "by the controls' rule (directional, SESOI the release's MAE penalty).", ""]
    table = control_table if control_table is not None else pd.DataFrame(
        columns=["claim", "primary"])
    terms = mechanism.loss_terms(curves) if curves is not None else pd.DataFrame(columns=["cell", "term"])
    lines += [f"- {line}" for line in mechanism.mechanism_findings(table, terms,
                                                             mechanism.official_loss_terms())]
    for base, prefix in ((cv.BASE, cv.DOSE), (cv.PROBED, cv.PROBED_DOSE)):
        dose = cv.dose(results, base, prefix)
        if len(dose) > 1:
            lines.append(f"- dose, {base} (SoftKD − SpectralKD-Last by feature weight w): "
                         + "; ".join(f"w = {d['feature_weight']:g}: {fmt_interval(d)} pt "
                                     f"(n = {d['n']})" for d in dose.to_dict("records")))
    if len(missing):
        lines += ["", "Not trained yet:", ""]
        for (setting, cmd), g in missing.groupby(["setting", "command"], sort=False):
            lines.append(f"- {setting}: {', '.join(g['cell'])}: `{cmd}`")
    return "\n".join(lines) + "\n"
