"""Video clip data sets for training and evaluation: index → clip tensor + label.

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

Three pieces, usable on their own:

* :func:`load_items` reads a split's index — ``root/{split}.csv`` (columns
  ``path,label[,frames]``, path relative to ``root``) or else torchvision's class-folder
  layout ``root/{split}/<label>/*.mp4`` — and the class list (``root/classes.txt``, or the
  sorted label names).
* :class:`ClipDataset` turns an item into ``(video (T, 3, size, size) float in [0, 1], label)``.
  Training: a random temporal window, ``transforms.v2.RandomResizedCrop`` and a horizontal
  flip that remaps the label (``left_to_right`` ⟷ ``right_to_left`` on the toy set).
  Evaluation: the centre clip, shorter side resized to ``size``, centre crop; multi-view
  testing through :meth:`ClipDataset.views` / :class:`MultiViewDataset`.
* :class:`ShardedSampler` orders the indices of an epoch and shards them across ranks.

Reproducibility: every random choice for a sample is a function of ``(seed, epoch, index)``
only, and the sampler's permutation a function of ``(seed, epoch)``. So a batch does not
depend on the number of DataLoader workers, on the process that decodes it, or on whether
the run was interrupted and resumed (that is what makes exact resume possible).

Broken files never crash a run: ``__getitem__`` returns a :class:`Skipped` marker instead
of raising, :func:`collate` drops it from the batch and hands it on, and
:func:`report_skipped` logs one warning per file (in the main process, once per run).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..video import VideoDecodeError, read_frames, sample_indices, video_info

__all__ = [
    "VIDEO_EXTENSIONS",
    "Item",
    "Skipped",
    "load_items",
    "sample_seed",
    "ClipDataset",
    "MultiViewDataset",
    "collate",
    "report_skipped",
    "ShardedSampler",
    "steps_per_epoch",
]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")


class Item(NamedTuple):
    """One video of a split: absolute-or-relative file path, label name, frame count if known."""

    path: str
    label: str
    frames: int | None


class Skipped(NamedTuple):
    """What ``__getitem__`` returns for a file that cannot be decoded (name and reason)."""

    path: str
    reason: str


# --------------------------------------------------------------------------- index


def _read_csv(root: Path, csv_path: Path) -> list[Item]:
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}; expected a header path,label[,frames]")
        items = []
        for n, row in enumerate(reader, start=2):
            frames = (row.get("frames") or "").strip()
            try:
                count = int(frames) if frames else None
            except ValueError:
                raise ValueError(f"{csv_path}, line {n}: frames must be an integer, got {frames!r}") from None
            items.append(Item(str(root / row["path"]), row["label"], count if count and count > 0 else None))
    return items


def _scan_folders(split_dir: Path) -> list[Item]:
    items = []
    for label_dir in _class_dirs(split_dir):
        for f in sorted(label_dir.iterdir()):
            if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file():
                items.append(Item(str(f), label_dir.name, None))
    return items


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


def load_items(root: str | os.PathLike, split: str, classes: Sequence[str] | None = None) -> tuple[list[Item], list[str]]:
    """A split's videos and the class list → ``(items, classes)``.

    Index: ``root/{split}.csv`` (header ``path,label[,frames]``; ``path`` relative to ``root``)
    if it exists, else the class-folder layout ``root/{split}/<label>/*.{mp4,avi,mkv,webm}``.
    Classes: ``classes`` if given, else ``root/classes.txt`` (one name a line, in class-index
    order) if it exists, else the sorted class folder names (or label names of the CSV). Labels outside the class
    list, a missing root or split, or an empty split → one-line ``FileNotFoundError`` /
    ``ValueError`` naming the path and the fix.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist; pass the folder that holds {split}.csv or {split}/<label>/*.mp4")
    csv_path, split_dir = root / f"{split}.csv", root / split
    if csv_path.is_file():
        items = _read_csv(root, csv_path)
        where = csv_path
    elif split_dir.is_dir():
        items = _scan_folders(split_dir)
        where = split_dir
    else:
        raise FileNotFoundError(
            f"no {split} split in {root}: expected {csv_path} (columns path,label[,frames]) or class folders {split_dir}/<label>/*.mp4"
        )
    if not items:
        raise ValueError(f"the {split} split in {where} is empty; add videos ({', '.join(VIDEO_EXTENSIONS)}) or index rows")
    if classes is None:
        names_file = root / "classes.txt"
        if names_file.is_file():
            classes = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        elif where == split_dir:  # every class folder is a class, even an empty one (indices must not shift)
            classes = [p.name for p in _class_dirs(split_dir)]
        else:
            classes = sorted({it.label for it in items})
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"class list for {root} has repeated names; make every class name unique")
    unknown = sorted({it.label for it in items} - set(classes))
    if unknown:
        raise ValueError(f"{where} has label(s) not in the class list: {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}; "
                         f"add them to {root / 'classes.txt'} or fix the labels")
    return items, classes


# --------------------------------------------------------------------------- randomness


def limit_items(items: list, n: int | None, seed: int) -> list:
    """A fixed random subset of ``n`` items (in their original order), or all of them (``n=None``).

    The trainer's ``--limit-train`` uses ``seed``, its ``--limit-val`` ``seed + 1`` (so does the evaluator)."""
    if n is None or n >= len(items):
        return items
    keep = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return [items[i] for i in keep.tolist()]


def sample_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of integer ``keys`` (e.g. ``seed, epoch, index``)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


_SAMPLE, _SAMPLER = 1, 2  # domain tags, so a sample's stream never equals the sampler's


# --------------------------------------------------------------------------- data set


def _to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → float ``(T, 3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)


def _crop_boxes(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of ``num_crops`` size×size crops: 1 = centre; 3 = start/centre/end of the long side."""
    top, left = int(round((height - size) / 2)), int(round((width - size) / 2))  # as transforms.v2.CenterCrop
    if num_crops == 1:
        return [(top, left)]
    if width >= height:
        return [(top, 0), (top, left), (top, width - size)]
    return [(0, left), (top, left), (height - size, left)]


class ClipDataset(Dataset):
    """Clips of ``num_frames`` frames ``stride`` apart → ``(video (T, 3, size, size) float in [0, 1], label)``.

    ``items``: :class:`Item` s (or ``(path, label[, frames])`` tuples) with label names from
    ``classes``; the returned label is the class index. ``train=True``: random temporal
    window (``sample_indices(mode="random")``), ``RandomResizedCrop(size, scale)``, and with
    probability 0.5 a horizontal flip that maps the label through ``hflip`` (label name →
    label name, e.g. :data:`minivb.data.toy.HFLIP`; ``None`` = a mirror keeps the label),
    and, only if ``vflip`` is given (e.g. :data:`minivb.data.toy.VFLIP`; real videos are
    not upside down), a vertical flip with probability 0.5 that maps the label through it.
    ``train=False``: the centre clip, shorter side resized to ``size``, centre crop.

    Every random draw is a function of ``(seed, epoch, index)`` (:meth:`set_epoch`), so a
    sample is the same in any worker and after a resume. ``preload=True`` decodes every
    video once up front and keeps its uint8 frames in memory (small sets only). A file that
    cannot be decoded gives a :class:`Skipped` marker instead of a sample (see :func:`collate`).
    """

    def __init__(
        self,
        items: Sequence,
        classes: Sequence[str],
        num_frames: int,
        stride: int,
        *,
        train: bool,
        size: int,
        seed: int = 0,
        hflip: dict[str, str] | None = None,
        vflip: dict[str, str] | None = None,
        preload: bool = False,
        scale: tuple[float, float] = (0.6, 1.0),
    ):
        for name, value in (("num_frames", num_frames), ("stride", stride), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
        self.items = [Item(str(it[0]), str(it[1]), it[2] if len(it) > 2 else None) for it in items]
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({it.label for it in self.items} - set(index))
        if unknown:
            raise ValueError(f"label(s) {', '.join(unknown[:5])} not in classes; pass the full class list")
        self.labels = [index[it.label] for it in self.items]
        for name, table in (("hflip", hflip), ("vflip", vflip)):
            bad = sorted({(table or {}).get(c, c) for c in self.classes} - set(index))  # entries for absent classes are ignored
            if bad:
                raise ValueError(f"{name} maps to label(s) {', '.join(bad[:5])} that are not classes")
        self.hflip = [index[hflip.get(c, c)] if hflip is not None else i for i, c in enumerate(self.classes)]
        self.vflip = None if vflip is None else [index[vflip.get(c, c)] for c in self.classes]
        self.num_frames, self.stride, self.size = num_frames, stride, size
        self.train, self.seed, self.epoch = bool(train), int(seed), 0
        self.crop = v2.RandomResizedCrop(size, scale=scale, antialias=True)
        self.resize = v2.Resize(size, antialias=True)  # shorter side → size
        self.center = v2.CenterCrop(size)
        self.frames: list[np.ndarray | Skipped] | None = None
        if preload:
            self.preload()

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes (set before making the DataLoader iterator)."""
        self.epoch = int(epoch)

    # ---- decoding

    def preload(self) -> None:
        """Decode every video once and keep its frames (uint8 ``(N, H, W, 3)``) in memory."""
        from tqdm import tqdm

        frames: list[np.ndarray | Skipped] = []
        for it in tqdm(self.items, desc="decoding videos", unit="video", leave=False, disable=None):
            try:
                total = it.frames or video_info(it.path).frames
                frames.append(read_frames(it.path, range(total)))
            except VideoDecodeError as e:
                skipped = Skipped(it.path, e.reason)
                report_skipped([skipped])
                frames.append(skipped)
        self.frames = frames

    def _total_frames(self, i: int, exact: bool) -> int:
        if self.frames is not None:
            return len(self.frames[i])
        if self.items[i].frames:
            return self.items[i].frames
        try:
            return video_info(self.items[i].path, exact=exact).frames
        except VideoDecodeError:
            if exact:
                raise
            return video_info(self.items[i].path, exact=True).frames  # the header has no count: count by decoding

    def _clip(self, i: int, mode: str, seed: int | None = None, num_clips: int = 1) -> np.ndarray:
        """uint8 frames of the clip(s) ``sample_indices(mode)`` picks → ``(T, H, W, 3)`` or ``(clips, T, H, W, 3)``.

        Without a known frame count the container's count is tried first (fast); if it was
        wrong the frames are counted by decoding and the clip is drawn again (same seed).
        """
        exact = self.frames is not None or self.items[i].frames is not None
        while True:
            g = torch.Generator().manual_seed(seed) if seed is not None else None
            idx = sample_indices(self._total_frames(i, exact), self.num_frames, self.stride, mode, num_clips=num_clips, generator=g)
            try:
                if self.frames is not None:
                    return self.frames[i][idx]
                flat = read_frames(self.items[i].path, idx.reshape(-1))
                return flat.reshape(idx.shape + flat.shape[1:])
            except VideoDecodeError:
                if exact:
                    raise
                exact = True

    # ---- samples

    def __getitem__(self, i: int):
        i = int(i)
        if self.frames is not None and isinstance(self.frames[i], Skipped):
            return self.frames[i]
        try:
            return self._train_sample(i) if self.train else self._eval_sample(i)
        except VideoDecodeError as e:
            return Skipped(self.items[i].path, e.reason)

    def _train_sample(self, i: int) -> tuple[torch.Tensor, int]:
        seed = sample_seed(_SAMPLE, self.seed, self.epoch, i)  # four streams: time, flip, crop, vertical flip
        video = _to_video(self._clip(i, "random", seed))  # (T, 3, H, W)
        flip = bool(torch.rand((), generator=torch.Generator().manual_seed(seed + 1)) < 0.5)
        vflip = self.vflip is not None and bool(torch.rand((), generator=torch.Generator().manual_seed(seed + 3)) < 0.5)
        # transforms.v2 draws from the global CPU generator: give it its own stream, then restore it.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed + 2)
            video = self.crop(tv_tensors.Video(video)).as_subclass(torch.Tensor)  # (T, 3, size, size), one crop for all frames
        label = self.labels[i]
        if flip:
            video, label = video.flip(-1), self.hflip[label]  # a mirror can change the class (left ⟷ right)
        if vflip:
            video, label = video.flip(-2), self.vflip[label]  # (top ⟷ bottom)
        return video.contiguous(), label

    def _fit(self, video: torch.Tensor) -> torch.Tensor:
        return self.resize(tv_tensors.Video(video)).as_subclass(torch.Tensor)  # shorter side = size

    def _eval_sample(self, i: int) -> tuple[torch.Tensor, int]:
        video = self._fit(_to_video(self._clip(i, "center")))
        return self.center(video).contiguous(), self.labels[i]  # (T, 3, size, size)

    def views(self, i: int, num_clips: int = 1, num_crops: int = 1) -> torch.Tensor:
        """Multi-view testing input for video ``i`` → ``(num_clips · num_crops, T, 3, size, size)``.

        Temporal clips: ``sample_indices(mode="uniform", num_clips=...)`` — evenly spaced
        windows, the first at the start and the last at the end of the video. Spatial crops
        of the frames resized to shorter side ``size``: ``num_crops=1`` the centre crop;
        ``num_crops=3`` the start, centre and end of the long side (left/centre/right for
        landscape, top/centre/bottom for portrait). View ``k`` is clip ``k // num_crops``,
        crop ``k % num_crops``. Raises :class:`~minivb.video.VideoDecodeError` for a broken file.
        """
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops!r}")
        i = int(i)
        if self.frames is not None and isinstance(self.frames[i], Skipped):
            raise VideoDecodeError(self.frames[i].path, self.frames[i].reason)
        clips = self._clip(i, "uniform", num_clips=num_clips)  # (clips, T, H, W, 3) uint8
        out = []
        for clip in clips:
            video = self._fit(_to_video(clip))  # (T, 3, H', W'), shorter side = size
            for top, left in _crop_boxes(video.shape[-2], video.shape[-1], self.size, num_crops):
                out.append(video[..., top:top + self.size, left:left + self.size])
        return torch.stack(out).contiguous()  # (clips · crops, T, 3, size, size)


class MultiViewDataset(Dataset):
    """``dataset[i].views(...)`` as a data set: → ``(views (V, T, 3, size, size), label)`` or :class:`Skipped`.

    For multi-view evaluation with a DataLoader and :func:`collate` (batches ``(B, V, T, 3, size, size)``).
    """

    def __init__(self, dataset: ClipDataset, num_clips: int = 1, num_crops: int = 1):
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops!r}")
        self.dataset, self.num_clips, self.num_crops = dataset, num_clips, num_crops

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset.views(i, self.num_clips, self.num_crops), self.dataset.labels[int(i)]
        except VideoDecodeError as e:
            return Skipped(e.path, e.reason)


# --------------------------------------------------------------------------- batches


def collate(samples: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Skipped]]:
    """Batch ``(video, label)`` samples, dropping :class:`Skipped` ones → ``(videos, labels, skipped)``.

    ``videos`` ``(B, …)`` and ``labels`` ``(B,)`` are ``None`` when every sample of the batch
    was skipped. Pass ``skipped`` to :func:`report_skipped` in the main process.
    """
    good = [s for s in samples if not isinstance(s, Skipped)]
    skipped = [s for s in samples if isinstance(s, Skipped)]
    if not good:
        return None, None, skipped
    videos, labels = default_collate(good)
    return videos, labels, skipped


_reported: set[str] = set()


def report_skipped(skipped: Sequence[Skipped]) -> None:
    """Log one warning per broken file (once per process, however often it is drawn)."""
    for s in skipped:
        if s.path not in _reported:
            _reported.add(s.path)
            log.warning("skipping %s: %s", s.path, s.reason)


# --------------------------------------------------------------------------- sampler


class ShardedSampler(Sampler[int]):
    """An epoch's order of ``n`` indices, sharded across ``world_size`` ranks; resumable mid-epoch.

    ``shuffle=True``: a permutation that is a function of ``(seed, epoch)`` only; else
    ``0 … n-1``. Rank ``r`` takes positions ``r, r + world_size, …`` of that order.
    ``drop_last=True`` first cuts the order to a multiple of ``world_size`` (every rank gets
    the same count: needed for DDP training); ``drop_last=False`` keeps every index, so the
    ranks together cover each index exactly once (lengths may differ by one: evaluation).
    ``set_epoch(epoch, skip=k)`` starts the epoch after this rank's first ``k`` indices
    (resume after ``k / batch_size`` batches) without loading them.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        self.n, self.shuffle, self.seed = n, bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = rank, world_size, bool(drop_last)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.epoch, self.skip = int(epoch), int(skip)

    def shard(self) -> list[int]:
        """This rank's full index list for the current epoch (ignoring ``skip``)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(_SAMPLER, self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.drop_last:
            order = order[: self.n // self.world_size * self.world_size]
        return order[self.rank :: self.world_size]

    def num_samples(self) -> int:
        """Length of this rank's full shard (the epoch's size for this rank)."""
        total = self.n // self.world_size * self.world_size if self.drop_last else self.n
        return len(range(self.rank, total, self.world_size))

    def __iter__(self):
        return iter(self.shard()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples() - self.skip)


def steps_per_epoch(sampler: ShardedSampler, batch_size: int) -> int:
    """Batches in one full epoch of ``sampler`` (the last one may be short)."""
    return math.ceil(sampler.num_samples() / batch_size)
