"""Numbers and output shared by the benchmarks: min/median/max and ratios, table cells, Markdown tables,
strict JSON, and the header (machine, versions, command line) every report starts with."""

from __future__ import annotations

import datetime
import importlib
import math
import os
import platform
import shlex
import statistics
from pathlib import Path

import cv2  # (quieted by minivb/__init__.py, which runs first)
import numpy as np
import torch


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


def markdown_table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table (``|`` in cells escaped); the first ``left`` columns are left-aligned, the others
    right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(headers))]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines)


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
