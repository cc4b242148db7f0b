"""The package's shape: six wings that only import downward, two faces on top, no import cycle.

    core      config, data, mosaic, models, hooks, losses, mae, tables
    signals   metrics, the C kernel, dynamics, the image bootstrap, the mismatch metric
    runs      the run store, training, progress, the worker pool, Slurm
    verdicts  statistics, SESOI, claims, evidence, the official release's numbers
    studies   the teachers and the ablation, grids, sweeps, controls, remedies, the phase map
    publish   figures, generated documents, the notebook pipeline, ``ddkit analyze``'s report
    faces     cli, nb

Every ``ddkit`` import counts, at module top or inside a function. A module's wing is its folder;
a folder that is not a wing, or a module outside the wings and faces, fails the test. No module is
a facade: a name lives in one module, and every user (the kit, the tests, the benchmarks, the
notebooks) imports it from there.
"""
from __future__ import annotations

import ast
import functools
import json
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ddkit"
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
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
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


# --------------------------------------------------------------------------- no facades

REPO = PACKAGE.parent
USERS = ("ddkit", "tests", "benchmarks")    # the folders whose .py files are read, with notebooks/


def _dotted(module: str, node: ast.ImportFrom) -> str:
    """The absolute dotted module of ``from <node.module> import ...`` inside ``ddkit.<module>``."""
    if not node.level:
        return node.module or ""
    package = ["ddkit", *module.split(".")][:-node.level]
    return ".".join(package + ([node.module] if node.module else []))


def bindings(module: str) -> tuple[set[str], dict[str, str]]:
    """(names ``module`` defines at its top, {public name: the ddkit module it imports it from} at
    its top). A name both imported and assigned counts as defined."""
    return _bindings(PACKAGE, module)


@functools.cache
def _bindings(package: Path, module: str) -> tuple[set[str], dict[str, str]]:
    tree = ast.parse((package / (module.replace(".", "/") + ".py")).read_text())
    defined: set[str] = set()
    imported: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            origin = _dotted(module, node)
            if origin == "ddkit" or origin.startswith("ddkit."):
                imported.update({a.asname or a.name: origin for a in node.names
                                 if not (a.asname or a.name).startswith("_")})
        elif not isinstance(node, ast.Import):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defined.add(sub.name)
                elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    defined.add(sub.id)
    return defined, {k: v for k, v in imported.items() if k not in defined}


def passed_on(module: str) -> dict[str, str]:
    """{name: its home} of the ddkit names ``module`` imports and does not define."""
    return bindings(module)[1]


@pytest.mark.parametrize("module", modules())
def test_no_module_lists_a_foreign_name_in_all(module):
    """``__all__`` lists what a module defines; a name imported from another ddkit module is
    imported from its home by whoever needs it."""
    tree = ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text())
    listed = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)]
    foreign = {n: passed_on(module)[n] for names in listed for n in names if n in passed_on(module)}
    assert not foreign, f"ddkit.{module} re-exports {foreign}: import each from its home instead"


@functools.cache
def _known(package: Path) -> frozenset[str]:
    return frozenset(modules())


def user_sources() -> list[tuple[str, str]]:
    """(where, Python source) of every module under ``USERS`` and every notebook (its code cells
    in one source, IPython magics blanked)."""
    out = [(str(p.relative_to(REPO)), p.read_text())
           for folder in USERS for p in sorted((REPO / folder).rglob("*.py"))]
    for p in sorted((REPO / "notebooks").rglob("*.ipynb")):
        cells = [c for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code"]
        text = "\n".join("".join(c["source"]) for c in cells)
        out.append((str(p.relative_to(REPO)),
                    "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                              for line in text.splitlines())))
    return out


def reexport_uses(where: str, source: str) -> list[str]:
    """Each place in ``source`` that reaches a ddkit name through a module that only imports it:
    ``from ddkit.m import name`` or ``m.name`` (``m`` bound by ``from ddkit.x import m``)."""
    known = _known(PACKAGE)
    aliases: dict[str, str] = {}
    found: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddkit"):
            base = node.module.removeprefix("ddkit").removeprefix(".")
            for a in node.names:
                full = f"{base}.{a.name}" if base else a.name
                if full in known:
                    aliases[a.asname or a.name] = full
                elif base in known and a.name in passed_on(base):
                    found.append(f"{where}:{node.lineno}: from ddkit.{base} import {a.name} "
                                 f"(its home: {passed_on(base)[a.name]})")
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name.removeprefix("ddkit.") for a in node.names
                            if a.asname and a.name.removeprefix("ddkit.") in known})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and node.attr in passed_on(aliases[node.value.id]):
            home = passed_on(aliases[node.value.id])[node.attr]
            found.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr} (its home: {home})")
    return found


def test_every_name_is_imported_from_its_home():
    """No module is a facade: the kit, the tests, the benchmarks and the notebooks import each
    ddkit name from the module that defines it."""
    found = [hit for where, source in user_sources() for hit in reexport_uses(where, source)]
    assert not found, "import these from their home module:\n" + "\n".join(found)


def test_the_checker_sees_a_reexport(tmp_path, monkeypatch):
    """The facade checks can fail: on a planted package they find the planted re-export."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "home.py").write_text("X = 1\n")
    (tmp_path / "core" / "facade.py").write_text(
        "from ddkit.core.home import X\nfrom .home import X as Y\nZ = 2\n__all__ = ['X', 'Z']\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert passed_on("core.facade") == {"X": "ddkit.core.home", "Y": "ddkit.core.home"}
    with pytest.raises(AssertionError, match=r"re-exports \{'X': 'ddkit.core.home'\}"):
        test_no_module_lists_a_foreign_name_in_all("core.facade")
    user = ("from ddkit.core import facade\nfrom ddkit.core.facade import Y, Z\n"
            "import ddkit.core.facade as f\nfacade.X, facade.Z, f.Y\n")
    assert reexport_uses("user.py", user) == [
        "user.py:2: from ddkit.core.facade import Y (its home: ddkit.core.home)",
        "user.py:4: facade.X (its home: ddkit.core.home)",
        "user.py:4: f.Y (its home: ddkit.core.home)"]
