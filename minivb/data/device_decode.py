"""Decode a batch's JPEG frames on the model's device, then crop, resize and flip there (``--decode gpu``).

Why: on Kinetics the CPU is the bottleneck. With ``--decode cpu`` the DataLoader's workers decode every frame
store's JPEGs (OpenCV), crop, resize and flip, and hand over finished uint8 clips. With ``--decode gpu`` they
only read each clip's JPEG bytes (one contiguous read, :func:`~minivb.data.framestore.read_store_jpegs`) and
draw its crop box and flips by the same ``(seed, epoch, index)`` rule (so the clips and exact resume are
unchanged); the main process then decodes the whole batch's JPEGs in one call
(``torchvision.io.decode_jpeg(list, device="cuda")``: nvjpeg) and cuts the clips there.

The pieces:

* :class:`EncodedClips` — the data set of ``--decode gpu`` (:func:`~minivb.data.loader.clip_loader` wraps a clip
  data set in it): its samples are :class:`EncodedClip` s, a clip's JPEG bytes with its draws, which
  :func:`collate_encoded` batches into an :class:`EncodedBatch`.
* :func:`decode_batch` — an :class:`EncodedBatch` → uint8 ``(B, T, 3, S, S)`` (or ``(B, V, T, 3, S, S)``
  for multi-view) on the device, plus the clips whose JPEGs did not decode.
* :class:`DeviceDecoded` — wraps a DataLoader of encoded batches; a helper thread decodes one batch ahead
  on a side CUDA stream while the model trains on the current one, and a clip whose JPEG fails is made
  again by the data set's CPU path (decoded by OpenCV, or replaced by another clip as with ``--decode cpu``):
  one bad frame never fails a batch.
* :func:`resolve_decode` — the ``--decode {auto,cpu,gpu}`` choice for a run (:func:`check_decode`: refused early).

The split, ``--gpu-share F`` (``EncodedClips(dataset, F)``): only a share F of the samples come as JPEG
bytes, the workers decode the others as the cpu path does; a batch then carries both
(:attr:`EncodedBatch.ready`), and :func:`decode_batch` puts every clip in its place. It is for a GPU that would
spend more time decoding than the workers save it.

The resize is done in float32 and rounded back to uint8, on every device: that is what torchvision's
``resize`` does on CUDA, so running this module on the CPU (the tests do) runs the GPU's arithmetic. The CPU
path resizes uint8 directly (torchvision's native kernel); the two differ by rounding, at most a grey level or
two, plus whatever the two JPEG decoders differ by (``tests/test_device_decode.py`` measures both).
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, default_collate

from ..plumbing.device import DECODE_CHOICES
from .clips import ClipDataset, MultiViewDataset, collate
from .framestore import SUFFIX, read_store_jpegs

log = logging.getLogger(__name__)

_GOLDEN = (5**0.5 - 1) / 2  # φ: i·φ mod 1 spreads any run of indices evenly over [0, 1) (--gpu-share)


class EncodedClip(NamedTuple):
    """A clip (or a video's views) as JPEG bytes plus the crops and flips already drawn for it.

    View ``v`` shows frames ``frames[v]`` (positions among the clip's F distinct JPEGs), cropped to
    ``boxes[v]`` = (top, left, height, width) in the frames' pixels, resized to S×S, then mirrored where
    ``flips[v]`` = (horizontal, vertical) says so.
    """

    data: torch.Tensor  # uint8 (bytes,): the F distinct JPEGs one after another
    lengths: torch.Tensor  # int64 (F,): bytes of each JPEG
    frames: torch.Tensor  # int64 (V, T)
    boxes: torch.Tensor  # int64 (V, 4)
    flips: torch.Tensor  # bool (V, 2)
    height: int  # of the stored frames (the store's header): a JPEG of another size is a damaged frame
    width: int
    key: tuple  # what the data set was asked for (``(epoch, index)`` or ``index``): to make it again on the CPU
    multiview: bool  # True: the sample is (V, T, 3, S, S) views; False: one clip (T, 3, S, S), V = 1


class EncodedBatch(NamedTuple):
    """A batch of B clips: E :class:`EncodedClip` s, concatenated (:func:`batch_encoded`), and the B − E clips
    that the workers decoded (``--gpu-share`` < 1)."""

    data: torch.Tensor  # uint8 (bytes,)
    lengths: torch.Tensor  # int64 (F,): the JPEGs of encoded clip 0, then of encoded clip 1, …
    frames: torch.Tensor  # int64 (E, V, T): positions among the batch's F JPEGs
    boxes: torch.Tensor  # int64 (E, V, 4)
    flips: torch.Tensor  # bool (E, V, 2)
    sizes: torch.Tensor  # int64 (E, 2): height, width of each encoded clip's frames
    counts: torch.Tensor  # int64 (E,): JPEGs of each encoded clip
    keys: list  # (B,): what the data set was asked for; None for a clip the workers decoded
    multiview: bool
    encoded: torch.Tensor  # bool (B,): True where the batch's clip is encoded, False where it is in ``ready``
    ready: torch.Tensor | None  # uint8 (B − E, T, 3, S, S) or (B − E, V, T, 3, S, S): decoded by the workers

    def clip_jpegs(self, e: int) -> range:
        """Positions among the batch's JPEGs of encoded clip ``e``'s own."""
        start = int(self.counts[:e].sum())
        return range(start, start + int(self.counts[e]))


def batch_encoded(videos: Sequence[EncodedClip | torch.Tensor]) -> EncodedBatch | torch.Tensor:
    """A batch's :class:`EncodedClip` s and clips decoded already → an :class:`EncodedBatch`: concatenate the JPEG
    bytes, renumber the frames into the batch's JPEGs, stack the decoded clips (no encoded one: only stacked)."""
    clips = [c for c in videos if isinstance(c, EncodedClip)]
    ready = [c for c in videos if not isinstance(c, EncodedClip)]
    if not clips:
        return default_collate(ready)
    frames, offset = [], 0
    for c in clips:
        frames.append(c.frames + offset)  # (V, T), into the batch's JPEG list
        offset += len(c.lengths)
    return EncodedBatch(
        torch.cat([c.data for c in clips]),
        torch.cat([c.lengths for c in clips]),
        torch.stack(frames),
        torch.stack([c.boxes for c in clips]),
        torch.stack([c.flips for c in clips]),
        torch.tensor([[c.height, c.width] for c in clips], dtype=torch.int64),
        torch.tensor([len(c.lengths) for c in clips], dtype=torch.int64),
        [c.key if isinstance(c, EncodedClip) else None for c in videos],
        clips[0].multiview,
        torch.tensor([isinstance(c, EncodedClip) for c in videos]),
        default_collate(ready) if ready else None,  # stacked into shared memory, in a worker
    )


def collate_encoded(samples: list) -> tuple[EncodedBatch | torch.Tensor | None, torch.Tensor | None, list]:
    """:func:`~minivb.data.clips.collate` for :class:`EncodedClips`: a batch with encoded samples gives an
    :class:`EncodedBatch` in place of ``videos`` (with the clips the workers decoded, under a share < 1, inside)."""
    return collate(samples, stack=batch_encoded)


# --------------------------------------------------------------------------- the data set


class EncodedClips(Dataset):
    """``dataset`` (a :class:`~minivb.data.clips.ClipDataset` of frame stores, or a
    :class:`~minivb.data.clips.MultiViewDataset` of one) whose samples are :class:`EncodedClip` s (``--decode gpu``).

    A sample is the JPEG bytes of the frames ``dataset[key]`` shows, with the crop boxes and flips it draws
    (:meth:`~minivb.data.clips.ClipDataset.draw`, :meth:`~minivb.data.clips.ClipDataset.crop_box`: the same
    numbers), and its label; a broken file is skipped or replaced as ``dataset`` does it. ``share``
    (``--gpu-share``): the share of the samples that are encoded; the others are ``dataset``'s own, decoded in
    the workers (:meth:`decodes_on_device` says which: a fixed rule of the index, so every epoch and a resume
    split alike). :meth:`decoded` makes a sample the CPU way.
    """

    def __init__(self, dataset: ClipDataset | MultiViewDataset, share: float = 1.0):
        if not 0 <= share <= 1:
            raise ValueError(f"gpu_share must be in [0, 1], got {share!r}")
        self.multiview = isinstance(dataset, MultiViewDataset)
        self.clips: ClipDataset = dataset.dataset if self.multiview else dataset
        video = next((it.path for it in self.clips.items if not it.path.endswith(SUFFIX)), None)
        if self.clips.frames is not None or video is not None:
            raise ValueError(
                f"encoded samples need frame stores ({SUFFIX}): "
                + ("the frames are preloaded" if self.clips.frames is not None else f"{video} is a video")
            )
        self.dataset, self.share, self.size = dataset, float(share), self.clips.size

    def __len__(self) -> int:
        return len(self.dataset)

    def decodes_on_device(self, i: int) -> bool:
        """Whether sample ``i`` comes as JPEG bytes (else decoded by the worker): when the fractional part of ``i·φ``
        (φ = 0.618…, the golden ratio's) is under ``share``, so any run of items — a batch — is split close to it."""
        return (int(i) * _GOLDEN) % 1.0 < self.share

    def __getitem__(self, key: int | tuple[int, int]):
        if not self.decodes_on_device(key[1] if isinstance(key, (tuple, list)) else key):
            return self.dataset[key]
        if self.multiview:
            return self.dataset.sample(key, self._views)
        key = self.clips.epoch_index(key)  # an encoded sample carries it: the same sample, made again on the CPU
        return self.clips.sample(key, lambda i, epoch: self._clip(i, epoch, key))

    def decoded(self, key: int | tuple[int, int]):
        """``dataset[key]``, decoded by OpenCV on the CPU: a clip whose JPEGs failed on the device is made again this
        way, replaced or skipped exactly as the cpu path would (:class:`DeviceDecoded`)."""
        return self.dataset[key]

    def _clip(self, i: int, epoch: int, key: tuple[int, int]) -> tuple[EncodedClip, int]:
        """Item ``i``'s JPEGs with the draws of ``(epoch, i)`` → ``(EncodedClip, label)``."""
        draw = self.clips.draw(epoch, i)
        flips = [(draw.hflip, draw.vflip)]
        return self._read(i, draw.frames[None], key, flips, partial(self.clips.crop_box, epoch, i)), draw.label

    def _views(self, i: int, num_clips: int, num_crops: int) -> EncodedClip:
        """Video ``i``'s views as :meth:`~minivb.data.clips.ClipDataset.views` cuts them, as JPEG bytes."""
        views = self.clips.view_frames(i, num_clips).repeat(num_crops, axis=0)  # (clips · crops, T)

        def boxes(height: int, width: int) -> list:  # view k: clip k // num_crops, crop k % num_crops
            return self.clips.squares(height, width, num_crops) * num_clips

        return self._read(int(i), views, int(i), [(False, False)] * len(views), boxes, multiview=True)

    def _read(self, i: int, frames: np.ndarray, key, flips: list, boxes: Callable, multiview=False) -> EncodedClip:
        """Item ``i``'s JPEGs of frames ``(V, T)``, with its views' ``flips`` and crops ``boxes(height, width)``."""
        info, *arrays = read_store_jpegs(self.clips.items[i].path, frames.reshape(-1))
        data, lengths, which = map(torch.from_numpy, arrays)
        crops = torch.tensor(boxes(info.height, info.width), dtype=torch.int64).view(-1, 4)
        flips = torch.tensor(flips, dtype=torch.bool).view(-1, 2)
        return EncodedClip(
            data, lengths, which.view(frames.shape), crops, flips, info.height, info.width, key, multiview
        )


# --------------------------------------------------------------------------- decoding


def decode_jpegs(jpegs: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes (1-D uint8 CPU tensors) → RGB uint8 ``(3, H, W)`` tensors on ``device``, in one call.

    On CUDA, torchvision's batched nvjpeg decoder; on the CPU, its libjpeg-turbo. (torchvision 0.29 marks its
    image decoders deprecated in favour of TorchCodec's, which we do not depend on and which the GPU machines'
    torchvision 0.26 predates; Python shows that notice only to tests, and pyproject.toml's pytest settings
    leave it out.)
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)


def _bad_jpeg(error: RuntimeError) -> bool:
    """A decoder's error about its input (not out of memory, not a broken device: those are raised)."""
    text = str(error)
    return not isinstance(error, torch.OutOfMemoryError) and "out of memory" not in text and "CUDA error" not in text


def _decode_clipwise(batch: EncodedBatch, jpegs: list[torch.Tensor], device) -> tuple[list, list[int]]:
    """After a failed batch call: decode clip by clip → (images, None for a failed clip's; failed encoded clips)."""
    images: list[torch.Tensor | None] = [None] * len(jpegs)
    failed = []
    for e in range(len(batch.counts)):
        mine = batch.clip_jpegs(e)
        try:
            for k, image in zip(mine, decode_jpegs([jpegs[k] for k in mine], device)):
                images[k] = image
        except RuntimeError as error:
            if not _bad_jpeg(error):
                raise
            failed.append(e)
    return images, failed


def _resize(crop: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(T, 3, h, w)`` → uint8 ``(T, 3, size, size)``: bilinear with antialiasing in float32, rounded back —
    torchvision's ``resized_crop`` as it runs on CUDA (the crop is cut before, from each frame)."""
    if crop.shape[-2:] == (size, size):
        return crop
    out = F.interpolate(crop.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _cut(batch: EncodedBatch, images: list, failed: list[int], out: torch.Tensor, places: list[int]) -> list[int]:
    """The encoded clips' decoded frames → their views, cropped, resized and flipped, into ``out[places[e]]``
    (uint8 ``(B, V, T, 3, S, S)``) → the failed encoded clips, with those whose frames have the wrong size."""
    failed, size = list(failed), out.shape[-1]
    for e, (frames, boxes, flips, (height, width)) in enumerate(
        zip(batch.frames.tolist(), batch.boxes.tolist(), batch.flips.tolist(), batch.sizes.tolist())
    ):
        if e in failed:
            continue
        if any(images[k].shape != (3, height, width) for k in batch.clip_jpegs(e)):
            failed.append(e)
            continue
        for v, ((top, left, h, w), (mirror, upside_down)) in enumerate(zip(boxes, flips)):
            crop = torch.stack([images[k][:, top : top + h, left : left + w] for k in frames[v]])  # (T, 3, h, w)
            clip = _resize(crop, size)  # (T, 3, size, size)
            if mirror:
                clip = clip.flip(-1)  # (the label was mapped by the worker)
            if upside_down:
                clip = clip.flip(-2)
            out[places[e], v] = clip
    return sorted(failed)


def decode_batch(batch: EncodedBatch, size: int, device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """An :class:`EncodedBatch` → (uint8 clips on ``device``, positions of the clips that failed).

    Clips: ``(B, T, 3, size, size)``, or ``(B, V, T, 3, size, size)`` for multi-view samples — the encoded
    ones decoded here, the others (``batch.ready``) copied in; a failed clip's slot holds zeros (make it again
    with the data set's CPU path, :class:`DeviceDecoded` does). A clip fails when one of its JPEGs does not
    decode or decodes to another size than its store's header says.
    """
    jpegs = list(torch.split(batch.data, batch.lengths.tolist()))
    try:
        images, failed = decode_jpegs(jpegs, device), []
    except RuntimeError as e:  # one bad JPEG fails the whole call: find its clip
        if not _bad_jpeg(e):
            raise
        if device.type == "cuda":  # the failed call may still be writing (pytorch/vision#9606): let it finish
            torch.cuda.synchronize(device)
        images, failed = _decode_clipwise(batch, jpegs, device)
    _, V, T = batch.frames.shape
    out = torch.zeros(len(batch.keys), V, T, 3, size, size, dtype=torch.uint8, device=device)  # (B, V, T, 3, S, S)
    encoded = batch.encoded.tolist()  # (B,): Python positions, so no index tensor is copied to the GPU (a sync)
    places = [b for b in range(len(encoded)) if encoded[b]]  # (E,)
    failed = _cut(batch, images, failed, out, places)
    if batch.ready is not None:  # the clips the workers decoded, in their places
        ready = batch.ready.to(device, non_blocking=True).view(-1, V, T, 3, size, size)  # (B − E, V, T, 3, S, S)
        for r, b in enumerate(b for b in range(len(encoded)) if not encoded[b]):
            out[b] = ready[r]
    return (out if batch.multiview else out[:, 0]), [places[e] for e in failed]


# --------------------------------------------------------------------------- the loader


class DeviceDecoded:
    """A DataLoader of :class:`EncodedClips` (batched by :func:`collate_encoded`) → batches ``(videos, labels,
    skipped)`` on ``device``, as the loop expects them (see :func:`minivb.data.clips.collate`).

    Each batch is decoded (:func:`decode_batch`) by a helper thread, on a side CUDA stream, one batch ahead:
    the next batch decodes while the model computes on this one. The thread only decodes; the data set's
    random draws stay in the main thread (or the loader's workers), because ``transforms.v2`` draws from the
    global generator that the model's dropout uses too. A clip that failed is made again by
    ``loader.dataset.decoded(key)`` — the CPU path, which decodes it with OpenCV or, in training, replaces it
    as ``--decode cpu`` would; an evaluation clip that cannot be read is dropped and named in ``skipped``.
    """

    def __init__(self, loader, size: int, device: torch.device | str):
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda": the current GPU, named (set_device needs it)
            device = torch.device("cuda", torch.cuda.current_device())
        self.loader, self.size, self.device = loader, int(size), device
        self.stream = None  # the side stream, made on first use and kept (the allocator caches blocks per stream)

    @property
    def dataset(self):
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def _decode(
        self, encoded: EncodedBatch | torch.Tensor, stream
    ) -> tuple[torch.Tensor, list[int], torch.cuda.Event | None]:
        """In the helper thread: decode on the side stream, and mark when it is done. (A batch of clips that the
        workers decoded, all of them — ``--gpu-share`` < 1 — is only copied to the device.)"""
        if stream is not None:
            # nvJPEG may write its outputs before work already queued on the stream has run, into blocks the
            # allocator just recycled (pytorch/vision#9606): let the previous batch's work finish first. Only
            # this thread waits; blocks freed on the model's stream are never handed to this one.
            stream.synchronize()
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            if isinstance(encoded, EncodedBatch):
                videos, failed = decode_batch(encoded, self.size, self.device)
            else:
                videos, failed = encoded.to(self.device, non_blocking=True), []
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        return videos, failed, event

    def _finish(self, batch, job, fallbacks: list):
        """In the main thread: wait for the batch's decode, then make its failed clips again the CPU way."""
        encoded, labels, skipped = batch
        if job is None:  # every clip of the batch was unreadable
            return None, None, skipped
        videos, failed, event = job.result()
        fallbacks += [encoded.keys[b] for b in failed]
        if event is not None:  # the model's stream waits for the decode; the memory is now the model's
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            videos.record_stream(current)
        labels = labels.to(self.device, non_blocking=True)
        keep = list(range(len(labels)))
        for b in failed:
            sample = self.dataset.decoded(encoded.keys[b])  # (clip, label), Replaced or Skipped
            if hasattr(sample, "reason"):  # Skipped (evaluation): drop the clip, name the file
                skipped.append(sample)
                keep.remove(b)
                continue
            if hasattr(sample, "skipped") and sample.skipped not in skipped:  # Replaced (training): another clip
                skipped.append(sample.skipped)  # in its place, the broken file named (once)
            videos[b] = sample[0].to(self.device)
            labels[b] = int(sample[1])
        if len(keep) < len(labels):
            index = torch.tensor(keep, dtype=torch.int64, device=self.device)
            videos, labels = (videos[index], labels[index]) if keep else (None, None)
        return videos, labels, skipped

    def __iter__(self) -> Iterator:
        cuda = self.device.type == "cuda"
        if cuda and self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
        # the helper thread works on the model's GPU (a new thread starts on GPU 0: under torchrun, every rank
        # would open a context there)
        pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="minivb-device-decode",
            initializer=torch.cuda.set_device if cuda else None,
            initargs=(self.device,) if cuda else (),
        )
        fallbacks: list = []  # keys of the clips made again on the CPU in this pass
        try:
            pending = None
            for batch in self.loader:
                job = None if batch[0] is None else pool.submit(self._decode, batch[0], self.stream)
                if pending is not None:  # batch k is handed out while batch k + 1 decodes
                    yield self._finish(*pending, fallbacks)
                pending = (batch, job)
            if pending is not None:
                yield self._finish(*pending, fallbacks)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if fallbacks:  # a few are broken files; many mean the device cannot decode these stores
                log.warning(
                    "%d clip(s) of this pass were decoded on the CPU, the device could not decode their JPEGs "
                    "(the first: item %s); if that is most of them, use --decode cpu",
                    len(fallbacks),
                    fallbacks[0],
                )


# --------------------------------------------------------------------------- the choice


def resolve_decode(
    choice: str, device: torch.device | str, paths: Iterable[str], *, preload: bool = False, preset: str | None = None
) -> str:
    """``--decode {auto,cpu,gpu}`` for a run on ``device`` over files ``paths`` → ``"cpu"`` or ``"gpu"``.

    ``gpu`` decodes in the main process on the model's device (nvjpeg on CUDA; on a CPU device the same code
    runs torchvision's CPU decoder, which the tests use); it needs prepared frame stores (``.jpgs``) and no
    ``--preload`` (``preset``: the preset that turned preload on, which the message then names), and on CUDA a
    torchvision that decodes JPEGs there (checked here with one tiny JPEG).
    ``auto`` is ``cpu``: the gpu path has not yet been measured on a GPU machine (the README's Performance
    section says how to measure it); it becomes the default on CUDA where it measures faster.
    Raises ``ValueError`` with a one-line reason. :func:`~minivb.data.loader.clip_loader` decides it for its loader.
    """
    if choice not in DECODE_CHOICES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_CHOICES)}, got {choice!r}")
    if choice != "gpu":
        return "cpu"
    device = torch.device(device)
    video = next((p for p in paths if not str(p).endswith(SUFFIX)), None)
    if video is not None:
        raise ValueError(
            f"--decode gpu decodes prepared frame stores ({SUFFIX}), but {video} is a video; prepare the data "
            f"(python -m minivb.data.kinetics prepare) or use --decode cpu"
        )
    if preload:
        why = f"the {preset} preset turns preload on" if preset else "--preload was given"
        raise ValueError(f"--decode gpu decodes clips that are not preloaded, but {why}; pass --no-preload")
    if device.type == "cuda":
        import cv2
        import numpy as np

        tiny = torch.from_numpy(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].ravel())
        try:
            torch.cuda.synchronize(device)  # nothing queued that nvJPEG could overwrite (pytorch/vision#9606)
            decode_jpegs([tiny], device)
        except (RuntimeError, NotImplementedError) as e:
            raise ValueError(
                f"--decode gpu: this torchvision cannot decode JPEGs on {device} ({' '.join(str(e).split())[:120]}); "
                f"use --decode cpu"
            ) from None
    return "gpu"


def check_decode(
    choice: str, device: torch.device | str, paths: Iterable[str], *, preload: bool = False, preset: str | None = None
) -> None:
    """Refuse ``--decode choice`` now, before a command's work starts, if it cannot work (the one-line
    ``ValueError`` of :func:`resolve_decode`; the loader decides it again when it is built)."""
    resolve_decode(choice, device, paths, preload=preload, preset=preset)
