"""A pre-registration is committed before its runs, and not edited after them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREREG = "docs/preregistration.md"
RESULTS = "figures/map_replication/runs.csv"


def _git(*args: str, root: Path = ROOT) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _commits(path: str, root: Path = ROOT) -> list[str]:
    """Commits touching ``path``, oldest first."""
    return _git("log", "--format=%H", "--reverse", "--", path, root=root).split()


def order_problem(root: Path, prereg: str, results: str) -> str | None:
    """Why the pre-registration ``prereg`` does not stand before ``results`` in the repository at
    ``root`` (None when it does): the commit adding it must be an ancestor of the first commit of
    ``results``, and its text now (the checkout's) must be its text at that commit (an edit made after the results,
    even one reverted later, leaves the registered text; a changed one does not)."""
    added, first_result = _commits(prereg, root)[0], _commits(results, root)[0]
    if added == first_result:
        return "the pre-registration was committed with its results"
    before = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", added,
                             first_result]).returncode == 0
    if not before:
        return (f"{prereg} was added in {added[:10]}, which is not before {first_result[:10]}, "
                f"the first commit of {results}")
    if _git("show", f"{first_result}:{prereg}", root=root) != (root / prereg).read_text().strip():
        return f"{prereg} changed after {first_result[:10]}, the first commit of {results}"
    return None


@pytest.fixture(scope="module")
def history():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the order of commits cannot be read")
    if _git("rev-parse", "--is-shallow-repository") == "true":
        pytest.skip("a shallow clone: the pre-registration's commit is not in the history")
    return True


def test_the_preregistration_precedes_every_result_of_its_runs(history):
    assert _commits(PREREG), f"{PREREG} is not committed"
    if not _commits(RESULTS):
        pytest.skip(f"{RESULTS} is not committed yet: the replication has not been published")
    problem = order_problem(ROOT, PREREG, RESULTS)
    assert problem is None, problem


@pytest.mark.parametrize("story, says", [
    (["results", "plan"], "is not before"),
    (["plan", "results", "plan edited"], "changed after"),
    (["plan", "results"], None),
    (["plan", "results", "plan edited", "plan restored"], None),
])
def test_the_check_sees_a_preregistration_written_or_changed_after_its_results(tmp_path, story,
                                                                                 says):
    """The order check can fail: in planted repositories the results come first, or the plan
    changes after them; a plan edited and restored to its registered text stands."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    run("init", "-q")
    run("config", "user.email", "t@t"), run("config", "user.name", "t")
    texts = {"plan": "plan\n", "plan edited": "plan, edited\n", "plan restored": "plan\n"}
    for step in story:
        if step.startswith("results"):
            (repo / "results.csv").write_text("x\n")
        if step in texts:
            (repo / "prereg.md").write_text(texts[step])
        run("add", "."), run("commit", "-qm", step)
    problem = order_problem(repo, "prereg.md", "results.csv")
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem
