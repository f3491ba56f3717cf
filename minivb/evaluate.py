"""Evaluate a trained VideoBERT: multi-view testing, top-1/top-5, per-class accuracy, confusion matrix.

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

    python -m minivb.evaluate --checkpoint runs/toy-20250101-120000            # its last.pt, 3 clips × 1 crop
    python -m minivb.evaluate --checkpoint runs/k400-…/best.pt --clips 4 --crops 3

Multi-view testing: each video is seen as ``clips`` evenly spaced temporal clips ×
``crops`` spatial crops; the model scores every view and the softmax probabilities are
averaged over the views (one prediction per video)::

    p(class | video) = 1/V · Σ_v softmax(logits(view_v)),   V = clips · crops

1 clip × 1 crop is exactly the trainer's validation sample (centre clip, centre crop).
Writes ``summary.json``, ``confusion.png`` and ``predictions.csv`` to ``--out``.
The functions :func:`evaluate`, :func:`multiview_probs` and :func:`plot_confusion` work on their
own (notebook 06 uses them); the metrics are :mod:`minivb.metrics`' (the trainer's too).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import textwrap
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import runs
from .checks import check_int
from .cli import DEVICES, Parser, UsageError, autocast, check_batch_fits, nonnegative_int, positive_int, resolve_device, run_main, write_atomic, write_json
from .checkpoint import model_from_checkpoint, read_checkpoint
from .data.clips import ClipDataset, MultiViewDataset, collate, limit_items, load_items, report_skipped, worker_init
from .metrics import accuracy_metrics

__all__ = [
    "VIEW_DEFAULTS",
    "multiview_probs",
    "accuracy_metrics",
    "evaluate",
    "dataset_from_checkpoint",
    "plot_confusion",
    "main",
]

# (clips, crops) used when --clips / --crops are not given, per subset the checkpoint was trained on.
VIEW_DEFAULTS = {"toy": (3, 1), "k400": (4, 3)}


# --------------------------------------------------------------------------- the numbers


def multiview_probs(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Views ``(B, V, T, 3, H, W)`` (or one view ``(B, T, 3, H, W)``) → class probabilities ``(B, C)``.

    Every view goes through the model as its own clip; the per-view softmaxes are averaged.
    """
    if views.ndim == 5:
        views = views[:, None]  # (B, 1, T, 3, H, W)
    if views.ndim != 6:
        raise ValueError(f"views must be shaped (B, V, T, 3, H, W) or (B, T, 3, H, W), got {tuple(views.shape)}")
    B, V = views.shape[:2]
    logits = model(views.flatten(0, 1)).float()  # (B·V, C)
    return logits.softmax(dim=-1).view(B, V, -1).mean(dim=1)  # (B, V, C) → (B, C)


def _loader(data, num_clips: int, num_crops: int, batch_size: int, workers: int, device: torch.device):
    """``data`` → batches ``(videos, labels, skipped)``: a ClipDataset is cut into views, a data set gets a DataLoader."""
    if isinstance(data, ClipDataset):
        data = MultiViewDataset(data, num_clips, num_crops)  # (views (V, T, 3, S, S), label)
    if not isinstance(data, Dataset):
        return data  # a ready loader
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=device.type == "cuda", worker_init_fn=worker_init if workers else None)


@torch.no_grad()
def _predict(model: nn.Module, loader, device: torch.device) -> tuple[list, list, list, int | None]:
    """Every batch through :func:`multiview_probs` → (probabilities, labels, skipped files, views per video)."""
    probs, labels, skipped, views = [], [], [], None
    with autocast(device):
        for videos, y, bad in loader:
            report_skipped(bad)
            skipped.extend(bad)
            if videos is None:  # every video of the batch was unreadable
                continue
            videos = videos.to(device, non_blocking=True)  # (B, V, T, 3, H, W) or (B, T, 3, H, W)
            views = videos.shape[1] if videos.ndim == 6 else 1
            probs.append(multiview_probs(model, videos).cpu())  # (B, C)
            labels.append(y.cpu())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return probs, labels, skipped, views


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
) -> dict:
    """Multi-view evaluation of ``model`` on ``data`` → a dict of results.

    ``data``: a :class:`~minivb.data.clips.ClipDataset` (its videos are cut into
    ``num_clips × num_crops`` views); any other data set returning ``(views (V, T, 3, H, W)
    or video (T, 3, H, W), label)`` or :class:`Skipped`; or a ready loader yielding
    :func:`~minivb.data.clips.collate` batches ``(videos, labels, skipped)``. ``device``:
    where to run (default: where the model is); bf16 autocast on CUDA.

    Returns :func:`~minivb.metrics.accuracy_metrics`' ``top1``, ``top5``, ``per_class_top1``
    (list in class-index order, None for a class without videos), ``confusion`` ``(C, C)``
    (rows: true class, columns: predicted); ``probs`` ``(N, C)`` (softmax averaged over views),
    ``labels`` ``(N,)``, ``num_videos`` (N, evaluated), ``skipped`` (count) and ``skipped_files``,
    ``clips``, ``crops``, ``views`` (per video), ``seconds``, and ``classes`` when known.
    """
    check_int("num_clips", num_clips)
    check_int("batch_size", batch_size)
    check_int("workers", workers, minimum=0)
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if classes is None:
        classes = getattr(data, "classes", None) or getattr(getattr(data, "dataset", None), "classes", None)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    probs, labels, skipped, views = _predict(model, _loader(data, num_clips, num_crops, batch_size, workers, device), device)
    seconds = time.perf_counter() - start
    model.train(was_training)

    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if num_classes is None:
        num_classes = probs[0].shape[1] if probs else len(classes or ())
    probs = torch.cat(probs) if probs else torch.zeros(0, num_classes)  # (N, C)
    labels = torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)  # (N,)
    result = accuracy_metrics(probs, labels, num_classes)
    result.update(
        probs=probs, labels=labels, num_videos=len(labels), skipped=len(skipped),
        skipped_files=[s.path for s in skipped], clips=num_clips, crops=num_crops,
        views=views if views is not None else num_clips * num_crops, seconds=seconds,
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
    """The evaluation :class:`ClipDataset` of a training checkpoint's data (its ``args``).

    Same clips as training used (``num_frames``, ``stride``, ``size``) and the checkpoint's
    class list; ``data_root`` overrides the stored one (a relative path in the checkpoint is
    relative to where training ran). ``limit``: a fixed subset of that many videos, chosen
    as the trainer's ``--limit-val`` chooses it. Missing root or split →
    ``FileNotFoundError``; a checkpoint without training options → ``ValueError``.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    args = ckpt.get("args")
    if not isinstance(args, dict) or not {"num_frames", "stride", "size"} <= args.keys():
        raise ValueError("the checkpoint has no training options (args); it was not written by python -m minivb.train")
    root = Path(data_root if data_root is not None else args.get("data_root", ""))
    if not root.is_dir():
        how = "" if data_root is not None else " (the checkpoint's data root)"
        raise FileNotFoundError(f"data root {root}{how} does not exist; pass --data-root with the folder that holds {split}.csv or {split}/<label>/")
    items, classes = load_items(root, split, list(ckpt["classes"]))
    items = limit_items(items, limit, int(args.get("seed", 0)) + 1)
    return ClipDataset(items, classes, args["num_frames"], args["stride"], train=False, size=args["size"])


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
        for i in range(C):
            for j in range(C):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    if C <= 60:
        ax.set_xticks(range(C), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(C), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"confusion matrix ({int(cm.sum())} videos)")
    return ax


# --------------------------------------------------------------------------- command line




def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m minivb.evaluate",
        description="Evaluate a checkpoint written by python -m minivb.train with multi-view testing: each video is "
        "cut into CLIPS evenly spaced temporal clips × CROPS spatial crops, the softmax probabilities are averaged "
        "over those views, and top-1, top-5, per-class accuracy and a confusion matrix are reported. Writes "
        "summary.json, confusion.png and predictions.csv to --out.",
        epilog=textwrap.fill("views: the toy set defaults to 3 clips × 1 crop — its frames are square and already at the model's "
        "size (3 crops would be the same picture) and its videos are short, so a few clips cover them. Kinetics-400 "
        "defaults to 4 clips × 3 crops, as in Video Swin; SlowFast and X3D report 10 × 3. The reason: a Kinetics "
        "video is about 10 s but one clip (16 frames, stride 4, at 25-30 fps) covers only about 2 s, so several "
        "uniform clips are needed to see the whole action; and the frames are wider than tall, so after resizing the "
        "shorter side, 3 crops (left, centre, right) cover the full width. Cost grows with clips × crops; accuracy "
        "gains flatten after a few views. 1 × 1 is the trainer's own validation (centre clip, centre crop).", 100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True,
                   help="a .pt file written by python -m minivb.train, or a run folder (uses its last.pt, the final "
                   "weights that the run's summary.json reports; pass best.pt explicitly for the best epoch)")
    p.add_argument("--data-root", help="data folder (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="val", help="split to evaluate: root/SPLIT.csv or root/SPLIT/<label>/ (default: val)")
    p.add_argument("--clips", type=positive_int, help="temporal clips per video (default: toy 3, k400 4)")
    p.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip: 1 = centre, 3 = along the long side "
                   "(default: toy 1, k400 3)")
    p.add_argument("--limit", type=positive_int, help="evaluate only N videos (the same fixed subset the trainer's "
                   "--limit-val takes)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="videos per batch; each brings clips × crops views (default: 8)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader worker processes (default: 0)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda if available, else cpu; bf16 autocast on cuda (default: auto)")
    p.add_argument("--out", help="output folder (default: CHECKPOINT_FOLDER/eval/<checkpoint name>-<split>-<clips>x<crops>); "
                   "refused if it already holds a summary.json, unless --force")
    p.add_argument("--force", action="store_true", help="overwrite an earlier evaluation's files in --out")
    return p


def _open(opts: argparse.Namespace) -> tuple[Path, dict, dict, int, int, Path]:
    """The checkpoint (a file or a run folder's last.pt), its training options ({} if none), the views and --out."""
    path = runs.checkpoint_path(opts.checkpoint, "--checkpoint")
    try:
        ckpt = read_checkpoint(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    args = ckpt["args"] if isinstance(ckpt.get("args"), dict) else {}
    clips, crops = VIEW_DEFAULTS.get(args.get("subset", "toy"), (1, 1))
    clips = opts.clips if opts.clips is not None else clips
    crops = opts.crops if opts.crops is not None else crops
    out = Path(opts.out) if opts.out else path.parent / "eval" / f"{path.stem}-{opts.split}-{clips}x{crops}"
    if (out / "summary.json").exists() and not opts.force:
        raise UsageError(f"--out {out} already holds an evaluation (summary.json); pass --force to overwrite it, or another --out")
    return path, ckpt, args, clips, crops, out


def _write_outputs(out: Path, summary: dict, result: dict, items: list, classes: list[str]) -> None:
    """summary.json, predictions.csv (one row per evaluated video) and confusion.png → ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    skipped = set(result["skipped_files"])
    kept = [it for it in items if it.path not in skipped]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "predicted", "probability", "correct"])
    for it, p, y in zip(kept, result["probs"], result["labels"].tolist()):
        j = int(p.argmax())
        writer.writerow([it.path, classes[y], classes[j], f"{p[j].item():.4f}", int(j == y)])
    write_atomic(out / "predictions.csv", buf.getvalue())
    ax = plot_confusion(result["confusion"], classes, title=f"{summary['split']}: top-1 {100 * result['top1']:.1f}% "
                        f"({summary['clips']}×{summary['crops']} views)")
    png = io.BytesIO()
    ax.figure.savefig(png, format="png", dpi=100)
    write_atomic(out / "confusion.png", png.getvalue())


def run(argv: list[str] | None = None) -> dict:
    """The command line's work → the summary dict. Raises :class:`UsageError` for bad input."""
    opts = build_parser().parse_args(argv)
    path, ckpt, args, clips, crops, out = _open(opts)
    device = resolve_device(opts.device)
    if {"num_frames", "size"} <= args.keys():
        b, t, size = opts.batch_size, args["num_frames"], args["size"]
        check_batch_fits(device, b * clips * crops, t, size,
                         f"--batch-size {b} × --clips {clips} × --crops {crops} × {t} frames × 3 × {size}²")
    try:
        dataset = dataset_from_checkpoint(ckpt, opts.data_root, opts.split, opts.limit)
        model, classes = model_from_checkpoint(ckpt, path), list(ckpt["classes"])  # the file is read once
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    data_root = str(opts.data_root or args.get("data_root"))
    print(f"minivb.evaluate: {path} ({ckpt.get('epoch', '?')} epochs) on {len(dataset)} {opts.split} videos of "
          f"{data_root}, {clips} clip(s) × {crops} crop(s), {device.type} → {out}", flush=True)
    runs.writable_folder(out)  # before the work, not after it
    result = evaluate(model.to(device), dataset, num_clips=clips, num_crops=crops, batch_size=opts.batch_size,
                      workers=opts.workers, device=device)
    summary = {
        "val_top1": result["top1"], "val_top5": result["top5"], "epochs": ckpt.get("epoch"),
        "seconds": round(result["seconds"], 2), "clips": clips, "crops": crops,
        "per_class_top1": dict(zip(classes, result["per_class_top1"])),
        "num_videos": result["num_videos"], "skipped": result["skipped"], "skipped_files": result["skipped_files"],
        "split": opts.split, "checkpoint": str(path), "data_root": data_root,
        "subset": args.get("subset", "toy"), "device": str(device), "confusion": result["confusion"].tolist(),
    }
    _write_outputs(out, summary, result, dataset.items, classes)
    if len(classes) <= 50:
        width = max(len(c) for c in classes)
        for i, (c, a) in enumerate(summary["per_class_top1"].items()):
            print(f"  {c:<{width}}  {'   -  ' if a is None else f'{100 * a:5.1f}%'}  ({int(result['confusion'][i].sum())} videos)")
    print(f"val top-1 {100 * result['top1']:.1f}%  top-5 {100 * result['top5']:.1f}%  ({result['num_videos']} videos, "
          f"{result['skipped']} skipped, {clips}×{crops} views, {summary['seconds']:.0f} s) → {out}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.evaluate``: 0 on success, 2 on a usage error (one line on stderr)."""
    return run_main(lambda: run(argv) and 0)


if __name__ == "__main__":
    raise SystemExit(main())
