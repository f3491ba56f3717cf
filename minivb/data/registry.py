"""The data sets minivb knows, in one place: name → default folder, how to make or find it, its
training and pretraining presets, its evaluation views, its flip tables.

Every other module asks this registry (``DATASETS[name]``) instead of comparing a data set's name:
the trainer, the evaluator and the applications know no data set by name (as minGPT's trainer).
Adding a data set is one :class:`DataSet` entry here.

    toy    the embedded toy set (:mod:`minivb.data.toy`): generated on first use, CPU, minutes
    k400   Kinetics-400 (:mod:`minivb.data.kinetics`): downloaded and prepared by its own command
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from ..plumbing.checks import UsageError
from . import toy
from .clips import Item, load_items


def ensure_toy(root: str | Path) -> None:
    """Make the toy set at ``root`` if it is missing (or incomplete, or from an older generator)."""
    root = Path(root)
    meta = root / "meta.json"
    if meta.is_file():  # keep the settings it was made with (e.g. a smaller set); generate() reuses it if current
        try:
            settings = json.loads(meta.read_text())
            config = toy.ToyConfig(**{f.name: settings[f.name] for f in fields(toy.ToyConfig)})
        except (ValueError, KeyError, TypeError):
            config = None  # an interrupted or older toy set is made again below; anything else is the user's
        if config is not None:
            toy.generate(root, config)
            return
        if not toy.is_toy_root(root):  # the user's own folder: never suggest deleting it
            raise UsageError(
                f"--data-root {root} is not a toy set (its meta.json was not written by python -m minivb.data.toy); "
                f"for a folder of your own videos pass --subset k400, or pass another --data-root"
            )
    if root.exists() and not root.is_dir():
        raise UsageError(f"--data-root {root} is a file; pass a folder")
    try:
        toy.generate(root, verbose=True)  # refuses a non-empty folder that is not a toy set
    except ValueError as e:
        raise UsageError(f"--data-root {e}; or use --subset k400 for your own videos") from None


def _find_kinetics(root: str | Path) -> None:
    root = Path(root)
    if (root / "annotations").is_dir() and not (root / "train.csv").is_file():  # downloaded, not yet prepared
        raise UsageError(
            f"{root} holds a downloaded Kinetics-400 (annotations/, raw/) that is not prepared yet; run: "
            f"python -m minivb.data.kinetics prepare --root {root}"
        )
    if not (root / "train.csv").is_file() and not (root / "train").is_dir():
        raise UsageError(
            f"no Kinetics-400 data in {root}; get it with: python -m minivb.data.kinetics download --root {root} && "
            f"python -m minivb.data.kinetics prepare --root {root} (about 390 GB of downloads + 370–620 GB prepared; "
            f"see "
            f"data/README.md), or pass --data-root with {{train,val}}.csv or train/<label>/*.mp4"
        )


@dataclass(frozen=True)
class DataSet:
    """One data set: where it lives, how it is made or found, and the settings that suit it."""

    name: str
    root: str  # default --data-root
    preset: dict  # python -m minivb.train's defaults (the model size and the optimisation that suit it)
    pretrain_preset: dict  # python -m minivb.pretrain's defaults (the same model part as preset's: --init-from fits)
    views: tuple[int, int]  # (temporal clips, spatial crops) per video in evaluation and prediction
    make: Callable[[Path], None] | None = None  # makes the data set at a folder (None: it must be there already)
    find: Callable[[Path], None] | None = None  # raises UsageError, with how to get it, if it is not there
    hflip: dict[str, str] | None = None  # class → its class when mirrored left ⟷ right (None: a mirror keeps the label)
    vflip: dict[str, str] | None = None  # class → its class when mirrored top ⟷ bottom (None: no vertical mirror)
    preload: bool = False  # small enough to decode every video into memory first (pretraining's feature pass)
    narrated: bool = False  # each video has a narration (python -m minivb.pretrain --language)
    language_preset: dict | None = None  # what python -m minivb.pretrain --language changes in pretrain_preset

    def check(self, root: str | Path) -> None:
        """Cheap, before any work: a one-line :class:`UsageError` if the data cannot be found or made at ``root``."""
        if self.make is None and self.find is not None:
            self.find(Path(root))

    def prepare(self, root: str | Path) -> None:
        """Make the data set at ``root`` if it can be made and is missing (the toy set); else :meth:`check` it."""
        if self.make is not None:
            self.make(Path(root))
        else:
            self.check(root)

    def load(self, root: str | Path) -> tuple[list[Item], list[Item], list[str]]:
        """``(training items, validation items, class names)`` from ``root``; one-line errors for what is missing."""
        self.check(root)
        try:
            train_items, classes = load_items(root, "train")
            val_items, _ = load_items(root, "val", classes)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
        return train_items, val_items, classes


# The model part of each data set's presets, shared by training and pretraining, so that a pretrained Transformer
# fits the classifier (--init-from): the CNN, the clip (size, frames, stride) and the Transformer's size.
TOY = dict(
    cnn=dict(encoder="small", pretrained=False),
    clip=dict(size=64, num_frames=8, stride=2),
    transformer=dict(dim=128, depth=2, heads=4),
)
K400 = dict(
    cnn=dict(encoder="resnet18", pretrained=True),
    clip=dict(size=224, num_frames=16, stride=4),
    transformer=dict(dim=512, depth=4, heads=8),
)

DATASETS: dict[str, DataSet] = {
    "toy": DataSet(
        name="toy",
        root="data/toy",
        preset=dict(
            **TOY["cnn"],
            **TOY["clip"],
            grid=2,
            **TOY["transformer"],
            dropout=0.0,
            time_embedding=True,
            batch_size=32,
            epochs=15,
            lr=2e-3,
            warmup_epochs=1.0,
            weight_decay=0.05,
            label_smoothing=0.1,
            preload=True,
            workers=0,
            save_every=0,
        ),
        pretrain_preset=dict(
            **TOY["cnn"],
            grid=2,
            **TOY["clip"],
            levels=2,
            clusters=8,
            **TOY["transformer"],
            epochs=20,
            batch_size=64,
            lr=1e-3,
            weight_decay=0.05,
            flips=True,
            kmeans_frames=100_000,
            workers=0,
        ),
        views=(3, 1),
        make=ensure_toy,
        hflip=toy.HFLIP,  # a mirror swaps left ⟷ right motion: left_to_right ⟷ right_to_left
        vflip=toy.VFLIP,  # and top ⟷ bottom
        preload=True,
        narrated=True,
        language_preset=dict(epochs=40, batch_size=32, lr=3e-3),  # the joint model's three objectives learn slower
    ),
    "k400": DataSet(
        name="k400",
        root="data/kinetics400",
        preset=dict(
            **K400["cnn"],
            **K400["clip"],
            grid=7,
            **K400["transformer"],
            dropout=0.1,
            time_embedding=True,
            batch_size=16,
            epochs=30,
            lr=5e-4,
            warmup_epochs=2.0,
            weight_decay=0.05,
            label_smoothing=0.1,
            preload=False,
            workers=None,
            save_every=1000,  # workers None: every core this process may use, less one
        ),
        pretrain_preset=dict(
            **K400["cnn"],
            grid=1,
            **K400["clip"],
            levels=4,
            clusters=12,
            **K400["transformer"],
            epochs=10,
            batch_size=256,
            lr=5e-4,
            weight_decay=0.05,
            flips=False,
            kmeans_frames=200_000,
            workers=None,
        ),
        views=(4, 3),  # 4 clips × 3 crops, as the video-classification references test Kinetics
        find=_find_kinetics,
    ),
}
DEFAULT = "toy"  # the data set when none is named
PRESETS: dict[str, dict] = {name: d.preset for name, d in DATASETS.items()}  # python -m minivb.train --preset


def get(name: str | None) -> DataSet:
    """``DATASETS[name]`` (``None``: the default, the toy set); an unknown name → one-line :class:`UsageError`."""
    name = DEFAULT if name is None else name
    if name not in DATASETS:
        raise UsageError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]
