"""The package's shape: six wings that only import downward, two faces on top, no import cycle.

    core      config, data, mosaic, models, hooks, losses, mae, tables
    signals   metrics, the C kernel, dynamics, the image bootstrap, the mismatch metric
    runs      the run store, training, progress, the worker pool, Slurm
    verdicts  statistics, SESOI, claims, evidence, the official release's numbers
    studies   the teachers and the ablation, grids, sweeps, controls, remedies, the phase map
    publish   figures, generated documents, the notebook pipeline, ``ddkit analyze``'s report
    faces     cli, nb

Every ``ddkit`` import counts, at module top or inside a function. A module's wing is its folder;
a folder that is not a wing, or a module outside the wings and faces, fails the test.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ddkit"
WINGS = ("core", "signals", "runs", "verdicts", "studies", "publish")
FACES = ("cli", "nb")
LEVEL = {**{w: i for i, w in enumerate(WINGS)}, "faces": len(WINGS)}


def modules() -> list[str]:
    """Dotted names under ddkit of every module (``core.config``, ``cli``)."""
    out = []
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).with_suffix("")
        if rel.name != "__init__":
            out.append(".".join(rel.parts))
    return out


def wing(module: str) -> str:
    head = module.split(".")[0]
    return "faces" if module in FACES else head


def imports(module: str) -> set[str]:
    """The ddkit modules (dotted, as ``modules``) ``module`` imports anywhere in its source."""
    tree = ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text())
    known = set(modules())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddkit"):
            base = node.module.removeprefix("ddkit").removeprefix(".")
            for a in node.names:
                full = f"{base}.{a.name}" if base else a.name
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("ddkit.") for a in node.names if a.name.startswith("ddkit.")}
    return {m for m in found if m in known}


def test_every_module_is_in_a_wing_or_a_face():
    stray = [m for m in modules() if wing(m) not in LEVEL]
    assert not stray, f"put the module(s) in a wing {WINGS} or make them a face {FACES}: {stray}"
    top = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert top == sorted(WINGS), f"the sub-packages of ddkit are the wings {WINGS}, found {top}"


@pytest.mark.parametrize("module", modules())
def test_no_module_imports_from_a_layer_above(module):
    up = sorted(m for m in imports(module) if LEVEL[wing(m)] > LEVEL[wing(module)])
    assert not up, f"{module} ({wing(module)}) imports {up} from a wing above"


def test_the_import_graph_has_no_cycle():
    graph = {m: imports(m) - {m} for m in modules()}
    state: dict[str, int] = {}          # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in modules():
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: on a planted package they find what was planted."""
    for w in ("core", "publish"):
        (tmp_path / w).mkdir()
        (tmp_path / w / "__init__.py").write_text("")
    (tmp_path / "core" / "config.py").write_text("from ddkit.publish import plots\n")
    (tmp_path / "publish" / "plots.py").write_text("def f():\n    from ddkit.core.config import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert imports("core.config") == {"publish.plots"}
    assert imports("publish.plots") == {"core.config"}
    with pytest.raises(AssertionError, match="wing above"):
        test_no_module_imports_from_a_layer_above("core.config")
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_the_import_graph_has_no_cycle()


def lazy_imports() -> list[tuple[str, int, str]]:
    """``(module, line, source line)`` of every import inside a function of a ddkit module."""
    found = []
    for module in modules():
        source = (PACKAGE / (module.replace(".", "/") + ".py")).read_text()
        lines = source.splitlines()
        seen: set[int] = set()
        for fn in ast.walk(ast.parse(source)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in seen:
                        seen.add(id(node))
                        found.append((module, node.lineno, lines[node.lineno - 1]))
    return found


def test_few_imports_inside_functions():
    """Imports belong at module top (the layers rule out the cycles they once dodged); the few
    left in a function keep a slow dependency off a path that does not need it, and say which."""
    found = lazy_imports()
    assert len(found) < 15, f"{len(found)} imports inside functions: move them to module top"
    unexplained = [f"{m}.py:{n}: {line.strip()}" for m, n, line in found if "# lazy:" not in line]
    assert not unexplained, "say why each is lazy (`# lazy: <reason>` on its line):\n" + \
        "\n".join(unexplained)


def test_long_modules_say_why_they_are_long():
    """Small modules, one concept each: a module past 450 lines says in its docstring why it is
    kept whole."""
    long = []
    for module in modules():
        source = (PACKAGE / (module.replace(".", "/") + ".py")).read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        if len(source.splitlines()) > 450 and "Over 450 lines on purpose" not in doc:
            long.append(module)
    assert not long, f"over 450 lines with no reason in the docstring: {long}"
