"""The package's shape: every module sits in a layer and imports only its own layer and those below it (docs/layers.md).

Read from the source with ``ast`` (function-local imports count), so an import hidden inside a function
cannot build a circle or make the library lean on a command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minivb"

# Layer of every module (docs/layers.md draws the same picture): 1 core, 2 data, 3 machinery, 4 applications,
# 5 what only commands use (cli, the benchmarks' parts), 6 the commands (``python -m minivb.X``).
LAYERS = {
    "minivb": 4,  # the package's front door re-exports load_checkpoint
    "minivb.plumbing.checks": 1,
    "minivb.plumbing.files": 1,
    "minivb.plumbing.signals": 1,
    "minivb.video": 1,
    "minivb.encoder": 1,
    "minivb.attention": 1,
    "minivb.transformer": 1,
    "minivb.model": 1,
    "minivb.data": 2,
    "minivb.data.clips": 2,
    "minivb.data.framestore": 2,
    "minivb.data.device_decode": 2,
    "minivb.data.loader": 2,
    "minivb.data.kinetics.download": 2,
    "minivb.data.toy": 2,
    "minivb.data.kinetics": 2,
    "minivb.data.registry": 2,
    "minivb.plumbing.device": 3,
    "minivb.plumbing.distributed": 3,
    "minivb.metrics": 3,
    "minivb.plumbing.runs": 3,
    "minivb.engine.checkpoint": 3,
    "minivb.loop": 3,
    "minivb.engine.training": 4,
    "minivb.engine.evaluation": 4,
    "minivb.engine.inference": 4,
    "minivb.retrieval": 4,
    "minivb.summarization": 4,
    "minivb.attention_maps": 4,
    "minivb.visual_words": 4,
    "minivb.pretraining": 4,
    "minivb.plumbing.cli": 5,
    "minivb.exercises": 5,
    "minivb.bench": 5,
    "minivb.bench.report": 5,
    "minivb.bench.decode": 5,
    "minivb.bench.loader": 5,
    "minivb.bench.flops": 5,
    "minivb.bench.contention": 5,
    "minivb.train": 6,
    "minivb.evaluate": 6,
    "minivb.predict": 6,
    "minivb.retrieve": 6,
    "minivb.summarize": 6,
    "minivb.pretrain": 6,
    "minivb.data.toy.__main__": 6,
    "minivb.data.kinetics.__main__": 6,
    "minivb.bench.__main__": 6,
}
COMMANDS = {name for name, layer in LAYERS.items() if layer == 6}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


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


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYERS), (
        "a module was added or removed: give it a layer here and a line in docs/layers.md"
    )


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
    # minivb.summarization imports the toy set at module level; minivb.bench.contention's worker imports
    # minivb.bench.loader inside a function: both must be seen.
    assert "minivb.data.toy" in GRAPH["minivb.summarization"]
    assert "minivb.bench.loader" in GRAPH["minivb.bench.contention"]
    assert "minivb.engine.training" in GRAPH["minivb.train"] and "minivb.plumbing.cli" in GRAPH["minivb.train"]


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
