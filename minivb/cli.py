"""Small pieces the command lines (``minivb.train``, ``minivb.evaluate``) share."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

__all__ = ["DEVICES", "UsageError", "resolve_device", "autocast", "write_atomic"]

DEVICES = ("auto", "cpu", "cuda")


class UsageError(Exception):
    """A problem with the options or the inputs: reported as one line, exit status 2."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto" | "cpu" | "cuda"`` → a device; ``cuda`` picks GPU ``local_rank`` (one per process under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available; use --device cpu (or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def autocast(device: torch.device):
    """bf16 autocast on CUDA (same exponent range as float32: no loss scaling); nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a small file so that a reader sees the old or the new version, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
