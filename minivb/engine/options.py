"""A training run's options, typed: every option of ``python -m minivb.train`` under its command-line name.

:class:`TrainOptions` is one frozen dataclass (as nanoGPT's ``GPTConfig(**model_args)``): the data set's preset
(:mod:`minivb.data.registry`), then what was given. The model's config, the clip data sets and their loaders are
each built from it here, in one place, for the trainer (:mod:`minivb.engine.training`) and ``python -m minivb.bench``
alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch.utils.data import Dataset, Sampler

from ..data import registry
from ..data.clips import Augmentation, ClipDataset
from ..data.loader import auto_workers, clip_loader
from ..model import VideoBERTConfig
from ..plumbing.checks import UsageError
from .checkpoint import Preprocessing


@dataclass(frozen=True)
class TrainOptions:
    """``--num-frames 16`` is ``num_frames=16``. The fields without a default come from the data set's preset."""

    # the clips and the model
    num_frames: int
    stride: int
    size: int
    encoder: str
    pretrained: bool
    grid: int
    dim: int
    depth: int
    heads: int
    dropout: float
    time_embedding: bool
    # optimisation
    epochs: int
    batch_size: int  # per process under torchrun
    lr: float
    warmup_epochs: float
    weight_decay: float
    label_smoothing: float
    # the data and the run
    preload: bool
    workers: int | None  # None: this process's share of the cores, less one
    save_every: int
    subset: str = registry.DEFAULT
    preset: str = registry.DEFAULT
    data_root: str = registry.DATASETS[registry.DEFAULT].root
    out: str | None = None
    resume: str | None = None
    seed: int = 0
    device: str = "auto"
    decode: str = "auto"
    gpu_share: float = 1.0
    flips: bool = True
    limit_train: int | None = None
    limit_val: int | None = None
    compile: bool = False
    init_from: str | None = None
    calibrate: bool = True  # fit the confidence record at the end (minivb.engine.confidence)

    @classmethod
    def given(cls, given: dict) -> "TrainOptions":
        """The data set's preset (``--preset``, else the ``--subset``'s own), then ``given``; an unknown name is a
        one-line :class:`UsageError`."""
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"unknown option(s) {', '.join(unknown)}; see python -m minivb.train --help")
        dataset = registry.get(given.get("subset"))
        preset = given.get("preset", dataset.name)
        start = dict(subset=dataset.name, preset=preset, data_root=dataset.root)
        return cls(**(start | registry.get(preset).preset | given))

    @classmethod
    def from_dict(cls, options: dict) -> "TrainOptions":
        """A checkpoint's ``args`` (written by :meth:`to_dict`): names that no longer exist are left out, newer ones
        take their defaults (a run from before ``--flips`` mirrored its clips)."""
        return cls(**{k: v for k, v in options.items() if k in {f.name for f in fields(cls)}})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainOptions":
        return dataclasses.replace(self, **changes)

    @property
    def dataset(self) -> registry.DataSet:
        return registry.get(self.subset)

    def model_config(self, num_classes: int) -> VideoBERTConfig:
        """The model these options describe (``--heads`` is the config's ``num_heads``); ``ValueError`` if invalid."""
        return VideoBERTConfig(
            num_classes=num_classes,
            num_frames=self.num_frames,
            grid=self.grid,
            encoder=self.encoder,
            pretrained=self.pretrained,
            dim=self.dim,
            depth=self.depth,
            num_heads=self.heads,
            dropout=self.dropout,
            time_embedding=self.time_embedding,
            channels_last=True,  # faster convolutions on CPUs too
        )

    def preprocessing(self) -> Preprocessing:
        """The record a checkpoint carries: how a video becomes this model's input (its data set's views)."""
        return Preprocessing(self.num_frames, self.stride, self.size, *self.dataset.views)

    def clip_dataset(self, items: list, classes: list[str], *, train: bool) -> ClipDataset:
        """Training clips (random window, crop and the data set's flips, drawn from ``--seed``) or evaluation clips
        (the centre clip, its centre square); a bad index is a ``ValueError``."""
        dataset = self.dataset  # e.g. the toy set: a mirror swaps left ⟷ right (top ⟷ bottom) motion
        augment = Augmentation(seed=self.seed, flips=self.flips, hflip=dataset.hflip, vflip=dataset.vflip)
        return ClipDataset(
            items,
            classes,
            self.num_frames,
            self.stride,
            train=train,
            size=self.size,
            augment=augment,
            preload=self.preload,
        )

    def loader(
        self,
        dataset: Dataset,
        device: torch.device,
        sampler: Sampler,
        batch_size: int,
        init_worker: Callable[[int], None] | None = None,
    ):
        """The loader of a run: uint8 batches, prefetched by persistent workers, decoded where ``--decode`` says."""
        workers = self.workers if self.workers is not None else auto_workers()
        extra = {} if init_worker is None else {"init_worker": init_worker}
        decoding = dict(decode=self.decode, gpu_share=self.gpu_share)
        return clip_loader(dataset, device, batch_size, workers, **decoding, sampler=sampler, persistent=True, **extra)
