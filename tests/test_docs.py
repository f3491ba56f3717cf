"""The README and docs/ stay true: links resolve, commands name real modules, examples write under runs/ or data/,
the README reads as a learner's first screen (tests/test_layers.py checks docs/layers.md, the package's map)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`]+)`")
MODULE = re.compile(r"-m\s+(minivb(?:\.\w+)*)")

# Options whose value is a path that a command writes (or makes) — never the repository root.
WRITES = ("--out", "--json", "--index", "--data-root", "--root", "--confusion")
WRITE_PLACES = ("runs/", "data/", "<", "$")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", _text(path)), re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", _text(path)))


def _commands(path: Path) -> list[str]:
    """Every command line in a document: lines of fenced blocks (continuations joined, comments dropped) and
    inline code spans that run a minivb module."""
    text = _text(path)
    commands = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if "-m minivb" in line:
                commands.append(line)
    for span in SPAN.findall(FENCE.sub("", text)):
        span = " ".join(span.split())
        if "-m minivb" in span:
            commands.append(span)
    return commands


def test_the_documents_exist():
    assert (ROOT / "docs").is_dir()
    for name in ["training", "applications", "pretraining", "performance", "layers"]:
        assert (ROOT / "docs" / f"{name}.md").is_file(), name


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_relative_links_resolve(doc):
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, …; a pure anchor in the same file
        file, _, fragment = target.partition("#")
        resolved = (doc.parent / file).resolve()
        if not resolved.exists():
            broken.append(target)
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{_name(doc)}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_anchors_within_a_document_resolve(doc):
    anchors = _anchors(doc)
    missing = [t for t in _links(doc) if t.startswith("#") and t[1:] not in anchors]
    assert not missing, f"{_name(doc)}: {missing}"


def test_readme_is_short_and_shows_the_notebooks_first():
    lines = _text(ROOT / "README.md").splitlines()
    assert len(lines) <= 200, len(lines)
    first = "\n".join(lines[:60])
    assert "\n## The notebooks\n" in first, "the notebooks table starts within the README's first 60 lines"
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) == 10, notebooks
    rows = [line for line in lines[:60] if line.startswith("| [")]
    for name in notebooks:
        assert any(f"](notebooks/{name})" in row for row in rows), f"{name}: no table row within the first 60 lines"


def test_readme_quick_start_has_the_lines_ci_runs():
    # .ci/run copies these lines verbatim.
    blocks = FENCE.findall(_text(ROOT / "README.md"))
    lines = {line.strip() for block in blocks for line in block.splitlines()}
    for line in [
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"',
        "python3 -m venv .venv && . .venv/bin/activate",
        "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu",
        'pip install -e ".[dev]"',
        "python -m minivb.train",
        "pytest --nbval",
    ]:
        assert line in lines, line


def _module_exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (base / "__main__.py").is_file()


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_commands_name_modules_that_exist(doc):
    missing = {m for command in _commands(doc) for m in MODULE.findall(command) if not _module_exists(m)}
    assert not missing, f"{_name(doc)}: {sorted(missing)}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_examples_write_under_runs_or_data(doc):
    wrong = []
    for command in _commands(doc):
        words = command.replace("=", " ").split()
        for option, value in zip(words, words[1:] + [""]):
            if option in WRITES and value and not value.startswith(("-", "[", "]", "#")):
                if not value.startswith(WRITE_PLACES):
                    wrong.append(f"{option} {value}: {command}")
    assert not wrong, f"{_name(doc)}: " + "\n".join(wrong)


def test_the_commands_found_are_the_documented_ones():
    # The extraction above must see the commands, or the two tests before it prove nothing.
    commands = [c for doc in DOCS for c in _commands(doc)]
    for module in [
        "minivb.train",
        "minivb.evaluate",
        "minivb.predict",
        "minivb.retrieve",
        "minivb.summarize",
        "minivb.pretrain",
        "minivb.data.toy",
        "minivb.data.kinetics",
        "minivb.bench",
    ]:
        assert any(re.search(rf"-m {re.escape(module)}(\s|$)", c) for c in commands), module
    assert any("--out runs/" in c for c in commands)


def _parser_of(module: str):
    import importlib

    base = ROOT.joinpath(*module.split("."))
    name = f"{module}.__main__" if (base / "__main__.py").is_file() else module
    return importlib.import_module(name).build_parser()


def test_every_documented_command_parses_as_written(capsys):
    """Each ``python -m minivb.X ARGS`` in the README and docs is accepted by X's own parser (commands with
    placeholders such as ``runs/<run>``, ``…``, ``$ROOT`` or ``[--option]`` excepted: their values are the reader's)."""
    import shlex

    failures, parsed = [], 0
    for doc in DOCS:
        for command in _commands(doc):
            try:
                words = shlex.split(command)
            except ValueError:
                continue
            for i, word in enumerate(words[:-1]):
                if word != "-m" or not words[i + 1].startswith("minivb"):
                    continue
                args = []
                for w in words[i + 2 :]:
                    if w in ("&&", "||", "|", ";", ">", "2>&1") or w.startswith(">"):
                        break
                    args.append(w)
                listing = any(f" {sep} " in command.split(words[i + 1], 1)[1] for sep in "/|")  # "index | search"
                placeholder = listing or any(w == "--help" or any(c in w for c in "…<$[") for w in args)
                if not args or placeholder:
                    continue  # a bare mention, a list of subcommands, a placeholder, or --help
                try:
                    _parser_of(words[i + 1]).parse_args(args)
                    parsed += 1
                except SystemExit:
                    failures.append(f"{_name(doc)}: {command}: {capsys.readouterr().err.strip()}")
    assert not failures, "\n".join(failures)
    assert parsed >= 20, parsed  # the extraction found the documented commands
