"""The package's shape, checked against its one map: docs/layers.md.

The page's tables give every module a layer; here the code is read with ``ast`` (function-local imports count) and
checked against them: every module is on the map and every module on the map exists, a module imports only its own
layer and those below, nothing imports a command, there is no import circle, and each lesson module loads alone in a
fresh interpreter. A module the course builds opens its docstring with the page's "course" cell.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minivb"
MAP = ROOT / "docs" / "layers.md"


def read_map() -> dict[str, tuple[int, str]]:
    """docs/layers.md → ``{module name: (layer, course cell)}``, from the table rows under each ``## N.`` heading."""
    found, layer = {}, None
    for line in MAP.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## (\d)\. ", line)
        if heading:
            layer = int(heading.group(1))
        row = re.match(r"\| `([\w/]+\.py)` \|\s*([^|]*?)\s*\|", line)
        if row and layer is not None:
            parts = ["minivb", *Path(row.group(1)).with_suffix("").parts]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            assert name not in found, f"docs/layers.md lists {row.group(1)} twice"
            found[name] = (layer, row.group(2).strip())
    return found


LAYERS_AND_COURSE = read_map()
LAYERS = {name: layer for name, (layer, _) in LAYERS_AND_COURSE.items()}
LESSON = sorted(name for name, layer in LAYERS.items() if layer == 2)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
# The commands: what ``python -m`` runs (minivb/train.py, …, every __main__.py); layer 5 also holds bench's parts.
COMMANDS = {n for n, p in MODULES.items() if p.name == "__main__.py" or (p.parent == PACKAGE and LAYERS.get(n) == 5)}


def imports_of(name: str) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source (``from . import x`` → the module x)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # minivb.data.toy.HFLIP → minivb.data.toy
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_map_names_every_module_and_only_modules_that_exist():
    assert sorted(LAYERS) == sorted(MODULES), "add the module to docs/layers.md's tables (or remove a stale row)"
    assert set(LAYERS.values()) == {1, 2, 3, 4, 5}
    assert "minivb.train" in COMMANDS and "minivb.bench.__main__" in COMMANDS and "minivb.bench.loader" not in COMMANDS


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_layers_below_and_no_command(name):
    for target in sorted(GRAPH[name]):
        if target in name.split(".") or name.startswith(target + "."):
            continue  # importing one's own package (its __init__) is part of being in it
        assert target not in COMMANDS, f"{name} imports the command {target}: move what it needs into the library"
        # the same layer is allowed (model → encoder, evaluation → inference); test_no_import_circle keeps it a tree
        assert LAYERS[target] <= LAYERS[name], (
            f"{name} (layer {LAYERS[name]}) imports {target} (layer {LAYERS[target]})"
        )


def test_no_import_circle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if name.startswith(target + "."):
                continue  # a submodule importing its own package's __init__ (Python runs it first anyway)
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import circle: " + " → ".join(cycle))
            if state.get(target) is None:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])


def test_the_checker_sees_function_local_and_relative_imports():
    # minivb's __init__ imports the checkpoint code inside __getattr__; minivb.bench.contention's worker imports
    # minivb.bench.loader inside a function: both must be seen.
    assert "minivb.engine.checkpoint" in GRAPH["minivb"]
    assert "minivb.bench.loader" in GRAPH["minivb.bench.contention"]
    assert "minivb.engine.training" in GRAPH["minivb.train"] and "minivb.plumbing.cli" in GRAPH["minivb.train"]


def _loaded_by(statement: str) -> list[str]:
    """The minivb modules a fresh interpreter holds after ``statement``."""
    code = f"import json, sys; {statement}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('minivb'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.splitlines()[-1])


def test_the_lesson_loads_alone():
    # One interpreter per lesson module: importing it loads plumbing and lesson modules only (and the package's
    # __init__, which loads nothing) — no data set, no frame store, no GPU decoding, no download or checkpoint code.
    for name in LESSON:
        machinery = [m for m in _loaded_by(f"import {name}") if m != "minivb" and LAYERS.get(m, 0) > 2]
        assert not machinery, f"import {name} loads {machinery}"


def test_import_minivb_loads_nothing_and_load_checkpoint_is_there_on_first_use():
    assert _loaded_by("import minivb") == ["minivb"]
    assert "minivb.engine.checkpoint" in _loaded_by("import minivb; minivb.load_checkpoint")


@pytest.mark.parametrize("name", LESSON)
def test_a_lesson_module_says_where_the_course_builds_it(name):
    course = LAYERS_AND_COURSE[name][1]
    assert course.startswith(("Built in notebook", "Used by")), f"docs/layers.md gives {name} no notebook"
    docstring = ast.get_docstring(ast.parse(MODULES[name].read_text())) or ""
    assert " ".join(docstring.split()).startswith(course), f"{name}'s docstring should open with {course!r}"


def test_only_the_registry_names_a_data_set():
    # Data-set names may appear in the registry, in their own packages, and in argument help text; the code
    # outside them never compares a name ("toy", "k400") or keys a table by one.
    allowed = {
        "minivb.data.registry",
        "minivb.data.toy",
        "minivb.data.toy.__main__",
        "minivb.data.kinetics",
        "minivb.data.kinetics.__main__",
    }
    for name, path in MODULES.items():
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = [n.value for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
                assert not {"toy", "k400"} & set(names), f"{name}:{node.lineno} compares a data set's name"
            if isinstance(node, ast.Dict):
                keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
                assert not {"toy", "k400"} & set(keys), f"{name}:{node.lineno} keys a table by data-set name"
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                assert node.slice.value not in ("toy", "k400"), f"{name}:{node.lineno} looks a data set up by name"


def test_no_function_over_60_lines_and_no_class_over_8_constructor_parameters():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 60, f"{name}.{node.name} is {lines} lines; split it into named steps"
                if node.name == "__init__":
                    count = len(node.args.args) - 1 + len(node.args.kwonlyargs)
                    assert count <= 8, f"{name}: an __init__ at line {node.lineno} takes {count} parameters"
