"""A grid study: a profile's base (the setting named by its ``base_name``: what it is, e.g. "MAE
teacher, head untrained") and its ``sweep`` settings, each naming its own cells and seeds
in ``cell_seeds``, trained into the run store and published as two tables that accumulate across
sessions and machines. The controls (``ddkit.studies.controls``) and the phase map (``ddkit.studies.phase_map``)
are grids.

    settings(profile)            # {setting: Profile}, each with only its own cells
    configs(profile) / runs(profile)   # {(setting, cell, seed): RunConfig / Run}
    results(runs), curves(runs)  # one row per run / per run and epoch
    publish(profile, runs, folder)     # runs.csv and curves.csv, merged with what is committed

``merged`` keeps the committed rows of runs this machine does not hold (same run name = same
config hash = the same run) and replaces the others; ``runs(published=...)`` leaves out the runs
the committed tables already hold, so a new machine never trains them again.

``teachers`` (``{teacher preset: weights}``, from ``controls.teachers`` / ``phase_map.teachers``)
gives the weights of a shipped-teacher preset whose recipe an override changed (trained into the
run store); a setting whose teacher has no weights yet (None) is left out of the plan.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ddkit.core.config import ConfigError, Profile, check_cells, replace
from ddkit.runs.cluster import Executor
from ddkit.runs.launch import launch_plan, train_array
from ddkit.runs.progress import emit
from ddkit.runs.store import RunDir, write_text
from ddkit.runs.train import Run
from ddkit.studies import study, sweep

base_name = sweep.base_name   # the profile's own setting: what it is, never a bare "base"
log = logging.getLogger(__name__)

Teachers = Mapping[str, Path | None] | None


class MissingRuns(ValueError):
    """Planned runs are neither finished in the run store nor in the published tables."""


def settings(profile: Profile) -> dict[str, Profile]:
    """The base profile and one profile per sweep setting, each with only its own cells in
    ``cell_seeds`` (a base without cell_seeds trains nothing)."""
    for name, overrides in profile.sweep.items():
        if not overrides.get("cell_seeds"):
            raise ConfigError(f"sweep setting {name!r} of profile {profile.name!r} names no "
                              "cells: give it cell_seeds, e.g. {SoftKD: [0, 1, 2]}")
    out = sweep.settings(profile)
    for variant in out.values():
        check_cells(variant.cell_seeds)
    return out


def plan(profile: Profile, workers: int | None = None,
         executor: Executor | None = None) -> Executor:
    """Where the grid's runs train (``cluster.launch_plan``): ``executor``, else
    ``$DDKIT_EXECUTOR``, else this machine (the CPU pool, or one run at a time over its GPUs)."""
    executor = executor if executor is not None else Executor.from_env()
    return launch_plan(profile.device, workers=workers, profile_workers=profile.workers,
                       executor=executor)


def configs(profile: Profile, only: Iterable[str] | None = None,
            teachers: Teachers = None, world_size: int | None = None) -> dict:
    """``{(setting, cell, seed): RunConfig}`` of the base and each setting (or of ``only``),
    seed by seed within a setting, planned for ``world_size`` processes per run (default: the
    launch plan's; 1 on the CPU, so a CPU grid's run names do not depend on the machine); a
    setting whose teacher ``teachers`` holds no weights for (None: a changed recipe not trained
    yet) is left out."""
    world = world_size if world_size is not None else plan(profile).world_size
    variants = settings(profile)
    names = list(only) if only is not None else list(variants)
    unknown = sorted(set(names) - set(variants))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; settings: {list(variants)}")
    out = {}
    for name in names:
        variant = variants[name]
        preset = variant.teacher.model.name
        if (teachers is not None and variant.teacher_source == "shipped" and preset in teachers
                and teachers[preset] is None):
            if variant.cell_seeds:
                log.info("setting %r left out: its teacher %s has no weights for this recipe "
                         "yet", name, preset)
            continue
        teacher, _ = study.teacher_model(variant, progress=False, weights=teachers)
        seeds = sorted({s for cell_seeds in variant.cell_seeds.values() for s in cell_seeds})
        for seed in seeds:          # seed-major: a study stopped part-way holds whole pairs
            for cell, cell_seeds in variant.cell_seeds.items():
                if seed in cell_seeds:
                    cfg = study.student_config(variant, cell, seed, teacher)
                    out[(name, cell, seed)] = replace(cfg, world_size=world) if world > 1 else cfg
    return out


def runs(profile: Profile, only: Iterable[str] | None = None, progress: bool = True,
         workers: int | None = None, executor: Executor | None = None,
         published: Iterable[str] = (), teachers: Teachers = None
         ) -> dict[tuple[str, str, int], Run]:
    """Train (or read from cache) every student of the base and the settings (or of ``only``):
    ``workers`` at a time here, or as one Slurm job array with ``executor`` (ddkit.runs.cluster).
    Runs named in ``published`` (run folder names of the committed tables, ``published_runs``)
    are left out unless this machine's cache holds them: a run's name is its config hash, and
    training is bit-identical on the CPU, so a new machine never trains them again. Without
    ``executor``, ``$DDKIT_EXECUTOR`` (``cluster.Executor.from_env``) if set, else this machine
    (``plan``: on GPUs one run at a time over all of them)."""
    executor = plan(profile, workers, executor)
    published = set(published)
    todo = {key: cfg for key, cfg in configs(profile, only, teachers, executor.world_size).items()
            if RunDir.for_config(cfg).path.name not in published
            or RunDir.for_config(cfg).is_complete}
    cached = sum(RunDir.for_config(cfg).is_complete for cfg in todo.values())
    emit("plan", label=f"{profile.name}: grid", total=len(todo), cached=cached)
    return train_array(todo, executor, progress=progress,
                       label=f"{profile.name} ({executor.describe()})")


RESULT_COLUMNS = ("setting", "cell", "seed", "teacher", "kd", "feature", "layers",
                  "feature_weight", "epochs", "final_acc1", "best_acc1", "wall_time_s", "run")
CURVE_COLUMNS = ("setting", "cell", "seed", "epoch", "epochs", "test_acc1", "run", "test_loss",
                 "train_loss", "train_loss_base", "train_loss_dist", "train_loss_fft")
# and one column per raw pair loss a run logs, ``train_loss_feat/<s>-<t>`` (``feat_columns``);
# rows published before these columns existed hold NaN there
FEAT_PREFIX = "train_loss_feat/"


def _run_name(run: Run) -> str:
    return run.dir.path.name


def finished(profile: Profile, teachers: Teachers = None) -> dict[tuple[str, str, int], Run]:
    """The planned runs already complete in the run cache (nothing is trained), each verified
    as a cache hit is (``RunDir.verify``: a damaged or edited run is refused, not published)."""
    out = {}
    for key, cfg in configs(profile, teachers=teachers).items():
        run_dir = RunDir.for_config(cfg)
        if run_dir.is_complete:
            run_dir.verify()
            out[key] = Run(cfg, run_dir)
    return out


def results(done: Mapping[tuple[str, str, int], Run]) -> pd.DataFrame:
    """One row per finished run (``RESULT_COLUMNS``; top-1 in %, wall time in s), read from
    each run's summary.json."""
    rows = []
    for (setting, cell, seed), run in done.items():
        s = run.summary
        d = s["config"]["distill"]
        rows.append({"setting": setting, "cell": cell, "seed": seed,
                     "teacher": (d.get("teacher") or {}).get("name", ""), "kd": d["kd"],
                     "feature": d["feature"], "layers": d["layers"],
                     "feature_weight": d["feature_weight"], "epochs": s["epochs"],
                     "final_acc1": s["final_acc1"], "best_acc1": s["best_acc1"],
                     "wall_time_s": s["wall_time_s"], "run": _run_name(run)})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def curves(done: Mapping[tuple[str, str, int], Run]) -> pd.DataFrame:
    """One row per finished run and logged epoch (``CURVE_COLUMNS``; 0-based epochs, top-1 %),
    with each loss term as the run's log holds it (the official keys: the epoch's mean of
    ``train_loss_base`` (1-α)·CE, ``train_loss_dist`` α·KD, ``train_loss_fft`` the weighted
    feature term, and each pair's raw loss ``train_loss_feat/<s>-<t>``; NaN where a run has
    none)."""
    rows = []
    for (setting, cell, seed), run in done.items():
        records = run.records
        rows += [{"setting": setting, "cell": cell, "seed": seed, "epoch": r["epoch"],
                  "epochs": len(records), "test_acc1": r["test_acc1"], "run": _run_name(run),
                  **{k: r.get(k, math.nan) for k in CURVE_COLUMNS[7:]},
                  **{k: v for k, v in r.items() if k.startswith(FEAT_PREFIX)}}
                 for r in records]
    return _curve_columns(pd.DataFrame(rows, columns=list(CURVE_COLUMNS)) if not rows
                          else pd.DataFrame(rows))


def feat_columns(table: pd.DataFrame) -> list[str]:
    """The raw pair-loss columns of a curves table, sorted."""
    return sorted(c for c in table.columns if c.startswith(FEAT_PREFIX))


def _curve_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``CURVE_COLUMNS`` (added as NaN where missing: a table published before them), then the
    pair-loss columns."""
    for column in CURVE_COLUMNS:
        if column not in table.columns:
            table[column] = math.nan
    return table[[*CURVE_COLUMNS, *feat_columns(table)]]


def merged(new: pd.DataFrame, old: pd.DataFrame | None) -> pd.DataFrame:
    """``new`` plus the rows of ``old`` whose run is not in ``new``, sorted by setting, cell,
    seed (and epoch). ``old`` rows keep the setting they were published under."""
    if old is None or old.empty:
        out = new
    else:
        kept = old[~old["run"].isin(set(new["run"]))]
        out = pd.concat([new, kept], ignore_index=True) if len(new) else kept.copy()
    keys = [k for k in ("setting", "cell", "seed", "epoch") if k in out.columns]
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    return _curve_columns(out) if "epoch" in out.columns else out


RESULTS_CSV, CURVES_CSV = "runs.csv", "curves.csv"


def publish_study(runs: Mapping[tuple[str, int], Run], folder: Path,
                  profile: Profile) -> dict[str, pd.DataFrame]:
    """A plain study's ``{(cell, seed): Run}`` (``study.student_runs`` of ``profile``) as the
    grid's two tables in ``folder`` (setting: the profile's ``base_name``), replacing them: the
    per-run finals and per-epoch curves a later session reads to re-judge the seed-paired claims
    without training."""
    done = {(base_name(profile), cell, seed): run for (cell, seed), run in runs.items()}
    out = {RESULTS_CSV: results(done), CURVES_CSV: curves(done)}
    for name, table in out.items():
        write_text(folder / name, table.to_csv(index=False))
    return out


def names(profile: Profile, teachers: Teachers = None) -> dict[str, tuple[str, str, int]]:
    """``{run folder name: (setting, cell, seed)}`` of every run the profile plans."""
    return {RunDir.for_config(cfg).path.name: key
            for key, cfg in configs(profile, teachers=teachers).items()}


def publish(profile: Profile, done: Mapping[tuple[str, str, int], Run],
            folder: Path, teachers: Teachers = None) -> dict[str, pd.DataFrame]:
    """Write ``runs.csv`` and ``curves.csv`` to ``folder``, merged with what is committed there
    (``merged``); rows of runs the profile no longer plans are dropped. Returns both tables.
    ``folder`` is the profile's own (``store.profile_figure_dir``): an overridden profile's is not the
    committed one of the profile it came from."""
    planned = set(names(profile, teachers))
    out = {}
    for name, table in ((RESULTS_CSV, results(done)), (CURVES_CSV, curves(done))):
        path = folder / name
        old = pd.read_csv(path) if path.is_file() else None
        table = merged(table, old)
        table = table[table["run"].isin(planned)].reset_index(drop=True)
        write_text(path, table.to_csv(index=False))
        out[name] = table
    return out


def check_collected(profile: Profile, table: pd.DataFrame, folder: Path,
                    teachers: Teachers = None, shown: int = 5) -> None:
    """MissingRuns naming the planned runs neither finished in the run store nor in ``table``
    (the ``runs.csv`` just written to ``folder``): a collect command that found runs missing."""
    planned = names(profile, teachers)
    missing = sorted(set(planned) - set(table["run"]))
    if missing:
        more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
        raise MissingRuns(f"{len(planned) - len(missing)} of {len(planned)} planned run(s) "
                          f"collected into {folder / RESULTS_CSV}; not finished: "
                          f"{', '.join(missing[:shown])}{more}. Train them (the same command "
                          "without --publish-only) or let the Slurm array finish, then collect "
                          "again")


def published_runs(folder: Path) -> set[str]:
    """Run folder names with a row in both committed tables of ``folder`` (empty when the
    tables are not there yet)."""
    tables = [folder / name for name in (RESULTS_CSV, CURVES_CSV)]
    if not all(path.is_file() for path in tables):
        return set()
    results, curves = (set(pd.read_csv(path)["run"]) for path in tables)
    return results & curves


def load(folder: Path, command: str) -> dict[str, pd.DataFrame]:
    """The committed ``runs.csv`` and ``curves.csv`` of ``folder`` (FileNotFoundError naming
    ``command``, which writes them)."""
    out = {}
    for name in (RESULTS_CSV, CURVES_CSV):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `{command}` to train the runs "
                                    "and write their tables")
        table = pd.read_csv(path)
        out[name] = _curve_columns(table) if name == CURVES_CSV else table
    return out


def tables(profile: Profile, folder: Path, recompute: bool, workers: int | None = None,
           progress: bool = True) -> dict[str, pd.DataFrame]:
    """A grid's tables: trained (or read from the run cache or the committed tables) and
    published to ``folder`` when ``recompute``, else read from the committed tables there."""
    if recompute:
        done = runs(profile, workers=workers, progress=progress,
                    published=published_runs(folder))
        publish(profile, done, folder)
    return load(folder, profile.command.split("#")[0].strip() or f"ddkit grid --profile {profile.name}")
