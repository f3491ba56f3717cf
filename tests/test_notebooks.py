"""No output that nbval compares may depend on the environment.

nbval re-executes every notebook and compares each cell's text output with the saved one, so a saved
output that shows an installed version, a timing, a machine fact or an absolute path fails the suite on
the next release of a dependency or on another machine. Such cells carry nbval's `nbval-ignore-output`
tag (in the cell's metadata, so the learner sees code, not test plumbing) and assert what matters.
This test reads the saved notebooks, so notebooks added later follow the same rule.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
# As pytest collects them: Jupyter's hidden .ipynb_checkpoints/ copies are not notebooks of the suite.
NOTEBOOKS = sorted(
    p
    for p in NOTEBOOKS_DIR.rglob("*.ipynb")
    if not any(part.startswith(".") for part in p.relative_to(NOTEBOOKS_DIR).parts)
)
NOT_COMPARED = {"nbval-ignore-output", "nbval-skip"}  # nbval's cell tags that turn the comparison off

# What a compared output must not show, each with its reason.
ENVIRONMENT = {
    "a package version": re.compile(
        r"\b\d+\.\d+\.\d+(?:[.+-]?[a-z]+\d*)?\b"  # 2.14.1, 5.0.0, 2.4.0+cu121, 1.26.0rc1
        r"|(?i:\b(?:python|torch|pytorch|torchvision|opencv|cv2|numpy|matplotlib|cuda|cudnn|nbval|tqdm)"
        r"\b\W{0,3}v?\d+\.\d+)"  # torch 2.14, CUDA 12.4, Python 3.11
    ),
    "a timing": re.compile(
        r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|sec|secs|seconds|minutes|min)\b"  # 12 ms, 3 seconds
        r"|\b\d+\.\d+\s?s\b"  # 12.3 s (a whole "2 s" is a video's length, not a measurement)
        r"|\b\d+(?:\.\d+)?\s?(?:it|clips|frames|samples|videos|steps|batches)/s\b"  # 312.5 clips/s
        r"|(?i:\b(?:wall time|cpu times|elapsed)\b)"  # IPython's %time, "elapsed"
        r"|\b\d{1,2}:\d{2}:\d{2}\b|\b20\d\d-\d\d-\d\d\b"  # a clock, a date
    ),
    "a machine fact": re.compile(
        r"(?i)\b\d+\s(?:cpu\s)?(?:cores?|threads)\b|\bnvidia\b|\bgeforce\b|\bintel\(r\)|\bepyc\b|\bcuda:\d"
    ),
    "an absolute path": re.compile(
        r"(?:^|[\s'\"(=:\[,])(?:/[\w.@~-]+){2,}"  # /home/ana/minivb, '/tmp/x/y'
        r"|\b[A-Za-z]:\\\\?[\w.-]"  # C:\Users
        r"|~/[\w.-]+/"  # ~/minivb/
    ),
}


def environment_facts(text):
    """[(what, matched text)] for every environment-dependent fact in `text`."""
    return [(what, m.group().strip()) for what, rx in ENVIRONMENT.items() for m in rx.finditer(text)]


def output_text(output):
    """The text nbval compares in one saved output (images are not compared)."""
    if output["output_type"] == "stream":
        return "".join(output["text"])
    if output["output_type"] == "error":
        return "\n".join([output["ename"], output["evalue"], *output["traceback"]])
    return "".join(output.get("data", {}).get("text/plain", ""))


def cells_of(path):
    """The saved notebook's cells, in order."""
    return json.loads(path.read_text())["cells"]


def compared_cells(path):
    """(index, cell) for every code cell whose saved outputs nbval compares."""
    for i, cell in enumerate(cells_of(path)):
        if cell["cell_type"] == "code" and not NOT_COMPARED & set(cell["metadata"].get("tags", [])):
            yield i, cell


@pytest.mark.parametrize(
    "text, what",
    [
        ("OpenCV 5.0.0 | torch 2.14.1", "a package version"),
        ("torch 2.14 on CUDA 12.4", "a package version"),
        ("numpy: 1.26.4", "a package version"),
        ("trained in 52.3 s", "a timing"),
        ("forward pass: 12 ms", "a timing"),
        ("loader: 312.5 clips/s", "a timing"),
        ("Wall time: 1.2 s", "a timing"),
        ("run started 2026-12-04 18:32:05", "a timing"),
        ("2 threads, 16 cores", "a machine fact"),
        ("device: NVIDIA H200", "a machine fact"),
        ("saved to /home/ana/minivb/runs/x", "an absolute path"),
        ("PosixPath('/work/minivb/data/toy')", "an absolute path"),
        ("C:\\Users\\ana\\minivb", "an absolute path"),
    ],
)
def test_the_check_finds_environment_facts(text, what):
    assert what in {w for w, _ in environment_facts(text)}, (text, environment_facts(text))


@pytest.mark.parametrize(
    "text",
    [
        "header: 16 frames, 8 fps, 64x64 (W x H), 2 s",  # a video's length
        "toy set: ../data/toy | runs go to ../runs/06_training_and_evaluation",  # relative paths
        "train/left_to_right/left_to_right_0000.mp4",
        "weight on padding, no mask:   0.066",
        "  16  49   784    1.040               60%          18.8",
        "after one epoch: val loss 2.102, top-1 0.156, top-5 0.766 on 192 clips",
        "tensor([[0.707, 0.000, 0.707],",
        "(B, heads, L, d) = (2, 2, 5, 4)",
        "192 videos → embeddings (192, 128), norms 1.000–1.000",
    ],
)
def test_the_check_passes_facts_about_the_lesson(text):
    assert environment_facts(text) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_compared_outputs_do_not_depend_on_the_environment(path):
    found = [
        f"cell {i}: {what}: {match!r}"
        for i, cell in compared_cells(path)
        for output in cell["outputs"]
        for what, match in environment_facts(output_text(output))
    ]
    assert not found, f"{path.name}: tag these cells nbval-ignore-output (and assert what matters): {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_as_a_fresh_run_without_stderr(path):
    cells = [c for c in cells_of(path) if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells if c["source"]]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: execute it top to bottom in a fresh kernel"
    stderr = [i for i, c in enumerate(cells) for o in c["outputs"] if o.get("name") == "stderr"]
    assert not stderr, f"{path.name}: code cells {stderr} wrote to stderr; fix the warning's cause"
    errors = [i for i, c in enumerate(cells) for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{path.name}: code cells {errors} raised"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_way_to_turn_the_comparison_off(path):
    # nbval also reads `# NBVAL_IGNORE_OUTPUT` comments; the tag keeps test plumbing out of the learner's code.
    comments = [
        i for i, c in enumerate(cells_of(path)) if c["cell_type"] == "code" and "# NBVAL_" in "".join(c["source"])
    ]
    assert not comments, f"{path.name}: cells {comments} use an NBVAL comment; use nbval's cell tags instead"


SMALL_TEXT = re.compile(r"\b(?:fontsize|labelsize)\s*=\s*(\d+(?:\.\d+)?)")
CODE_SPAN = re.compile(r"`[^`]*`")  # `$TORCH_HOME` is code, not a formula
DPI = re.compile(r"dpi[\"'\]]*\s*[=:]\s*(\d+)")  # dpi=72, rcParams["figure.dpi"] = 72


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_legible_formulas_balanced_and_the_notebook_ends_in_words(path):
    cells = cells_of(path)
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    small = [size for src in code for size in SMALL_TEXT.findall(src) if float(size) < 7]
    assert not small, f"{path.name}: text of {small} pt is under 7 pt (9 px at 100 dpi): too small to read"
    low = [dpi for src in code for dpi in DPI.findall(src) if int(dpi) < 100]
    assert not low, f"{path.name}: figures at {low} dpi; draw at 100 dpi or more"
    prose = {i: CODE_SPAN.sub("", "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"}
    odd = [i for i, text in prose.items() if text.count("$") % 2]
    assert not odd, f"{path.name}: Markdown cells {odd} have an unbalanced `$` (a formula not closed)"
    assert cells[-1]["cell_type"] == "markdown", f"{path.name}: end with a Markdown cell: what we have, what is next"


WORDS = 2000  # a lesson a learner reads in one sitting (../shared/DESIGN.md): longer, it is two notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_is_at_most_2000_words_of_prose(path):
    words = sum(len("".join(c["source"]).split()) for c in cells_of(path) if c["cell_type"] == "markdown")
    assert words <= WORDS, f"{path.name}: {words} words of Markdown, over {WORDS}: cut it, or split the notebook"
