"""ddkit's command line (``ddkit`` once installed, or ``python -m ddkit.cli``).

    ddkit analyze vit_small_patch16_224 --pretrained --data /data/imagenet --n 200
    ddkit analyze --teacher cait_s24_224 --teacher-pretrained --student runs/<student run> --data /data/imagenet
    ddkit train --profile default --role teacher
    ddkit train --profile smoke --kd soft --feature spectral --layers first_last --set student.optim.lr=2e-3
    torchrun --nproc_per_node 8 -m ddkit.cli train --profile paper --kd soft --feature spectral --layers last
    ddkit pair --profile default           # the teacher, then a SpectralKD First+Last student
    ddkit notebooks --profile smoke [--only 02 | --from 02]
    ddkit profiles                         # the profiles and what each one is for
    ddkit ship-teacher [--profile NAME] [--teacher PRESET]   # (re)train a teacher, write ddkit/shipped/
    ddkit controls [--only SETTING] [--workers 2] [--publish-only]   # the negative-transfer controls
    ddkit controls --executor slurm --partition gpu --gpus-per-node 1   # as a Slurm job array
    ddkit phase-map [--only SETTING] [--teachers-only]   # the phase map: task complexity x width
    ddkit tb                               # TensorBoard on the run store (tensorboard --logdir runs/)

Expected failures (a bad value, a damaged run file, a NaN loss, no CUDA for a CUDA profile)
print one ``error: ...`` line with the fix and exit non-zero; ``--traceback`` shows the trace.

Over 450 lines on purpose: one function per subcommand, with every parser in one place so
``ddkit --help`` and the code read alike.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from ddkit.core.config import (
    DEVICES,
    LAYER_MAPS,
    ConfigError,
    Profile,
    load_profile,
    override_digest,
    parse_override,
    profile_names,
    replace,
    to_dict,
)
from ddkit.core.device import DeviceUnavailableError, require_cuda
from ddkit.core.losses import FEATURE_KINDS, KD_KINDS
from ddkit.core.models import ModelInputError
from ddkit.publish.pipeline import NotebookFailed, refresh_outputs, run_notebooks, select
from ddkit.runs.cluster import EXECUTOR_ENV, KINDS, Executor, check_slurm
from ddkit.runs.parallel import RunsFailed
from ddkit.runs.store import (
    RUNS_ENV,
    RunBusyError,
    RunDir,
    RunStoreError,
    profile_figure_dir,
    runs_root,
    slug,
    write_text,
)
from ddkit.runs.train import NonFiniteLossError, load_run, train

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
ANALYZE_HELP = """\
The paper's per-layer signals (token entropy, channel spectrum, activation and gradient
magnitude, spatial ΔLogAmp, effective rank, ...) of one timm ViT-like model (ViT, DeiT, CaiT,
EVA-02, register-token ViTs) or of a teacher and a student, on held-out images. Writes to --out:
layers.csv (the tidy per-layer table), figures/*.png, summary.md (the entropy U, trends, raw and
scale-controlled) and settings.json; a pair adds cka.csv and feature_fit.csv.

  ddkit analyze deit_tiny_patch16_224 --pretrained --data /data/imagenet --paper-faithful
  ddkit analyze vit_tiny_patch16_224 --model-arg img_size=32 --model-arg depth=4 --data cifar10
  ddkit analyze runs/default-student-soft-1a2b3c4d5e6f --n 500
  ddkit analyze --teacher cait_s24_224 --teacher-pretrained --student deit_tiny_patch16_224
                --student-checkpoint student.safetensors --data /data/imagenet --layers last
"""


# --------------------------------------------------------------------------- arguments


def _common(parser: argparse.ArgumentParser, device: bool = True) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument("--runs-dir", metavar="DIR", default=None,
                       help="where runs live (sets $DDKIT_RUNS; default: runs/ in the repository)")
    if device:
        group.add_argument("--device", choices=DEVICES, default=None,
                           help="run on this device (default: the profile's; analyze: auto)")
    group.add_argument("--traceback", action="store_true",
                       help="show the full traceback of an error instead of one line")


def _executor_options(parser: argparse.ArgumentParser, no_wait: bool = True) -> None:
    """--executor and its Slurm settings; --no-wait where the command can collect its runs
    later (the grids' --publish-only)."""
    group = parser.add_argument_group("where the runs train (docs/cluster.md)")
    group.add_argument("--executor", choices=KINDS, default="local",
                       help="local: this machine's process pool (default); slurm: one Slurm "
                            "job array through submitit, one run per task")
    group.add_argument("--partition", default=None, help="Slurm partition (default: the "
                       "cluster's default)")
    group.add_argument("--timeout-min", type=int, default=Executor.timeout_min,
                       help="each task's time limit in minutes; a task stopped by it is "
                            "requeued and resumes from its run's last epoch (default %(default)s)")
    group.add_argument("--array-parallelism", type=int, default=Executor.array_parallelism,
                       help="array tasks running at once (default %(default)s)")
    group.add_argument("--gpus-per-node", type=int, default=Executor.gpus_per_node,
                       help="GPUs per node of each task (default %(default)s)")
    group.add_argument("--nodes", type=int, default=Executor.nodes,
                       help="nodes per task (default %(default)s)")
    group.add_argument("--cpus-per-task", type=int, default=Executor.cpus_per_task,
                       help="CPU cores per task (default %(default)s)")
    group.add_argument("--mem-gb", type=float, default=None,
                       help="memory per node in GB (default: the partition's)")
    group.add_argument("--tasks-per-node", type=int, default=None,
                       help="processes per node of each task; above one process in all "
                            "(with --nodes), they train the run together with DDP (default: "
                            "one per GPU, else one)")
    if no_wait:
        group.add_argument("--no-wait", dest="no_wait", action="store_true",
                           help="with --executor slurm: submit the job array and return at "
                                "once, printing its id and the command that collects the runs "
                                "once it is done (the same command with --publish-only)")


def _executor(args: argparse.Namespace) -> Executor:
    """The executor of ``args``; with --no-wait its ``collect`` is this command with
    --publish-only (the same profile, overrides, device and run store)."""
    collect = None
    if getattr(args, "no_wait", False):
        sets = [part for text in args.overrides for part in ("--set", text)]
        device = ["--device", args.device] if args.device else []
        collect = shlex.join(["ddkit", args.command, "--profile", args.profile, *sets, *device,
                              "--runs-dir", str(runs_root().resolve()), "--publish-only"])
    return Executor(kind=args.executor, partition=args.partition, timeout_min=args.timeout_min,
                    array_parallelism=args.array_parallelism, gpus_per_node=args.gpus_per_node,
                    nodes=args.nodes, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                    tasks_per_node=args.tasks_per_node, workers=getattr(args, "workers", None),
                    no_wait=getattr(args, "no_wait", False), collect=collect)


def _profile_options(parser: argparse.ArgumentParser, default: str = "default") -> None:
    parser.add_argument("-c", "--config", "--profile", dest="profile", default=default,
                        help=f"one of {profile_names()} or a YAML path (default: {default}); "
                             "-c/--config FILE is the same as --profile FILE")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a profile value by its dotted key, e.g. "
                             "student.optim.lr=2e-3 or seeds=[0,1] (repeatable)")
    track = parser.add_argument_group("experiment tracking (not part of a run's identity)")
    track.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                       default=None, help="write no TensorBoard events (default: every run "
                       "writes them beside metrics.jsonl; `ddkit tb` shows them)")
    track.add_argument("--log-wandb", dest="wandb", metavar="PROJECT", default=None,
                       help="also log every run to this Weights & Biases project (needs the "
                            "optional wandb package: pip install wandb)")


def _model_options(parser: argparse.ArgumentParser, role: str) -> None:
    """--[role-]pretrained, --[role-]checkpoint, --[role-]model-arg for one model."""
    flag = f"--{role}-" if role else "--"
    dest = f"{role}_" if role else ""
    who = role or "the model"
    parser.add_argument(f"{flag}pretrained", dest=f"{dest}pretrained", action="store_true",
                        help=f"load {who}'s hub weights (internet)")
    parser.add_argument(f"{flag}checkpoint", dest=f"{dest}checkpoint", metavar="PATH",
                        help=f"load {who}'s weights from a local .safetensors / .pt file")
    parser.add_argument(f"{flag}{'arg' if role else 'model-arg'}", dest=f"{dest}args",
                        action="append", default=[], metavar="KEY=VALUE",
                        help=f"an argument of timm.create_model for {who}, e.g. depth=6 "
                             "(repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    an = sub.add_parser("analyze", help="the paper's per-layer signals of any timm ViT (or a "
                        "teacher/student pair) on a data set, written to a folder",
                        description=ANALYZE_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    an.add_argument("model", nargs="?", help="a timm model name (e.g. deit_tiny_patch16_224) or "
                    "a kit run folder")
    _model_options(an, "")
    pair = an.add_argument_group("a teacher/student pair (adds CKA and the feature fit)")
    pair.add_argument("--teacher", help="the teacher: a timm name or a kit run folder")
    pair.add_argument("--student", help="the student: a timm name or a kit run folder")
    _model_options(pair, "teacher")
    _model_options(pair, "student")
    pair.add_argument("--layers", default="first_last",
                      help="layer map of the feature fit: first, last, first_last or pairs "
                           "[[s, t], ...] (default first_last)")
    data = an.add_argument_group("data and sampling")
    data.add_argument("--data", default=None,
                      help="fashion_mnist, cifar10, cifar100 or an ImageFolder folder (with val/ "
                           "or class folders); default: a run folder's own data set, else "
                           "fashion_mnist; the held-out split is read")
    data.add_argument("--data-root", default=None, help="where the named data set lives")
    data.add_argument("--img-size", type=int, default=None,
                      help="image size (default: the model's input size)")
    data.add_argument("--n", type=int, default=None,
                      help="analysis images (default 200; paper-faithful 32)")
    data.add_argument("--batch-size", type=int, default=None,
                      help="images per forward/backward pass (memory only; default all)")
    data.add_argument("--seed", type=int, default=0, help="seed of the class-balanced sample")
    data.add_argument("--paper-faithful", action="store_true",
                      help="the official analysis: first 32 images, magnitudes on the first 5 "
                           "each alone with prefix tokens, bilinear resize, float32 bin edges")
    data.add_argument("--prefix-tokens", choices=("drop", "keep"), default=None,
                      help="magnitudes over patch tokens only (drop) or the whole block output "
                           "(keep); default keep when paper-faithful, else drop")
    an.add_argument("--out", default=None, help="output folder (default ddkit-analysis/<model>)")
    an.add_argument("--no-figures", dest="figures", action="store_false",
                    help="write the tables and the summary only")
    _common(an)

    for name, text in (("train", "train one run of a profile: its teacher or a student"),
                       ("pair", "train a profile's teacher, then a SoftKD + SpectralKD "
                        "First+Last student")):
        p = sub.add_parser(name, help=text, description=text)
        _profile_options(p)
        p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the "
                       "profile's first)")
        p.add_argument("--force", action="store_true",
                       help="delete the run folder(s) this command trains and train again")
        p.add_argument("--no-wait", dest="wait", action="store_false",
                       help="refuse (exit 1) when another process is training the same run, "
                            "instead of waiting for it and taking its result")
        if name == "train":
            p.add_argument("--role", choices=("teacher", "student"), default="student")
            p.add_argument("--kd", choices=KD_KINDS, default=None,
                           help="logit distillation (default: the profile's distill.kd, soft)")
            p.add_argument("--feature", choices=FEATURE_KINDS, default=None,
                           help="feature loss (default: the profile's distill.feature)")
            p.add_argument("--layers", choices=LAYER_MAPS, default=None,
                           help="feature layer map (default: the profile's distill.layers; "
                                "explicit pairs with --set distill.layers=[[0,3]])")
        _common(p)

    nbs = sub.add_parser("notebooks", help="run the notebooks in order with papermill")
    _profile_options(nbs)
    nbs.add_argument("--only", default=None, help="one notebook number, e.g. 02")
    nbs.add_argument("--from", dest="start", default=None, help="start at this notebook number")
    nbs.add_argument("--train-teacher", action="store_true",
                     help="01 trains the teacher with the profile recipe instead of loading it")
    _executor_options(nbs, no_wait=False)
    _common(nbs)

    prof = sub.add_parser("profiles", help="list the profiles: data, models, seeds, command")
    _common(prof, device=False)

    ship = sub.add_parser("ship-teacher", help="train a profile's teacher (default: the default "
                          "profile's) and write it to ddkit/shipped/ (the only command that does)")
    _profile_options(ship)
    ship.add_argument("--teacher", default=None, metavar="PRESET",
                      help="the teacher preset to ship (default: the profile's teacher); a grid "
                           "profile's other teachers: the controls' probed head "
                           "(ddkit_vit_mae_probed_teacher_fmnist), the phase map's mosaic "
                           "teachers (ddkit_vit_teacher_mosaic100)")
    ship.add_argument("--run-dir", default=None, help="ship this finished teacher run instead")
    ship.add_argument("--unfinished", action="store_true",
                      help="with --run-dir: ship the run's last kept epoch although its schedule "
                           "has not ended (the record says so; training it on resumes)")
    _common(ship)

    grids = {
        "controls": ("train the negative-transfer controls (profile controls) and write their "
                     "tables to figures/<profile>/", "an MAE teacher (pre-trained, and its "
                     "linear-probed head)"),
        "phase-map": ("train the phase map (profile phase_map): where late alignment helps "
                      "or hurts over task complexity x student width, and the remedies",
                      "one mosaic teacher per task complexity"),
        "u-formation": ("train the depth x training-length design (profile u_formation): where "
                        "the entropy U forms", "none: the CaiT-shaped teacher is shipped"),
    }
    for command, (summary, teachers) in grids.items():
        profile = command.replace("-", "_")
        ctl = sub.add_parser(command, help=summary, description=(
            f"Take the {profile} profile's teachers ({teachers}) from ddkit/shipped/, or, when "
            "an override changed a teacher's recipe, from the run store (trained there if "
            "missing, said in one line; `ddkit ship-teacher` alone writes ddkit/shipped/), "
            "then train every student of its own setting and its sweep settings (or take "
            "them from the run cache), and write runs.csv and curves.csv to "
            "figures/<profile>/, keeping the committed rows of runs this machine lacks; a run "
            "the committed tables already hold is not trained again. With --set overrides "
            "the tables go to "
            "figures/<profile>-set-<digest>/, never over the committed ones."))
        _profile_options(ctl, default=profile)
        ctl.add_argument("--only", action="append", default=None, metavar="SETTING",
                         help="train only this setting (repeatable; the profile's own "
                              "setting, named by its base_name, or a sweep setting; `ddkit "
                              "profiles` lists them)")
        ctl.add_argument("--workers", type=int, default=None,
                         help="runs trained side by side (default: the profile's workers)")
        ctl.add_argument("--teachers-only", action="store_true",
                         help="get the teachers (train those an override changed into the run "
                              "store), then stop")
        ctl.add_argument("--publish-only", action="store_true",
                         help="train nothing: write the tables from the runs already finished "
                              "(exit 1 naming the planned runs still missing)")
        ctl.add_argument("--retrain-published", action="store_true",
                         help="train runs the committed tables already hold too (by default a "
                              "run with a row in runs.csv and curves.csv is not trained again)")
        _executor_options(ctl)
        _common(ctl)

    tb = sub.add_parser("tb", help="TensorBoard on the run store: every run's events, under "
                        "its folder name", description="Start TensorBoard on the run store "
                        "(tensorboard --logdir <runs>); extra arguments go to tensorboard.")
    tb.add_argument("--print", dest="print_only", action="store_true",
                    help="print the tensorboard command instead of starting it")
    tb.add_argument("tensorboard_args", nargs=argparse.REMAINDER, metavar="...",
                    help="tensorboard options, e.g. --port 6007 --bind_all")
    _common(tb, device=False)

    refresh = sub.add_parser("refresh-notebooks", help="execute the notebooks at smoke size in "
                             "place and keep the outputs nbval checks")
    _common(refresh, device=False)
    return parser


# --------------------------------------------------------------------------- commands


def _profile(args: argparse.Namespace) -> Profile:
    overrides = dict(parse_override(text) for text in args.overrides)
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "command", None) == "train" and getattr(args, "role", None) == "student":
        # --kd/--feature/--layers join the profile's recipe before it is checked, so that
        # --feature spectral with --set distill.layers=[[0, 3]] is checked as one recipe
        overrides.update({f"distill.{flag}": getattr(args, flag)
                          for flag in ("kd", "feature", "layers") if getattr(args, flag) is not None})
    overrides.update(_tracking(args))
    profile = load_profile(args.profile, **overrides)
    if profile.device == "cuda":
        require_cuda("the profile's device is cuda")
    return profile


def _tracking(args: argparse.Namespace) -> dict:
    """The --no-tensorboard / --log-wandb choices as profile overrides."""
    out = {}
    if getattr(args, "tensorboard", None) is False:
        out["tensorboard"] = False
    if getattr(args, "wandb", None):
        out["wandb"] = args.wandb
    return out


def _discard(cfg) -> None:
    """--force: delete the run folder of ``cfg`` (one process only, never under torchrun)."""
    run_dir = RunDir.for_config(cfg)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ConfigError(f"--force under torchrun: delete {run_dir.path} first, then start "
                          "the distributed run without --force")
    if run_dir.path.exists():
        logging.getLogger("ddkit").info("--force: deleting %s", run_dir.path)
        run_dir.discard()


def _teacher(profile: Profile, force: bool):
    from ddkit.studies.study import teacher_model  # lazy: keeps `ddkit --help` fast (study pulls pandas and scipy)
    if force and profile.teacher_source == "train":
        _discard(profile.teacher_config())
    return teacher_model(profile)


def _student(profile: Profile, args: argparse.Namespace, kd: str, feature: str, layers,
             teacher=None):
    if teacher is None and (kd != "none" or feature != "none"):
        teacher, _ = _teacher(profile, force=False)
    cfg = profile.student_config(kd=kd, feature=feature, layers=layers, seed=args.seed,
                                 teacher=teacher)
    if args.force:
        _discard(cfg)
    return train(cfg, wait=args.wait)


def _report(run) -> dict:
    s = run.summary
    return {"run": str(run.dir.path), "final_acc1": round(s["final_acc1"], 2),
            "best_acc1": round(s["best_acc1"], 2), "wall_time_s": s["wall_time_s"]}


def _train(args: argparse.Namespace) -> int:
    profile = _profile(args)
    if args.command == "train" and args.role == "teacher":
        cfg = profile.teacher_config()
        if args.seed is not None:
            cfg = replace(cfg, seed=args.seed)
        if args.force:
            _discard(cfg)
        runs = [train(cfg, wait=args.wait)]
    elif args.command == "train":
        d = profile.distill          # --kd/--feature/--layers are in it (``_profile``)
        runs = [_student(profile, args, d.kd, d.feature, d.layers)]
    else:
        teacher, teacher_run = _teacher(profile, args.force)
        student = _student(profile, args, "soft", "spectral", "first_last", teacher)
        runs = [r for r in (teacher_run, student) if r is not None]
    if int(os.environ.get("RANK", 0)) == 0:
        for run in runs:
            print(json.dumps(_report(run)))
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    profile = _profile(args)
    executor = _executor(args)
    if executor.kind == "slurm":
        check_slurm(executor)          # before any notebook runs
    target = args.profile
    if args.overrides or args.device or _tracking(args):
        target = str(_resolved_profile_file(profile, changed=bool(args.overrides)))
    extra = {"01": {"train_teacher": True}} if args.train_teacher else {}
    # the kernels inherit it: their students train where --executor says (local: unset)
    before = os.environ.pop(EXECUTOR_ENV, None)
    if executor.kind == "slurm":
        os.environ[EXECUTOR_ENV] = executor.to_env()
    try:
        out = run_notebooks(select(args.only, args.start), target, extra)
    finally:
        os.environ.pop(EXECUTOR_ENV, None)
        if before is not None:
            os.environ[EXECUTOR_ENV] = before
    print(f"[ddkit] executed notebooks in {out}", file=sys.stderr)
    return 0


def _resolved_profile_file(profile: Profile, changed: bool) -> Path:
    """The profile with its overrides as a YAML file under ``<runs>/profiles/`` for the notebook
    kernels. A profile whose values changed gets its own name (``<name>-set-<digest>``), so its
    figures never overwrite those of the profile it came from."""
    data = json.loads(json.dumps(to_dict(profile)))
    if changed:
        data["name"] = f"{profile.name}-set-{override_digest(profile)}"
    path = runs_root() / "profiles" / f"{data['name']}.yaml"
    write_text(path, "# written by `ddkit notebooks` from a profile and its --set/--device "
               "overrides\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def _profiles(_args: argparse.Namespace) -> int:
    for name in profile_names():
        p = load_profile(name)
        print(f"{name}: {' '.join(p.description.split())}\n"
              f"    data {p.data.name}; teacher {p.teacher.model.name} ({p.teacher_source}); "
              f"student {p.student.model.name}; seeds {p.seeds}; device {p.device}\n"
              f"    run: {p.command}")
        if p.sweep:
            print(f"    settings: {'; '.join([p.own_setting, *p.sweep])}")
    return 0


def _ship(args: argparse.Namespace) -> int:
    from ddkit.studies.study import ship_teacher  # lazy: keeps `ddkit --help` fast (study pulls pandas and scipy)
    profile = _profile(args)
    run = load_run(args.run_dir) if args.run_dir else None
    if args.unfinished and run is None:
        raise ConfigError("--unfinished needs --run-dir: the run to ship as it stands")
    owner, cfg = _teacher_recipe(profile, args.teacher)
    record = ship_teacher(owner, run=run or train(cfg), unfinished=args.unfinished)
    print(json.dumps({k: v for k, v in record.items() if k != "config"}))
    return 0


def _teacher_recipe(profile: Profile, preset: str | None):
    """``(owner profile, run config)`` of the teacher ``preset`` of ``profile`` (default: its
    teacher): a grid profile's probed head or mosaic teacher included."""
    from ddkit.studies import controls, phase_map  # lazy: `ddkit --help` stays fast (pandas)
    if preset is None or preset == profile.teacher.model.name:
        return profile, profile.teacher_config()
    found = None
    if profile.teacher.mae is not None and profile.probe is not None:
        found = controls.teacher_recipe(profile, preset)
    try:
        mosaics = phase_map.teacher_settings(profile)
    except ConfigError:              # not a grid profile: its settings name no cells
        mosaics = {}
    if found is None and preset in mosaics:
        found = mosaics[preset], mosaics[preset].teacher_config()
    if found is None:
        presets = sorted({profile.teacher.model.name, *mosaics,
                          *([profile.probe.model.name] if profile.probe else [])})
        raise ConfigError(f"--teacher {preset!r}: profile {profile.name!r} trains no such "
                          f"teacher; its teachers: {presets}")
    return found


def _analyze(args: argparse.Namespace) -> int:
    from ddkit.publish import report  # lazy: keeps `ddkit --help` fast (report pulls pandas and scipy)
    if args.model and (args.teacher or args.student):
        raise ConfigError("give one MODEL, or --teacher and --student, not both")
    if bool(args.teacher) != bool(args.student):
        raise ConfigError("a pair needs both --teacher and --student")
    if not (args.model or args.teacher):
        raise ConfigError("name a model: `ddkit analyze MODEL` or --teacher T --student S "
                          "(a timm name such as deit_tiny_patch16_224, or a kit run folder)")
    roles = {"model": ""} if args.model else {"teacher": "teacher_", "student": "student_"}
    models = {}
    for role, dest in roles.items():
        spec = args.model if role == "model" else getattr(args, role)
        kwargs = dict(parse_override(text) for text in getattr(args, f"{dest}args"))
        models[role] = report.ModelSource(spec, getattr(args, f"{dest}pretrained"),
                                          getattr(args, f"{dest}checkpoint"), kwargs)
    if args.model:   # one model: label its rows by its name
        models = {Path(args.model).name: models["model"]}
    _, layers = parse_override(f"layers={args.layers}")
    out = args.out or str(Path("ddkit-analysis") / slug(
        "_vs_".join(Path(m.spec).name for m in models.values())))
    request = report.Request(
        models=models, data=args.data, data_root=args.data_root, img_size=args.img_size,
        n=args.n, batch_size=args.batch_size, device=args.device or "auto",
        paper_faithful=args.paper_faithful, prefix_tokens=args.prefix_tokens, layers=layers,
        seed=args.seed, out=out, figures=args.figures)
    report.run(request)
    return 0


def _grid(args: argparse.Namespace) -> int:
    from ddkit.studies import (  # lazy: `ddkit --help` stays fast (pandas)
        controls,
        grid,
        map_study,
        phase_map,
        u_formation,
    )
    profile = _profile(args)
    executor = _executor(args)       # a bad executor setting stops here, before any training
    if executor.kind == "slurm" and not args.publish_only:
        check_slurm(executor)
    train_missing = not args.publish_only
    if args.command == "controls":   # shipped, or (a recipe an override changed) the run store's
        teachers = controls.teachers(profile, train=train_missing)
    else:
        teachers = phase_map.teachers(profile, only=args.only, train=train_missing)
    if args.teachers_only:
        return 0
    folder = profile_figure_dir(profile)  # figures/<profile>-set-<digest>/ for an overridden profile
    published = () if args.retrain_published else grid.published_runs(folder)
    done = (grid.finished(profile, teachers) if args.publish_only else
            grid.runs(profile, only=args.only, workers=args.workers, executor=executor,
                      published=published, teachers=teachers))
    tables = grid.publish(profile, done, folder, teachers=teachers)
    print(f"{len(done)} run(s) of this machine; {len(tables[grid.RESULTS_CSV])} in "
          f"{folder / grid.RESULTS_CSV}")
    if args.command == "u-formation":    # the U over training, computed once for notebook 11
        u_formation.write_table(profile, folder)
        print(f"U formation table in {folder / u_formation.TABLE}")
    if args.command == "phase-map":      # a map is judged once, here, for its notebook and docs
        mism = map_study.mismatch_table(profile, folder, recompute=True)
        study = map_study.compute(profile, tables[grid.RESULTS_CSV], mism)
        map_study.write(study, folder)
        print(f"{study.claim}: {study.headline} (derived tables in {folder})")
    if args.publish_only:            # the collect command: say which runs are still missing
        grid.check_collected(profile, tables[grid.RESULTS_CSV], folder, teachers)
    return 0


def tensorboard_command(extra: list[str] | None = None) -> list[str]:
    """The command that starts TensorBoard on the run store (``tensorboard --logdir <runs>``)."""
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs_root()),
            *(extra or [])]


def _tb(args: argparse.Namespace) -> int:
    extra = [a for a in args.tensorboard_args if a != "--"]
    shown = shlex.join(["tensorboard", "--logdir", str(runs_root()), *extra])
    if args.print_only:
        print(shown)
        return 0
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard is not installed (pip install tensorboard); the runs' "
                          "events are read by any TensorBoard: " + shown)
    print(f"[ddkit] {shown}", file=sys.stderr)
    return subprocess.call(tensorboard_command(extra))


def _refresh(_args: argparse.Namespace) -> int:
    refresh_outputs()
    return 0


COMMANDS = {"analyze": _analyze, "train": _train, "pair": _train, "notebooks": _notebooks,
            "profiles": _profiles, "ship-teacher": _ship, "controls": _grid, "phase-map": _grid,
            "u-formation": _grid, "tb": _tb, "refresh-notebooks": _refresh}


# --------------------------------------------------------------------------- errors


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause and fix: printed as one line, not a traceback."""
    return (ConfigError, ValueError, FileNotFoundError, NonFiniteLossError,
            DeviceUnavailableError, NotebookFailed, RunBusyError, RunsFailed, RunStoreError,
            torch.OutOfMemoryError)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _show_progress_lines() -> None:
    """Cache hits, resumes and --force lines of the kit's loggers on stderr (rank 0 only)."""
    logger = logging.getLogger("ddkit")
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("[ddkit] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.runs_dir:
        os.environ[RUNS_ENV] = str(Path(args.runs_dir).expanduser().resolve())
    _show_progress_lines()
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume (finished epochs are "
              "kept)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _expected_errors() as err:
        if args.traceback:
            raise
        message = " ".join(str(err).split()) if not isinstance(err, torch.OutOfMemoryError) \
            else "out of memory; lower --batch-size (analyze) or data.batch_size (--set)"
        if isinstance(err, FileNotFoundError) and not str(err):
            message = repr(err)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, (ConfigError, ModelInputError)) else EXIT_ERROR
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Under torchrun, tear the process group down before the interpreter exits: left to exit,
    gloo's threads can abort the process ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
