"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A training checkpoint is a plain dict of tensors, Python numbers, strings, lists and
dicts (nothing that needs unpickling code, so ``weights_only=True`` can load it safely)::

    model        state dict of the bare model (unwrapped from DDP / torch.compile)
    config       VideoBERTConfig as a dict          classes     class names, index order
    optimizer    optimizer.state_dict()             scheduler   scheduler.state_dict()
    step         optimizer steps done               epoch       current epoch (0-based)
    step_in_epoch  batches of ``epoch`` already done (resume continues after them)
    rng          torch CPU (and CUDA) generator states
    args         the training options               best_val_top1, history, …

:func:`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk
and renames it over the target (``os.replace`` is atomic), so a run killed at any moment
leaves either the old checkpoint or the new one — never half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .cli import NoSpace, is_disk_full
from .model import VideoBERT, VideoBERTConfig

__all__ = ["unwrap_model", "save_checkpoint", "load_file", "read_checkpoint", "model_from_checkpoint", "load_checkpoint"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, obj: dict) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: temporary file, fsync, ``os.replace`` → ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; a checkpoint gets the user's usual permissions
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):  # the old checkpoint stays; no half-written file is left behind
            raise NoSpace(path.parent) from None
        raise
    try:  # make the rename itself durable (best effort: not every file system allows it)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_file(path: str | os.PathLike, what: str, hint: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with one-line errors: a missing file → ``FileNotFoundError``, a file
    that cannot be read (another format, truncated, a foreign pickle) → ``ValueError``; both name ``what`` and end
    with ``hint`` (what to pass instead)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; {hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, unsupported globals, …
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise ValueError(f"{path} is not a readable {what} ({reason}); {hint}") from None


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True``.

    A missing file → ``FileNotFoundError``; a file that is not a minivb checkpoint
    (another format, truncated, foreign pickle) → one-line ``ValueError`` naming it.
    """
    hint = "pass a .pt file written by python -m minivb.train"
    ckpt = load_file(path, "minivb checkpoint", hint, map_location)
    if not isinstance(ckpt, dict) or not {"model", "config", "classes"} <= ckpt.keys():
        raise ValueError(f"{path} is not a minivb checkpoint (no model/config/classes entries); {hint}")
    return ckpt


def model_from_checkpoint(ckpt: dict, where: str | os.PathLike = "checkpoint") -> VideoBERT:
    """The model in a checkpoint dict already read (:func:`read_checkpoint`), on the CPU, in eval mode.

    Rebuilds ``VideoBERT(VideoBERTConfig(**ckpt["config"]))`` (never downloading ImageNet
    weights: the checkpoint holds every weight) and loads the state dict strictly.
    """
    try:
        config = VideoBERTConfig(**{**ckpt["config"], "pretrained": False})
        model = VideoBERT(config)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"{where}: model weights do not match the stored config ({reason})") from None
    config.pretrained = bool(ckpt["config"].get("pretrained", False))
    return model.eval()


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[VideoBERT, list[str]]:
    """A trained model and its class names from a checkpoint file → ``(model in eval mode, classes)``."""
    ckpt = read_checkpoint(path, map_location)
    model = model_from_checkpoint(ckpt, path)
    return model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu"), list(ckpt["classes"])
