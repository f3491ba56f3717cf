"""Classify any video with a trained checkpoint: top-k labels with probabilities (seed §6).

    "VideoBERT performs well in a variety of video tasks, such as video classification,
     video retrieval and video summary generation."                    — seed, §6

    python -m minivb.predict clip.mp4 other.avi --checkpoint runs/toy-20250101-120000
    python -m minivb.predict my_videos/ --checkpoint runs/k400-…/best.pt --topk 3 --json

A video of any size, frame rate, orientation and length is turned into the views the model
was trained for, with the checkpoint's own preprocessing (``num_frames`` frames ``stride``
apart, squares resized to ``size``): ``clips`` evenly spaced clips × ``crops`` squares along
the long side, as :mod:`minivb.evaluate` does, and the softmax is averaged over the views::

    p(class | video) = 1/V · Σ_v softmax(logits(view_v))

The same pieces serve the other applications: :func:`load_model` (model + preprocessing
from a checkpoint), :func:`find_videos` (files and folders → video files),
:func:`video_views` (paths → a data set of views) and :func:`map_videos` (a function of the
views of every video, batched, broken files reported and skipped).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import runs
from .checks import check_int
from .cli import DEVICES, Parser, UsageError, autocast, check_batch_fits, nonnegative_int, positive_int, resolve_device, run_main
from .checkpoint import model_from_checkpoint, read_checkpoint
from .data.clips import VIDEO_EXTENSIONS, ClipDataset, Skipped, collate, worker_init
from .data.framestore import SUFFIX as STORE_SUFFIX
from .evaluate import VIEW_DEFAULTS, multiview_probs
from .model import VideoBERT
from .video import VideoDecodeError

__all__ = ["VIDEO_SUFFIXES", "Preprocessing", "load_model", "find_videos", "video_views", "map_videos", "predict", "main"]

# What a folder argument picks up (a file named on the command line is tried whatever its name).
VIDEO_SUFFIXES = tuple(sorted({*VIDEO_EXTENSIONS, ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", STORE_SUFFIX}))


@dataclass(frozen=True)
class Preprocessing:
    """How a video becomes model input: ``clips × crops`` views of ``num_frames`` frames ``stride``
    apart, each ``size × size`` — the checkpoint's training clip, as evaluation samples it."""

    num_frames: int
    stride: int
    size: int
    clips: int = 1
    crops: int = 1

    @classmethod
    def from_checkpoint(cls, ckpt: dict, clips: int | None = None, crops: int | None = None) -> "Preprocessing":
        """The training options stored in ``ckpt["args"]``; views default to :data:`~minivb.evaluate.VIEW_DEFAULTS`."""
        args = ckpt.get("args")
        if not isinstance(args, dict) or not {"num_frames", "stride", "size"} <= args.keys():
            raise ValueError("the checkpoint has no training options (args); it was not written by python -m minivb.train")
        default_clips, default_crops = VIEW_DEFAULTS.get(args.get("subset", "toy"), (1, 1))
        return cls(int(args["num_frames"]), int(args["stride"]), int(args["size"]),
                   default_clips if clips is None else clips, default_crops if crops is None else crops)


def load_model(checkpoint: str | os.PathLike, clips: int | None = None, crops: int | None = None
               ) -> tuple[VideoBERT, list[str], Preprocessing]:
    """A checkpoint file (or run folder → its ``last.pt``) → ``(model in eval mode on the CPU, class names, preprocessing)``.

    A missing or unreadable checkpoint → one-line :class:`~minivb.cli.UsageError`.
    """
    path = runs.checkpoint_path(checkpoint, "--checkpoint")
    try:
        ckpt = read_checkpoint(path)
        return model_from_checkpoint(ckpt, path), list(ckpt["classes"]), Preprocessing.from_checkpoint(ckpt, clips, crops)
    except ValueError as e:
        raise UsageError(str(e)) from None


def find_videos(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[Skipped]]:
    """Command-line arguments → ``(video files, problems)``.

    A file is kept whatever its name (the decoder decides); a folder gives every file under it
    (recursively, sorted) whose suffix is in :data:`VIDEO_SUFFIXES`; a missing path, or a folder
    without videos, is a :class:`~minivb.data.clips.Skipped` problem.
    """
    files: list[str] = []
    problems: list[Skipped] = []
    for given in paths:
        p = Path(given)
        if p.is_dir() and not p.name.endswith(STORE_SUFFIX):
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and (f.is_file() or f.is_dir() and f.name.endswith(STORE_SUFFIX)))
            if found:
                files.extend(found)
            else:
                problems.append(Skipped(str(p), f"a folder without videos ({', '.join(VIDEO_SUFFIXES)})"))
        elif p.exists() or p.is_symlink():
            files.append(str(p))  # a broken link or a non-video is reported by the decoder, with its reason
        else:
            problems.append(Skipped(str(p), "no such file or folder"))
    return files, problems


class _Views(Dataset):
    """Video ``i`` → ``(views (clips·crops, T, 3, size, size) uint8, i)``, or :class:`Skipped` for a broken file."""

    def __init__(self, clips: ClipDataset, prep: Preprocessing):
        self.clips, self.prep = clips, prep

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        try:
            return self.clips.views(i, self.prep.clips, self.prep.crops), i
        except VideoDecodeError as e:
            return Skipped(self.clips.items[i].path, e.reason)


def video_views(paths: Sequence[str | os.PathLike], prep: Preprocessing) -> Dataset:
    """Video files → a data set of their views (:class:`Preprocessing`): item ``i`` is ``(views, i)`` or ``Skipped``."""
    check_int("clips", prep.clips)
    if prep.crops not in (1, 3):
        raise ValueError(f"crops must be 1 (centre) or 3 (along the long side), got {prep.crops!r}")
    clips = ClipDataset([(str(p), None) for p in paths], [], prep.num_frames, prep.stride, train=False, size=prep.size)
    return _Views(clips, prep)


@torch.no_grad()
def map_videos(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset,
    *,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: str | None = None,
) -> tuple[list[torch.Tensor | None], list[Skipped]]:
    """``fn(views (B, V, T, 3, H, W) on device) → (B, …)`` over every video of :func:`video_views` data.

    Returns ``(outputs, skipped)``: ``outputs[i]`` is video ``i``'s row (on the CPU, float32), or
    ``None`` for a file that could not be decoded; ``skipped`` names those files and why.
    ``progress``: a tqdm bar with this description (shown on a terminal only).
    """
    from tqdm import tqdm

    device = torch.device(device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == "cuda", worker_init_fn=worker_init if workers else None)
    outputs: list[torch.Tensor | None] = [None] * len(data)
    skipped: list[Skipped] = []
    with tqdm(total=len(data), desc=progress, unit="video", disable=None if progress else True, leave=False) as bar, autocast(device):
        for views, index, bad in loader:
            skipped.extend(bad)
            if views is not None:
                rows = fn(views.to(device, non_blocking=True)).float().cpu()  # (B, …)
                for i, row in zip(index.tolist(), rows):
                    outputs[i] = row
            bar.update(len(bad) + (0 if index is None else len(index)))
    return outputs, skipped


def predict(
    model: nn.Module,
    paths: Sequence[str | os.PathLike],
    prep: Preprocessing,
    *,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str | None = None,
    progress: str | None = None,
) -> tuple[list[torch.Tensor | None], list[Skipped]]:
    """Class probabilities of every video → ``(probs, skipped)``: ``probs[i]`` ``(C,)``, softmax averaged over
    the views, or ``None`` for a file that could not be decoded (named in ``skipped``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    return map_videos(lambda views: multiview_probs(model, views), video_views(paths, prep),
                      batch_size=batch_size, workers=workers, device=device, progress=progress)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m minivb.predict",
        description="Classify videos with a checkpoint written by python -m minivb.train: the top-k classes and their "
        "probabilities for each video (softmax averaged over clips × crops views, sampled as the checkpoint was "
        "trained). Videos may have any size, frame rate, orientation and length. A file that cannot be read is "
        "reported on one line and the others are still classified; the exit status is then 1.",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or folders (every video under them, recursively)")
    p.add_argument("--checkpoint", required=True, help="a .pt file written by python -m minivb.train, or a run folder (its last.pt)")
    p.add_argument("--topk", type=positive_int, default=5, help="how many classes to list per video (default: 5, at most the number of classes)")
    p.add_argument("--json", action="store_true", help="print one JSON document (a list, one object per video) instead of text")
    p.add_argument("--clips", type=positive_int, help="temporal clips per video (default: toy 3, k400 4)")
    p.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (default: toy 1, k400 3)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="videos per batch (default: 4)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader worker processes (default: 0)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda if available, else cpu (default: auto)")
    return p


def _results(paths: list[str], probs: list, problems: list[Skipped], classes: list[str], topk: int) -> list[dict]:
    """One dict per video, problems first: ``path`` and ``top`` ([{label, probability}], best first) or ``error``."""
    why, listed = {s.path: s.reason for s in problems}, set(paths)
    out = [{"path": s.path, "error": s.reason} for s in problems if s.path not in listed]
    for path, p in zip(paths, probs):
        if p is None:
            out.append({"path": path, "error": why.get(path, "could not be decoded")})
            continue
        values, indices = p.topk(min(topk, len(classes)))
        out.append({"path": path, "top": [{"label": classes[j], "probability": round(float(v), 4)}
                                          for v, j in zip(values.tolist(), indices.tolist())]})
    return out


def run(argv: list[str] | None = None) -> int:
    """The command line's work → exit status (0, or 1 if any video could not be classified)."""
    import json

    opts = build_parser().parse_args(argv)
    model, classes, prep = load_model(opts.checkpoint, opts.clips, opts.crops)
    device = resolve_device(opts.device)
    check_batch_fits(device, opts.batch_size * prep.clips * prep.crops, prep.num_frames, prep.size,
                     f"--batch-size {opts.batch_size} × {prep.clips} clips × {prep.crops} crops × {prep.num_frames} frames × 3 × {prep.size}²")
    paths, problems = find_videos(opts.videos)
    probs, skipped = predict(model.to(device), paths, prep, batch_size=opts.batch_size, workers=opts.workers,
                             device=device, progress="classifying" if len(paths) > 1 else None)
    results = _results(paths, probs, problems + skipped, classes, opts.topk)
    for r in results:
        if "error" in r:
            print(f"minivb.predict: cannot classify {r['path']}: {r['error']}", file=sys.stderr)
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "top" in r:
                print(f"{r['path']}: " + ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"]))
    return 1 if any("error" in r for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.predict``: 0 if every video was classified, 1 if some could not be, 2 on a usage error."""
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    raise SystemExit(main())
