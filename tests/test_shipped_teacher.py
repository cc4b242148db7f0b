"""The teacher shipped with the kit: loads through timm, scores what its run recorded, converged."""
import json

import pandas as pd
import pytest
import torch

from ddkit import study
from ddkit.data import build_dataset
from ddkit.models import SHIPPED_TEACHER, create_model
from ddkit.train import evaluate

pytestmark = pytest.mark.skipif(not SHIPPED_TEACHER.exists(), reason="no shipped teacher yet")


@pytest.fixture(scope="module")
def record():
    return study.shipped_teacher_record()


def test_shipped_teacher_scores_its_recorded_accuracy(record):
    model = create_model("ddkit_vit_teacher_fmnist", pretrained=True)
    test_set = build_dataset("fashion_mnist", "test")
    loader = torch.utils.data.DataLoader(test_set, batch_size=500)
    measured = evaluate(model, loader, torch.device("cpu"))["test_acc1"]
    assert measured == pytest.approx(record["final_acc1"], abs=0.02)
    assert record["final_acc1"] >= 88.0


def test_shipped_teacher_converged(record):
    log = pd.read_json(study.SHIPPED_LOG, lines=True)
    assert len(log) == record["epochs"]
    last = log["test_acc1"].tail(3)
    assert last.max() - last.min() < 0.5                  # accuracy has plateaued


def test_shipped_dynamics_table_covers_every_checkpoint(record):
    table = study.shipped_teacher_dynamics()
    assert sorted(table["epoch"].unique()) == list(range(record["epochs"]))
    assert table["layer"].nunique() == 8 and table["metric"].nunique() == 11
    assert table["value"].notna().all()


def test_record_names_its_recipe(record):
    assert record["config"]["model"]["name"] == "ddkit_vit_teacher_fmnist"
    assert json.dumps(record["config"])  # plain data
