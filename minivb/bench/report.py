"""Numbers and output shared by the benchmarks: min/median/max and ratios, table cells, Markdown tables,
the header (machine, versions, command line) every report starts with, and :class:`LiveTable`, which prints
each row as soon as it is measured and keeps the rows measured before a Ctrl-C."""

from __future__ import annotations

import datetime
import importlib
import math
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

import cv2  # (quieted by minivb/__init__.py, which runs first)
import numpy as np
import torch

from ..plumbing.cli import positive_int


def summarize(values: list[float]) -> dict:
    """min/median/max of finite values (``None`` for each if there are none)."""
    good = [v for v in values if v is not None and math.isfinite(v)]
    if not good:
        return {"min": None, "median": None, "max": None}
    return {"min": min(good), "median": statistics.median(good), "max": max(good)}


def ratios(num: list[float], den: list[float]) -> dict:
    """Per-repeat ratios ``num[r] / den[r]`` → min/median/max and the list."""
    values = [a / b for a, b in zip(num, den) if a and b]
    return summarize(values) | {"repeats": values}


def fmt(value: float | None, digits: int | None = None) -> str:
    """A number for a table: ``digits`` decimals, or by default 2 below 10, 1 below 1000, else 0."""
    if value is None:
        return "—"
    if digits is None:
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


def fmt_range(stats: dict, digits: int = 2) -> str:
    """``median (min–max)``, or ``—``."""
    if stats.get("median") is None:
        return "—"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def table_row(cells: list) -> str:
    """One line of a Markdown table (``|`` in cells escaped)."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown_table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns are left-aligned, the others right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(headers))]
    return "\n".join(table_row(line) for line in [headers, align, *rows])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return None


def machine_facts(argv: list[str], device: torch.device | None = None) -> dict:
    """CPU, library versions, device, date and the exact command line."""
    import torchvision

    name = (
        torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else f"cpu ({_cpu_model()})"
    )
    return {
        "command": f"python -m minivb.bench {shlex.join(argv)}".strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "opencv": cv2.__version__,
        "av": _version("av"),
        "numpy": np.__version__,
        "device": name,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def header(title: str, facts: dict) -> str:
    return "\n".join(
        [
            f"## minivb.bench {title}",
            "",
            f"- command: `{facts['command']}`",
            f"- date: {facts['date']}",
            f"- machine: {facts['cpu_count']} CPUs ({facts['usable_cpus']} usable), {facts['cpu']}; "
            f"{facts['platform']}; "
            f"load average at the start {fmt(facts['load_average'], 2)} (other work on the machine skews every number)",
            f"- device: {facts['device']}",
            f"- versions: Python {facts['python']}, torch {facts['torch']}, torchvision {facts['torchvision']}, "
            f"OpenCV {facts['opencv']}, PyAV {facts['av'] or 'not installed'}, NumPy {facts['numpy']}",
        ]
    )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a :class:`LiveTable` was filled: ``result`` holds the rows measured before it."""

    def __init__(self, result: dict):
        super().__init__("interrupted")
        self.result = result


class LiveTable:
    """A benchmark's report, printed as it is measured. Entering prints the header, ``result["notes"]`` and the
    table's first two lines; :meth:`add` keeps a result row in ``result["results"]`` and prints its table rows
    (``cells(row)`` → lists of cells) at once, flushed; :meth:`tick` moves a progress bar of ``total`` ``unit``
    on stderr (shown on a terminal). Ctrl-C inside the ``with`` → :class:`Interrupted` with ``result`` so far,
    marked ``"interrupted": True``."""

    def __init__(self, result: dict, headers: list[str], cells, total: int, unit: str, left: int = 1):
        self.result, self.headers, self.cells, self.left = result, headers, cells, left
        self.total, self.unit = total, unit
        result.setdefault("results", [])

    def __enter__(self) -> LiveTable:
        from tqdm import tqdm

        facts, notes = self.result["machine"], self.result["notes"]
        head = [header(self.result["benchmark"], facts), *[f"- {n}" for n in notes], ""]
        print(*head, markdown_table(self.headers, [], self.left), sep="\n", flush=True)
        self.bar = tqdm(
            total=self.total, desc=self.result["benchmark"], unit=self.unit, file=sys.stderr, leave=False, disable=None
        )
        return self

    def add(self, row: dict) -> None:
        self.result["results"].append(row)
        for cells in self.cells(row):
            self.bar.write(table_row(cells), file=sys.stdout)  # above the bar
        sys.stdout.flush()

    def tick(self, n: int = 1) -> None:
        self.bar.update(n)

    def __exit__(self, kind, error, traceback) -> None:
        self.bar.close()
        if kind is KeyboardInterrupt:
            raise Interrupted(self.result | {"interrupted": True}) from None


OVERRIDES = {  # the trainer's options a benchmark may change from its preset
    "--size": "frame side in pixels",
    "--num-frames": "frames per clip",
    "--stride": "frames between sampled frames",
    "--grid": "regions per frame side",
    "--dim": "Transformer width",
    "--depth": "Transformer layers",
    "--heads": "attention heads",
}


def add_overrides(group, flags) -> None:
    """The options of ``flags`` (``--encoder`` and :data:`OVERRIDES`) that change a benchmark's preset."""
    for flag in flags:
        if flag == "--encoder":
            group.add_argument(flag, choices=("small", "resnet18", "resnet50"), help="the per-frame CNN")
        else:
            group.add_argument(flag, type=positive_int, help=OVERRIDES[flag])
