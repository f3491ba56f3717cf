"""Train VideoBERT on the toy set (default, CPU, minutes) or Kinetics-400 (GPUs, DDP).

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

    python -m minivb.train                                   # toy set, generated if missing
    python -m minivb.train --subset k400                      # data/kinetics400, prepared by minivb.data.kinetics
    torchrun --nproc_per_node=8 -m minivb.train --subset k400
    python -m minivb.train --resume runs/toy-20250101-120000  # continue exactly where it stopped

One file, top to bottom: options and presets → data (:mod:`minivb.data.clips`) → model
(:class:`~minivb.model.VideoBERT`) → AdamW with linear warmup + cosine decay (per step),
label smoothing, gradient clipping → a loop of epochs, each validated → an output folder::

    config.json  metrics.csv  curves.png  last.pt  best.pt  summary.json

Exact resume: the model is initialised from ``--seed``, the sampler's order is a function of
``(seed, epoch)`` and every augmentation a function of ``(seed, epoch, index)``; checkpoints
(atomic, every ``--save-every`` steps and every epoch) carry model, optimizer, scheduler,
position (epoch, batch) and the torch RNG state. So a run killed at any point (``kill -9``)
and resumed with ``--resume`` ends with bit-identical weights on a CPU. SIGTERM (cluster
preemption) saves a checkpoint and exits with status 0.

Distributed: under ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) every
process trains a shard of each epoch inside DistributedDataParallel (NCCL on GPUs, gloo on
CPUs); ``--batch-size`` is per process; metrics are summed across processes; rank 0 alone
logs and writes. On CUDA: bf16 autocast and channels-last convolutions; ``--compile`` adds
``torch.compile``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .cli import DEVICES, Parser, UsageError, nonnegative_int, number, positive_int, autocast, resolve_device, write_atomic
from .checkpoint import read_checkpoint, save_checkpoint, unwrap_model
from .data.clips import ClipDataset, ShardedSampler, collate, limit_items, load_items, report_skipped, steps_per_epoch, worker_init
from .model import VideoBERT, VideoBERTConfig

__all__ = ["PRESETS", "UsageError", "auto_workers", "parse_args", "train", "main"]

# Defaults of each preset; command-line options override them. One dict per preset.
PRESETS: dict[str, dict] = {
    "toy": dict(
        encoder="small", pretrained=False, size=64, num_frames=8, stride=2, grid=2,
        dim=128, depth=2, heads=4, dropout=0.0, time_embedding=True,
        batch_size=32, epochs=30, lr=2e-3, warmup_epochs=1.0, weight_decay=0.05, label_smoothing=0.1,
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
RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt", "summary.json")
METRICS = ("epoch", "step", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s", "seconds")


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
    g.add_argument("--seed", type=nonnegative_int, help="seed for model init, data order and augmentation (default: 0)")
    g.add_argument("--device", choices=DEVICES, help="auto = cuda if available, else cpu (default: auto)")
    g.add_argument("--workers", type=nonnegative_int, help="DataLoader worker processes (0: load in the main process; "
                   "k400 default: this process's share of the cores, less one)")
    g.add_argument("--preload", action=argparse.BooleanOptionalAction, help="decode every video into memory first")
    g.add_argument("--limit-train", type=positive_int, help="use only N training videos (a fixed random subset; quick runs)")
    g.add_argument("--limit-val", type=positive_int, help="use only N validation videos")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
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


def _resolve(given: dict) -> tuple[dict, dict | None, Path | None]:
    """Given options → (full options, checkpoint to resume from or None, its path)."""
    ckpt, ckpt_path = None, None
    if "resume" in given:
        ckpt_path = Path(given["resume"])
        if ckpt_path.is_dir():
            ckpt_path = ckpt_path / "last.pt"
        if not ckpt_path.is_file():
            raise UsageError(f"--resume {given['resume']}: no such checkpoint; pass a .pt file or a run folder that holds last.pt")
        try:
            ckpt = read_checkpoint(ckpt_path)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if not isinstance(ckpt.get("args"), dict) or "optimizer" not in ckpt:
            raise UsageError(f"{ckpt_path} holds a model but no training state; resume from a last.pt written by python -m minivb.train")
        if ckpt_path.name != "last.pt" and not given.get("out"):
            raise UsageError(f"--resume {ckpt_path} would continue an older point of its run and overwrite the run's last.pt; "
                             f"pass a new --out for the branch")
        opts = dict(ckpt["args"])
        for key, value in given.items():
            if key not in RUNTIME_OPTIONS and opts.get(key) != value:
                flag = "--" + key.replace("_", "-")
                raise UsageError(
                    f"{ckpt_path} was trained with {flag}={opts.get(key)!r}, not {value!r}; drop {flag} to resume "
                    f"it, or start a new run (without --resume)"
                )
        opts.update({k: v for k, v in given.items() if k in RUNTIME_OPTIONS})
        opts.update(out=given.get("out"), resume=given["resume"], compile=given.get("compile", False))
        return opts, ckpt, ckpt_path
    subset = given.get("subset", "toy")
    preset = given.get("preset", subset)
    opts = dict(subset=subset, preset=preset, data_root=DATA_ROOTS[subset], out=None, seed=0, device="auto",
                compile=False, limit_train=None, limit_val=None)
    opts.update(PRESETS[preset])
    opts.update(given)
    return opts, None, None


# --------------------------------------------------------------------------- set-up helpers


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def _check_out(out: Path, ckpt_path: Path | None) -> None:
    """Refuse an output folder that already holds a run, unless we are resuming that run."""
    held = [f for f in RUN_FILES if (out / f).exists()]
    if not held:
        return
    if ckpt_path is not None and ckpt_path.resolve().parent == out.resolve():
        return
    raise UsageError(
        f"--out {out} already holds a run ({', '.join(held)}); continue it with --resume {out}, or choose another --out"
    )


def _ensure_toy(root: Path) -> None:
    """Make the toy set at ``root`` if it is missing (or incomplete, or from an older generator)."""
    from dataclasses import fields

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


def _rank0_first(fn, rank: int, world_size: int, others: bool):
    """Run ``fn`` on rank 0, then (if ``others``) on the other ranks; a UsageError on rank 0 stops every rank."""
    result, error = None, [None]
    if rank == 0:
        try:
            result = fn()
        except UsageError as e:
            error = [str(e)]
    if world_size > 1:
        dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise UsageError(error[0])
    if rank != 0 and others:
        result = fn()
    return result


def _load_data(opts: dict) -> tuple[list, list, list[str]]:
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


def _model_config(opts: dict, num_classes: int, device: torch.device) -> VideoBERTConfig:
    try:
        return VideoBERTConfig(
            num_classes=num_classes, num_frames=opts["num_frames"], grid=opts["grid"], encoder=opts["encoder"],
            pretrained=opts["pretrained"], dim=opts["dim"], depth=opts["depth"], num_heads=opts["heads"],
            dropout=opts["dropout"], time_embedding=opts["time_embedding"], channels_last=device.type == "cuda",
        )
    except ValueError as e:
        raise UsageError(f"model options: {e}") from None


def _check_frame_size(model: VideoBERT, size: int, device: torch.device) -> None:
    """One frame through the CNN (eval mode: BatchNorm statistics untouched) to check size vs grid."""
    model.eval()
    try:
        with torch.no_grad():
            model.encoder(torch.zeros(1, 1, 3, size, size, device=device))
    except ValueError as e:
        raise UsageError(f"--size {size}: {e}") from None
    finally:
        model.train()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and conv kernels only (not norms, biases, embeddings)."""
    no_decay_names = ("time_embed", "region_embed", "cls_token")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name in no_decay_names else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier for step s: linear warmup to 1 over ``warmup_steps``, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def auto_workers() -> int:
    """DataLoader workers when not given: this process's share of the cores (under torchrun), less one for itself."""
    share = len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, share - 1)


def _worker_init(worker_id: int) -> None:
    # SIGTERM is for the main process (it saves a checkpoint); workers let it shut them down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker_init(worker_id)


def _write_metrics(out: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRICS})
    write_atomic(out / "metrics.csv", buf.getvalue())


def _plot_curves(out: Path, history: list[dict]) -> None:
    """Loss and accuracy per epoch → curves.png (Agg canvas: no GUI, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.4), tight_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax.plot(epochs, [r["val_loss"] for r in history], "o-", label="val")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(epochs, [100 * r["val_top1"] for r in history], "o-", label="val top-1")
    ax.plot(epochs, [100 * r["val_top5"] for r in history], "o-", label="val top-5")
    ax.set(xlabel="epoch", ylabel="%", title="validation accuracy", ylim=(0, 101))
    ax.legend()
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    tmp = out / ".curves.png.tmp"
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, out / "curves.png")


def _all_reduce(t: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        dist.all_reduce(t)
    return t


def _count_distinct(paths: list[str], world_size: int) -> int:
    """How many distinct ``paths`` all ranks together saw."""
    if world_size == 1:
        return len(set(paths))
    every: list = [None] * world_size
    dist.all_gather_object(every, paths)
    return len(set().union(*every))


def _any_rank(value: bool, device: torch.device, world_size: int) -> bool:
    """True on every rank if ``value`` is True on any rank (ranks decide together)."""
    if world_size == 1:
        return bool(value)
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _sigterm_flag():
    """Yield a dict whose "stop" turns True on SIGTERM (handler only installable in the main thread)."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["stop"] = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device, world_size: int = 1) -> dict:
    """Centre-clip validation → loss, top-1, top-5 and the confusion matrix (summed over ranks)."""
    model.eval()
    k = min(5, num_classes)
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits, clips, skipped clips
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for videos, labels, skipped in loader:
        report_skipped(skipped)
        sums[4] += len(skipped)
        if videos is None:
            continue
        videos, labels = videos.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device):
            logits = model(videos).float()  # (B, C); uint8 videos become floats on the device
        top = logits.topk(k, dim=1).indices  # (B, k)
        hits = top == labels[:, None]  # (B, k)
        sums += torch.stack([
            nn.functional.cross_entropy(logits, labels, reduction="sum").double(),
            hits[:, 0].sum().double(), hits.any(1).sum().double(), torch.tensor(len(labels), dtype=torch.float64, device=device),
            torch.zeros((), dtype=torch.float64, device=device),
        ])
        confusion += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes * num_classes)
    _all_reduce(sums, world_size)
    _all_reduce(confusion, world_size)
    model.train()
    n = max(sums[3].item(), 1.0)
    return {
        "val_loss": sums[0].item() / n, "val_top1": sums[1].item() / n, "val_top5": sums[2].item() / n,
        "val_clips": int(sums[3].item()), "val_skipped": int(sums[4].item()), "confusion": confusion.view(num_classes, num_classes).cpu(),
    }


# --------------------------------------------------------------------------- training


def train(given: dict) -> dict:
    """Run training with the options ``given`` (as from :func:`parse_args`) → the summary dict.

    Raises :class:`UsageError` for bad options or inputs (before anything is written).
    Returns ``{"stopped": True, ...}`` if SIGTERM ended the run early (after saving last.pt).
    """
    opts, ckpt, ckpt_path = _resolve(given)
    if opts["subset"] not in SUBSETS:
        raise UsageError(f"unknown subset {opts['subset']!r}; choose one of {', '.join(SUBSETS)}")
    rank, world_size, local_rank = _distributed()
    device = resolve_device(opts["device"], local_rank)
    is_main = rank == 0
    out = Path(opts["out"]) if opts.get("out") else (ckpt_path.parent if ckpt_path is not None else None)
    if out is not None:
        _check_out(out, ckpt_path)
    if opts["subset"] == "k400":
        _load_data(opts)  # raises the Kinetics-400 message before any process group is set up

    if world_size > 1:
        if device.type == "cpu":  # share the cores between the processes on this machine
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local))
        else:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(opts, ckpt, out, device, rank, world_size, is_main)
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(opts: dict, ckpt: dict | None, out: Path | None, device: torch.device, rank: int, world_size: int, is_main: bool) -> dict:
    say = (lambda *a: print(*a, flush=True)) if is_main else (lambda *a: None)

    # ---- data (rank 0 makes the toy set; the others wait for it)
    if opts["subset"] == "toy":
        _rank0_first(lambda: _ensure_toy(Path(opts["data_root"])), rank, world_size, others=False)
    train_items, val_items, classes = _load_data(opts)
    if ckpt is not None:
        if list(ckpt["classes"]) != classes:
            raise UsageError(f"the classes in {opts['data_root']} differ from the checkpoint's; resume with the data it was trained on")
        if ckpt.get("world_size", 1) != world_size:
            raise UsageError(f"the checkpoint was written by {ckpt.get('world_size', 1)} process(es), this run has {world_size}; "
                             f"resume with the same number of processes (the data order and schedule depend on it)")
        if ckpt.get("train_items") not in (None, len(train_items)):
            raise UsageError(f"{opts['data_root']} has {len(train_items)} training videos, the checkpoint's run had "
                             f"{ckpt['train_items']}; resume with the same data and --limit-train")
    if out is None:  # default: a fresh folder named by the time (rank 0 picks it for everyone)
        name = [None]
        if is_main:
            stamp = name[0] = f"runs/{opts['subset']}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
            for n in range(2, 1000):
                if not any((Path(name[0]) / f).exists() for f in RUN_FILES):
                    break
                name[0] = f"{stamp}-{n}"
        if world_size > 1:
            dist.broadcast_object_list(name, src=0)
        out = Path(name[0])

    # ---- model (initialised from the seed, so every rank and every rerun starts the same)
    config = _model_config(opts, len(classes), device)

    def build() -> VideoBERT:
        torch.manual_seed(opts["seed"])
        try:
            return VideoBERT(config).to(device)
        except RuntimeError as e:  # ImageNet weights neither cached nor downloadable
            raise UsageError(" ".join(str(e).split())) from None

    # rank 0 first: it downloads any ImageNet weights into the cache the others then read
    model = _rank0_first(build, rank, world_size, others=True)
    _check_frame_size(model, opts["size"], device)
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise UsageError(f"the checkpoint's weights do not fit the model ({' '.join(str(e).split())[:160]}); start a new run") from None
    params = sum(p.numel() for p in model.parameters())

    hflip = vflip = None
    if opts["subset"] == "toy":
        from .data.toy import HFLIP as hflip, VFLIP as vflip  # a mirror swaps left ⟷ right (top ⟷ bottom) motion
    common = dict(num_frames=opts["num_frames"], stride=opts["stride"], size=opts["size"], seed=opts["seed"])
    train_set = ClipDataset(train_items, classes, train=True, hflip=hflip, vflip=vflip, preload=opts["preload"], **common)
    val_set = ClipDataset(val_items, classes, train=False, preload=opts["preload"], **common)
    train_sampler = ShardedSampler(len(train_set), shuffle=True, seed=opts["seed"], rank=rank, world_size=world_size,
                                   drop_last=world_size > 1, with_epoch=True)  # (epoch, index): persistent workers know the epoch
    val_sampler = ShardedSampler(len(val_set), shuffle=False, rank=rank, world_size=world_size, drop_last=False)
    batch_size, epochs = opts["batch_size"], opts["epochs"]
    n_steps = steps_per_epoch(train_sampler, batch_size)
    if n_steps == 0:
        raise UsageError(f"{len(train_set)} training videos are too few for {world_size} processes; use more data or fewer processes")
    total_steps = epochs * n_steps
    warmup_steps = round(opts["warmup_epochs"] * n_steps)

    # ---- optimisation: AdamW, warmup + cosine per step, label smoothing, clipping
    optimizer = torch.optim.AdamW(_param_groups(model, opts["weight_decay"]), lr=opts["lr"], betas=(0.9, 0.999),
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=opts["label_smoothing"])

    state = dict(step=0, epoch=0, step_in_epoch=0, loss_sum=0.0, loss_count=0, epoch_clips=0, epoch_seconds=0.0,
                 elapsed=0.0, best_val_top1=-1.0, best_epoch=0, history=[], skipped_train=[])
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state.update({k: ckpt[k] for k in state if k in ckpt})
        _set_rng_state(ckpt["rng"], device)

    compiled = torch.compile(model) if opts["compile"] else model
    ddp = nn.parallel.DistributedDataParallel(compiled, device_ids=[device.index] if device.type == "cuda" else None) if world_size > 1 else compiled
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def loader(dataset, sampler, bs):  # made once; workers persist across epochs and prefetch uint8 batches
        workers = opts["workers"] if opts["workers"] is not None else auto_workers()
        return DataLoader(dataset, batch_size=bs, sampler=sampler, num_workers=workers, collate_fn=collate,
                          pin_memory=device.type == "cuda", worker_init_fn=_worker_init if workers else None,
                          persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                          generator=torch.Generator())  # own generator: the global RNG stays untouched

    train_loader, val_loader = loader(train_set, train_sampler, batch_size), loader(val_set, val_sampler, 2 * batch_size)

    def checkpoint() -> dict:
        return {
            "model": unwrap_model(model).state_dict(), "config": config.to_dict(), "classes": classes,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            **{k: v for k, v in state.items()}, "rng": _rng_state(device), "args": opts | {"out": str(out)},
            "train_items": len(train_items), "world_size": world_size,
        }

    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        run_config = {"args": opts | {"out": str(out)}, "model": config.to_dict(), "classes": classes,
                      "train_clips": len(train_set), "val_clips": len(val_set), "parameters": params,
                      "device": str(device), "world_size": world_size, "steps_per_epoch": n_steps,
                      "torch": torch.__version__}
        write_atomic(out / "config.json", json.dumps(run_config, indent=2) + "\n")
        if ckpt is not None:
            _write_metrics(out, state["history"])
    say(f"minivb.train: {opts['subset']} ({len(train_set)} train / {len(val_set)} val clips, {len(classes)} classes), "
        f"{params / 1e6:.2f}M parameters, {device.type} × {world_size}, {epochs} epochs × {n_steps} steps → {out}"
        + (f" (resuming at epoch {state['epoch'] + 1}, step {state['step']})" if ckpt is not None else ""))

    from tqdm import tqdm

    start = time.perf_counter()
    elapsed0 = state["elapsed"]
    last = None
    with _sigterm_flag() as flag:
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            train_sampler.set_epoch(epoch, skip=state["step_in_epoch"] * batch_size)
            train_set.set_epoch(epoch)
            ddp.train()
            t_epoch = time.perf_counter()
            lr_used = optimizer.param_groups[0]["lr"]
            bar = tqdm(train_loader, total=n_steps, initial=state["step_in_epoch"],
                       desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False, disable=None if is_main else True)
            stopped = False
            for videos, labels, skipped in bar:
                report_skipped(skipped)
                if skipped:  # broken files, replaced by other clips: counted for the summary
                    state["skipped_train"] = sorted(set(state["skipped_train"]) | {s.path for s in skipped})
                flags = torch.tensor([float(flag["stop"]), float(videos is None)])
                if world_size > 1:  # every rank must agree to stop or to skip a step
                    flags = flags.to(device)
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                if flags[0].item():
                    stopped = True
                    break
                state["step_in_epoch"] += 1
                if flags[1].item():  # every clip of the batch was unreadable
                    continue
                videos, labels = videos.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                with autocast(device):
                    logits = ddp(videos)  # (B, C)
                loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                lr_used = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                state["step"] += 1
                loss_value = loss.item()
                state["loss_sum"] += loss_value * len(labels)
                state["loss_count"] += len(labels)
                state["epoch_clips"] += len(labels)
                bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
                if opts["save_every"] and state["step"] % opts["save_every"] == 0:
                    state["epoch_seconds"] += time.perf_counter() - t_epoch
                    t_epoch = time.perf_counter()
                    state["elapsed"] = elapsed0 + time.perf_counter() - start
                    if is_main:
                        save_checkpoint(out / "last.pt", checkpoint())
            bar.close()
            state["epoch_seconds"] += time.perf_counter() - t_epoch
            state["elapsed"] = elapsed0 + time.perf_counter() - start
            if stopped:
                if is_main:
                    save_checkpoint(out / "last.pt", checkpoint())
                say(f"stopped by SIGTERM at epoch {epoch + 1}, step {state['step']}; saved {out / 'last.pt'} "
                    f"(continue with --resume {out})")
                return {"stopped": True, "out": str(out), "step": state["step"], "epoch": epoch}

            # ---- end of epoch: reduce the training numbers, validate, log, save
            train_sums = _all_reduce(torch.tensor([state["loss_sum"], state["loss_count"], state["epoch_clips"]],
                                                  dtype=torch.float64, device=device), world_size)
            seconds = state["epoch_seconds"]
            last = validate(compiled, val_loader, len(classes), device, world_size)
            row = {"epoch": epoch + 1, "step": state["step"], "train_loss": train_sums[0].item() / max(train_sums[1].item(), 1),
                   "val_loss": last["val_loss"], "val_top1": last["val_top1"], "val_top5": last["val_top5"], "lr": lr_used,
                   "clips_per_s": train_sums[2].item() / max(seconds, 1e-9), "seconds": seconds}
            state["history"] = state["history"] + [row]
            is_best = row["val_top1"] > state["best_val_top1"]
            if is_best:
                state["best_val_top1"], state["best_epoch"] = row["val_top1"], epoch + 1
            state.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, loss_count=0, epoch_clips=0, epoch_seconds=0.0)
            state["elapsed"] = elapsed0 + time.perf_counter() - start
            say(f"epoch {epoch + 1:>3}/{epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
                f"top-1 {100 * row['val_top1']:5.1f}%  top-5 {100 * row['val_top5']:5.1f}%  lr {row['lr']:.2e}  "
                f"{row['clips_per_s']:.0f} clips/s")
            if is_main:
                ck = checkpoint()
                save_checkpoint(out / "last.pt", ck)
                if is_best:
                    save_checkpoint(out / "best.pt", ck)
                _write_metrics(out, state["history"])
                _plot_curves(out, state["history"])
            if state["epoch"] < epochs and _any_rank(flag["stop"], device, world_size):
                say(f"stopped by SIGTERM after epoch {epoch + 1}; saved {out / 'last.pt'} (continue with --resume {out})")
                return {"stopped": True, "out": str(out), "step": state["step"], "epoch": epoch + 1}

    if last is None:  # resumed a finished run: validate once more for the summary
        last = validate(compiled, val_loader, len(classes), device, world_size)
    confusion = last["confusion"]
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1).double()).tolist()
    final = state["history"][-1] if state["history"] else {}
    summary = {
        "val_top1": last["val_top1"], "val_top5": last["val_top5"], "val_loss": last["val_loss"],
        "best_val_top1": state["best_val_top1"], "best_epoch": state["best_epoch"],
        "epochs": epochs, "steps": state["step"], "seconds": round(state["elapsed"], 2),
        "train_loss": final.get("train_loss"), "clips_per_s": final.get("clips_per_s"),
        "per_class_top1": dict(zip(classes, per_class)),
        "train_clips": len(train_set), "val_clips": last["val_clips"], "parameters": params,
        "skipped_train_clips": _count_distinct(state["skipped_train"], world_size), "skipped_val_clips": last["val_skipped"],
        "subset": opts["subset"], "preset": opts["preset"], "device": str(device), "world_size": world_size,
        "out": str(out),
    }
    if is_main:
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    say(f"done: val top-1 {100 * summary['val_top1']:.1f}% (best {100 * summary['best_val_top1']:.1f}% at epoch "
        f"{summary['best_epoch']}), top-5 {100 * summary['val_top5']:.1f}%, {summary['seconds']:.0f} s → {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.train``: 0 on success (or a clean SIGTERM stop), 2 on a usage error."""
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    given = parse_args(argv)
    try:
        train(given)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
