"""environment.yml (conda) and pyproject.toml (pip) install the same things."""

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


def test_ranges_admit_the_torch_this_project_is_tested_with():
    deps = {d.split(">=")[0]: d for d in _pyproject()["dependencies"]}
    for name, tested in (("torch", (2, 14, 1)), ("torchvision", (0, 29, 1))):
        spec = deps[name]
        assert set(spec) - set("torchvision>=.0123456789") == set(), spec  # a lower bound only
        assert tuple(map(int, spec.split(">=")[1].split("."))) <= tested
