"""Batches of clips: the one DataLoader of training, evaluation, inference, pretraining and the loader benchmark.

Every one of them batches a clip data set the same way — worker processes, :func:`~minivb.data.clips.collate`
(``(videos, labels, skipped)``), pinned memory on CUDA, and, where the data set hands out JPEG bytes
(``--decode gpu``), :func:`~minivb.data.device_decode.on_device` to decode them on the model's device.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .clips import collate, worker_init
from .device_decode import on_device

__all__ = ["clip_loader"]


def clip_loader(
    dataset: Dataset,
    device: torch.device | str,
    batch_size: int,
    workers: int,
    *,
    sampler: Sampler | None = None,
    persistent: bool = False,
    init_worker: Callable[[int], None] = worker_init,
):
    """``dataset`` → batches ``(videos, labels, skipped)`` for a model on ``device``.

    ``sampler``: the order (default: the data set's own, 0, 1, 2, …). ``persistent``: the loader is iterated
    epoch after epoch — its workers stay alive and prefetch 4 batches each, and it draws its workers' base seed
    from a generator of its own, so the global RNG (the model's dropout) stays untouched. ``init_worker`` runs
    in each worker process. Encoded samples (``--decode gpu``) come out decoded, on ``device``.
    """
    device = torch.device(device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=init_worker if workers else None,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if persistent and workers else None,
        generator=torch.Generator() if persistent else None,
    )
    return on_device(loader, device)  # encoded batches (--decode gpu) are decoded on the device
