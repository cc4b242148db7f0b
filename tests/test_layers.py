"""The package's shape: three layers that only import downward, and no import cycle.

    core        config, data, models, hooks, losses, metrics, stats, store, ... (no study logic)
    study       training, the ablation grid, sweeps, claims and their evidence, the controls
    publishing  figures, the notebooks' helpers, the pipeline, generated documents, the CLI

Every ``ddkit`` import counts, at module top or inside a function. A new module must be put in
a layer here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ddkit"
LAYERS = {
    "core": {"config", "data", "models", "hooks", "losses", "metrics", "stats", "store",
             "progress", "native", "mae", "reference", "tables", "mosaic"},
    "study": {"train", "task", "parallel", "teacher_cache", "study", "sweep", "regime", "claims",
              "evidence", "dynamics", "formation", "controls", "control_verdicts", "mismatch",
              "cluster", "sesoi", "image_bootstrap", "grid", "phase_map",
              "remedy_verdicts"},
    "publishing": {"plots", "control_plots", "map_plots", "map_docs", "nb", "pipeline", "readme",
                   "report", "cli"},
}
LEVEL = {module: i for i, modules in enumerate(LAYERS.values()) for module in modules}


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imports(module: str) -> set[str]:
    """The ddkit modules ``module`` imports anywhere in its source."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
            elif node.module == "ddkit":
                found |= {a.name for a in node.names}
            elif node.module and node.module.startswith("ddkit."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ddkit.")}
    return found & set(modules())


def test_every_module_has_a_layer():
    assert not set(modules()) - set(LEVEL), "put the new module(s) in a layer of LAYERS"


@pytest.mark.parametrize("module", modules())
def test_no_module_imports_from_a_layer_above(module):
    up = sorted(m for m in imports(module) if LEVEL[m] > LEVEL[module])
    assert not up, f"{module} ({_layer(module)}) imports {up} from a layer above"


def _layer(module: str) -> str:
    return next(name for name, mods in LAYERS.items() if module in mods)


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
    (tmp_path / "config.py").write_text("from ddkit import plots\n")
    (tmp_path / "plots.py").write_text("def f():\n    from ddkit.config import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert imports("config") == {"plots"} and imports("plots") == {"config"}
    with pytest.raises(AssertionError, match="layer above"):
        test_no_module_imports_from_a_layer_above("config")
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_the_import_graph_has_no_cycle()


def lazy_imports() -> list[tuple[str, int, str]]:
    """``(module, line, source line)`` of every import inside a function of a ddkit module."""
    found = []
    for module in modules():
        source = (PACKAGE / f"{module}.py").read_text()
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
        source = (PACKAGE / f"{module}.py").read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        if len(source.splitlines()) > 450 and "Over 450 lines on purpose" not in doc:
            long.append(module)
    assert not long, f"over 450 lines with no reason in the docstring: {long}"
