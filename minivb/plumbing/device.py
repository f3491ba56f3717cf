"""Which device a run uses, bf16 autocast on CUDA, and whether a batch can fit in its memory."""

from __future__ import annotations

import contextlib
import os

import torch

from .checks import UsageError

DEVICES = ("auto", "cpu", "cuda")  # the choices of every command's --device
DECODE_CHOICES = ("auto", "cpu", "gpu")  # --decode: where frame stores' JPEGs are decoded (minivb.data.device_decode)


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
        raise UsageError(
            f"{what} = {need / 1e9:,.1f} GB per batch as float32 (the network needs several times that), "
            f"but this {device.type} has {have / 1e9:,.1f} GB of memory; lower them"
        )
