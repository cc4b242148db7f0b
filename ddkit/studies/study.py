"""The study a profile describes: its teacher, the ablation grid of students, their tables.

The notebooks call these; every run goes through ``ddkit.runs.train.train`` and its cache, so a
notebook re-run with the same profile trains nothing twice.

Cells of the negative-transfer ablation (names as in the official release's tables):
no-KD, SoftKD, SpectralKD-{First, Last, First+Last}, ProjectorKD-{First, Last, First+Last}.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ddkit.core.anatomy import describe
from ddkit.core.config import (
    ABLATION,
    CELLS,
    ConfigError,
    ModelConfig,
    Profile,
    RunConfig,
    cell_parts,
    check_cells,
    config_hash,
)
from ddkit.core.data import build_dataset
from ddkit.core.hooks import block_features
from ddkit.core.losses import feature_loss_diagnostics, resolve_layer_pairs
from ddkit.core.models import create_from_config, create_model, load_state_dict, shipped_teacher
from ddkit.runs.cluster import Executor, planned
from ddkit.runs.launch import launch_plan, train_array
from ddkit.runs.progress import emit
from ddkit.runs.store import RunDir, atomic_write, read_jsonl, write_json, write_text
from ddkit.runs.train import Run, train
from ddkit.signals.dynamics import analyze, sample_batch
from ddkit.verdicts.stats import mean_ci, paired_difference

log = logging.getLogger(__name__)   # the CLI shows INFO lines of the kit's loggers


def teacher_model(profile: Profile, progress: bool = True, source: str | None = None,
                  weights: Mapping[str, Path] | None = None) -> tuple[ModelConfig, Run | None]:
    """The teacher every student distils from, by ``source`` (default ``profile.teacher_source``):
    ``shipped`` (the committed teacher of the profile's teacher preset, or the weights
    ``weights`` gives for that preset: a grid's teacher whose recipe an override changed,
    trained into the run store, ``teacher_weights``), ``hub`` (``distill.teacher``, e.g.
    CaiT-S24 pretrained) or ``train`` (the profile's teacher run, trained once and cached)."""
    model = profile.teacher.model
    source = source or profile.teacher_source
    if source == "shipped":
        if weights is not None and weights.get(model.name) is not None:
            return ModelConfig(name=model.name, kwargs=model.kwargs,
                               checkpoint=str(weights[model.name])), None
        return ModelConfig(name=model.name, kwargs=model.kwargs,
                           checkpoint=str(shipped_teacher(model.name).weights)), None
    if source == "hub":
        if profile.distill.teacher is None:
            raise ConfigError("teacher_source: hub needs distill.teacher in the profile")
        return profile.distill.teacher, None
    run = train(profile.teacher_config(), progress=progress)
    return ModelConfig(name=model.name, kwargs=model.kwargs,
                       checkpoint=str(run.dir.final_weights)), run


def student_config(profile: Profile, cell: str, seed: int, teacher: ModelConfig | None) -> RunConfig:
    check_cells([cell])
    spec = CELLS[cell]
    uses_teacher = spec["kd"] != "none" or spec.get("feature", "none") != "none"
    return profile.student_config(**spec, seed=seed, teacher=teacher if uses_teacher else None)


def student_runs(profile: Profile, cells: Iterable[str] | None = None,
                 seeds: Iterable[int] | None = None, teacher: ModelConfig | None = None,
                 progress: bool = True, workers: int | None = None,
                 executor: Executor | None = None) -> dict[tuple[str, int], Run]:
    """Train (or read from cache) every (cell, seed) student. ``seeds`` (the same for every
    cell) default to each cell's own, ``profile.seeds_for(cell)``. Where they train is
    ``cluster.launch_plan``'s choice: on the CPU ``workers`` at a time (default
    ``$DDKIT_WORKERS``, else ``profile.workers``, else one per CPU core; ddkit.runs.parallel), on
    GPUs one run at a time over all of them (DDP), or as one Slurm job array with ``executor``
    (default ``$DDKIT_EXECUTOR``, which ``ddkit notebooks --executor slurm`` sets); one bar
    counts the finished runs."""
    executor = launch_plan(profile.device, workers=workers, profile_workers=profile.workers,
                           executor=executor if executor is not None else Executor.from_env())
    cells = check_cells(cells if cells is not None else ABLATION)
    if teacher is None and any(c != "no-KD" for c in cells):
        teacher, _ = teacher_model(profile, progress)
    configs = planned({(c, s): student_config(profile, c, s, teacher) for c in cells
                       for s in (list(seeds) if seeds is not None else profile.seeds_for(c))},
                      executor)
    cached = sum(RunDir.for_config(cfg).is_complete for cfg in configs.values())
    emit("plan", label=f"{profile.name}: {len(cells)} cells", total=len(configs), cached=cached)
    return train_array(configs, executor, progress=progress,
                       label=f"{profile.name} students ({executor.describe()})")


def histories(runs: dict[tuple[str, int], Run]) -> pd.DataFrame:
    """Per-epoch logs of every run, with ``run`` (cell), ``method``, ``layers`` and ``seed``."""
    frames = [r.history().assign(run=cell, seed=seed, **cell_parts(cell))
              for (cell, seed), r in runs.items()]
    return pd.concat(frames, ignore_index=True)


def accuracy_table(runs: dict[tuple[str, int], Run]) -> pd.DataFrame:
    """One row per (cell, seed): final and best top-1 (percent), wall time."""
    rows = []
    for (cell, seed), run in runs.items():
        s = run.summary
        rows.append({"run": cell, "seed": seed, **cell_parts(cell), "final_acc1": s["final_acc1"],
                     "best_acc1": s["best_acc1"], "wall_time_s": s["wall_time_s"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the shipped teacher

DEFAULT_TEACHER = "ddkit_vit_teacher_fmnist"


def shipped_teacher_record(model: str = DEFAULT_TEACHER) -> dict:
    """What a shipped teacher's run recorded: config, hash, accuracy, wall time, command."""
    return json.loads(shipped_teacher(model).record.read_text())


def shipped_teacher_log(model: str = DEFAULT_TEACHER) -> pd.DataFrame:
    """A shipped teacher's per-epoch log (official keys)."""
    return pd.DataFrame(read_jsonl(shipped_teacher(model).log))


def shipped_teacher_dynamics(model: str = DEFAULT_TEACHER) -> pd.DataFrame:
    """Per-layer metrics of a shipped teacher at each kept checkpoint (tidy, see dynamics)."""
    return pd.read_csv(shipped_teacher(model).dynamics)


def _unfinished_summary(run: Run) -> tuple[int, list[dict], dict]:
    """The last kept epoch of an unfinished run, its log records up to that epoch, and a summary
    of the run up to it (the fields of ``summary.json`` that a shipped record carries)."""
    kept = run.checkpoints()
    if not kept:
        raise ValueError(f"{run.dir.path} has no kept weights yet (weights/epoch_*.safetensors)")
    last = max(kept)
    log = [r for r in run.dir.records() if r["epoch"] <= last]
    if [r["epoch"] for r in log] != list(range(last + 1)):
        raise ValueError(f"{run.dir.log}: epochs 0..{last} are not all logged")
    return last, log, {"hash": json.loads(run.dir.config.read_text())["hash"],
                       "final_acc1": log[-1]["test_acc1"], "best_acc1": max(r["test_acc1"] for r in log),
                       "epochs": last + 1, "wall_time_s": log[-1]["elapsed_s"],
                       "device": run.config.device, "torch": torch.__version__,
                       "config": run.dir.read_config()}


def ship_teacher(profile: Profile, n: int = 200, progress: bool = True,
                 run: Run | None = None, unfinished: bool = False) -> dict:
    """Train the profile's teacher (or take it from cache, or use the finished ``run``) and write
    what the kit ships for its preset (``models.SHIPPED_TEACHERS``): final weights, the run's
    record and log, its per-checkpoint dynamics. Each file is replaced atomically.

    ``unfinished`` ships ``run`` as it stands before its schedule ends: the weights kept at its
    last kept epoch, the log up to there; the record says ``complete: false`` beside
    ``scheduled_epochs``, and training the run on resumes from its checkpoint."""
    target = shipped_teacher(profile.teacher.model.name, must_exist=False)
    run = run or train(profile.teacher_config(), progress=progress)
    if run.dir.is_complete:
        summary, weights, log = run.summary, run.dir.final_weights, run.dir.log.read_text()
        checkpoints, model = run.checkpoints(), run.load_model()
    elif unfinished:
        last, records, summary = _unfinished_summary(run)
        weights = run.dir.epoch_weights(last)
        log = "".join(json.dumps(r) + "\n" for r in records)
        checkpoints = {e: p for e, p in run.checkpoints().items() if e <= last}
        model = run.load_model(last)
    else:
        raise ValueError(f"{run.dir.path} has not finished training (no summary.json): let it "
                         "finish, or ship its last kept epoch with --unfinished")
    test_set = build_dataset(profile.data.name, "test", root=profile.data.root)
    table = analyze(model, test_set, name="teacher", checkpoints=checkpoints, n=n,
                    seed=profile.seeds[0])
    atomic_write(target.weights, lambda tmp: shutil.copyfile(weights, tmp))
    write_text(target.log, log)
    write_text(target.dynamics, table.to_csv(index=False))
    command = target.command
    scheduled = summary["config"]["optim"]["epochs"]
    record = {"profile": profile.name, "command": command,
              "hash": summary["hash"], "final_acc1": summary["final_acc1"],
              "best_acc1": summary["best_acc1"], "epochs": summary["epochs"],
              "scheduled_epochs": scheduled, "complete": summary["epochs"] == scheduled,
              "wall_time_s": summary["wall_time_s"], "device": summary["device"],
              "torch": summary["torch"], "config": summary["config"]}
    write_json(target.record, record)
    return record


def shipped_hash(model: str) -> str | None:
    """The run hash in a shipped teacher's record (None when nothing is shipped for ``model``)."""
    record = shipped_teacher(model, must_exist=False).record
    return json.loads(record.read_text()).get("hash") if record.exists() else None


def ship_command(profile: Profile, preset: str) -> str:
    """The command that ships ``preset`` as ``profile`` trains it (overrides to be added)."""
    teacher = "" if preset == profile.teacher.model.name else f" --teacher {preset}"
    return f"ddkit ship-teacher --profile {profile.name}{teacher}"


def teacher_weights(profile: Profile, cfg: RunConfig, progress: bool = True,
                    train_missing: bool = True, owner: Profile | None = None) -> Path | None:
    """The weights of the teacher run ``cfg`` of ``profile``'s teacher preset: the shipped file
    when its record holds ``cfg``'s hash (nothing is trained); else ``cfg``'s run in the run
    store, trained when it is missing, said in one line; ddkit/shipped/ is never written here
    (``ddkit ship-teacher`` ships a teacher, asked by name). None when the run is missing and
    ``train_missing`` is false. ``owner``: the profile the ship command names (default
    ``profile``)."""
    name = profile.teacher.model.name
    shipped = shipped_hash(name)
    if shipped == config_hash(cfg):
        return shipped_teacher(name).weights
    run_dir = RunDir.for_config(cfg)
    if not run_dir.is_complete and not train_missing:
        return None
    command = ship_command(owner or profile, name)
    log.info("teacher %s: this recipe (run %s) is not the shipped one (%s): %s the run store; "
             "ddkit/shipped/ stays as it is (`%s` with the same --set ships it)", name,
             run_dir.path.name, f"hash {shipped}" if shipped else "none shipped",
             "taken from" if run_dir.is_complete else "training it into", command)
    return train(cfg, progress=progress).dir.final_weights


# --------------------------------------------------------------------------- analysis tables


def analysis_batch(profile: Profile) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed images every dynamics table of a profile is computed on (test split):
    ``analysis.n_images`` class-balanced, or the first ones with ``analysis.paper_faithful``."""
    a = profile.analysis
    test_set = build_dataset(profile.data.name, "test", root=profile.data.root,
                             img_size=profile.data.img_size)
    return sample_batch(test_set, a.get("n_images", 200), a.get("paper_faithful", False),
                        seed=profile.seeds[0])


def _batch_key(x: torch.Tensor, y: torch.Tensor, extra: str = "") -> str:
    digest = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes() + extra.encode())
    return digest.hexdigest()[:12]


def _cached_table(path: Path, compute) -> pd.DataFrame:
    if path.exists():
        return pd.read_csv(path)
    table = compute()
    write_text(path, table.to_csv(index=False))
    return table


def run_dynamics(run: Run, x: torch.Tensor, y: torch.Tensor, name: str,
                 every_checkpoint: bool = True) -> pd.DataFrame:
    """Per-layer metrics of a run's kept checkpoints (or final weights), cached in its folder."""
    which = "checkpoints" if every_checkpoint else "final"
    path = run.dir.path / f"dynamics-{which}-{_batch_key(x, y)}.csv"
    checkpoints = run.checkpoints() if every_checkpoint else None
    table = _cached_table(path, lambda: analyze(run.load_model(), (x, y), name=name,
                                                checkpoints=checkpoints))
    if not every_checkpoint:
        table["epoch"] = run.summary["epochs"] - 1
    return table.assign(model=name)


def feature_fit(run: Run, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                pairs: list[tuple[int, int]]) -> pd.DataFrame:
    """How well each kept checkpoint of a student fits the teacher's blocks, per (s, t) pair:
    raw SpectralKD loss, the loss of an all-zero prediction, their ratio, and token cosine
    (the scale-controlled views, docs/design.md §7). Rows (epoch, pair, raw, zero, relative, cosine)."""
    path = run.dir.path / f"feature-fit-{_batch_key(x, y, str(pairs))}.csv"

    def compute() -> pd.DataFrame:
        t_layers = sorted({t for _, t in pairs})
        t_feats = dict(zip(t_layers, block_features(teacher.eval(), x, t_layers)))
        student, rows = run.load_model(), []
        for epoch, weights in run.checkpoints().items():
            student.load_state_dict(load_state_dict(weights))
            s_layers = sorted({s for s, _ in pairs})
            s_feats = dict(zip(s_layers, block_features(student.eval(), x, s_layers)))
            for s, t in pairs:
                rows.append({"epoch": epoch, "pair": f"s{s}-t{t}",
                             **feature_loss_diagnostics(s_feats[s], t_feats[t])})
        return pd.DataFrame(rows)
    return _cached_table(path, compute)


# --------------------------------------------------------------------------- notebook helpers


def datasets(profile: Profile):
    """The students' training set and the test set of a profile."""
    cfg = profile.student_config()
    d = cfg.data
    train_set = build_dataset(d.name, "train", root=d.root, img_size=d.img_size,
                              subset=d.train_subset, seed=cfg.seed)
    test_set = build_dataset(d.name, "test", root=d.root, img_size=d.img_size,
                             subset=d.eval_subset, seed=cfg.seed)
    return train_set, test_set


def model_table(profile: Profile) -> pd.DataFrame:
    """Parameters, depth, width and token grid of the profile's teacher and student."""
    rows = []
    for role, model in (("teacher", profile.teacher.model), ("student", profile.student.model)):
        rows.append({"role": role, "model": model.name,
                     **describe(create_model(model.name, **model.kwargs))})
    return pd.DataFrame(rows).set_index("role")


def load_teacher(teacher: ModelConfig, device: str | torch.device = "cpu") -> nn.Module:
    return create_from_config(teacher).to(device).eval()


def teacher_history(profile: Profile, run: Run | None) -> pd.DataFrame:
    """The teacher's per-epoch log: its run's, or the shipped teacher's recorded one."""
    if run is not None:
        return run.history().assign(run="teacher")
    if profile.teacher_source == "shipped":
        return shipped_teacher_log(profile.teacher.model.name).assign(run="teacher")
    return pd.DataFrame(columns=["epoch", "test_acc1", "run"])


def accuracy_summary(acc: pd.DataFrame, column: str = "final_acc1",
                     baseline: str = "SoftKD") -> pd.DataFrame:
    """Per cell: mean top-1 with its 95 % CI over the cell's seeds, and the paired difference to
    ``baseline`` over the seeds both have (cells may have different seeds: ``cell_seeds``)."""
    wide = acc.pivot(index="seed", columns="run", values=column)
    rows = []
    for cell in wide.columns:
        e = mean_ci(wide[cell].dropna().to_numpy(), name=cell)
        row = {"run": cell, "mean": e.mean, "lo": e.lo, "hi": e.hi, "half_width": e.half_width,
               "n": e.n}
        if baseline in wide.columns:
            both = wide[list(dict.fromkeys([cell, baseline]))].dropna()
            d = paired_difference(both[cell].to_numpy(), both[baseline].to_numpy(),
                                  names=(cell, baseline))
            row.update({f"diff_vs_{baseline}": d.mean, "diff_lo": d.lo, "diff_hi": d.hi,
                        "diff_half_width": d.half_width})
        rows.append(row)
    order = [c for c in CELLS if c in wide.columns]
    return pd.DataFrame(rows).set_index("run").loc[order].reset_index()


def feature_fit_table(runs: dict[tuple[str, int], Run], teacher: nn.Module, x: torch.Tensor,
                      y: torch.Tensor, n_student: int, n_teacher: int) -> pd.DataFrame:
    """``feature_fit`` of every run at the First and Last pairs (also for students never aligned,
    the control), tidy with run, seed, method, layers."""
    pairs = resolve_layer_pairs("first_last", n_student, n_teacher)
    frames = [feature_fit(run, teacher, x, y, pairs).assign(run=cell, seed=seed, **cell_parts(cell))
              for (cell, seed), run in runs.items()]
    return pd.concat(frames, ignore_index=True)


def teacher_dynamics(profile: Profile, teacher: nn.Module, x: torch.Tensor,
                     y: torch.Tensor) -> pd.DataFrame:
    """The teacher's per-layer metrics over its checkpoints: the shipped table, the teacher
    run's checkpoints, or (hub weights, no checkpoints) the final weights only."""
    if profile.teacher_source == "shipped":
        return shipped_teacher_dynamics(profile.teacher.model.name)
    if profile.teacher_source == "train":
        return run_dynamics(train(profile.teacher_config()), x, y, "teacher")
    return analyze(teacher, (x, y), name="teacher").assign(epoch=0)


def final_dynamics(runs: dict[tuple[str, int], Run], x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Per-layer metrics of every run's final weights: rows (model=cell, seed, layer, metric, value)."""
    frames = [run_dynamics(run, x, y, cell, every_checkpoint=False).assign(seed=seed)
              for (cell, seed), run in runs.items()]
    return pd.concat(frames, ignore_index=True)


def ablation_findings(summary: pd.DataFrame, baseline: str = "SoftKD") -> list[str]:
    """What the ablation's numbers say, one line per cell, from ``accuracy_summary``: each cell's
    mean top-1 and its paired difference to ``baseline`` (cell - baseline, pt, 95 % t interval
    over the seeds both have), read by whether the interval excludes 0; then whether late
    alignment cost more than early (``-Last`` against ``-First`` of each feature loss, point
    estimates only: their intervals are per cell, not of the difference)."""
    rows = summary.set_index("run")
    diff = f"diff_vs_{baseline}"
    if diff not in rows.columns:
        return [f"no {baseline} cell: no paired differences to read"]
    out = []
    for cell, r in rows.drop(index=baseline, errors="ignore").iterrows():
        if pd.isna(r[diff]):
            continue
        if r["n"] < 2 or pd.isna(r["diff_lo"]):
            reading = "one seed: no interval"
        elif r["diff_lo"] > 0:
            reading = f"above {baseline}: alignment helped"
        elif r["diff_hi"] < 0:
            reading = f"below {baseline}: alignment hurt"
        else:
            reading = f"the interval spans 0: no difference from {baseline} shown"
        out.append(f"{cell}: {r['mean']:.2f} % top-1, {r[diff]:+.2f} pt vs {baseline} "
                   f"[{r['diff_lo']:+.2f}, {r['diff_hi']:+.2f}] (n = {int(r['n'])}): {reading}")
    for loss in ("SpectralKD", "ProjectorKD"):
        first, last = f"{loss}-First", f"{loss}-Last"
        if first in rows.index and last in rows.index:
            cost = rows.loc[first, diff] - rows.loc[last, diff]
            which = "more" if cost > 0 else "less"
            out.append(f"{loss}: late alignment cost {abs(cost):.2f} pt {which} than early "
                       f"({last} {rows.loc[last, diff]:+.2f} against {first} "
                       f"{rows.loc[first, diff]:+.2f} pt vs {baseline})")
    return out
