"""The course as a website (docs/site.md): built from what is committed, then read in a real browser.

``python site/build.py`` builds the site with ``-W`` (a warning fails it); then every page is opened in headless
Chromium, served over HTTP from this machine with every other host unreachable, and checked as a learner sees it:
no formula left as raw TeX and no MathJax error, every image loaded, every internal link and anchor leads somewhere,
no console error or failed request, every page in the table of contents, search answers, and each notebook page
says how long it runs, where its finished code is and where its solutions are. A copy of the site with one planted
defect of each kind proves that each check can fail.

Needs the ``site`` extra (``pip install -e ".[site]"``) and Chromium (Debian: ``apt-get install chromium``; elsewhere
set ``MINIVB_CHROMIUM`` to a Chromium or Chrome binary). Without them the tests skip and say so, except where
``MINIVB_REQUIRE_BROWSER=1`` (CI, ``.ci/run``): there a missing browser fails.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("MINIVB_REQUIRE_BROWSER") == "1"
SPECIAL = {"genindex.html", "search.html"}  # Sphinx's own pages: not chapters of the book
SEARCH = "search.html?q=attention"


def _unavailable(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} (MINIVB_REQUIRE_BROWSER=1: the browser test must run here, not skip)")
    pytest.skip(what)


def chromium() -> str | None:
    """The browser to drive: $MINIVB_CHROMIUM, else Debian's chromium (or a Chrome) on the PATH."""
    names = [os.environ.get("MINIVB_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "chrome"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


# --- serving and browsing -----------------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(root: Path):
    """``python -m http.server -d root`` on a free loopback port, for the time of the block: its base URL.

    (tests/httpserver.py answers every file as ``application/octet-stream``, for download tests; a browser needs
    the standard handler's content types to render a page.)"""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# Run in each page once it has loaded and MathJax has finished: what the checks need, read from the live DOM.
INSPECT = r"""() => {
  const RAW_TEX = /\\[A-Za-z]{2,}|\\[()[\]]|\$\$|\$[^$\s](?:[^$]*[^$\s])?\$/;
  const visible = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest("pre, code, script, style, textarea, mjx-container, .highlight")) continue;
    const match = node.textContent.match(RAW_TEX);
    if (match) visible.push(node.textContent.trim().slice(0, 120));
  }
  const unrendered = [...document.querySelectorAll(".math")]
    .filter((el) => !el.querySelector("mjx-container"))
    .map((el) => el.textContent.trim().slice(0, 120));
  const errors = [...document.querySelectorAll("mjx-container")]
    .filter((el) => el.querySelector("mjx-merror, [data-mjx-error], mjx-mtext[style*='color: red']"))
    .map((el) => (el.querySelector("mjx-assistive-mml") || el).textContent.trim().slice(0, 120));
  const facts = document.querySelector(".minivb-facts");
  return {
    ids: [...document.querySelectorAll("[id]")].map((el) => el.id)
      .concat([...document.querySelectorAll("a[name]")].map((el) => el.name)),
    links: [...document.querySelectorAll("a[href]")].map((a) => a.href),
    images: [...document.images].filter((img) => !(img.complete && img.naturalWidth > 0))
      .map((img) => img.getAttribute("src")),
    rawTex: unrendered.concat(visible),
    mathErrors: errors,
    formulas: document.querySelectorAll("mjx-container").length,
    figures: document.querySelectorAll("article img").length,
    nav: [...document.querySelectorAll("nav.bd-docs-nav a[href]")].map((a) => a.href),
    facts: facts ? {text: facts.innerText, links: [...facts.querySelectorAll("a[href]")].map((a) => a.href)} : null,
    searchResults: document.querySelectorAll("#search-results ul.search li").length,
  };
}"""

WAIT_FOR_MATHJAX = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
}"""


@dataclass
class Site:
    """What browsing a built site found: each page's facts, and its defects as ``(kind, page, detail)``."""

    pages: dict[str, dict] = field(default_factory=dict)
    defects: list[tuple[str, str, str]] = field(default_factory=list)

    def kinds(self, page: str) -> set[str]:
        return {kind for kind, where, _ in self.defects if where == page}


def html_pages(root: Path) -> list[str]:
    """Every page of a built site, as a path relative to its root (Sphinx's asset folders start with ``_``)."""
    pages = [p.relative_to(root).as_posix() for p in root.rglob("*.html")]
    return sorted(p for p in pages if not p.startswith("_"))


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k == "id" or (tag == "a" and k == "name"))


def _static_ids(file: Path) -> set[str]:
    parser = _Ids()
    parser.feed(file.read_text(encoding="utf-8", errors="replace"))
    return parser.ids


def browse(browser, root: Path, pages: list[str] | None = None) -> Site:
    """Open ``pages`` (default: all) of the site at ``root`` and check each one; the TOC check covers them all."""
    everything = html_pages(root)
    pages = everything if pages is None else pages
    site = Site()
    with serve(root) as base:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(20_000)
        current = {"name": ""}

        def defect(kind: str, detail: str) -> None:
            site.defects.append((kind, current["name"], detail))

        def failed(request) -> None:
            if request.failure != "net::ERR_ABORTED":  # cut short by going on to the next page (a late favicon)
                defect("request", f"{request.url}: {request.failure}")

        page.on("console", lambda msg: msg.type == "error" and defect("console", msg.text))
        page.on("pageerror", lambda error: defect("console", str(error)))
        page.on("requestfailed", lambda request: failed(request))
        page.on("response", lambda response: response.status >= 400 and defect("request", response.url))
        for name in ["index.html", *(p for p in pages if p != "index.html"), SEARCH]:
            current["name"] = name
            page.goto(base + name, wait_until="load")
            page.evaluate(WAIT_FOR_MATHJAX)
            if name == SEARCH:
                page.wait_for_function("() => document.querySelector('#search-results .search-summary')?.innerText")
            found = page.evaluate(INSPECT)
            site.pages[name] = found
            for src in found["images"]:
                defect("image", f"not loaded: {src}")
            for text in found["rawTex"]:
                defect("raw-tex", text)
            for text in found["mathErrors"]:
                defect("math-error", text)
        context.close()

    ids = {name: set(found["ids"]) for name, found in site.pages.items()}
    for name, found in site.pages.items():
        for href in found["links"]:
            url = urllib.parse.urlsplit(href)
            if f"{url.scheme}://{url.netloc}/" != base:
                continue  # another site: not this test's to reach
            target = urllib.parse.unquote(url.path).lstrip("/") or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if not (root / target).is_file():
                site.defects.append(("link", name, f"{href}: no such file"))
                continue
            fragment = urllib.parse.unquote(url.fragment)
            if fragment and target.endswith(".html"):
                if target not in ids:
                    ids[target] = _static_ids(root / target)
                if fragment not in ids[target]:
                    site.defects.append(("anchor", name, f"{href}: {target} has no #{fragment}"))

    in_toc = set()
    for href in site.pages["index.html"]["nav"]:
        in_toc.add(urllib.parse.unquote(urllib.parse.urlsplit(href).path).lstrip("/") or "index.html")
    for name in everything:
        if name not in SPECIAL | {"index.html"} and name not in in_toc:
            site.defects.append(("not-in-toc", name, "not reachable from the table of contents"))
    if not site.pages[SEARCH]["searchResults"]:
        site.defects.append(("search", SEARCH, "no result"))
    return site


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The site, built by its one command into a temporary folder: the ``html/`` folder."""
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        _unavailable('the site\'s build tools are not installed: pip install -e ".[site]"')
    build_dir = tmp_path_factory.mktemp("site")
    command = [sys.executable, str(ROOT / "site" / "build.py"), "--build-dir", str(build_dir)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"the build failed (warnings count as errors):\n{result.stdout}\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    return build_dir / "html"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable('playwright is not installed: pip install -e ".[site]"')
    executable = chromium()
    if executable is None:
        _unavailable(
            "no Chromium to open the site in: apt-get install chromium (Debian/Ubuntu), "
            "or set MINIVB_CHROMIUM to a Chromium or Chrome binary"
        )
    with sync_playwright() as playwright:
        # Every host but this machine's is unreachable: the site must work with no network (MathJax included).
        args = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(browser, built) -> Site:
    return browse(browser, built)


# --- the site -----------------------------------------------------------------------------------------------------


def test_the_site_builds_with_no_warning(built):
    # The fixture fails on a warning; here, what it built: the front page, every notebook, the search index.
    assert (built / "index.html").is_file() and (built / "searchindex.js").is_file()
    pages = html_pages(built)
    course = len(list(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")))  # 10: 01 … 10
    assert len([p for p in pages if re.fullmatch(r"notebooks/\d\d_\w+\.html", p)]) == course, pages
    assert (built / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is served with the site"


def test_every_page_opens_without_a_defect(site, built):
    assert set(site.pages) == set(html_pages(built)) | {SEARCH}
    assert not site.defects, "\n".join(f"{page}: {kind}: {detail}" for kind, page, detail in site.defects)


def test_the_book_holds_the_course_in_its_order(site):
    nav = [urllib.parse.urlsplit(h).path.lstrip("/") for h in site.pages["index.html"]["nav"]]
    notebooks = sorted(
        p.relative_to(ROOT).with_suffix(".html").as_posix() for p in ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")
    )
    solutions = sorted(
        p.relative_to(ROOT).with_suffix(".html").as_posix() for p in ROOT.glob("notebooks/solutions/*.ipynb")
    )
    docs = [f"docs/{p.stem}.html" for p in sorted(ROOT.glob("docs/*.md"))] + ["README.html", "data/README.html"]
    assert len(notebooks) == len(solutions) == 10
    for page in notebooks + solutions + docs:
        assert page in nav, page
    assert [p for p in nav if p in notebooks] == notebooks, "the notebooks in the course's order"
    assert nav.index("README.html") < nav.index(notebooks[0]) < nav.index(solutions[0])


def test_formulas_figures_and_search_are_there(site):
    assert site.pages["notebooks/03_self_attention.html"]["formulas"] >= 20  # typeset by MathJax, served locally
    figures = sum(
        page["figures"] for name, page in site.pages.items() if re.fullmatch(r"notebooks/\d\d_\w+\.html", name)
    )
    assert figures >= 40, figures  # the notebooks' saved plots (every one loaded: the test above)
    assert site.pages[SEARCH]["searchResults"] > 0


def test_each_notebook_page_gives_its_time_code_and_solutions(site):
    for name, page in site.pages.items():
        if not re.fullmatch(r"notebooks/\d\d_\w+\.html", name):
            continue
        facts = page["facts"]
        assert facts, f"{name}: no facts box"
        assert re.search(r"Runs in [^\n]*(minute|second|\d s)[^\n]* on a 2-core CPU", facts["text"]), facts["text"]
        paths = [urllib.parse.urlsplit(h).path for h in facts["links"]]
        number = name.split("/")[1][:2]
        assert f"/notebooks/solutions/{number}_solutions.html" in paths, (name, paths)
        assert any(p.startswith("/code/minivb/") for p in paths), (name, paths)
        exercises = [h for h in page["links"] if f"/notebooks/solutions/{number}_solutions.html#exercise-" in h]
        assert len(exercises) >= 2, f"{name}: each exercise links to its worked solution"


# --- the checks can fail: one planted defect of each kind --------------------------------------------------------

PLANTS = {  # page → (kind of defect, what is put at the top of its article)
    "notebooks/03_self_attention.html": ("raw-tex", r"<p>Planted: $A = \mathrm{softmax}(QK^\top)$ left as TeX.</p>"),
    "notebooks/04_multi_head_attention.html": (
        "math-error",
        r'<p><span class="math notranslate nohighlight">\(x^{2}^{3}\)</span> and '
        r'<span class="math notranslate nohighlight">\(\undefinedmacro{x}\)</span></p>',
    ),
    "docs/training.html": ("link", '<p><a href="no-such-page.html">a page that does not exist</a></p>'),
    "docs/applications.html": ("anchor", '<p><a href="training.html#no-such-heading">a heading that is not</a></p>'),
    "README.html": ("console", "<script>console.error('planted console error')</script>"),
}


def plant(site_dir: Path) -> dict[str, str]:
    """Plant one defect of each kind into a copy of a built site; ``{page: kind}``."""
    planted = {}
    shutil.copy(site_dir / "README.html", site_dir / "planted-orphan.html")  # a page that works, outside the TOC
    planted["planted-orphan.html"] = "not-in-toc"
    for name, (kind, snippet) in PLANTS.items():
        file = site_dir / name
        text = file.read_text(encoding="utf-8")
        assert '<article class="bd-article">' in text, name
        file.write_text(text.replace('<article class="bd-article">', '<article class="bd-article">' + snippet, 1))
        planted[name] = kind
    no_mathjax = "notebooks/solutions/05_solutions.html"  # as if MathJax had not loaded (a CDN out of reach)
    text = (site_dir / no_mathjax).read_text(encoding="utf-8")
    script = re.search(r'<script[^>]* src="[^"]*/mathjax/tex-chtml\.js"></script>', text)
    assert script and 'class="math' in text, "the solutions of 05 show formulas, typeset by MathJax"
    (site_dir / no_mathjax).write_text(text.replace(script.group(0), ""))
    planted[no_mathjax] = "raw-tex"
    figure = "notebooks/01_video_preprocessing.html"
    text = (site_dir / figure).read_text(encoding="utf-8")
    first = re.search(r'<img[^>]* src="(\.\./_images/[^"]+\.png)"', text)
    assert first, "notebook 01 shows a figure"
    missing = 'src="../_images/planted-missing.png"'
    (site_dir / figure).write_text(text.replace(f'src="{first.group(1)}"', missing, 1))
    planted[figure] = "image"
    return planted


def test_each_kind_of_planted_defect_is_caught(browser, built, tmp_path):
    copy = tmp_path / "html"
    shutil.copytree(built, copy)
    planted = plant(copy)
    pages = sorted(planted)
    site = browse(browser, copy, pages)
    for name, kind in planted.items():
        assert kind in site.kinds(name), f"{name}: the planted {kind} was not caught: {site.defects}"
    math_errors = [detail for kind, _, detail in site.defects if kind == "math-error"]
    assert len(math_errors) == 2, math_errors  # a TeX error and an unknown macro, each caught
    assert not {name for _, name, _ in site.defects} - set(planted), f"only the planted pages: {site.defects}"
