"""Evaluation of a trained VideoBERT: multi-view testing, top-1/top-5, per-class accuracy, confusion matrix.

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

Multi-view testing: each video is seen as ``clips`` evenly spaced temporal clips ×
``crops`` spatial crops; the model scores every view and the softmax probabilities are
averaged over the views (one prediction per video)::

    p(class | video) = 1/V · Σ_v softmax(logits(view_v)),   V = clips · crops

1 clip × 1 crop is exactly the trainer's validation sample (centre clip, centre crop).
:func:`evaluate` (with :func:`minivb.engine.inference.multiview_logits`), :func:`dataset_from_checkpoint` and
:func:`plot_confusion` are what ``python -m minivb.evaluate`` runs and notebook 06 uses; the metrics
are :mod:`minivb.metrics`' (the trainer's too).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.clips import (
    ClipDataset,
    MultiViewDataset,
    UnknownLabels,
    limit_items,
    load_items,
    report_skipped,
)
from ..data.loader import clip_loader
from ..metrics import accuracy_metrics
from ..plumbing.checks import check_int
from ..plumbing.device import autocast
from .checkpoint import Preprocessing, read_checkpoint
from .inference import multiview_logits

# --------------------------------------------------------------------------- the numbers


def _loader(data, num_clips: int, num_crops: int, batch_size: int, workers: int, device: torch.device, decode: str):
    """``data`` → batches ``(videos, labels, skipped)``: a ClipDataset is cut into views (its frame stores decoded
    as ``decode`` says), a data set gets a DataLoader."""
    if isinstance(data, ClipDataset):
        return clip_loader(MultiViewDataset(data, num_clips, num_crops), device, batch_size, workers, decode=decode)
    if not isinstance(data, Dataset):
        return data  # a ready loader
    return clip_loader(data, device, batch_size, workers)


@torch.no_grad()
def _predict(model: nn.Module, loader, device: torch.device) -> tuple[list, list, list, int | None]:
    """Every batch through :func:`multiview_logits` → (every view's logits, labels, skipped files, views per video).

    A progress bar on a terminal (none in a log file or a notebook): evaluating Kinetics takes a while."""
    from tqdm import tqdm

    logits, labels, skipped, views = [], [], [], None
    total = len(loader) if hasattr(loader, "__len__") else None
    with autocast(device), tqdm(loader, total=total, desc="evaluating", unit="batch", leave=False, disable=None) as bar:
        for videos, y, bad in bar:
            report_skipped(bad)
            skipped.extend(bad)
            if videos is None:  # every video of the batch was unreadable
                continue
            videos = videos.to(device, non_blocking=True)  # (B, V, T, 3, H, W) or (B, T, 3, H, W)
            views = videos.shape[1] if videos.ndim == 6 else 1
            logits.append(multiview_logits(model, videos).cpu())  # (B, V, C)
            labels.append(y.cpu())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return logits, labels, skipped, views


def _metrics(model: nn.Module, probs: list, labels: list, classes: Sequence[str] | None) -> dict:
    """The batches' probabilities and labels → :func:`~minivb.metrics.accuracy_metrics` + ``probs`` ``(N, C)``,
    ``labels`` ``(N,)`` and ``num_videos`` (N; 0 when every video was skipped)."""
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if num_classes is None:
        num_classes = probs[0].shape[1] if probs else len(classes or ())
    probs = torch.cat(probs) if probs else torch.zeros(0, num_classes)  # (N, C)
    labels = torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)  # (N,)
    return {**accuracy_metrics(probs, labels, num_classes), "probs": probs, "labels": labels, "num_videos": len(labels)}


def evaluate(
    model: nn.Module,
    data: ClipDataset | Dataset | DataLoader | Iterable,
    *,
    num_clips: int = 1,
    num_crops: int = 1,
    batch_size: int = 8,
    workers: int = 0,
    device: str | torch.device | None = None,
    classes: Sequence[str] | None = None,
    decode: str = "auto",
) -> dict:
    """Multi-view evaluation of ``model`` on ``data`` → a dict of results.

    ``data``: a :class:`~minivb.data.clips.ClipDataset` (its videos are cut into
    ``num_clips × num_crops`` views); any other data set returning ``(views (V, T, 3, H, W)
    or video (T, 3, H, W), label)`` or :class:`Skipped`; or a ready loader yielding
    :func:`~minivb.data.clips.collate` batches ``(videos, labels, skipped)``. ``device``:
    where to run (default: where the model is); bf16 autocast on CUDA. ``decode``: where a ClipDataset's frame
    stores are decoded (:func:`~minivb.data.loader.clip_loader`; ``ValueError`` if impossible).

    Returns :func:`~minivb.metrics.accuracy_metrics`' ``top1``, ``top5``, ``per_class_top1``
    (list in class-index order, None for a class without videos), ``confusion`` ``(C, C)``
    (rows: true class, columns: predicted); ``probs`` ``(N, C)`` (softmax averaged over views), ``logits``
    ``(N, V, C)`` (every view's),
    ``labels`` ``(N,)``, ``num_videos`` (N, evaluated), ``skipped`` (count) and ``skipped_files``,
    ``clips``, ``crops``, ``views`` (per video), ``seconds``, and ``classes`` when known.
    """
    check_int("num_clips", num_clips)
    check_int("batch_size", batch_size)
    check_int("workers", workers, minimum=0)
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = _loader(data, num_clips, num_crops, batch_size, workers, device, decode)
    if classes is None:
        classes = getattr(data, "classes", None) or getattr(getattr(data, "dataset", None), "classes", None)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    logits, labels, skipped, views = _predict(model, loader, device)
    seconds = time.perf_counter() - start
    model.train(was_training)

    probs = [z.softmax(dim=-1).mean(dim=1) for z in logits]  # (B, V, C) → (B, C): p = 1/V · Σ_v softmax(z_v)
    result = _metrics(model, probs, labels, classes)
    result["logits"] = torch.cat(logits) if logits else torch.zeros(0, views or 1, result["probs"].shape[1])
    result.update(
        skipped=len(skipped),
        skipped_files=[s.path for s in skipped],
        clips=num_clips,
        crops=num_crops,
        views=views if views is not None else num_clips * num_crops,
        seconds=seconds,
    )
    if classes is not None:
        result["classes"] = list(classes)
    return result


# --------------------------------------------------------------------------- data from a checkpoint


def dataset_from_checkpoint(
    checkpoint: str | os.PathLike | dict,
    data_root: str | os.PathLike | None = None,
    split: str = "val",
    limit: int | None = None,
) -> ClipDataset:
    """The evaluation :class:`ClipDataset` of a training checkpoint's data (its ``args``: data root, seed).

    Same clips as training used (the checkpoint's :class:`~minivb.engine.checkpoint.Preprocessing`) and the checkpoint's
    class list; ``data_root`` overrides the stored one (a relative path in the checkpoint is
    relative to where training ran). ``limit``: a fixed subset of that many videos, chosen
    as the trainer's ``--limit-val`` chooses it. Missing root or split →
    ``FileNotFoundError``; a checkpoint without training options → ``ValueError``.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    prep = Preprocessing.from_checkpoint(ckpt)
    args = ckpt["args"] if isinstance(ckpt.get("args"), dict) else {}
    root = Path(data_root if data_root is not None else args.get("data_root", ""))
    if not root.is_dir():
        how = "" if data_root is not None else " (the checkpoint's data root)"
        raise FileNotFoundError(
            f"data root {root}{how} does not exist; pass --data-root with the folder that holds {split}.csv or "
            f"{split}/<label>/"
        )
    try:
        items, classes = load_items(root, split, list(ckpt["classes"]))
    except UnknownLabels as e:  # another data set's folder: its own class list is not the checkpoint's
        known = list(ckpt["classes"])
        raise ValueError(
            f"{root} ({split}) holds labels this checkpoint was not trained on: {', '.join(e.labels[:5])}"
            f"{' …' if len(e.labels) > 5 else ''}; the checkpoint knows {len(known)} classes "
            f"({', '.join(known[:5])}{' …' if len(known) > 5 else ''}): evaluate it on data with those classes"
        ) from None
    items = limit_items(items, limit, int(args.get("seed", 0)) + 1)
    return ClipDataset(items, classes, prep.num_frames, prep.stride, train=False, size=prep.size)


# --------------------------------------------------------------------------- pictures


def plot_confusion(confusion, classes: Sequence[str], ax=None, title: str | None = None, counts: bool | None = None):
    """Draw a confusion matrix (rows: true class, columns: predicted) → the matplotlib Axes.

    Colour = fraction of the true class's videos (each row sums to 1); ``counts`` (default:
    when there are at most 20 classes) writes the number of videos in every cell. Without
    ``ax`` a new Figure (Agg canvas, no pyplot) is made: ``ax.figure.savefig(...)``.
    """
    import numpy as np

    cm = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.int64)
    C = len(classes)
    if cm.shape != (C, C):
        raise ValueError(f"confusion matrix is {cm.shape}, expected ({C}, {C}) for {C} class names")
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        side = min(3 + 0.45 * C, 30)
        fig = Figure(figsize=(side + 1, side), tight_layout=True)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)  # (C, C), rows sum to 1
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if counts if counts is not None else C <= 20:
        for i, j in zip(*np.nonzero(cm)):  # every cell that holds a video, row by row
            colour = "white" if frac[i, j] > 0.5 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=colour)
    if C <= 60:
        ax.set_xticks(range(C), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(C), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"confusion matrix ({int(cm.sum())} videos)")
    return ax
