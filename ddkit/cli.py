"""Command line: train one run of a profile (also under torchrun), or the teacher + one student.

    python -m ddkit.cli train --profile default --role teacher
    python -m ddkit.cli train --profile smoke --kd soft --feature spectral --layers first_last
    torchrun --nproc_per_node 8 -m ddkit.cli train --profile paper --kd soft --feature spectral --layers last
    python -m ddkit.cli pair --profile default      # the teacher, then a SpectralKD First+Last student
    python -m ddkit.cli notebooks --profile smoke [--only 02 | --from 02]
    python -m ddkit.cli ship-teacher                # retrain the default teacher, write ddkit/shipped/
"""
from __future__ import annotations

import argparse
import json
import sys

from ddkit.config import (FEATURE_KINDS, KD_KINDS, LAYER_MAPS, ConfigError, Profile,
                          load_profile, profile_names)
from ddkit.pipeline import NotebookFailed, refresh_outputs, run_notebooks, select
from ddkit.study import ship_teacher, teacher_model
from ddkit.train import Run, load_run, train


def _student(profile: Profile, args: argparse.Namespace) -> Run:
    teacher = None
    if args.kd != "none" or args.feature != "none":
        teacher, _ = teacher_model(profile)
    cfg = profile.student_config(kd=args.kd, feature=args.feature, layers=args.layers,
                                 seed=args.seed, teacher=teacher)
    return train(cfg)


def _report(run: Run) -> dict:
    s = run.summary
    return {"run": str(run.dir.path), "final_acc1": round(s["final_acc1"], 2),
            "best_acc1": round(s["best_acc1"], 2), "wall_time_s": s["wall_time_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddkit.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    nbs = sub.add_parser("notebooks", help="run the notebooks in order with papermill")
    nbs.add_argument("--profile", default="default")
    nbs.add_argument("--only", default=None, help="one notebook number, e.g. 02")
    nbs.add_argument("--from", dest="start", default=None, help="start at this notebook number")
    nbs.add_argument("--train-teacher", action="store_true",
                     help="01 trains the teacher with the profile recipe instead of loading it")
    sub.add_parser("refresh-notebooks", help="execute notebooks at smoke size in place, keep "
                   "the outputs nbval checks")
    ship = sub.add_parser("ship-teacher", help="train the default teacher and write ddkit/shipped/")
    ship.add_argument("--profile", default="default")
    ship.add_argument("--run-dir", default=None, help="ship this finished teacher run instead")
    for name in ("train", "pair"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="default",
                       help=f"one of {profile_names()} or a YAML path")
        p.add_argument("--seed", type=int, default=None)
    tr = sub.choices["train"]
    tr.add_argument("--role", choices=("teacher", "student"), default="student")
    tr.add_argument("--kd", choices=KD_KINDS, default="soft")
    tr.add_argument("--feature", choices=FEATURE_KINDS, default="none")
    tr.add_argument("--layers", choices=LAYER_MAPS, default="none")
    args = parser.parse_args(argv)
    if args.command == "refresh-notebooks":
        refresh_outputs()
        return 0
    try:
        profile = load_profile(args.profile)
        if args.command == "notebooks":
            extra = {"01": {"train_teacher": True}} if args.train_teacher else {}
            out = run_notebooks(select(args.only, args.start), args.profile, extra)
            print(f"[ddkit] executed notebooks in {out}", file=sys.stderr)
            return 0
        if args.command == "ship-teacher":
            run = load_run(args.run_dir) if args.run_dir else None
            record = ship_teacher(profile, run=run)
            print(json.dumps({k: v for k, v in record.items() if k != "config"}))
            return 0
        if args.command == "train" and args.role == "teacher":
            runs = [train(profile.teacher_config())]
        elif args.command == "train":
            runs = [_student(profile, args)]
        else:
            teacher_cfg, teacher_run = teacher_model(profile)
            args.kd, args.feature, args.layers = "soft", "spectral", "first_last"
            runs = [r for r in (teacher_run, _student(profile, args)) if r is not None]
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for run in runs:
        print(json.dumps(_report(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
