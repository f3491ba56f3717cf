"""The course website's own Sphinx extension (site/conf.py loads it; docs/site.md says what it adds).

Everything here is derived from what is committed, so nothing is written twice:

* every notebook page opens with a box of facts — how long it runs on a 2-core CPU, the module(s) that hold its
  finished code, its exercises and their solutions — read from the README's notebook table;
* each exercise links to its worked solution (the heading of the same number in the solutions notebook);
* "The finished code": one page per module (or package) named in that table, showing its source;
* the "Guides" of the table of contents: the pages the README's "More" list links to, in its order;
* a formula in a page's title is typeset on the page, and written in Unicode wherever else the title is shown (the
  navigation, the browser tab, the search results, previous / next): ``softmax(QKᵀ/√D)``, as the README writes it.

The notebooks themselves are not changed: the box and the links are added to the text Sphinx reads.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from myst_parser.slugs import github_slugify
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.errors import ExtensionError

ROW = re.compile(r"^\| \[(?P<title>[^\]]+)\]\((?P<notebook>notebooks/(?P<number>\d\d)_\w+\.ipynb)\) \|(?P<rest>.*)\|$")
CODE = re.compile(r"`(minivb/[\w/]+(?:\.py|/))`")
SOLUTIONS = re.compile(r"(?P<count>\d+) · \[solutions\]\((?P<path>notebooks/solutions/\w+\.ipynb)\)")
TIME_IN_ROW = re.compile(r"\babout (?:a|an|\d+) (?:minutes?|seconds?)\b")
TIME_FOR_RANGE = re.compile(r"Notebooks (?P<first>\d\d)–(?P<last>\d\d) run in (?P<time>[^.]*?) each\b")
EXERCISE = re.compile(r"^## Exercise (\d+)\b.*$", re.M)
MORE = re.compile(r"^## More\n(?P<list>.*?)(?=^## )", re.M | re.S)
PAGE_LINK = re.compile(r"^\* \[[^\]]*\]\((?P<page>[\w/]+)\.md\)", re.M)


@dataclass
class Notebook:
    """One row of the README's notebook table."""

    number: str
    title: str
    docname: str  # notebooks/01_video_preprocessing
    code: list[str]  # minivb/video.py, minivb/data/toy/
    exercises: int
    solutions: str  # notebooks/solutions/01_solutions
    time: str = ""  # "about a minute"
    exercise_anchors: dict[str, str] = field(default_factory=dict)  # "1" → "exercise-1--a-causal-mask"


def read_notebook_table(readme: str) -> dict[str, Notebook]:
    """The README's notebook table → ``{docname: Notebook}``; a row that lacks a fact fails the build."""
    found: dict[str, Notebook] = {}
    for line in readme.splitlines():
        row = ROW.match(line)
        if not row:
            continue
        solutions = SOLUTIONS.search(row["rest"])
        code = CODE.findall(row["rest"])
        if not (solutions and code):
            raise ExtensionError(f"README's notebook table: the row of {row['notebook']} names no module or solutions")
        time = TIME_IN_ROW.search(row["rest"])
        docname = row["notebook"].removesuffix(".ipynb")
        found[docname] = Notebook(
            number=row["number"],
            title=row["title"],
            docname=docname,
            code=code,
            exercises=int(solutions["count"]),
            solutions=solutions["path"].removesuffix(".ipynb"),
            time=time.group(0) if time else "",
        )
    for span in TIME_FOR_RANGE.finditer(readme):  # "Notebooks 01–05 run in about a minute each on a CPU."
        for notebook in found.values():
            if span["first"] <= notebook.number <= span["last"] and not notebook.time:
                notebook.time = span["time"]
    untimed = [n.docname for n in found.values() if not n.time]
    if untimed:
        raise ExtensionError(f"the README says nothing of how long these notebooks take: {untimed}")
    return found


def _link(source_doc: str, target: str) -> str:
    """A relative link from one source file to another (both relative to the source folder)."""
    return os.path.relpath(target, os.path.dirname(source_doc) or ".")


def _code_doc(path: str) -> str:
    """minivb/video.py → code/minivb/video; minivb/engine/ → code/minivb/engine."""
    return "code/" + path.rstrip("/").removesuffix(".py")


def _write(path: Path, text: str) -> None:
    """Write only what changed (Sphinx rereads a page whose file is newer than its last build)."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_code_pages(srcdir: Path, notebooks: dict[str, Notebook]) -> None:
    """code/index.md and one page per module or package of the table, in the course's order."""
    users: dict[str, list[Notebook]] = {}
    for notebook in notebooks.values():
        for path in notebook.code:
            users.setdefault(path, []).append(notebook)
    pages = []
    for path, by in users.items():
        doc = _code_doc(path)
        pages.append(doc)
        built = ", ".join(f"[{n.title}]({_link(doc, n.docname + '.ipynb')})" for n in by)
        lines = [f"# `{path}`", "", f"The finished code of {built}, as the `minivb` package ships it."]
        folder = srcdir / path
        files = sorted(folder.rglob("*.py")) if path.endswith("/") else [folder]
        if not files or not all(f.is_file() for f in files):
            raise ExtensionError(f"README's notebook table names {path}, which holds no Python file")
        for file in files:
            name = file.relative_to(srcdir).as_posix()
            if path.endswith("/"):
                lines += ["", f"## `{name}`"]
            lines += ["", "```{literalinclude} " + _link(doc, name), ":language: python", ":linenos:", "```"]
        _write(srcdir / f"{doc}.md", "\n".join(lines) + "\n")
    toc = "\n".join(p.removeprefix("code/") for p in pages)
    layers = _link("code/index", "docs/layers.md")
    index = f"""# The finished code

What each notebook builds by hand lives, finished, in the `minivb` package: the notebook imports it at its end and
proves the two equal. The whole package, module by module, is mapped in [the package's map]({layers}).

```{{toctree}}
:maxdepth: 1

{toc}
```
"""
    _write(srcdir / "code" / "index.md", index)
    for old in sorted((srcdir / "code").rglob("*.md")):
        if old.relative_to(srcdir).with_suffix("").as_posix() not in [*pages, "code/index"]:
            old.unlink()


def _headings(cell_sources: list[str]) -> dict[str, str]:
    """``{exercise number: heading anchor}`` of the ``## Exercise N`` headings of a notebook's Markdown."""
    anchors = {}
    for source in cell_sources:
        for heading in EXERCISE.finditer(source):
            text = re.sub(r"[`*_]", "", heading.group(0).removeprefix("## ")).strip()
            anchors.setdefault(heading.group(1), github_slugify(text))
    return anchors


def _markdown(notebook_json: dict) -> list[str]:
    return ["".join(c["source"]) for c in notebook_json["cells"] if c["cell_type"] == "markdown"]


def facts_box(notebook: Notebook) -> str:
    """The MyST box that opens a notebook page."""
    doc = notebook.docname
    code = ", ".join(f"[`{p}`]({_link(doc, _code_doc(p) + '.md')})" for p in notebook.code)
    solutions = _link(doc, notebook.solutions + ".ipynb")
    exercises = f"{notebook.exercises} exercise{'s' if notebook.exercises != 1 else ''}"
    return f"""
```{{admonition}} This notebook
:class: minivb-facts

* **Runs in** {notebook.time} on a 2-core CPU, top to bottom (no GPU needed).
* **Finished code,** as the `minivb` package ships it: {code}.
* **Exercises:** {exercises} at the end, with [worked solutions]({solutions}).
```
"""


def add_facts(notebook_json: dict, notebook: Notebook) -> None:
    """Insert the facts box under the notebook's title and a solution link under each exercise (in place)."""
    cells = [c for c in notebook_json["cells"] if c["cell_type"] == "markdown"]
    first = "".join(cells[0]["source"])
    title, newline, rest = first.partition("\n")
    if not title.startswith("# "):
        raise ExtensionError(f"{notebook.docname}: its first cell should open with the title (# …)")
    cells[0]["source"] = title + newline + facts_box(notebook) + rest
    solutions = _link(notebook.docname, notebook.solutions + ".ipynb")
    for cell in cells:
        source = "".join(cell["source"])
        heading = EXERCISE.search(source)
        if not heading:
            continue
        anchor = notebook.exercise_anchors.get(heading.group(1))
        if anchor is None:
            raise ExtensionError(f"{notebook.solutions} has no heading '## Exercise {heading.group(1)}'")
        link = f"[exercise {heading.group(1)} in the solutions]({solutions}#{anchor})"
        cell["source"] = source.rstrip("\n") + f"\n\nOnce you have tried (and read `check`'s hints): {link}.\n"


# --- a title's formulas as plain text -------------------------------------------------------------------------

_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_TEX_TEXT = [  # (pattern, replacement), applied in order
    (r"\\(?:mathrm|text|operatorname|mathbf|mathit)\{([^{}]*)\}", r"\1"),
    (r"\\sqrt\{(\w)\}", r"√\1"),
    (r"\\sqrt\{([^{}]*)\}", r"√(\1)"),
    (r"\^\\top\b", "ᵀ"),
    (r"\\[lc]?dots\b", "…"),
    (r"\\cdot\b", "·"),
    (r"\\[,;:! ]", " "),
    (r"_\{?(\d+)\}?", lambda m: m.group(1).translate(_SUBSCRIPT)),
    (r"_\{([^{}]*)\}", r"_\1"),
]


def tex_as_text(tex: str) -> str:
    """``A = \\mathrm{softmax}(QK^\\top/\\sqrt{D})`` → ``A = softmax(QKᵀ/√D)``, for the places that show no markup."""
    text = tex
    for pattern, replacement in _TEX_TEXT:
        text = re.sub(pattern, replacement, text)
    if "\\" in text or "{" in text:
        raise ExtensionError(f"a title's formula {tex!r} has no plain-text form: extend _TEX_TEXT in {__file__}")
    return " ".join(text.split())


def _plain(title: nodes.Element) -> nodes.Element:
    copy = title.deepcopy()
    for node in list(copy.findall(nodes.math)):
        node.parent.replace(node, nodes.Text(tex_as_text(node.astext())))
    return copy


def read_guides(readme: str) -> list[str]:
    """The pages the README's "More" list links to (each bullet's first link), in its order, as docnames."""
    more = MORE.search(readme)
    guides = list(dict.fromkeys(m["page"] for m in PAGE_LINK.finditer(more["list"]))) if more else []
    if not guides:
        raise ExtensionError("README.md has no '## More' list of pages ('* [docs/x.md](docs/x.md) — …')")
    return guides


class GuidesToctree(TocTree):
    """``{guides-toctree}``: a toctree (same options) of the pages of the README's "More" list, in its order."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        readme = Path(self.env.srcdir) / "README.md"
        self.env.note_dependency(str(readme))
        self.content = StringList(read_guides(readme.read_text(encoding="utf-8")), source=str(readme))
        return super().run()


# --- Sphinx events ------------------------------------------------------------------------------------------------


def on_builder_inited(app: Sphinx) -> None:
    srcdir = Path(app.srcdir)
    notebooks = read_notebook_table((srcdir / "README.md").read_text(encoding="utf-8"))
    committed = sorted(
        p.relative_to(srcdir).with_suffix("").as_posix() for p in srcdir.glob("notebooks/[0-9][0-9]_*.ipynb")
    )
    if sorted(notebooks) != committed:
        raise ExtensionError(f"README's notebook table lists {sorted(notebooks)}, notebooks/ holds {committed}")
    for notebook in notebooks.values():
        solutions = json.loads((srcdir / f"{notebook.solutions}.ipynb").read_text(encoding="utf-8"))
        notebook.exercise_anchors = _headings(_markdown(solutions))
    app.minivb_notebooks = notebooks
    write_code_pages(srcdir, notebooks)


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    notebook = app.minivb_notebooks.get(docname)
    if notebook is None:
        return
    app.env.note_dependency(str(Path(app.srcdir) / "README.md"))
    notebook_json = json.loads(source[0])
    add_facts(notebook_json, notebook)
    source[0] = json.dumps(notebook_json)


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    """The title as Sphinx collected it, its formulas in Unicode: for the tab, the search, previous / next, and the
    navigation's entry (the first of the page's table of contents; its sections keep their formulas)."""
    docname = app.env.docname
    for titles in (app.env.titles, app.env.longtitles):
        if docname in titles:
            titles[docname] = _plain(titles[docname])
    toc = app.env.tocs.get(docname)
    if toc is not None and toc.children:
        entry = toc[0][0]  # bullet_list > list_item > compact_paragraph: the title's entry
        entry.parent.replace(entry, _plain(entry))


def setup(app: Sphinx) -> dict:
    app.add_directive("guides-toctree", GuidesToctree)
    app.connect("builder-inited", on_builder_inited)
    app.connect("source-read", on_source_read)
    app.connect("doctree-read", on_doctree_read, priority=900)  # after Sphinx has collected the titles
    return {"parallel_read_safe": True, "parallel_write_safe": True}
