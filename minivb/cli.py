"""Small pieces the command lines (``minivb.train``, ``minivb.evaluate``, ``minivb.data.kinetics``, …) share."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable

import torch

__all__ = ["DEVICES", "UsageError", "NoSpace", "is_disk_full", "Parser", "number", "positive_int", "nonnegative_int", "seed", "run_main", "memory_bytes", "check_batch_fits", "resolve_device",
           "autocast", "write_atomic", "write_json"]

DEVICES = ("auto", "cpu", "cuda")


class UsageError(Exception):
    """A problem with the options or the inputs: reported as one line, exit status 2."""


class NoSpace(OSError):
    """The disk is full: what was being written is not (the old version of the file is kept)."""

    def __init__(self, folder: str | os.PathLike):
        super().__init__(errno.ENOSPC, f"no space left on {folder}; the files written before are kept, nothing "
                                       f"half-written is left; free some space and run again")


def is_disk_full(e: BaseException) -> bool:
    """Is ``e`` a full disk? (``OSError`` ENOSPC, or torch.save's "unexpected pos" when its zip writer runs out.)"""
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        (isinstance(e, RuntimeError) and ("unexpected pos" in str(e) or "file write failed" in str(e)))


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line, ``error: … (see <prog> --help)``, exit status 2 (no usage block)."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def number(kind, minimum, strict: bool):
    """An argparse ``type``: text → ``kind`` (int or float), finite and ``> minimum`` (strict) or ``>= minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value
    return parse


positive_int, nonnegative_int = number(int, 0, True), number(int, 0, False)


def seed(text: str) -> int:
    """An argparse ``type`` for seeds: an integer in [0, 2**63) (what torch's generators take)."""
    value = nonnegative_int(text)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"must be < 2**63, got {text}")
    return value


def run_main(work: Callable[[], int | None], errors: tuple[type[Exception], ...] = ()) -> int:
    """Every command line's ``main``: run ``work()`` → its exit status (``None`` → 0).

    :class:`UsageError` (and any of ``errors``) → ``error: <one line>`` on stderr, status 2;
    Ctrl-C → one line, status 130 (``work`` saves what it must before re-raising). Log records
    (skipped videos, …) print as ``LEVEL: message`` unless the caller configured logging.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    try:
        status = work()
    except (UsageError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NoSpace as e:
        print(f"error: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


def memory_bytes(device: torch.device) -> int:
    """The memory a batch must fit in: the GPU's for CUDA, the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_fits(device: torch.device, videos: int, frames: int, size: int, what: str) -> None:
    """Refuse, before allocating, a batch whose float32 input alone needs over a quarter of the memory
    (the network's activations need many times more): one line with the estimate and the options to lower."""
    need, have = videos * frames * 3 * size * size * 4, memory_bytes(device)
    if need > have / 4:
        raise UsageError(f"{what} = {need / 1e9:,.1f} GB per batch as float32 (the network needs several times that), "
                         f"but this {device.type} has {have / 1e9:,.1f} GB of memory; lower them")


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


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a small file so that a reader sees the old or the new version, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise NoSpace(path.parent) from None
        raise


def _finite(obj):
    """A copy of ``obj`` that strict JSON accepts: NaN / ±inf → ``None``, NumPy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # a NumPy scalar or 0-d tensor
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as strict JSON (non-finite numbers → ``null``), indented, written atomically."""
    write_atomic(path, json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")
