"""The teachers shipped with the kit: each loads through timm, scores what its run recorded,
had converged, and ships the per-layer metrics of every kept checkpoint."""
import json

import pandas as pd
import pytest
import torch

from ddkit.core.anatomy import model_depth
from ddkit.core.config import IDENTITY_DEFAULTS, config_hash, load_profile
from ddkit.core.data import build_dataset
from ddkit.core.models import SHIPPED_TEACHERS, create_model, shipped_teacher
from ddkit.runs import store
from ddkit.runs.train import evaluate
from ddkit.studies import study, sweep

SHIPPED = [name for name, t in SHIPPED_TEACHERS.items() if t.weights.exists()]
# top-1 a shipped teacher must reach on its task (chance: 10 % / 1 %): Fashion-MNIST's ViTs reach
# about 90 %; a mosaic is labelled by one item among distractors (K = 10) or by two (K = 100)
FLOOR = {"fashion_mnist": 88.0, "fashion_mosaic_k10": 80.0, "fashion_mosaic_k100": 60.0}
# the phase map's teachers are a task-complexity dial: their last epochs' rise is reported
# (docs/results.md, the map's teacher table), not required to be flat
PLATEAU_REPORTED = ("phase_map",)


def test_the_default_teacher_is_shipped():
    assert "ddkit_vit_teacher_fmnist" in SHIPPED


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    return request.param, study.shipped_teacher_record(request.param)


def test_shipped_teacher_scores_its_recorded_accuracy(shipped):
    name, record = shipped
    model = create_model(name, pretrained=True)
    untrained_head = bool(record["config"].get("mae"))   # the MAE encoder: its record holds the
    # kNN monitor's top-1 and its head is untrained (the control's premise): 1000 images show it
    data = record["config"]["data"]
    test_set = build_dataset(data["name"], "test", subset=1000 if untrained_head else None,
                             seed=record["config"]["seed"])
    loader = torch.utils.data.DataLoader(test_set, batch_size=500)
    measured = evaluate(model, loader, torch.device("cpu"))["test_acc1"]
    if untrained_head:
        assert measured < 30.0
        return
    assert measured == pytest.approx(record["final_acc1"], abs=0.02)
    probe = record["config"]["optim"].get("trainable") == "head"
    assert record["final_acc1"] >= (70.0 if probe else FLOOR[data["name"]])


def test_shipped_teacher_converged(shipped):
    name, record = shipped
    log = study.shipped_teacher_log(name)
    assert len(log) == record["epochs"]
    last = log["test_acc1"].tail(3)
    if shipped_teacher(name).profile in PLATEAU_REPORTED:   # the committed table reports it
        folder = store.figure_dir(shipped_teacher(name).profile)
        table = pd.read_csv(folder / "teachers.csv")
        reported = table.loc[table["teacher"] == name, "rise_last3"].unique()
        assert reported == pytest.approx([last.iloc[-1] - last.iloc[0]])
        return
    assert last.max() - last.min() < 0.5                  # accuracy has plateaued


def test_shipped_dynamics_table_covers_every_checkpoint(shipped):
    name, record = shipped
    table = study.shipped_teacher_dynamics(name)
    every = record["config"]["save_every"]
    kept = [e for e in range(record["epochs"]) if (e + 1) % every == 0 or e == record["epochs"] - 1]
    assert sorted(table["epoch"].unique()) == kept
    assert table["layer"].nunique() == model_depth(name)
    assert table["value"].notna().all()


def test_record_names_its_recipe(shipped):
    name, record = shipped
    teacher = shipped_teacher(name)
    assert record["config"]["model"]["name"] == name
    assert record["profile"] == teacher.profile
    assert record["hash"] == json.loads(json.dumps(record))["hash"]  # plain data
    # the profile that names this teacher trains exactly the recorded recipe
    profile = load_profile(teacher.profile)
    recipe = next(v.teacher_config() for v in sweep.settings(profile).values()
                  if v.teacher.model.name == name) if profile.probe is None or \
        name != profile.probe.model.name else profile.teacher_config()
    if profile.probe is not None and name == profile.probe.model.name:   # probed on the encoder
        recipe = profile.probe_config(shipped_teacher(profile.teacher.model.name).weights)
        assert record["hash"] == config_hash(recipe)
        return
    for part in ("model", "optim", "data"):
        wanted = json.loads(json.dumps(getattr(recipe, part).__dict__))
        if part == "optim":   # keys added later stay out of a record while at their default
            later = {k[-1]: v for k, v in IDENTITY_DEFAULTS.items() if k[0] == "optim"}
            recorded = {**{k: v for k, v in later.items() if wanted.get(k) == v},
                        **record["config"][part]}
        else:
            recorded = record["config"][part]
        assert recorded == wanted, part


def test_unknown_shipped_teacher_is_named():
    with pytest.raises(ValueError, match="no shipped teacher for model 'vit_tiny_patch16_224'"):
        shipped_teacher("vit_tiny_patch16_224")


def test_an_unfinished_teacher_run_ships_its_last_kept_epoch_and_says_so(tmp_path, monkeypatch):
    from ddkit.core import models
    from ddkit.core.config import replace
    from ddkit.runs.train import train
    monkeypatch.setattr(models, "SHIPPED_DIR", tmp_path / "shipped")
    profile = replace(load_profile("smoke"), **{"teacher.optim.epochs": 3})
    run = train(profile.teacher_config(), progress=False, root=tmp_path / "runs")
    # the run as it stood during its third epoch: two epochs logged and kept, no summary
    lines = run.dir.log.read_text().splitlines(keepends=True)
    run.dir.log.write_text("".join(lines[:2]))
    for path in (run.dir.summary, run.dir.final_weights, run.dir.epoch_weights(2)):
        path.unlink()
    with pytest.raises(ValueError, match="has not finished training.*--unfinished"):
        study.ship_teacher(profile, run=run, progress=False)
    record = study.ship_teacher(profile, n=50, run=run, progress=False, unfinished=True)
    assert (record["epochs"], record["scheduled_epochs"], record["complete"]) == (2, 3, False)
    assert record["final_acc1"] == json.loads(lines[1])["test_acc1"]
    assert record["hash"] == run.dir.path.name.rsplit("-", 1)[1]
    target = shipped_teacher(profile.teacher.model.name, must_exist=False)
    assert target.weights.read_bytes() == run.dir.epoch_weights(1).read_bytes()
    assert target.log.read_text() == "".join(lines[:2])
    assert sorted(pd.read_csv(target.dynamics)["epoch"].unique()) == [0, 1]
