"""Video clip data sets for training and evaluation: index → clip tensor + label.

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

Three pieces, usable on their own:

* :func:`load_items` reads a split's index — ``root/{split}.csv`` (columns
  ``path,label[,frames[,step]]``, path relative to ``root``) or else torchvision's class-folder
  layout ``root/{split}/<label>/*.mp4`` — and the class list (``root/classes.txt``, or the
  sorted label names). The files are videos or prepared frame stores (``.jpgs``).
* :class:`ClipDataset` turns an item into ``(video (T, 3, size, size) uint8, label)``.
  Training (:class:`Augmentation`): a random temporal window, ``transforms.v2.RandomResizedCrop`` and a
  horizontal flip that remaps the label (``left_to_right`` ⟷ ``right_to_left`` on the toy set).
  Evaluation: the centre clip, its centre square resized to ``size``; multi-view testing
  through :meth:`ClipDataset.views` / :class:`MultiViewDataset`. Frames stay uint8 and are
  cropped before they are resized; the model turns them into floats on its own device.
* :class:`ShardedSampler` orders the indices of an epoch and shards them across ranks.

Reproducibility: every random choice for a sample is a function of ``(seed, epoch, index)``
only, and the sampler's permutation a function of ``(seed, epoch)``. So a batch does not
depend on the number of DataLoader workers, on the process that decodes it, or on whether
the run was interrupted and resumed (that is what makes exact resume possible).

Broken files never crash a run: ``__getitem__`` returns a :class:`Skipped` marker instead
of raising (in training, a :class:`Replaced` sample: another clip, chosen from the seed,
epoch and index, that names the broken file), :func:`collate` drops or batches it and hands
the name on, and :func:`report_skipped` logs one warning per file (in the main process,
once per run).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..plumbing.checks import check_int
from ..plumbing.files import read_text
from ..plumbing.samples import Skipped, report_skipped, sample_seed
from ..video import VideoDecodeError, crop_boxes, read_frames, sample_indices, video_info
from .framestore import SUFFIX as STORE_SUFFIX
from .framestore import read_store_frames, store_info

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")


class Item(NamedTuple):
    """One video of a split: file path, label name, frame count if known, frame step of the file.

    ``step`` > 1 for a prepared frame store (:mod:`minivb.data.framestore`) that keeps every
    ``step``-th source frame; ``frames`` then counts the stored frames.
    """

    path: str
    label: str | None
    frames: int | None = None
    step: int = 1


class Replaced(NamedTuple):
    """A training sample drawn in place of a broken file's (which ``skipped`` names)."""

    video: torch.Tensor
    label: int
    skipped: "Skipped"


# --------------------------------------------------------------------------- index


def _csv_int(row: dict, key: str, where: str) -> int | None:
    text = (row.get(key) or "").strip()
    try:
        value = int(text) if text else None
    except ValueError:
        raise ValueError(f"{where}: {key} must be an integer, got {text!r}") from None
    return value if value and value > 0 else None


def _read_csv(root: Path, csv_path: Path) -> list[Item]:
    reader = csv.DictReader(io.StringIO(read_text(csv_path), newline=""))
    missing = {"path", "label"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(
            f"{csv_path}: missing column(s) {', '.join(sorted(missing))}; expected a header path,label[,frames[,step]]"
        )
    items = []
    for row in reader:
        where = f"{csv_path}, line {reader.line_num}"
        if not row.get("path") or not row.get("label"):
            raise ValueError(f"{where}: a row needs a path and a label (path,label[,frames[,step]])")
        items.append(
            Item(
                str(root / row["path"]),
                row["label"],
                _csv_int(row, "frames", where),
                _csv_int(row, "step", where) or 1,
            )
        )
    return items


def _scan_folders(split_dir: Path) -> list[Item]:
    """Every name with a video extension in the class folders — also a FIFO, a folder or a broken link so named:
    the data set reports each of those once with its reason and counts it as skipped (nothing vanishes)."""
    items = []
    for label_dir in _class_dirs(split_dir):
        for f in sorted(label_dir.iterdir()):
            if f.suffix.lower() in VIDEO_EXTENSIONS:
                items.append(Item(str(f), label_dir.name, None))
    return items


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


class UnknownLabels(ValueError):
    """A split holds labels outside the class list (``.labels``: those labels, sorted)."""

    def __init__(self, labels: list[str], message: str):
        super().__init__(message)
        self.labels = labels


def load_items(
    root: str | os.PathLike, split: str, classes: Sequence[str] | None = None
) -> tuple[list[Item], list[str]]:
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
        raise FileNotFoundError(
            f"data root {root} does not exist; pass the folder that holds {split}.csv or {split}/<label>/*.mp4"
        )
    csv_path, split_dir = root / f"{split}.csv", root / split
    if csv_path.is_file():
        items = _read_csv(root, csv_path)
        where = csv_path
    elif split_dir.is_dir():
        items = _scan_folders(split_dir)
        where = split_dir
    else:
        raise FileNotFoundError(
            f"no {split} split in {root}: expected {csv_path} (columns path,label[,frames]) or class folders "
            f"{split_dir}/<label>/*.mp4"
        )
    if not items:
        raise ValueError(
            f"the {split} split in {where} is empty; add videos ({', '.join(VIDEO_EXTENSIONS)}) or index rows"
        )
    if classes is None:
        names_file = root / "classes.txt"
        if names_file.is_file():
            classes = [line.strip() for line in read_text(names_file).splitlines() if line.strip()]
        elif where == split_dir:  # every class folder is a class, even an empty one (indices must not shift)
            classes = [p.name for p in _class_dirs(split_dir)]
        else:
            classes = sorted({it.label for it in items})
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"class list for {root} has repeated names; make every class name unique")
    unknown = sorted({it.label for it in items} - set(classes))
    if unknown:
        fix = (
            f"add them to {root / 'classes.txt'} or fix the labels"
            if (root / "classes.txt").is_file()
            else "the class list is the training split's labels: give those classes training videos, or fix the labels"
        )
        raise UnknownLabels(
            unknown,
            f"{where} has label(s) not in the class list: {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}; "
            + fix,
        )
    return items, classes


# --------------------------------------------------------------------------- randomness


def limit_items(items: list, n: int | None, seed: int) -> list:
    """A fixed random subset of ``n`` items (in their original order), or all of them (``n=None``).

    The trainer's ``--limit-train`` uses ``seed``, its ``--limit-val`` ``seed + 1`` (so does the evaluator)."""
    if n is None or n >= len(items):
        return items
    keep = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return [items[i] for i in keep.tolist()]


_SAMPLE, _SAMPLER, _REPLACE = 1, 2, 3  # domain tags, so no two kinds of draw share a stream


# --------------------------------------------------------------------------- data set


def _to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → uint8 ``(T, 3, H, W)`` (a view: channels-last memory, which the uint8 resize likes)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def _coin(seed: int) -> bool:
    """A fair coin toss drawn from its own stream ``seed`` (a sample's flips)."""
    return bool(torch.rand((), generator=torch.Generator().manual_seed(seed)) < 0.5)


def _flip_tables(classes: list[str], hflip: dict | None, vflip: dict | None) -> tuple[list[int], list[int] | None]:
    """Label-name flip tables → class index → class index after a mirror (``hflip``; None: every label kept) and
    after an upside-down flip (``vflip``; None: no vertical flips). Entries for absent classes are ignored."""
    index = {c: i for i, c in enumerate(classes)}
    for name, table in (("hflip", hflip), ("vflip", vflip)):
        bad = sorted({(table or {}).get(c, c) for c in classes} - set(index))
        if bad:
            raise ValueError(f"{name} maps to label(s) {', '.join(bad[:5])} that are not classes")
    return (
        [index[hflip.get(c, c)] if hflip is not None else i for i, c in enumerate(classes)],
        None if vflip is None else [index[vflip.get(c, c)] for c in classes],
    )


@dataclass(frozen=True)
class Augmentation:
    """How a training :class:`ClipDataset` draws its clips (an evaluation one draws nothing: the centre clip).

    A random temporal window (``sample_indices(mode="random")``), ``RandomResizedCrop(size, scale)``, and with
    probability 0.5 a horizontal flip that maps the label through ``hflip`` (label name → label name, e.g.
    :data:`minivb.data.toy.HFLIP`; ``None`` = a mirror keeps the label), and, only if ``vflip`` is given (e.g.
    :data:`minivb.data.toy.VFLIP`; real videos are not upside down), a vertical flip with probability 0.5 that
    maps the label through it. ``flips=False``: no mirror of either kind (the crop and the time window are
    drawn as with flips). Every draw is a function of ``(seed, epoch, index)``.
    """

    seed: int = 0
    scale: tuple[float, float] = (0.6, 1.0)  # the crop's share of the frame's area, (min, max)
    flips: bool = True
    hflip: dict[str, str] | None = None
    vflip: dict[str, str] | None = None


class Draw(NamedTuple):
    """What sample ``(epoch, i)`` shows, whoever decodes its frames (its crop: :meth:`ClipDataset.crop_box`)."""

    frames: np.ndarray  # (T,): the clip's frame indices in its file
    hflip: bool  # mirrored left ⟷ right
    vflip: bool  # turned upside down
    label: int  # the class index, after the flips


class ClipDataset(Dataset):
    """Clips of ``num_frames`` frames ``stride`` apart → ``(video (T, 3, size, size) uint8, label)``.

    ``items``: :class:`Item` s (or ``(path, label[, frames[, step]])`` tuples) with label names
    from ``classes``; the returned label is the class index (-1 for a label ``None``: a video
    to classify, not to train on). Files are videos or prepared frame
    stores (``.jpgs``, :mod:`minivb.data.framestore`; ``stride`` counts source frames, so it
    must be a multiple of the store's step). ``train=True``: a random clip as ``augment``
    (:class:`Augmentation`) draws it — time window, crop, flips that may remap the label.
    ``train=False``: the centre clip, its centre square resized to ``size``.

    Frames stay uint8 from the file to the batch: crops are cut before anything is resized,
    and the model scales 0…255 to [0, 1] on its own device (4× fewer bytes to move).

    Every random draw is a function of ``(seed, epoch, index)``; the epoch comes from
    :meth:`set_epoch` or with the index (``dataset[(epoch, i)]``, as :class:`ShardedSampler`
    with ``with_epoch=True`` yields it, so persistent workers need no message). So a sample
    is the same in any worker and after a resume; :meth:`draw` and :meth:`crop_box` hand out the draws
    (:class:`~minivb.data.device_decode.EncodedClips` applies them on the model's device, ``--decode gpu``).
    ``preload=True`` decodes every video once up front and keeps its uint8 frames in memory (small sets only).
    A file that cannot be decoded gives a :class:`Skipped` marker (evaluation), or in training a :class:`Replaced`
    sample: another clip chosen deterministically, with the broken file's name (see :func:`collate`).
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
        augment: Augmentation = Augmentation(),
        preload: bool = False,
    ):
        num_frames, stride, size = (
            check_int(name, value) for name, value in (("num_frames", num_frames), ("stride", stride), ("size", size))
        )
        scale = augment.scale
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
        self.items = [Item(str(it[0]), None if it[1] is None else str(it[1]), *it[2:4]) for it in items]
        coarse = next((it for it in self.items if stride % it.step), None)
        if coarse is not None:
            raise ValueError(
                f"{coarse.path} keeps every {coarse.step}th source frame, so the stride must be a multiple of "
                f"{coarse.step}, got {stride}; choose another stride or prepare the data with a smaller frame step"
            )
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({it.label for it in self.items} - set(index) - {None})
        if unknown:
            raise ValueError(f"label(s) {', '.join(unknown[:5])} not in classes; pass the full class list")
        # -1: unlabelled (a user's video)
        self.labels = [-1 if it.label is None else index[it.label] for it in self.items]
        if train and -1 in self.labels:
            raise ValueError(
                f"{self.items[self.labels.index(-1)].path} has no label; training needs a label for every item"
            )
        self.hflip, self.vflip = _flip_tables(self.classes, augment.hflip, augment.vflip)
        self.flips = bool(augment.flips)
        self.num_frames, self.stride, self.size = num_frames, stride, size
        self.train, self.seed, self.epoch = bool(train), int(augment.seed), 0
        self.crop = v2.RandomResizedCrop(size, scale=scale, antialias=True)
        self.frames: list[np.ndarray | Skipped] | None = None
        self._counted: dict[int, int] = {}  # frame counts found by decoding (items without a count in the index)
        if preload:
            self.preload()

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``dataset[i]`` makes (``dataset[(epoch, i)]`` names it itself)."""
        self.epoch = int(epoch)

    # ---- decoding

    def preload(self) -> None:
        """Decode every video once and keep its frames (uint8 ``(N, H, W, 3)``) in memory."""
        from tqdm import tqdm

        frames: list[np.ndarray | Skipped] = []
        for i, it in enumerate(tqdm(self.items, desc="decoding videos", unit="video", leave=False, disable=None)):
            try:
                frames.append(self._decode(i, range(self._total_frames(i))))
            except VideoDecodeError as e:
                skipped = Skipped(it.path, e.reason)
                report_skipped([skipped])
                frames.append(skipped)
        self.frames = frames

    def _decode(self, i: int, indices) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` from item ``i``'s file (a video or a frame store)."""
        path = self.items[i].path
        return read_store_frames(path, indices) if path.endswith(STORE_SUFFIX) else read_frames(path, indices)

    def _total_frames(self, i: int) -> int:
        """Item ``i``'s frame count: the index's, the store's header, the preloaded frames — or counted by decoding.

        A container's own count is never used: it can be wrong either way (a header that says 3 frames of
        60 would make every clip repeat frames 0–2, without an error). Counting decodes the file once
        more (cached per file and process); ``python -m minivb.data.kinetics prepare`` writes the counts
        into the index so that training never counts.
        """
        if self.frames is not None:
            if isinstance(self.frames[i], Skipped):
                raise VideoDecodeError(*self.frames[i])
            return len(self.frames[i])
        it = self.items[i]
        if it.frames:
            return it.frames
        if it.path.endswith(STORE_SUFFIX):
            return store_info(it.path).frames  # the store's header is exact
        if i not in self._counted:
            self._counted[i] = video_info(it.path, exact=True).frames
        return self._counted[i]

    def _indices(self, i: int, mode: str, seed: int | None = None, num_clips: int = 1) -> np.ndarray:
        """The frames ``sample_indices(mode)`` picks in item ``i``'s file → ``(T,)`` or ``(clips, T)``."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        stride = self.stride // self.items[i].step  # the stride in the file's own frames
        return sample_indices(self._total_frames(i), self.num_frames, stride, mode, num_clips=num_clips, generator=g)

    def _clip(self, i: int, mode: str, seed: int | None = None, num_clips: int = 1) -> np.ndarray:
        """uint8 frames of the clip(s) ``sample_indices(mode)`` picks → ``(T, H, W, 3)`` or ``(clips, T, H, W, 3)``."""
        return self._frames_at(i, self._indices(i, mode, seed, num_clips))

    def _frames_at(self, i: int, idx: np.ndarray) -> np.ndarray:
        """uint8 frames ``idx`` of item ``i`` → ``(T, H, W, 3)`` or ``(clips, T, H, W, 3)``."""
        flat = self.frames[i][idx.reshape(-1)] if self.frames is not None else self._decode(i, idx.reshape(-1))
        return flat.reshape(idx.shape + flat.shape[1:])

    # ---- samples

    def __getitem__(self, key: int | tuple[int, int]):
        return self.sample(key)

    def epoch_index(self, key: int | tuple[int, int]) -> tuple[int, int]:
        """A sample's key → ``(epoch, i)``: ``(epoch, i)`` as given, or ``i`` in the epoch of :meth:`set_epoch`."""
        return (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (self.epoch, int(key))

    def sample(self, key: int | tuple[int, int], make: Callable | None = None):
        """``dataset[key]``, where ``make(i, epoch) → (clip, label)`` makes item ``i``'s clip with the draws of
        ``(epoch, i)`` (default: decoded here; :class:`~minivb.data.device_decode.EncodedClips` reads JPEG bytes).
        A broken file gives a :class:`Skipped` marker, or in training a :class:`Replaced` sample made by ``make``."""
        make = make or self._sample
        epoch, i = self.epoch_index(key)
        try:
            return make(i, epoch)
        except VideoDecodeError as e:
            skipped = Skipped(self.items[i].path, e.reason)
        if not self.train:
            return skipped
        for attempt in range(1, 11):  # training: a stand-in chosen from (seed, epoch, index) keeps the batch full
            j = sample_seed(_REPLACE, self.seed, epoch, i, attempt) % len(self)
            try:
                return Replaced(*make(j, epoch), skipped)
            except VideoDecodeError:
                continue
        return skipped

    def draw(self, epoch: int, i: int) -> Draw:
        """Sample ``(epoch, i)``'s frames, flips and label: in training drawn from ``(seed, epoch, i)``
        (:class:`Augmentation`), in evaluation the centre clip, as it is."""
        if not self.train:
            return Draw(self._indices(i, "center"), False, False, self.labels[i])
        seed = sample_seed(_SAMPLE, self.seed, epoch, i)  # four streams: time, flip, crop (crop_box), vertical flip
        hflip = self.flips and _coin(seed + 1)
        vflip = self.flips and self.vflip is not None and _coin(seed + 3)
        label = self.labels[i]
        label = self.hflip[label] if hflip else label  # a mirror can change the class (left ⟷ right)
        label = self.vflip[label] if vflip else label  # (top ⟷ bottom)
        return Draw(self._indices(i, "random", seed), hflip, vflip, label)

    def crop_box(self, epoch: int, i: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Sample ``(epoch, i)``'s crop (top, left, height, width) of a frame of ``height × width``: in training
        ``RandomResizedCrop``'s box, drawn from its own stream (transforms.v2 draws from the global CPU generator:
        seed it, then restore it); in evaluation the centre square."""
        if not self.train:
            return self.squares(height, width, 1)[0]
        shape = torch.empty((), dtype=torch.uint8).expand(1, 3, height, width)  # a frame's size, no pixels
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(sample_seed(_SAMPLE, self.seed, epoch, i) + 2)
            box = self.crop.make_params([tv_tensors.Video(shape)])
        return box["top"], box["left"], box["height"], box["width"]

    def _sample(self, i: int, epoch: int) -> tuple[torch.Tensor, int]:
        """Item ``i`` with the draws of ``(epoch, i)``, decoded here → ``(video (T, 3, size, size) uint8, label)``."""
        draw = self.draw(epoch, i)
        video = _to_video(self._frames_at(i, draw.frames))  # (T, 3, H, W) uint8
        box = self.crop_box(epoch, i, *video.shape[-2:])
        video = v2.functional.resized_crop(video, *box, [self.size, self.size], antialias=True)
        if draw.hflip:
            video = video.flip(-1)  # (T, 3, size, size): crop, then resize, then mirror
        if draw.vflip:
            video = video.flip(-2)
        return video.contiguous(), draw.label

    def squares(self, height: int, width: int, num_crops: int) -> list[tuple[int, int, int, int]]:
        """The ``num_crops`` squares (top, left, side, side) of side = the shorter side (:func:`crop_boxes`) in a
        frame of ``height × width``."""
        side = min(height, width)
        return [(top, left, side, side) for top, left in crop_boxes(height, width, side, num_crops)]

    def view_frames(self, i: int, num_clips: int) -> np.ndarray:
        """The frames of video ``i``'s ``num_clips`` evenly spaced clips → ``(clips, T)`` (see :meth:`views`)."""
        return self._indices(int(i), "uniform", num_clips=num_clips)

    def views(self, i: int, num_clips: int = 1, num_crops: int = 1) -> torch.Tensor:
        """Multi-view testing input for video ``i`` → uint8 ``(num_clips · num_crops, T, 3, size, size)``.

        Temporal clips: ``sample_indices(mode="uniform", num_clips=...)`` — evenly spaced
        windows, the first at the start and the last at the end of the video. Spatial crops:
        squares as large as the shorter side, resized to ``size`` (crop first, then resize:
        the same pixels as resizing the shorter side to ``size`` and cropping, for less work);
        ``num_crops=1`` the centre square; ``num_crops=3`` the start, centre and end of the
        long side (left/centre/right for landscape, top/centre/bottom for portrait). View
        ``k`` is clip ``k // num_crops``, crop ``k % num_crops``. Raises
        :class:`~minivb.video.VideoDecodeError` for a broken file.
        """
        num_clips = check_int("num_clips", num_clips)
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops!r}")
        clips = self._frames_at(int(i), self.view_frames(i, num_clips))  # (clips, T, H, W, 3) uint8
        boxes, size = self.squares(*clips.shape[-3:-1], num_crops), [self.size, self.size]
        out = [v2.functional.resized_crop(_to_video(c), *box, size, antialias=True) for c in clips for box in boxes]
        return torch.stack(out).contiguous()  # (clips · crops, T, 3, size, size)


class MultiViewDataset(Dataset):
    """``dataset[i].views(...)`` as a data set: → ``(views (V, T, 3, size, size), label)`` or :class:`Skipped`.

    For multi-view evaluation with a DataLoader and :func:`collate` (batches ``(B, V, T, 3, size, size)``).
    """

    def __init__(self, dataset: ClipDataset, num_clips: int = 1, num_crops: int = 1):
        num_clips = check_int("num_clips", num_clips)
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops!r}")
        self.dataset, self.num_clips, self.num_crops = dataset, num_clips, num_crops

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.sample(i)

    def sample(self, i: int, views: Callable | None = None):
        """``self[i]``, where ``views(i, num_clips, num_crops)`` makes the views (default: :meth:`ClipDataset.views`,
        decoded here; :class:`~minivb.data.device_decode.EncodedClips` reads JPEG bytes)."""
        try:
            return (views or self.dataset.views)(i, self.num_clips, self.num_crops), self.dataset.labels[int(i)]
        except VideoDecodeError as e:
            return Skipped(e.path, e.reason)


# --------------------------------------------------------------------------- batches


def collate(samples: list, stack: Callable[[list], Any] = default_collate) -> tuple[Any, torch.Tensor | None, list]:
    """Batch ``(video, label)`` samples, dropping :class:`Skipped` ones → ``(videos, labels, skipped)``.

    A :class:`Replaced` sample is batched and its broken file listed in ``skipped``.
    ``videos`` ``(B, …)`` and ``labels`` ``(B,)`` are ``None`` when every sample of the batch
    was skipped. Pass ``skipped`` to :func:`report_skipped` in the main process. ``stack`` batches the videos
    (:func:`~minivb.data.device_decode.collate_encoded` passes one that also batches JPEG bytes).
    """
    good = [s[:2] for s in samples if not isinstance(s, Skipped)]
    skipped = [s.skipped if isinstance(s, Replaced) else s for s in samples if isinstance(s, (Skipped, Replaced))]
    if not good:
        return None, None, skipped
    return stack([v for v, _ in good]), torch.tensor([y for _, y in good]), skipped


# --------------------------------------------------------------------------- sampler


class ShardedSampler(Sampler[int]):
    """An epoch's order of ``n`` indices, sharded across ``world_size`` ranks; resumable mid-epoch.

    ``shuffle=True``: a permutation that is a function of ``(seed, epoch)`` only; else
    ``0 … n-1``. Rank ``r`` takes positions ``r, r + world_size, …`` of that order.
    ``drop_last=True`` first cuts the order to a multiple of ``world_size`` (every rank gets
    the same count: needed for DDP training); ``drop_last=False`` keeps every index, so the
    ranks together cover each index exactly once (lengths may differ by one: evaluation).
    ``set_epoch(epoch, skip=k)`` starts the epoch after this rank's first ``k`` indices
    (resume after ``k / batch_size`` batches) without loading them. ``with_epoch=True``
    yields ``(epoch, index)`` pairs, so that persistent DataLoader workers (which keep their
    own copy of the data set) know the epoch without being told.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        with_epoch: bool = False,
    ):
        n, world_size, rank = (
            check_int("n", n, minimum=0),
            check_int("world_size", world_size),
            check_int("rank", rank, minimum=0),
        )
        if rank >= world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        self.n, self.shuffle, self.seed = n, bool(shuffle), int(seed)
        self.rank, self.world_size = rank, world_size
        self.drop_last, self.with_epoch = bool(drop_last), bool(with_epoch)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), check_int("skip", skip, minimum=0)

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
        indices = self.shard()[self.skip :]
        return iter([(self.epoch, i) for i in indices] if self.with_epoch else indices)

    def __len__(self) -> int:
        return max(0, self.num_samples() - self.skip)


def steps_per_epoch(sampler: ShardedSampler, batch_size: int) -> int:
    """Batches in one full epoch of ``sampler`` (the last one may be short)."""
    return math.ceil(sampler.num_samples() / batch_size)
