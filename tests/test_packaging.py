"""environment.yml (conda) and pyproject.toml (pip) install the same things; the README states the floors."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    conda = [d for d in deps if isinstance(d, str)]
    return env, conda, pip


def test_environment_yml_pip_list_equals_pyproject():
    project = _pyproject()
    _, _, pip = _conda()
    requirements = [p for p in pip if not p.startswith("-e")]
    assert requirements == project["dependencies"] + project["optional-dependencies"]["dev"]
    assert "-e .[dev]" in pip  # and installs this package itself, with its dev extra


def test_environment_yml_python_satisfies_requires_python():
    env, conda, _ = _conda()
    assert env["name"] == "minivb"
    assert "pip" in conda
    python = next(d for d in conda if d.startswith("python="))
    major, minor = map(int, python.split("=")[1].split(".")[:2])
    lowest = _pyproject()["requires-python"].removeprefix(">=")
    assert (major, minor) >= tuple(map(int, lowest.split(".")))


def _version(text):
    """'2.11' → (2, 11, 0); '5.1.0.95' → (5, 1, 0, 95)."""
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (3 - len(parts))


def _requirements():
    """{name: floor} for every dependency, the dev extra's included (each a lower bound only)."""
    project = _pyproject()
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert all(re.fullmatch(r"[a-z0-9-]+>=[0-9.]+", s) for s in specs), specs
    return dict(s.split(">=") for s in specs)


def test_ranges_admit_the_torch_of_this_machine_and_of_the_gpu_machine():
    floors = _requirements()
    this_machine = {"torch": "2.14.1", "torchvision": "0.29.1"}
    gpu_machine = {"torch": "2.11.0", "torchvision": "0.26.0"}
    for name, tested in [*this_machine.items(), *gpu_machine.items()]:
        assert _version(floors[name]) <= _version(tested), (name, tested)


def test_readme_tested_versions_are_the_floors():
    # The README's table says which releases `pytest --nbval` was run with; its floors are pyproject's.
    readme = (ROOT / "README.md").read_text()
    row = re.compile(r"^\| `(?P<name>[a-z0-9-]+)` \| (?P<floor>[0-9.]+) \| (?P<newest>[0-9.]+) \|$", re.M)
    rows = {m["name"]: (m["floor"], m["newest"]) for m in row.finditer(readme)}
    floors = _requirements()
    assert set(rows) == set(floors), "the README's tested-versions table lists every dependency"
    for name, floor in floors.items():
        assert _version(rows[name][0]) == _version(floor), (name, rows[name], floor)
        assert _version(rows[name][0]) <= _version(rows[name][1]), name
