"""Train VideoBERT on the toy set (default, CPU, minutes) or Kinetics-400 (GPUs, DDP).

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

    python -m minivb.train                                   # toy set, generated if missing
    python -m minivb.train --subset k400                      # data/kinetics400, prepared by minivb.data.kinetics
    torchrun --nproc_per_node=8 -m minivb.train --subset k400
    python -m minivb.train --resume runs/toy-20250101-120000  # continue exactly where it stopped

Read top to bottom: options and presets → the loop (:func:`train_one_epoch`, :func:`validate`,
the counters in :class:`TrainState`) → set-up (data, model, optimizer: :func:`build_run`) →
:func:`train`, which runs epochs of train → validate → log → save. The run's folder and files are
:mod:`minivb.runs`; the distributed helpers :mod:`minivb.distributed`; the metrics
:mod:`minivb.metrics`. Optimisation: AdamW (the model's own parameter groups,
:meth:`~minivb.model.VideoBERT.configure_optimizers`) with linear warmup + cosine decay per step,
label smoothing, gradient clipping.

Exact resume: the model is initialised from ``--seed``, the sampler's order is a function of
``(seed, epoch)`` and every augmentation a function of ``(seed, epoch, index)``; checkpoints
(atomic, every ``--save-every`` steps and every epoch) carry model, optimizer, scheduler,
the counters and the torch RNG state. So a run killed at any point (``kill -9``) and resumed
with ``--resume`` ends with bit-identical weights on a CPU. SIGTERM (cluster preemption) and
Ctrl-C save a checkpoint and stop (exit status 0 and 130).

Distributed: under ``torchrun`` every process trains a shard of each epoch inside
DistributedDataParallel (NCCL on GPUs, gloo on CPUs); ``--batch-size`` is per process; metrics
are summed across processes; rank 0 alone logs and writes. On CUDA: bf16 autocast and
channels-last convolutions; ``--compile`` adds ``torch.compile``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed, runs
from .checkpoint import read_checkpoint, save_checkpoint, unwrap_model
from .cli import DEVICES, Parser, UsageError, autocast, check_batch_fits, nonnegative_int, number, positive_int, resolve_device, run_main, seed, write_json
from .data.clips import ClipDataset, ShardedSampler, collate, limit_items, load_items, report_skipped, steps_per_epoch, worker_init
from .metrics import Accuracy
from .model import VideoBERT, VideoBERTConfig

__all__ = ["PRESETS", "Diverged", "TrainState", "UsageError", "auto_workers", "build_run", "parse_args", "train", "train_one_epoch",
           "validate", "warmup_cosine", "main"]

# Defaults of each preset; command-line options override them. One dict per preset.
PRESETS: dict[str, dict] = {
    "toy": dict(
        encoder="small", pretrained=False, size=64, num_frames=8, stride=2, grid=2,
        dim=128, depth=2, heads=4, dropout=0.0, time_embedding=True,
        batch_size=32, epochs=15, lr=2e-3, warmup_epochs=1.0, weight_decay=0.05, label_smoothing=0.1,
        preload=True, workers=0, save_every=0,
    ),
    "k400": dict(
        encoder="resnet18", pretrained=True, size=224, num_frames=16, stride=4, grid=7,
        dim=512, depth=4, heads=8, dropout=0.1, time_embedding=True,
        batch_size=16, epochs=30, lr=5e-4, warmup_epochs=2.0, weight_decay=0.05, label_smoothing=0.1,
        preload=False, workers=None, save_every=1000,  # workers None: every core this process may use, less one
    ),
}
SUBSETS = ("toy", "k400")
DATA_ROOTS = {"toy": "data/toy", "k400": "data/kinetics400"}  # --data-root defaults
# Options that may differ when resuming (they do not change what is computed).
RUNTIME_OPTIONS = {"out", "resume", "device", "workers", "save_every", "compile", "preload", "data_root"}


# --------------------------------------------------------------------------- options


_pos_float, _nonneg_float = number(float, 0.0, True), number(float, 0.0, False)


def _smoothing(text: str) -> float:
    value = _nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    presets = "\n".join(f"  {name}: " + ", ".join(f"{k}={'auto' if v is None else v}" for k, v in p.items()) for name, p in PRESETS.items())
    p = Parser(
        prog="python -m minivb.train",
        description="Train VideoBERT on the toy set (default) or Kinetics-400; writes config.json, metrics.csv, "
        "curves.png, last.pt, best.pt and summary.json to --out.",
        epilog=f"preset defaults (any option above overrides them):\n{presets}\n\n"
        "distributed: torchrun --nproc_per_node=N -m minivb.train ... (--batch-size is per process)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=S,
    )
    g = p.add_argument_group("data and run")
    g.add_argument("--subset", choices=SUBSETS, help="data set (default: toy)")
    g.add_argument("--data-root", help="data folder (default: data/toy, or data/kinetics400 for k400); the toy set is generated there if missing")
    g.add_argument("--preset", choices=tuple(PRESETS), help="default settings to start from (default: the subset's name)")
    g.add_argument("--out", help="output folder (default: runs/<subset>-<date>-<time>); refused if it already holds a run")
    g.add_argument("--resume", help="continue a run: a checkpoint file, or a run folder (uses its last.pt)")
    g.add_argument("--save-every", type=nonnegative_int, help="also save last.pt every N steps (0: only at the end of each epoch)")
    g.add_argument("--seed", type=seed, help="seed for model init, data order and augmentation (default: 0)")
    g.add_argument("--device", choices=DEVICES, help="auto = cuda if available, else cpu (default: auto)")
    g.add_argument("--workers", type=nonnegative_int, help="DataLoader worker processes (0: load in the main process; "
                   "k400 default: this process's share of the cores, less one)")
    g.add_argument("--preload", action=argparse.BooleanOptionalAction, help="decode every video into memory first")
    g.add_argument("--limit-train", type=positive_int, help="use only N training videos (a fixed random subset; quick runs)")
    g.add_argument("--limit-val", type=positive_int, help="use only N validation videos")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--init-from", help="start from a checkpoint of python -m minivb.pretrain (pretrain.pt or its folder): its "
                   "Transformer, time embedding and [CLS] token are copied; the CNN and the output layer start fresh")
    g = p.add_argument_group("clips and model")
    g.add_argument("--num-frames", type=positive_int, help="frames per clip")
    g.add_argument("--stride", type=positive_int, help="take every STRIDE-th frame")
    g.add_argument("--size", type=positive_int, help="frame side in pixels after cropping")
    g.add_argument("--encoder", choices=("small", "resnet18", "resnet50"), help="per-frame CNN")
    g.add_argument("--pretrained", action=argparse.BooleanOptionalAction, help="ImageNet weights for a ResNet encoder")
    g.add_argument("--grid", type=positive_int, help="regions per frame = grid²")
    g.add_argument("--dim", type=positive_int, help="Transformer width")
    g.add_argument("--depth", type=positive_int, help="Transformer layers N")
    g.add_argument("--heads", type=positive_int, help="attention heads")
    g.add_argument("--dropout", type=_smoothing, help="dropout rate in [0, 1)")
    g.add_argument("--no-time-embedding", dest="time_embedding", action="store_false",
                   help="drop the time embedding: the order-blind model (near 50%% within each toy twin pair)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, help="training epochs")
    g.add_argument("--batch-size", type=positive_int, help="clips per step (per process under torchrun)")
    g.add_argument("--lr", type=_pos_float, help="peak learning rate (AdamW)")
    g.add_argument("--warmup-epochs", type=_nonneg_float, help="linear warmup, then cosine decay to 0")
    g.add_argument("--weight-decay", type=_nonneg_float, help="AdamW weight decay (not on norms, biases, embeddings)")
    g.add_argument("--label-smoothing", type=_smoothing, help="label smoothing in [0, 1)")
    return p


def parse_args(argv: list[str] | None = None) -> dict:
    """Command line → the options given explicitly (a dict; presets are applied by :func:`train`)."""
    return vars(build_parser().parse_args(argv))


def resolve_options(given: dict) -> tuple[dict, dict | None, Path | None]:
    """Given options → (full options, checkpoint to resume from or None, its path)."""
    if "resume" not in given:
        subset = given.get("subset", "toy")
        preset = given.get("preset", subset)
        opts = dict(subset=subset, preset=preset, data_root=DATA_ROOTS[subset], out=None, seed=0, device="auto",
                    compile=False, limit_train=None, limit_val=None, init_from=None)
        return opts | PRESETS[preset] | given, None, None
    path = runs.checkpoint_path(given["resume"], "--resume")
    try:
        ckpt = read_checkpoint(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not isinstance(ckpt.get("args"), dict) or "optimizer" not in ckpt:
        raise UsageError(f"{path} holds a model but no training state; resume from a last.pt written by python -m minivb.train")
    if path.name != "last.pt" and not given.get("out"):
        raise UsageError(f"--resume {path} would continue an older point of its run and overwrite the run's last.pt; "
                         f"pass a new --out for the branch")
    opts = dict(ckpt["args"])
    for key, value in given.items():
        if key not in RUNTIME_OPTIONS and opts.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{path} was trained with {flag}={opts.get(key)!r}, not {value!r}; drop {flag} to resume "
                             f"it, or start a new run (without --resume)")
    opts |= {k: v for k, v in given.items() if k in RUNTIME_OPTIONS}
    opts |= dict(out=given.get("out") or str(path.parent), compile=given.get("compile", False))
    return opts, ckpt, path


# --------------------------------------------------------------------------- the loop


class Diverged(Exception):
    """The loss stopped being a finite number (exit status 1; nothing is saved after it)."""


@dataclass
class TrainState:
    """The run's counters: with the model, optimizer, scheduler and RNG states, all a checkpoint needs to resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps done
    step_in_epoch: int = 0  # batches of the current epoch done (a resume continues after them)
    loss_sum: float = 0.0  # Σ loss · clips over this epoch's steps
    loss_count: int = 0  # clips trained on this epoch
    lr: float = 0.0  # learning rate of the latest step
    epoch_seconds: float = 0.0  # training time of this epoch (validation and saving excluded)
    elapsed: float = 0.0  # wall-clock time of the whole run
    best_val_top1: float = -1.0
    best_epoch: int = 0
    history: list = field(default_factory=list)  # one metrics row per epoch
    skipped_train: list = field(default_factory=list)  # broken training files met so far

    def __post_init__(self):
        self._clock = time.perf_counter()  # not a field: checkpoints carry the seconds, not the clock

    def tick(self, training: bool = True) -> None:
        """Add the time since the last tick to the run's seconds (and, if ``training``, to the epoch's)."""
        now = time.perf_counter()
        self.elapsed += now - self._clock
        if training:
            self.epoch_seconds += now - self._clock
        self._clock = now

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "TrainState":
        return cls(**{f.name: ckpt[f.name] for f in fields(cls) if f.name in ckpt})


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler, criterion: nn.Module,
                    state: TrainState, device: torch.device, *, world_size: int = 1, stop: Callable[[], bool] = lambda: False,
                    on_step: Callable[[TrainState], None] | None = None) -> bool:
    """One pass over ``loader``: forward → loss → backward → clip gradients → optimizer and schedule step.

    Updates ``state`` (steps, loss sums, seconds, skipped files) and calls ``on_step(state)`` after
    each step. Returns False if ``stop()`` turned true (on any process) before the epoch's end.
    """
    model.train()
    state.tick(training=False)  # time since the last tick (validation, saving) is not training time
    for videos, labels, skipped in loader:  # (B, T, 3, H, W) uint8, (B,), broken files replaced in this batch
        if skipped:
            report_skipped(skipped)
            state.skipped_train = sorted(set(state.skipped_train) | {s.path for s in skipped})
        stopping, empty = distributed.any_rank([stop(), videos is None], device, world_size)  # all ranks agree
        if stopping:
            state.tick()
            return False
        state.step_in_epoch += 1
        if empty:  # every clip of the batch was unreadable
            continue
        videos, labels = videos.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device):  # bf16 on CUDA
            logits = model(videos)  # (B, C)
        loss = criterion(logits.float(), labels)  # cross-entropy with label smoothing
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # (DDP averages the gradients across processes here)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0).item()  # ‖g‖ before clipping
        loss_value = loss.item()
        if not (math.isfinite(grad_norm) and math.isfinite(loss_value)):  # before the weights change
            # (a NaN on any process makes the averaged gradient, so ‖g‖, NaN on every process: all stop together)
            raise Diverged(f"training diverged at step {state.step + 1} (loss {loss_value}, gradient norm {grad_norm}); "
                           f"the last checkpoint is kept; lower --lr (or raise --warmup-epochs) and start again")
        state.lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()  # the learning rate of the next step
        state.step += 1
        state.loss_sum += loss_value * len(labels)
        state.loss_count += len(labels)
        state.tick()
        if on_step is not None:
            on_step(state)
    state.tick()
    return True


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device, world_size: int = 1) -> dict:
    """Centre-clip validation → :meth:`~minivb.metrics.Accuracy.result` (loss, top-1, top-5, per class,
    confusion; summed over processes) + ``skipped`` (unreadable videos)."""
    model.eval()
    metrics, skipped = Accuracy(num_classes, device), torch.zeros((), dtype=torch.int64, device=device)
    for videos, labels, bad in loader:
        report_skipped(bad)
        skipped += len(bad)
        if videos is None:
            continue
        videos, labels = videos.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device):
            logits = model(videos).float()  # (B, C); uint8 videos become floats on the device
        metrics.update(logits, labels, nn.functional.cross_entropy(logits, labels, reduction="sum"))
    metrics.all_reduce(world_size)
    model.train()
    return metrics.result() | {"skipped": int(distributed.all_reduce(skipped, world_size))}


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier for step s: linear warmup to 1 over ``warmup_steps``, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


# --------------------------------------------------------------------------- set-up


@dataclass
class Run:
    """Everything one training run works with, made by :func:`build_run`."""

    opts: dict
    out: Path
    device: torch.device
    rank: int
    world_size: int
    classes: list[str]
    train_set: ClipDataset
    val_set: ClipDataset
    train_sampler: ShardedSampler
    train_loader: DataLoader
    val_loader: DataLoader
    steps_per_epoch: int
    model: VideoBERT  # the bare model (checkpoints, parameters)
    forward: nn.Module  # what the loop calls: the model, compiled and/or inside DDP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    state: TrainState

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def say(self, *args) -> None:
        if self.is_main:
            print(*args, flush=True)


def auto_workers() -> int:
    """DataLoader workers when not given: this process's share of the cores (under torchrun), less one for itself."""
    return max(1, distributed.local_cores() - 1)


def _ignore_sigterm(worker_id: int) -> None:
    # SIGTERM and Ctrl-C are for the main process (it saves a checkpoint); workers let it shut them down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_init(worker_id)


def _ensure_toy(root: Path) -> None:
    """Make the toy set at ``root`` if it is missing (or incomplete, or from an older generator)."""
    import json

    from .data import toy

    meta = root / "meta.json"
    if meta.is_file():  # keep the settings it was made with (e.g. a smaller set); generate() reuses it if current
        try:
            settings = json.loads(meta.read_text())
            config = toy.ToyConfig(**{f.name: settings[f.name] for f in fields(toy.ToyConfig)})
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{meta} is not a toy set's meta.json; pass another --data-root or delete {root}") from None
        toy.generate(root, config)
        return
    if root.exists() and not root.is_dir():
        raise UsageError(f"--data-root {root} is a file; pass a folder")
    try:
        toy.generate(root, verbose=True)  # refuses a non-empty folder that is not a toy set
    except ValueError as e:
        raise UsageError(f"--data-root {e}; or use --subset k400 for your own videos") from None


def load_data(opts: dict) -> tuple[list, list, list[str]]:
    """(training items, validation items, class names) from ``--data-root``; one-line errors for what is missing."""
    root = Path(opts["data_root"])
    if opts["subset"] == "k400" and not (root / "train.csv").is_file() and not (root / "train").is_dir():
        raise UsageError(
            f"no Kinetics-400 data in {root}; get it with: python -m minivb.data.kinetics download --root {root} && "
            f"python -m minivb.data.kinetics prepare --root {root} (about 450 GB of downloads + 370–620 GB prepared; see data/README.md), "
            f"or pass --data-root with {{train,val}}.csv or train/<label>/*.mp4"
        )
    try:
        train_items, classes = load_items(root, "train")
        val_items, _ = load_items(root, "val", classes)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    return limit_items(train_items, opts["limit_train"], opts["seed"]), limit_items(val_items, opts["limit_val"], opts["seed"] + 1), classes


def _check_resume(ckpt: dict, opts: dict, classes: list[str], n_train: int, world_size: int) -> None:
    if list(ckpt["classes"]) != classes:
        raise UsageError(f"the classes in {opts['data_root']} differ from the checkpoint's; resume with the data it was trained on")
    if ckpt.get("world_size", 1) != world_size:
        raise UsageError(f"the checkpoint was written by {ckpt.get('world_size', 1)} process(es), this run has {world_size}; "
                         f"resume with the same number of processes (the data order and schedule depend on it)")
    if ckpt.get("train_items") not in (None, n_train):
        raise UsageError(f"{opts['data_root']} has {n_train} training videos, the checkpoint's run had "
                         f"{ckpt['train_items']}; resume with the same data and --limit-train")


def build_data(opts: dict, classes: list[str], train_items: list, val_items: list, device: torch.device, rank: int,
               world_size: int) -> tuple[ClipDataset, ClipDataset, ShardedSampler, DataLoader, DataLoader]:
    """The data sets, the training sampler and the two loaders (made once: workers persist across epochs)."""
    hflip = vflip = None
    if opts["subset"] == "toy":
        from .data.toy import HFLIP as hflip, VFLIP as vflip  # a mirror swaps left ⟷ right (top ⟷ bottom) motion
    common = dict(num_frames=opts["num_frames"], stride=opts["stride"], size=opts["size"], seed=opts["seed"],
                  preload=opts["preload"])
    try:
        train_set = ClipDataset(train_items, classes, train=True, hflip=hflip, vflip=vflip, **common)
        val_set = ClipDataset(val_items, classes, train=False, **common)
    except ValueError as e:
        raise UsageError(str(e)) from None
    train_sampler = ShardedSampler(len(train_set), shuffle=True, seed=opts["seed"], rank=rank, world_size=world_size,
                                   drop_last=world_size > 1, with_epoch=True)  # (epoch, index): persistent workers know the epoch
    val_sampler = ShardedSampler(len(val_set), shuffle=False, rank=rank, world_size=world_size, drop_last=False)
    workers = opts["workers"] if opts["workers"] is not None else auto_workers()

    def loader(dataset, sampler, batch_size):  # uint8 batches, prefetched by persistent workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                          pin_memory=device.type == "cuda", worker_init_fn=_ignore_sigterm if workers else None,
                          persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                          generator=torch.Generator())  # own generator: the global RNG stays untouched

    bs = opts["batch_size"]
    return train_set, val_set, train_sampler, loader(train_set, train_sampler, bs), loader(val_set, val_sampler, 2 * bs)


def build_model(opts: dict, num_classes: int, device: torch.device, rank: int, world_size: int) -> VideoBERT:
    """The model, initialised from ``--seed`` (every process and every rerun starts the same), size checked."""
    try:
        config = VideoBERTConfig(
            num_classes=num_classes, num_frames=opts["num_frames"], grid=opts["grid"], encoder=opts["encoder"],
            pretrained=opts["pretrained"], dim=opts["dim"], depth=opts["depth"], num_heads=opts["heads"],
            dropout=opts["dropout"], time_embedding=opts["time_embedding"], channels_last=True)  # faster convolutions on CPUs too
    except ValueError as e:
        raise UsageError(f"model options: {e}") from None

    def build() -> VideoBERT:
        torch.manual_seed(opts["seed"])
        try:
            return VideoBERT(config).to(device)
        except RuntimeError as e:  # ImageNet weights neither cached nor downloadable
            raise UsageError(" ".join(str(e).split())) from None

    # rank 0 first: it downloads any ImageNet weights into the cache the others then read
    model = distributed.rank0_first(build, rank, world_size, others=True, errors=(UsageError,))
    try:  # one frame through the CNN (eval mode: BatchNorm statistics untouched) checks --size against --grid
        with torch.no_grad():
            model.eval().encoder(torch.zeros(1, 1, 3, opts["size"], opts["size"], device=device))
    except ValueError as e:
        raise UsageError(f"--size {opts['size']}: {e}") from None
    return model.train()


def build_run(opts: dict, ckpt: dict | None, device: torch.device, rank: int, world_size: int) -> Run:
    """Data, model, optimizer, schedule and counters of a run (restored from ``ckpt`` when resuming)."""
    if opts["subset"] == "toy":  # rank 0 makes the toy set; the others wait for it
        distributed.rank0_first(lambda: _ensure_toy(Path(opts["data_root"])), rank, world_size, others=False, errors=(UsageError,))
    train_items, val_items, classes = load_data(opts)
    if ckpt is not None:
        _check_resume(ckpt, opts, classes, len(train_items), world_size)
    out = Path(opts["out"]) if opts["out"] else distributed.broadcast(runs.new_run_folder(opts["subset"]), world_size)
    model = build_model(opts, len(classes), device, rank, world_size)
    if ckpt is None and opts.get("init_from"):  # pretrained Transformer (python -m minivb.pretrain)
        from .pretrain import init_from_pretrained

        try:
            init_from_pretrained(model, opts["init_from"])
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--init-from: {e}") from None
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise UsageError(f"the checkpoint's weights do not fit the model ({' '.join(str(e).split())[:160]}); start a new run") from None
    train_set, val_set, sampler, train_loader, val_loader = build_data(opts, classes, train_items, val_items, device, rank, world_size)
    n_steps = steps_per_epoch(sampler, opts["batch_size"])
    if n_steps == 0:
        raise UsageError(f"{len(train_set)} training videos are too few for {world_size} processes; use more data or fewer processes")

    # AdamW (weight decay on matrices and kernels only), warmup + cosine per step, label smoothing
    optimizer = model.configure_optimizers(opts["lr"], opts["weight_decay"], fused=device.type == "cuda")
    total_steps = opts["epochs"] * n_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(round(opts["warmup_epochs"] * n_steps), total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=opts["label_smoothing"])
    state = TrainState()
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = TrainState.from_checkpoint(ckpt)
        _set_rng_state(ckpt["rng"], device)

    forward = torch.compile(model) if opts["compile"] else model
    if world_size > 1:
        forward = nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return Run(opts, out, device, rank, world_size, classes, train_set, val_set, sampler, train_loader, val_loader, n_steps,
               model, forward, optimizer, scheduler, criterion, state)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --------------------------------------------------------------------------- bookkeeping: checkpoints, metrics, summary


def save(run: Run, *names: str) -> None:
    """The run as a checkpoint (model, optimizer, scheduler, counters, RNG, options) → ``out/<name>`` (rank 0)."""
    if not run.is_main:
        return
    ckpt = {
        "model": unwrap_model(run.model).state_dict(), "config": run.model.config.to_dict(), "classes": run.classes,
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(), **asdict(run.state),
        "rng": _rng_state(run.device), "args": run.opts | {"out": str(run.out)},
        "train_items": len(run.train_set), "world_size": run.world_size,
    }
    for name in names:
        save_checkpoint(run.out / name, ckpt)


def start_log(run: Run, resuming: bool) -> None:
    """``config.json`` (and, when resuming, the metrics so far) and the opening line."""
    params = sum(p.numel() for p in run.model.parameters())
    if run.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        write_json(run.out / "config.json", {
            "args": run.opts | {"out": str(run.out)}, "model": run.model.config.to_dict(), "classes": run.classes,
            "train_clips": len(run.train_set), "val_clips": len(run.val_set), "parameters": params,
            "device": str(run.device), "world_size": run.world_size, "steps_per_epoch": run.steps_per_epoch,
            "torch": torch.__version__})
        if resuming:
            runs.write_metrics(run.out, run.state.history)
    s = run.state
    run.say(f"minivb.train: {run.opts['subset']} ({len(run.train_set)} train / {len(run.val_set)} val clips, "
            f"{len(run.classes)} classes), {params / 1e6:.2f}M parameters, {run.device.type} × {run.world_size}, "
            f"{run.opts['epochs']} epochs × {run.steps_per_epoch} steps → {run.out}"
            + (f" (resuming at epoch {s.epoch + 1}, step {s.step})" if resuming else ""))


def end_epoch(run: Run, val: dict) -> None:
    """Close an epoch: its metrics row (training numbers summed over processes), best epoch, log line, files."""
    s = run.state
    sums = torch.tensor([s.loss_sum, s.loss_count], dtype=torch.float64, device=run.device)
    loss_sum, clips = distributed.all_reduce(sums, run.world_size).tolist()
    row = {"epoch": s.epoch + 1, "step": s.step, "train_loss": loss_sum / max(clips, 1), "val_loss": val["loss"],
           "val_top1": val["top1"], "val_top5": val["top5"], "lr": s.lr, "clips_per_s": clips / max(s.epoch_seconds, 1e-9),
           "seconds": s.epoch_seconds}
    s.history = s.history + [row]
    is_best = row["val_top1"] > s.best_val_top1
    if is_best:
        s.best_val_top1, s.best_epoch = row["val_top1"], s.epoch + 1
    s.epoch, s.step_in_epoch, s.loss_sum, s.loss_count, s.epoch_seconds = s.epoch + 1, 0, 0.0, 0, 0.0
    s.tick(training=False)
    run.say(f"epoch {row['epoch']:>3}/{run.opts['epochs']}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"top-1 {100 * row['val_top1']:5.1f}%  top-5 {100 * row['val_top5']:5.1f}%  lr {row['lr']:.2e}  "
            f"{row['clips_per_s']:.0f} clips/s")
    save(run, "last.pt", *(("best.pt",) if is_best else ()))
    if run.is_main:
        runs.write_metrics(run.out, s.history)
        runs.plot_curves(run.out, s.history)


def finish(run: Run, val: dict) -> dict:
    """The run's ``summary.json`` (final validation, best epoch, speed, per-class accuracy, skipped files)."""
    s = run.state
    final = s.history[-1] if s.history else {}
    summary = {
        "val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"],
        "best_val_top1": s.best_val_top1, "best_epoch": s.best_epoch,
        "epochs": run.opts["epochs"], "steps": s.step, "seconds": round(s.elapsed, 2),
        "train_loss": final.get("train_loss"), "clips_per_s": final.get("clips_per_s"),
        "per_class_top1": dict(zip(run.classes, val["per_class_top1"])),
        "train_clips": len(run.train_set), "val_clips": val["count"], "parameters": sum(p.numel() for p in run.model.parameters()),
        "skipped_train_clips": distributed.count_distinct(s.skipped_train, run.world_size), "skipped_val_clips": val["skipped"],
        "subset": run.opts["subset"], "preset": run.opts["preset"], "device": str(run.device), "world_size": run.world_size,
        "out": str(run.out),
    }
    if run.is_main:
        write_json(run.out / "summary.json", summary)
    run.say(f"done: val top-1 {100 * summary['val_top1']:.1f}% (best {100 * summary['best_val_top1']:.1f}% at epoch "
            f"{summary['best_epoch']}), top-5 {100 * summary['val_top5']:.1f}%, {summary['seconds']:.0f} s → {run.out}")
    return summary


@contextlib.contextmanager
def _stop_signals():
    """Yield ``stopped()`` → the name of a stop signal received (SIGTERM, SIGINT) or None.

    The first SIGTERM / Ctrl-C asks the loop to save and stop; a second Ctrl-C stops at once.
    Handlers can only be installed in the main thread; elsewhere nothing is caught.
    """
    got: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and got:
            raise KeyboardInterrupt
        got.append(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: got[0] if got else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- training


def fit(run: Run, on_step: Callable[[TrainState], None] | None = None) -> dict:
    """Epochs of train → validate → log → save until ``--epochs`` (or a stop signal) → the summary."""
    from tqdm import tqdm

    s, opts = run.state, run.opts

    def step_done(state: TrainState) -> None:
        if on_step is not None:
            on_step(state)
        if opts["save_every"] and state.step % opts["save_every"] == 0:
            save(run, "last.pt")

    val = None
    with _stop_signals() as stopped:
        while s.epoch < opts["epochs"]:
            run.train_sampler.set_epoch(s.epoch, skip=s.step_in_epoch * opts["batch_size"])
            bar = tqdm(run.train_loader, total=run.steps_per_epoch, initial=s.step_in_epoch, unit="step", leave=False,
                       desc=f"epoch {s.epoch + 1}/{opts['epochs']}", disable=None if run.is_main else True)
            done = train_one_epoch(run.forward, bar, run.optimizer, run.scheduler, run.criterion, s, run.device,
                                   world_size=run.world_size, stop=lambda: stopped() is not None, on_step=step_done)
            bar.close()
            if done:
                val = validate(run.forward, run.val_loader, len(run.classes), run.device, run.world_size)
                end_epoch(run, val)
            if not done or (s.epoch < opts["epochs"] and distributed.any_rank([stopped() is not None], run.device, run.world_size)[0]):
                save(run, "last.pt")
                where = f"epoch {s.epoch + 1}, step {s.step}" if not done else f"the end of epoch {s.epoch}"
                run.say(f"stopped by {stopped() or 'another process'} at {where}; saved {run.out / 'last.pt'} "
                        f"(continue with --resume {run.out})")
                return {"stopped": True, "signal": stopped(), "out": str(run.out), "step": s.step, "epoch": s.epoch}
    if val is None:  # resumed a finished run: validate once more for the summary
        val = validate(run.forward, run.val_loader, len(run.classes), run.device, run.world_size)
    s.tick(training=False)
    return finish(run, val)


def train(given: dict, on_step: Callable[[TrainState], None] | None = None) -> dict:
    """Train with the options ``given`` (as from :func:`parse_args`) → the summary dict.

    ``on_step(state)`` is called after every optimizer step (progress, tests that stop a run at
    a known step). Raises :class:`UsageError` for bad options or inputs (before anything is
    written). Returns ``{"stopped": True, ...}`` if SIGTERM or Ctrl-C ended the run early
    (after saving last.pt).
    """
    opts, ckpt, ckpt_path = resolve_options(given)
    rank, world_size, local_rank = distributed.process_place()
    device = resolve_device(opts["device"], local_rank)
    if opts["out"]:
        runs.check_out(Path(opts["out"]), ckpt_path)
    if opts["subset"] == "k400":
        load_data(opts)  # raises the Kinetics-400 message before any process group is set up
    b, t, size = opts["batch_size"], opts["num_frames"], opts["size"]
    check_batch_fits(device, b, t, size, f"--batch-size {b} × --num-frames {t} × 3 × --size {size}²")
    distributed.setup(device, world_size)
    try:
        run = build_run(opts, ckpt, device, rank, world_size)
        lock = distributed.rank0_first(lambda: runs.claim(run.out), rank, world_size, others=False, errors=(UsageError,))
        try:  # the folder is this run's until it ends
            start_log(run, resuming=ckpt is not None)
            return fit(run, on_step)
        finally:
            if lock is not None:
                runs.release(run.out, lock)
    finally:
        distributed.teardown(world_size)


def main(argv: list[str] | None = None, on_step: Callable[[TrainState], None] | None = None) -> int:
    """``python -m minivb.train``: 0 on success or after SIGTERM, 130 after Ctrl-C, 1 if training diverged,
    2 on a usage error."""
    def work() -> int:
        try:
            summary = train(parse_args(argv), on_step)
        except Diverged as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
                raise
            print(f"error: out of memory while training ({type(e).__name__}); the last checkpoint is kept; lower "
                  f"--batch-size, --num-frames or --size (or --dim, --depth) and start again", file=sys.stderr)
            return 1
        return 130 if summary.get("signal") == "SIGINT" else 0
    return run_main(work)


if __name__ == "__main__":
    raise SystemExit(main())
