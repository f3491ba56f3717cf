"""Build the course website: ``python site/build.py`` → ``site/_build/html/`` (docs/site.md says more).

The book is made of what is committed, nothing written twice: the README, ``docs/*.md``, ``data/README.md``, the
nine notebooks with their saved outputs (never executed here) and their solutions, the package's source (the
pages of "the finished code"), and any other file these pages link to or show. They are copied, unchanged, into
``BUILD/src/`` beside this folder's own pages (``site/*.md``); Sphinx + MyST-NB then builds ``BUILD/html/`` with
``-W --keep-going``: any warning fails the build. The per-notebook facts (time, finished code, solutions) come from
the README's notebook table, by ``site/_ext/minivb_site.py``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parent


LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)


def _text(path: Path) -> str:
    """A page's Markdown: the file itself, or a notebook's Markdown cells."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text(encoding="utf-8")


def linked_files(pages: dict[str, Path]) -> dict[str, Path]:
    """The repository's files that the pages link to or show (a script, a picture), so that those links work too."""
    found = {}
    for page in pages.values():
        if page.suffix not in (".md", ".ipynb") or page.parent == SITE:
            continue
        for target in LINK.findall(_text(page)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue  # another site, or a heading of the same page
            file = (page.parent / target.partition("#")[0]).resolve()
            if file.is_file() and ROOT in file.parents and SITE not in file.parents:
                found[file.relative_to(ROOT).as_posix()] = file
    return found


def sources() -> dict[str, Path]:
    """``{path in the book's source folder: the committed file}``."""
    files = {p.name: p for p in sorted(SITE.glob("*.md"))}
    files["README.md"] = ROOT / "README.md"
    files["data/README.md"] = ROOT / "data" / "README.md"
    for pattern in ["docs/*.md", "notebooks/*.ipynb", "notebooks/solutions/*.ipynb", "minivb/**/*.py"]:
        for path in sorted(ROOT.glob(pattern)):
            files[path.relative_to(ROOT).as_posix()] = path
    return linked_files(files) | files


def stage(src: Path) -> None:
    """Make ``src`` hold exactly :func:`sources` (plus what the extension generates, which it keeps up to date).

    Unchanged files keep their time stamps, so a second build only rereads what changed."""
    wanted = sources()
    for name, path in wanted.items():
        target = src / name
        if not (target.is_file() and filecmp.cmp(path, target, shallow=False)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    generated = src / "code"  # the extension's own pages
    for path in sorted(src.rglob("*"), reverse=True):
        name = path.relative_to(src).as_posix()
        if path.is_file() and name not in wanted and generated not in path.parents:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def build(build_dir: Path, fresh: bool = False) -> int:
    """Stage the sources and run Sphinx; the exit status of ``sphinx-build`` (0: built, no warning)."""
    src, doctrees, html = build_dir / "src", build_dir / "doctrees", build_dir / "html"
    if fresh:
        for folder in (src, doctrees, html):
            shutil.rmtree(folder, ignore_errors=True)
    stage(src)
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-c", str(SITE), "-d", str(doctrees), str(src), str(html)]
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=SITE / "_build",
        help="where the staged sources (src/), Sphinx's cache (doctrees/) and the site (html/) go "
        "(default: site/_build)",
    )
    parser.add_argument("--fresh", action="store_true", help="start from nothing instead of rebuilding what changed")
    args = parser.parse_args(argv)
    status = build(args.build_dir.resolve(), fresh=args.fresh)
    if status == 0:
        index = args.build_dir / "html" / "index.html"
        print(f"built {index}; serve it with: python -m http.server -d {index.parent}")
    return status


if __name__ == "__main__":
    sys.exit(main())
