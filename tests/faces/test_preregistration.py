"""A pre-registration is committed before its runs, and not edited after them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREREG = "docs/preregistration.md"
RESULTS = "figures/map_replication/runs.csv"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _commits(path: str, *extra: str) -> list[str]:
    """Commits touching ``path``, oldest first."""
    return _git("log", "--format=%H", "--reverse", *extra, "--", path).split()


@pytest.fixture(scope="module")
def history():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the order of commits cannot be read")
    if _git("rev-parse", "--is-shallow-repository") == "true":
        pytest.skip("a shallow clone: the pre-registration's commit is not in the history")
    return True


def test_the_preregistration_precedes_every_result_of_its_runs(history):
    prereg = _commits(PREREG)
    assert prereg, f"{PREREG} is not committed"
    results = _commits(RESULTS)
    if not results:
        pytest.skip(f"{RESULTS} is not committed yet: the replication has not been published")
    # the last edit of the pre-registration is an ancestor of the first commit with results
    last_edit, first_result = prereg[-1], results[0]
    assert last_edit != first_result, "the pre-registration was committed with its results"
    ancestor = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", last_edit,
                               first_result]).returncode == 0
    assert ancestor, (f"{PREREG} was last changed in {last_edit[:10]}, which is not before "
                      f"{first_result[:10]}, the first commit of {RESULTS}")


def test_the_check_sees_a_preregistration_written_after_its_results(tmp_path):
    """The order check can fail: in a planted repository the results come first."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    run("init", "-q")
    run("config", "user.email", "t@t"), run("config", "user.name", "t")
    (repo / "results.csv").write_text("x\n")
    run("add", "."), run("commit", "-qm", "results")
    (repo / "prereg.md").write_text("plan\n")
    run("add", "."), run("commit", "-qm", "plan")
    first_result = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", "--", "results.csv"],
                                  capture_output=True, text=True).stdout.split()[-1]
    last_edit = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", "-1", "--", "prereg.md"],
                               capture_output=True, text=True).stdout.strip()
    assert subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", last_edit,
                           first_result]).returncode != 0
