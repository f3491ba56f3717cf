"""Batches of clips: the one DataLoader of training, evaluation, inference, pretraining and the loader benchmark.

Every one of them batches a clip data set the same way — worker processes, :func:`~minivb.data.clips.collate`
(``(videos, labels, skipped)``), pinned memory on CUDA — and ``--decode`` is decided here, the one place: with ``gpu``
the workers hand out JPEG bytes (:class:`~minivb.data.device_decode.EncodedClips`) decoded on the model's device.
"""

from __future__ import annotations

import signal
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..plumbing import distributed
from .clips import collate
from .device_decode import DeviceDecoded, EncodedClips, collate_encoded, resolve_decode


def worker_init(_: int = 0) -> None:
    """In a DataLoader worker: OpenCV on one thread (the workers are the parallelism)."""
    import cv2

    cv2.setNumThreads(1)


def auto_workers() -> int:
    """DataLoader workers when not given: this process's share of the cores (under torchrun), less one for itself."""
    return max(1, distributed.local_cores() - 1)


def close_loader(loader: DataLoader) -> None:
    """Stop a DataLoader's persistent workers now, not whenever garbage collection gets to them.

    The workers ignore SIGTERM (:func:`ignore_stop_signals`), so the SIGTERM with which Python's exit handler
    ends leftover child processes cannot end them: if the loader was not collected first, the process hangs at
    exit (seen when resuming a run). ``_shutdown_workers`` is what the loader's iterator runs when collected
    (PyTorch Lightning calls it the same way); a loader without workers has nothing to stop.
    """
    loader = getattr(loader, "loader", loader)  # a DeviceDecoded loader's DataLoader
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
        loader._iterator = None


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader worker's init: SIGTERM and Ctrl-C are for the main process (it saves a checkpoint and shuts
    the workers down)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_init(worker_id)


def clip_loader(
    dataset: Dataset,
    device: torch.device | str,
    batch_size: int,
    workers: int,
    *,
    decode: str = "cpu",
    gpu_share: float = 1.0,
    sampler: Sampler | None = None,
    persistent: bool = False,
    init_worker: Callable[[int], None] = worker_init,
):
    """``dataset`` → batches ``(videos, labels, skipped)`` for a model on ``device``.

    ``sampler``: the order (default: the data set's own, 0, 1, 2, …). ``persistent``: the loader is iterated
    epoch after epoch — its workers stay alive and prefetch 4 batches each, and it draws its workers' base seed
    from a generator of its own, so the global RNG (the model's dropout) stays untouched. ``init_worker`` runs
    in each worker process. ``decode``: ``--decode {auto,cpu,gpu}`` (:func:`~minivb.data.device_decode.resolve_decode`;
    ``ValueError`` if impossible); with ``gpu`` the workers read a ClipDataset's (or MultiViewDataset's) frame stores'
    JPEG bytes for a share ``gpu_share`` of the samples (the others they decode), decoded then on ``device``.
    """
    device = torch.device(device)
    clips = getattr(dataset, "dataset", dataset)  # a MultiViewDataset's ClipDataset
    encoded = resolve_decode(decode, device, (it.path for it in getattr(clips, "items", ()))) == "gpu"
    if encoded:
        dataset = EncodedClips(dataset, gpu_share)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_encoded if encoded else collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=init_worker if workers else None,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if persistent and workers else None,
        generator=torch.Generator() if persistent else None,
    )
    return DeviceDecoded(loader, dataset.size, device) if encoded else loader  # decoded on the device, one batch ahead
