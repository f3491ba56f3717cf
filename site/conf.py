"""Sphinx configuration of the course website (docs/site.md; built by ``python site/build.py``).

Sphinx + MyST-NB + sphinx-book-theme: pip-only, the notebooks rendered from their saved outputs, and ``-W`` makes
any warning (a broken link, a missing image, a page outside the table of contents) fail the build.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "minivb"
author = "the minivb authors"
copyright = "the minivb authors"
html_title = "minivb: build a video Transformer"

root_doc = "index"
extensions = [
    "myst_nb",  # Markdown (MyST) and notebooks; includes myst_parser
    "sphinx-mathjax-offline",  # MathJax 3 served from the site itself: formulas render with no network
    "minivb_site",  # the notebook pages' facts, the exercise → solution links, the pages of the finished code
    "sphinx.ext.githubpages",  # a .nojekyll file, so GitHub Pages serves the _static/ and _images/ folders too
]
exclude_patterns = ["**.ipynb_checkpoints"]

# --- the notebooks: shown as committed, outputs as saved; never executed here ---
nb_execution_mode = "off"
nb_merge_streams = True

# --- Markdown: $…$ and $$…$$ formulas as in Jupyter; GitHub-style heading anchors, as the README's links use ---
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 6
mathjax3_config = {"options": {}}  # MathJax 3 (the bundled one); MyST adds which HTML classes it typesets

# --- HTML ---
html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
}
html_static_path = ["_static"]
html_js_files = ["search-math.js"]  # search results quote formulas as plain text, not raw TeX
html_favicon = "_static/favicon.svg"  # a browser asks for one; without it, a 404 in the console
html_context = {"default_mode": "auto"}  # light or dark as the reader's system says (else a console error)
html_last_updated_fmt = None
html_show_sphinx = False
