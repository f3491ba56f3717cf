"""Inference: a trained checkpoint applied to any video — the pieces every application stands on (seed §6).

    "VideoBERT performs well in a variety of video tasks, such as video classification,
     video retrieval and video summary generation."                    — seed, §6

A video of any size, frame rate, orientation and length is turned into the views the model
was trained for, with the checkpoint's own preprocessing (:class:`~minivb.engine.checkpoint.Preprocessing`:
``num_frames`` frames ``stride`` apart, squares resized to ``size``): ``clips`` evenly spaced clips ×
``crops`` squares along the long side, as :mod:`minivb.engine.evaluation` does, and the softmax is averaged
over the views (:func:`multiview_probs`)::

    p(class | video) = 1/V · Σ_v softmax(logits(view_v))

The pieces: :func:`load_model` (model + preprocessing from a checkpoint), :func:`find_videos`
(files and folders → video files), :func:`video_views` (paths → a data set of views),
:func:`map_videos` (a function of the views of every video, batched, broken files reported and
skipped) and :func:`predict` (class probabilities). ``python -m minivb.predict``, retrieval and
summarization use them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.clips import VIDEO_EXTENSIONS, ClipDataset, MultiViewDataset, Skipped
from ..data.framestore import SUFFIX as STORE_SUFFIX
from ..data.loader import clip_loader
from ..model import VideoBERT
from ..plumbing import distributed, runs
from ..plumbing.checks import UsageError, check_int
from ..plumbing.device import autocast
from ..video import VideoDecodeError
from . import confidence
from .checkpoint import Preprocessing, model_from_checkpoint, read_checkpoint

# What a folder argument picks up (a file named on the command line is tried whatever its name).
VIDEO_SUFFIXES = tuple(
    sorted({*VIDEO_EXTENSIONS, ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", STORE_SUFFIX})
)


def multiview_logits(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Views ``(B, V, T, 3, H, W)`` (or one view ``(B, T, 3, H, W)``) → every view's logits ``(B, V, C)``, float32:
    each view goes through the model as its own clip."""
    if views.ndim == 5:
        views = views[:, None]  # (B, 1, T, 3, H, W)
    if views.ndim != 6:
        raise ValueError(f"views must be shaped (B, V, T, 3, H, W) or (B, T, 3, H, W), got {tuple(views.shape)}")
    B, V = views.shape[:2]
    return in_chunks(model, views.flatten(0, 1)).float().view(B, V, -1)  # (B·V, C) → (B, V, C)


def multiview_probs(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Views ``(B, V, T, 3, H, W)`` (or one view ``(B, T, 3, H, W)``) → class probabilities ``(B, C)``.

    Every view goes through the model as its own clip; the per-view softmaxes are averaged.
    """
    return multiview_logits(model, views).softmax(dim=-1).mean(dim=1)  # (B, V, C) → (B, C)


MAX_VIEWS = 64  # views per forward pass: the network's activations stay bounded however many views are asked


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor, size: int = MAX_VIEWS) -> torch.Tensor:
    """``fn`` over ``clips (N, …)`` at most ``size`` at a time → ``(N, …)`` (each clip's result is its own: the model
    runs in eval mode). ``predict --clips 1000`` needs the memory of 64 views' activations, not 1000's."""
    return torch.cat([fn(part) for part in clips.split(size)]) if len(clips) > size else fn(clips)


def load_model(
    checkpoint: str | os.PathLike, clips: int | None = None, crops: int | None = None
) -> tuple[VideoBERT, list[str], Preprocessing]:
    """A checkpoint file (or run folder → its ``last.pt``)
    → ``(model in eval mode on the CPU, class names, preprocessing)``.

    A missing or unreadable checkpoint → one-line :class:`~minivb.plumbing.checks.UsageError`.
    """
    return _from_checkpoint(checkpoint, lambda ckpt, path: _model_of(ckpt, path, clips, crops))


def load_classifier(
    checkpoint: str | os.PathLike, clips: int | None = None, crops: int | None = None
) -> tuple[VideoBERT, list[str], Preprocessing, confidence.Confidence | None]:
    """:func:`load_model`'s three and :func:`load_confidence`'s record, from one reading of the file: a run still
    training rewrites its ``last.pt``, and the record must be the one fitted to these weights."""
    return _from_checkpoint(
        checkpoint,
        lambda ckpt, path: (*_model_of(ckpt, path, clips, crops), confidence.Confidence.from_checkpoint(ckpt)),
    )


def _model_of(ckpt: dict, path: Path, clips: int | None, crops: int | None) -> tuple:
    return model_from_checkpoint(ckpt, path), list(ckpt["classes"]), Preprocessing.from_checkpoint(ckpt, clips, crops)


def _from_checkpoint(checkpoint: str | os.PathLike, read: Callable[[dict, Path], Any]) -> Any:
    """``read(the checkpoint dict, its path)``, the file read once; every ``ValueError`` → one-line UsageError."""
    path = runs.checkpoint_path(checkpoint, "--checkpoint")
    try:
        return read(read_checkpoint(path), path)
    except ValueError as e:
        raise UsageError(str(e)) from None


def find_videos(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[Skipped]]:
    """Command-line arguments → ``(video files, problems)``.

    A file is kept whatever its name (the decoder decides); a folder gives every file under it
    (recursively, sorted) whose suffix is in :data:`VIDEO_SUFFIXES`. Every entry is accounted for: a
    missing path, a folder without videos, and — inside a folder — a broken link, a FIFO or device, or a
    folder named like a video are each a :class:`~minivb.data.clips.Skipped` problem, never dropped silently.
    """
    files: list[str] = []
    problems: list[Skipped] = []
    for given in paths:
        p = Path(given)
        if p.is_dir() and not p.name.endswith(STORE_SUFFIX):
            found, odd = _scan(p)
            files.extend(found)
            problems.extend(odd)
            if not found and not odd:
                problems.append(Skipped(str(p), f"a folder without videos ({', '.join(VIDEO_SUFFIXES)})"))
        elif p.exists() or p.is_symlink():
            files.append(str(p))  # a broken link or a non-video is reported by the decoder, with its reason
        else:
            problems.append(Skipped(str(p), "no such file or folder"))
    return files, problems


def _scan(folder: Path) -> tuple[list[str], list[Skipped]]:
    """The entries under ``folder`` named like videos → ``(video files and frame stores, the others with why)``."""
    found, odd = [], []
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        if f.is_file() or (f.is_dir() and f.name.endswith(STORE_SUFFIX)):
            found.append(str(f))
        elif f.is_symlink() and not f.exists():
            odd.append(Skipped(str(f), "a broken link (its target does not exist)"))
        elif f.is_dir():
            odd.append(Skipped(str(f), "a folder named like a video"))
        else:
            odd.append(Skipped(str(f), "not a regular file (a FIFO, socket or device)"))
    return found, odd


class _Views(MultiViewDataset):
    """Video ``i`` → ``(views (clips·crops, T, 3, size, size) uint8, i)``, or :class:`Skipped` for a broken file:
    a :class:`MultiViewDataset` whose label is the video's index (a user's videos have no labels)."""

    def sample(self, i: int, views: Callable | None = None):
        try:
            return (views or self.dataset.views)(i, self.num_clips, self.num_crops), i
        except VideoDecodeError as e:
            return Skipped(self.dataset.items[i].path, e.reason)


def video_views(paths: Sequence[str | os.PathLike], prep: Preprocessing) -> Dataset:
    """Video files → a data set of their views (:class:`Preprocessing`): item ``i`` is ``(views, i)`` or ``Skipped``."""
    check_int("clips", prep.clips)
    if prep.crops not in (1, 3):
        raise ValueError(f"crops must be 1 (centre) or 3 (along the long side), got {prep.crops!r}")
    clips = ClipDataset([(str(p), None) for p in paths], [], prep.num_frames, prep.stride, train=False, size=prep.size)
    return _Views(clips, prep.clips, prep.crops)


@torch.no_grad()
def map_videos(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset,
    *,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: str | None = None,
    decode: str = "cpu",
) -> tuple[list[torch.Tensor | None], list[Skipped]]:
    """``fn(views (B, V, T, 3, H, W) on device) → (B, …)`` over every video of :func:`video_views` data.

    Returns ``(outputs, skipped)``: ``outputs[i]`` is video ``i``'s row (on the CPU, float32), or
    ``None`` for a file that could not be decoded; ``skipped`` names those files and why.
    ``progress``: a tqdm bar with this description (shown on a terminal only). ``decode``: where frame stores'
    JPEGs are decoded (:func:`~minivb.data.loader.clip_loader`; ``ValueError`` if impossible).
    """
    from tqdm import tqdm

    device = torch.device(device)
    loader = clip_loader(data, device, batch_size, workers, decode=decode)  # --decode gpu: decoded on the device
    outputs: list[torch.Tensor | None] = [None] * len(data)
    skipped: list[Skipped] = []
    with (
        tqdm(total=len(data), desc=progress, unit="video", disable=None if progress else True, leave=False) as bar,
        autocast(device),
    ):
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
    decode: str = "auto",
) -> tuple[list[torch.Tensor | None], list[Skipped]]:
    """Class probabilities of every video → ``(probs, skipped)``: ``probs[i]`` ``(C,)``, softmax averaged over
    the views, or ``None`` for a file that could not be decoded (named in ``skipped``). ``decode``: where frame
    stores' JPEGs are decoded (:func:`map_videos`)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    return map_videos(
        lambda views: multiview_probs(model, views),
        video_views(paths, prep),
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
        decode=decode,
    )


# --------------------------------------------------------------------------- features for the confidence record


def views_features_and_logits(model, views: torch.Tensor) -> torch.Tensor:
    """Views ``(B, V, T, 3, H, W)`` → ``(B, V, F + C)``: :func:`~minivb.engine.confidence.features_and_logits` of
    every view."""
    B, V = views.shape[:2]
    return in_chunks(lambda c: confidence.features_and_logits(model, c), views.flatten(0, 1)).view(B, V, -1)


def measure_videos(model, paths: list[str], prep, device, rank: int = 0, world_size: int = 1, **loader) -> tuple:
    """Every view's features and logits of the videos at ``paths`` (``prep``'s views), each process taking every
    ``world_size``-th video and the results summed over processes → ``((N, V, F + C), the indices read)``; a video
    no process could decode is left out. ``loader``: ``batch_size``, ``workers`` of
    :func:`map_videos`."""
    mine = list(range(rank, len(paths), world_size))
    model.eval()
    outputs, _ = map_videos(
        lambda views: views_features_and_logits(model, views),
        video_views([paths[i] for i in mine], prep),
        device=device,
        **loader,
    )
    width = model.encoder.out_dim + model.config.dim + model.config.num_classes
    rows = torch.zeros(len(paths), prep.clips * prep.crops, width + 1, device=device)  # + 1: "read" flag
    for i, out in zip(mine, outputs):
        if out is not None:
            rows[i, :, :width], rows[i, :, width] = out.to(device), 1
    rows = distributed.all_reduce(rows, world_size).cpu()
    kept = rows[:, 0, width].nonzero().flatten()  # (N,)
    return rows[kept, :, :width].double(), kept


def load_confidence(checkpoint: str | os.PathLike) -> confidence.Confidence | None:
    """The checkpoint's :class:`~minivb.engine.confidence.Confidence` record, or ``None`` if it was written before
    there was one (one-line :class:`UsageError` for a file that cannot be read)."""
    return _from_checkpoint(checkpoint, lambda ckpt, path: confidence.Confidence.from_checkpoint(ckpt))


def classify(
    model: VideoBERT,
    paths: Sequence[str | os.PathLike],
    prep: Preprocessing,
    record: confidence.Confidence | None,
    acceptance: float | None = confidence.ACCEPTANCE,
    **loader,
) -> tuple[confidence.Judgement | None, list[int], list[Skipped]]:
    """The videos at ``paths`` judged by ``record`` (``None``: an older checkpoint, the plain softmax average and
    nothing rejected; ``acceptance=None``: nothing rejected) → ``(judgement of the videos read or None if none was,
    their indices in paths, the files that could not be decoded)``. ``loader``: :func:`map_videos`' options."""
    model.eval()
    outputs, skipped = map_videos(
        lambda views: views_features_and_logits(model, views), video_views(paths, prep), **loader
    )
    kept = [i for i, out in enumerate(outputs) if out is not None]
    if not kept:
        return None, kept, skipped
    rows = torch.stack([outputs[i] for i in kept]).double()  # (N, V, F + C)
    if record is None:
        return confidence.uncalibrated(rows, model.encoder.out_dim + model.config.dim), kept, skipped
    return record.judge(rows, acceptance), kept, skipped
