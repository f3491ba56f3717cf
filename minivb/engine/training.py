"""Train VideoBERT to classify videos: options → data, model, optimizer → epochs → ``summary.json``.

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

The library half of ``python -m minivb.train`` (the command parses arguments and calls :func:`train`).
Read top to bottom: options (the data set's preset from :mod:`minivb.data.registry`, then what was
given) → set-up (data, model, optimizer: :func:`build_run`) → bookkeeping (checkpoints, metrics,
summary) → :func:`fit`, epochs of train → validate → log → save, with the loop of :mod:`minivb.loop`.
The run's folder and files are :mod:`minivb.plumbing.runs`; the distributed helpers :mod:`minivb.plumbing.distributed`.
Optimisation: AdamW (the model's own parameter groups,
:meth:`~minivb.model.VideoBERT.configure_optimizers`) with linear warmup + cosine decay per step,
label smoothing, gradient clipping.

Exact resume: the model is initialised from ``seed``, the sampler's order is a function of
``(seed, epoch)`` and every augmentation a function of ``(seed, epoch, index)``; checkpoints
(atomic, every ``save_every`` steps and every epoch) carry model, optimizer, scheduler,
the counters, the torch RNG state and the :class:`~minivb.engine.checkpoint.Preprocessing` record. So a run
killed at any point (``kill -9``) and resumed ends with bit-identical weights on a CPU. SIGTERM
(cluster preemption) and Ctrl-C save a checkpoint and stop.

Distributed: under ``torchrun`` every process trains a shard of each epoch inside
DistributedDataParallel (NCCL on GPUs, gloo on CPUs); ``batch_size`` is per process; metrics
are summed across processes; rank 0 alone logs and writes. On CUDA: bf16 autocast and
channels-last convolutions; ``compile`` adds ``torch.compile``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import registry
from ..data.clips import ClipDataset, ShardedSampler, limit_items, steps_per_epoch
from ..data.device_decode import check_decode
from ..data.loader import close_loader, ignore_stop_signals
from ..loop import (
    TrainState,
    rng_state,
    set_rng_state,
    stop_signals,
    train_one_epoch,
    validate,
    warmup_cosine,
)
from ..model import VideoBERT
from ..plumbing import distributed, runs
from ..plumbing.checks import UsageError
from ..plumbing.device import check_batch_fits, resolve_device
from ..plumbing.files import write_json
from . import confidence
from .checkpoint import init_from_pretrained, read_checkpoint, save_checkpoint, unwrap_model
from .inference import measure_videos
from .options import TrainOptions

# Options that may differ when resuming (they do not change what is computed; --decode and --gpu-share change the
# last bit of a pixel, the rounding of the resize, so a run resumed with the same ones stays bit-exact).
RUNTIME_OPTIONS = set(
    "out resume device workers save_every compile preload data_root decode gpu_share calibrate".split()
)


# --------------------------------------------------------------------------- options


def resolve_options(given: dict) -> tuple[TrainOptions, dict | None, Path | None]:
    """Given options → (the run's options: the data set's preset, then ``given``; checkpoint to resume from or None;
    its path)."""
    if "resume" not in given:
        _check_gpu_share(given, given.get("decode", "auto"))
        return TrainOptions.given(given), None, None
    if given.get("init_from"):  # (the resumed run's weights would win without a word)
        raise UsageError("--init-from starts a new run from pretrained weights, --resume continues one: pass one")
    path = runs.checkpoint_path(given["resume"], "--resume")
    try:
        ckpt = read_checkpoint(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not isinstance(ckpt.get("args"), dict) or "optimizer" not in ckpt:
        raise UsageError(
            f"{path} holds a model but no training state; resume from a last.pt written by python -m minivb.train"
        )
    if path.name != "last.pt" and not given.get("out"):
        raise UsageError(
            f"--resume {path} would continue an older point of its run and overwrite the run's last.pt; "
            f"pass a new --out for the branch"
        )
    opts = TrainOptions.from_dict(ckpt["args"]).to_dict()
    _check_gpu_share(given, given.get("decode", opts["decode"]), resumed=True)
    for key, value in given.items():
        if key not in RUNTIME_OPTIONS and opts.get(key) != value:
            flag = "--" + key.replace("_", "-")
            was, now = _typed(key, opts.get(key)), _typed(key, value)
            raise UsageError(
                f"{path} was trained {f'with {was}' if was else f'without {flag}'}, not {now or f'without {flag}'}; "
                f"drop {now if isinstance(value, bool) else flag} to resume it, or start a new run (without --resume)"
            )
    opts |= {k: v for k, v in given.items() if k in RUNTIME_OPTIONS}
    opts |= dict(out=given.get("out") or str(path.parent), compile=given.get("compile", False))
    return TrainOptions(**opts), ckpt, path


def _check_gpu_share(given: dict, decode: str, resumed: bool = False) -> None:
    """A ``--gpu-share`` below 1 goes with the run's effective ``--decode gpu`` (given, else a resumed run's own);
    else a one-line :class:`UsageError`."""
    if given.get("gpu_share", 1) != 1 and decode != "gpu":
        whose = "the resumed run's " if resumed and "decode" not in given else ""
        raise UsageError(
            f"--gpu-share {given['gpu_share']:g} goes with --decode gpu (with {whose}--decode {decode} the workers "
            f"decode all); pass --decode gpu or drop --gpu-share"
        )


def _typed(key: str, value) -> str:
    """An option's value as it is typed: ``--dim 32``, ``--no-flips``; ``""`` for None (the option left out)."""
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{key.replace('_', '-')}"
    return "" if value is None else f"--{key.replace('_', '-')} {value}"


# --------------------------------------------------------------------------- set-up


@dataclass
class Run:
    """Everything one training run works with, made by :func:`build_run`."""

    opts: TrainOptions
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
    log: Callable[..., None] | None = print  # where the run's lines go (None: nowhere)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def say(self, *args) -> None:
        if self.is_main and self.log is not None:
            self.log(*args)
            sys.stdout.flush()  # a line at a time, also into a pipe (torchrun, tee)


def load_data(opts: TrainOptions) -> tuple[list, list, list[str]]:
    """(training items, validation items, class names) from ``--data-root``; one-line errors for what is missing."""
    train_items, val_items, classes = registry.get(opts.subset).load(opts.data_root)
    return (
        limit_items(train_items, opts.limit_train, opts.seed),
        limit_items(val_items, opts.limit_val, opts.seed + 1),
        classes,
    )


def _check_resume(ckpt: dict, opts: TrainOptions, classes: list[str], n_train: int, world_size: int) -> None:
    if list(ckpt["classes"]) != classes:
        raise UsageError(
            f"the classes in {opts.data_root} differ from the checkpoint's; resume with the data it was trained on"
        )
    if ckpt.get("world_size", 1) != world_size:
        raise UsageError(
            f"the checkpoint was written by {ckpt.get('world_size', 1)} process(es), this run has {world_size}; "
            f"resume with the same number of processes (the data order and schedule depend on it)"
        )
    if ckpt.get("train_items") not in (None, n_train):
        raise UsageError(
            f"{opts.data_root} has {n_train} training videos, the checkpoint's run had "
            f"{ckpt['train_items']}; resume with the same data and --limit-train"
        )


def _check_finished(ckpt: dict, opts: TrainOptions, out: Path) -> None:
    """Resuming a run that has trained all its epochs writes no checkpoint: only into its own folder (a summary
    again), never into a new one that would get a summary without weights."""
    if runs.checkpoint_path(opts.resume, "--resume").parent.resolve() != out.resolve():
        raise UsageError(
            f"--resume {opts.resume}: that run already trained its {ckpt['epoch']} epoch(s), so --out {out} would "
            f"get no weights; raise --epochs to train on, or evaluate it with python -m minivb.evaluate"
        )


def build_data(
    opts: TrainOptions,
    classes: list[str],
    train_items: list,
    val_items: list,
    device: torch.device,
    rank: int,
    world_size: int,
) -> tuple[ClipDataset, ClipDataset, ShardedSampler, DataLoader, DataLoader]:
    """The data sets, the training sampler and the two loaders (made once: workers persist across epochs)."""
    try:  # --decode gpu (the workers read JPEG bytes, the main process decodes them on the device): refused now
        preset = opts.preset if registry.get(opts.preset).preset.get("preload") else None  # preload: the preset's
        check_decode(
            opts.decode, device, [it.path for it in train_items + val_items], preload=opts.preload, preset=preset
        )
        train_set = opts.clip_dataset(train_items, classes, train=True)
        val_set = opts.clip_dataset(val_items, classes, train=False)
    except ValueError as e:
        raise UsageError(str(e)) from None
    train_sampler = ShardedSampler(
        len(train_set),
        shuffle=True,
        seed=opts.seed,
        rank=rank,
        world_size=world_size,
        drop_last=world_size > 1,
        with_epoch=True,
    )  # (epoch, index): persistent workers know the epoch
    val_sampler = ShardedSampler(len(val_set), shuffle=False, rank=rank, world_size=world_size, drop_last=False)
    bs = opts.batch_size
    return (
        train_set,
        val_set,
        train_sampler,
        opts.loader(train_set, device, train_sampler, bs, init_worker=ignore_stop_signals),
        opts.loader(val_set, device, val_sampler, 2 * bs, init_worker=ignore_stop_signals),
    )


def build_model(opts: TrainOptions, num_classes: int, device: torch.device, rank: int, world_size: int) -> VideoBERT:
    """The model, initialised from ``--seed`` (every process and every rerun starts the same), size checked."""
    try:
        config = opts.model_config(num_classes)
    except ValueError as e:
        raise UsageError(f"model options: {e}") from None

    def build() -> VideoBERT:
        torch.manual_seed(opts.seed)
        try:
            return VideoBERT(config).to(device)
        except RuntimeError as e:  # ImageNet weights neither cached nor downloadable: say it the command line's way
            raise UsageError(
                " ".join(str(e).split()).replace("pass pretrained=False", "pass --no-pretrained")
            ) from None

    # rank 0 first: it downloads any ImageNet weights into the cache the others then read
    model = distributed.rank0_first(build, rank, world_size, others=True, errors=(UsageError,))
    try:  # one frame through the CNN (eval mode: BatchNorm statistics untouched) checks --size against --grid
        with torch.no_grad():
            model.eval().encoder(torch.zeros(1, 1, 3, opts.size, opts.size, device=device))
    except ValueError as e:
        raise UsageError(f"--size {opts.size}: {e}") from None
    return model.train()


def _load_weights(model: VideoBERT, opts: TrainOptions, ckpt: dict | None) -> None:
    """The resumed run's weights, or ``--init-from``'s pretrained Transformer (python -m minivb.pretrain)."""
    if ckpt is None and opts.init_from:
        try:
            init_from_pretrained(model, opts.init_from)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--init-from: {e}") from None
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise UsageError(
                f"the checkpoint's weights do not fit the model ({' '.join(str(e).split())[:160]}); start a new run"
            ) from None


def build_forward(model: VideoBERT, opts: TrainOptions, device: torch.device, world_size: int) -> nn.Module:
    """What the loop calls: the model, compiled with ``--compile``, wrapped in DDP under torchrun."""
    forward = torch.compile(model) if opts.compile else model
    if world_size > 1:
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return forward


def build_optimization(model: VideoBERT, opts: TrainOptions, steps_per_epoch: int, device: torch.device):
    """AdamW (weight decay on matrices and kernels only), warmup + cosine per step, label smoothing →
    ``(optimizer, scheduler, criterion)``: what :func:`minivb.loop.train_step` takes."""
    optimizer = model.configure_optimizers(opts.lr, opts.weight_decay, fused=device.type == "cuda")
    warmup, total = round(opts.warmup_epochs * steps_per_epoch), opts.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
    return optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=opts.label_smoothing)


def build_run(opts: TrainOptions, ckpt: dict | None, device: torch.device, rank: int, world_size: int) -> Run:
    """Data, model, optimizer, schedule and counters of a run (restored from ``ckpt`` when resuming)."""
    dataset = registry.get(opts.subset)  # rank 0 makes it if it can be made (the toy set); the others wait for it
    distributed.rank0_first(
        lambda: dataset.prepare(opts.data_root), rank, world_size, others=False, errors=(UsageError,)
    )
    train_items, val_items, classes = load_data(opts)
    if ckpt is not None:
        _check_resume(ckpt, opts, classes, len(train_items), world_size)
    out = Path(opts.out) if opts.out else distributed.broadcast(runs.new_run_folder(opts.subset), world_size)
    if ckpt is not None and ckpt.get("epoch", 0) >= opts.epochs:
        _check_finished(ckpt, opts, out)
    model = build_model(opts, len(classes), device, rank, world_size)
    _load_weights(model, opts, ckpt)
    train_set, val_set, sampler, train_loader, val_loader = build_data(
        opts, classes, train_items, val_items, device, rank, world_size
    )
    n_steps = steps_per_epoch(sampler, opts.batch_size)
    if n_steps == 0:
        raise UsageError(
            f"{len(train_set)} training videos are too few for {world_size} processes; use more data or fewer processes"
        )

    optimizer, scheduler, criterion = build_optimization(model, opts, n_steps, device)
    state = TrainState()
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = TrainState.from_checkpoint(ckpt)
        set_rng_state(ckpt["rng"], device)

    return Run(
        opts,
        out,
        device,
        rank,
        world_size,
        classes,
        train_set,
        val_set,
        sampler,
        train_loader,
        val_loader,
        n_steps,
        model,
        build_forward(model, opts, device, world_size),
        optimizer,
        scheduler,
        criterion,
        state,
    )


# --------------------------------------------------------------------------- bookkeeping: checkpoints, metrics, summary


def save(run: Run, *names: str) -> None:
    """The run as a checkpoint (model, optimizer, scheduler, counters, RNG, options) → ``out/<name>`` (rank 0)."""
    if not run.is_main:
        return
    ckpt = {
        "model": unwrap_model(run.model).state_dict(),
        "config": run.model.config.to_dict(),
        "classes": run.classes,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        **asdict(run.state),
        "rng": rng_state(run.device),
        "args": run.opts.to_dict() | {"out": str(run.out)},
        "preprocessing": run.opts.preprocessing().to_dict(),
        "train_items": len(run.train_set),
        "world_size": run.world_size,
    }
    for name in names:
        save_checkpoint(run.out / name, ckpt)


def start_log(run: Run, resuming: bool) -> None:
    """``config.json`` (and, when resuming, the metrics so far) and the opening line."""
    params = sum(p.numel() for p in run.model.parameters())
    if run.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        write_json(
            run.out / "config.json",
            {
                "args": run.opts.to_dict() | {"out": str(run.out)},
                "model": run.model.config.to_dict(),
                "classes": run.classes,
                "train_clips": len(run.train_set),
                "val_clips": len(run.val_set),
                "parameters": params,
                "device": str(run.device),
                "world_size": run.world_size,
                "steps_per_epoch": run.steps_per_epoch,
                "torch": torch.__version__,
            },
        )
        if resuming:
            runs.write_metrics(run.out, run.state.history)
    s = run.state
    run.say(
        f"minivb.train: {run.opts.subset} ({len(run.train_set)} train / {len(run.val_set)} val clips, "
        f"{_count(len(run.classes), 'class')}), {params / 1e6:.2f}M parameters, {run.device.type} × {run.world_size}, "
        f"{_count(run.opts.epochs, 'epoch')} × {_count(run.steps_per_epoch, 'step')} → {run.out}"
        + (f" (resuming at epoch {s.epoch + 1}, step {s.step})" if resuming else "")
        + (f" (Transformer from {run.opts.init_from})" if run.opts.init_from and not resuming else "")
    )
    for note in _notes(run):
        run.say(f"note: {note}")


def _notes(run: Run) -> list[str]:
    """What the user should know before the run means anything: classes it cannot learn, a warmup it never ends."""
    notes = []
    if len(run.classes) == 1:
        notes.append(f"one class ({run.classes[0]}): every prediction is right, so its accuracy means nothing")
    unseen = sorted(set(run.classes) - {it.label for it in run.train_set.items})
    if unseen:
        notes.append(
            f"{_count(len(unseen), 'class')} without a training video, which the model can never learn: "
            f"{', '.join(unseen[:5])}{' …' if len(unseen) > 5 else ''}"
        )
    warmup, total = round(run.opts.warmup_epochs * run.steps_per_epoch), run.opts.epochs * run.steps_per_epoch
    if warmup > total:
        notes.append(
            f"the warmup ({_count(warmup, 'step')}) is longer than the run ({_count(total, 'step')}): the "
            f"learning rate stops at {total / warmup:.0%} of --lr {run.opts.lr:g}; lower --warmup-epochs"
        )
    return notes


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"


def _rate(clips_per_s: float) -> str:
    """``319`` clips/s, or ``0.33`` on a slow run (not ``0``)."""
    return f"{clips_per_s:.0f}" if clips_per_s >= 10 else f"{clips_per_s:.2g}"


def end_epoch(run: Run, val: dict) -> None:
    """Close an epoch: its metrics row (training numbers summed over processes), best epoch, log line, files."""
    s = run.state
    sums = torch.tensor([s.loss_sum, s.loss_count], dtype=torch.float64, device=run.device)
    loss_sum, clips = distributed.all_reduce(sums, run.world_size).tolist()
    row = {
        "epoch": s.epoch + 1,
        "step": s.step,
        "train_loss": loss_sum / max(clips, 1),
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "lr": s.lr,
        "clips_per_s": clips / max(s.epoch_seconds, 1e-9),
        "seconds": s.epoch_seconds,
    }
    s.history = s.history + [row]
    is_best = row["val_top1"] > s.best_val_top1
    if is_best:
        s.best_val_top1, s.best_epoch = row["val_top1"], s.epoch + 1
    s.epoch, s.step_in_epoch, s.loss_sum, s.loss_count, s.epoch_seconds = s.epoch + 1, 0, 0.0, 0, 0.0
    s.tick(training=False)
    run.say(
        f"epoch {row['epoch']:>3}/{run.opts.epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
        f"top-1 {100 * row['val_top1']:5.1f}%  top-5 {100 * row['val_top5']:5.1f}%  lr {row['lr']:.2e}  "
        f"{_rate(row['clips_per_s'])} clips/s"
    )
    save(run, "last.pt", *(("best.pt",) if is_best else ()))
    if run.is_main:
        runs.write_metrics(run.out, s.history)
        runs.plot_curves(run.out, s.history)


def finish(run: Run, val: dict) -> dict:
    """The run's ``summary.json`` (final validation, best epoch, speed, per-class accuracy, skipped files)."""
    s = run.state
    final = s.history[-1] if s.history else {}
    summary = {
        "command": "minivb.train",  # who wrote it (plumbing.runs.output_folder: evaluate --force never replaces it)
        "code": runs.code_version(),  # which minivb trained it: train_once reuses only a run of this code
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "val_loss": val["loss"],
        "best_val_top1": s.best_val_top1,
        "best_epoch": s.best_epoch,
        "epochs": run.opts.epochs,
        "steps": s.step,
        "seconds": round(s.elapsed, 2),
        "train_loss": final.get("train_loss"),
        "clips_per_s": final.get("clips_per_s"),
        "per_class_top1": dict(zip(run.classes, val["per_class_top1"])),
        "train_clips": len(run.train_set),
        "val_clips": val["count"],
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "skipped_train_clips": distributed.count_distinct(s.skipped_train, run.world_size),
        "skipped_val_clips": val["skipped"],
        "subset": run.opts.subset,
        "preset": run.opts.preset,
        "device": str(run.device),
        "world_size": run.world_size,
        "out": str(run.out),
    }
    if run.is_main:
        write_json(run.out / "summary.json", summary)
    run.say(
        f"done: val top-1 {100 * summary['val_top1']:.1f}% (best {100 * summary['best_val_top1']:.1f}% at epoch "
        f"{summary['best_epoch']}), top-5 {100 * summary['val_top5']:.1f}%, {summary['seconds']:.0f} s → {run.out}"
    )
    return summary


def fit(run: Run, on_step: Callable[[TrainState], None] | None = None) -> dict:
    """Epochs of train → validate → log → save until ``--epochs`` (or a stop signal) → the summary."""
    from tqdm import tqdm

    s, opts = run.state, run.opts

    def step_done(state: TrainState) -> None:
        if on_step is not None:
            on_step(state)
        if opts.save_every and state.step % opts.save_every == 0:
            save(run, "last.pt")

    val = None
    with stop_signals() as stopped:
        while s.epoch < opts.epochs:
            run.train_sampler.set_epoch(s.epoch, skip=s.step_in_epoch * opts.batch_size)
            bar = tqdm(
                run.train_loader,
                total=run.steps_per_epoch,
                initial=s.step_in_epoch,
                unit="step",
                leave=False,
                desc=f"epoch {s.epoch + 1}/{opts.epochs}",
                disable=None if run.is_main else True,
            )
            done = train_one_epoch(
                run.forward,
                bar,
                run.optimizer,
                run.scheduler,
                run.criterion,
                s,
                run.device,
                world_size=run.world_size,
                stop=lambda: stopped() is not None,
                on_step=step_done,
            )
            bar.close()
            if done:
                val = validate(
                    run.forward, run.val_loader, len(run.classes), run.device, run.world_size, progress=run.is_main
                )
                end_epoch(run, val)
            if not done or (
                s.epoch < opts.epochs and distributed.any_rank([stopped() is not None], run.device, run.world_size)[0]
            ):
                save(run, "last.pt")
                where = f"epoch {s.epoch + 1}, step {s.step}" if not done else f"the end of epoch {s.epoch}"
                run.say(
                    f"stopped by {stopped() or 'another process'} at {where}; saved {run.out / 'last.pt'} "
                    f"(continue with --resume {run.out})"
                )
                return {"stopped": True, "signal": stopped(), "out": str(run.out), "step": s.step, "epoch": s.epoch}
    if val is None:  # resumed a finished run: validate once more for the summary
        val = validate(run.forward, run.val_loader, len(run.classes), run.device, run.world_size, progress=run.is_main)
    s.tick(training=False)
    if opts.calibrate:
        calibrate(run)
    return finish(run, val)


def calibrate(run: Run) -> None:
    """Fit the :class:`~minivb.engine.confidence.Confidence` record of ``last.pt`` and of ``best.pt`` (each on its
    own weights) on the views ``predict`` uses, and store it in the checkpoint (:mod:`minivb.engine.confidence`)."""
    model, prep = unwrap_model(run.model), run.opts.preprocessing()
    splits = {"train": run.train_set.items, "val": run.val_set.items}
    picked = {name: [items[i] for i in confidence.spread(len(items))] for name, items in splits.items()}
    views = f"{prep.clips * prep.crops} views"
    run.say(f"calibrating: {len(picked['train'])} training and {len(picked['val'])} validation videos × {views}")
    best = run.state.best_epoch != run.state.epoch and (run.out / "best.pt").is_file()
    for name in ("last.pt", "best.pt") if best else ("last.pt",):
        path, start = run.out / name, time.perf_counter()
        if name == "best.pt":
            model.load_state_dict(read_checkpoint(path)["model"])  # the run is over: its weights are saved
        fitted = {}
        for split, items in picked.items():
            out, kept = measure_videos(
                model,
                [it.path for it in items],
                prep,
                run.device,
                run.rank,
                run.world_size,
                batch_size=4,
                workers=run.opts.workers,
            )
            fitted[split] = (out, torch.tensor([run.classes.index(it.label) for it in items])[kept])
        width = model.encoder.out_dim + model.config.dim
        seen = f"{len(fitted['train'][1])} training and {len(fitted['val'][1])} validation videos × {views}"
        record = confidence.fit_confidence(fitted["train"], fitted["val"], width, seen)
        if run.is_main:
            ckpt = read_checkpoint(path)
            save_checkpoint(path, ckpt | {"confidence": record.to_dict()})
        d, c = record.thresholds()
        run.say(
            f'{name}: temperature {record.temperature:.3f}; a video is answered "none of the {len(run.classes)} '
            f'classes" when its distance exceeds {d:.0f} or its confidence is below {100 * c:.1f}% (95% of '
            f"validation videos pass); {time.perf_counter() - start:.0f} s"
        )


def train(
    given: dict, on_step: Callable[[TrainState], None] | None = None, log: Callable[..., None] | None = print
) -> dict:
    """Train with the options ``given`` → the summary dict.

    ``given`` names only what differs from the data set's preset (:data:`minivb.data.registry.PRESETS`),
    with the command line's option names: ``train({"epochs": 3, "out": "runs/quick"})`` is
    ``python -m minivb.train --epochs 3 --out runs/quick``.

    ``on_step(state)`` is called after every optimizer step (progress, tests that stop a run at
    a known step). ``log`` takes the run's lines (the header, one per epoch, the result); ``None``
    silences them (the run still writes ``metrics.csv`` and ``curves.png``). Raises
    :class:`UsageError` for bad options or inputs (before anything is written). Returns
    ``{"stopped": True, ...}`` if SIGTERM or Ctrl-C ended the run early (after saving last.pt).
    """
    opts, ckpt, ckpt_path = resolve_options(given)
    rank, world_size, local_rank = distributed.process_place()
    device = resolve_device(opts.device, local_rank)
    if opts.out:
        runs.check_out(Path(opts.out), ckpt_path)
    registry.get(opts.subset).check(opts.data_root)  # e.g. no Kinetics-400 here: say so before any process group
    b, t, size = opts.batch_size, opts.num_frames, opts.size
    check_batch_fits(device, b, t, size, f"--batch-size {b} × --num-frames {t} × 3 × --size {size}²")
    distributed.setup(device, world_size)
    try:
        run = build_run(opts, ckpt, device, rank, world_size)
        run.log = log
        lock = distributed.rank0_first(
            lambda: runs.claim(run.out), rank, world_size, others=False, errors=(UsageError,)
        )
        try:  # the folder is this run's until it ends
            start_log(run, resuming=ckpt is not None)
            return fit(run, on_step)
        finally:
            close_loader(run.train_loader)
            close_loader(run.val_loader)
            if lock is not None:
                runs.release(run.out, lock)
    finally:
        distributed.teardown(world_size)


def train_once(given: dict, log: Callable[..., None] | None = print) -> dict:
    """:func:`train` with ``given``, unless ``given["out"]`` already holds that run, finished: then its summary.

    "That run" means the same options (all but the runtime ones, :data:`RUNTIME_OPTIONS`; the data folder by its
    resolved path), every epoch trained and, unless ``calibrate`` is off, the confidence record fitted, by this
    code (:func:`~minivb.plumbing.runs.code_version`; a run of other code is set aside, not deleted). Training is
    deterministic on a CPU, so the summary is the one training would return (but for its ``seconds``): notebooks 07
    and 08 reuse the model notebook 06 trained this way, and train it when 06 has not run.
    """
    out = Path(given["out"])
    wanted = TrainOptions.given(given).to_dict()
    try:
        ckpt = read_checkpoint(out / "last.pt")
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):  # no run there (yet), or an unreadable one: train
        return train(given, log=log)
    had = TrainOptions.from_dict(ckpt.get("args", {})).to_dict()

    calibrated = "confidence" in ckpt or not wanted["calibrate"]
    finished = ckpt.get("epoch") == wanted["epochs"] and calibrated and summary.get("command") == "minivb.train"
    if not (finished and runs.same_options(had, wanted, RUNTIME_OPTIONS)):
        return train(given, log=log)  # not the same run: train() refuses to overwrite it, with the reason
    if runs.set_aside_if_stale(out, summary, log):  # made by other code: kept under another name, made again
        return train(given, log=log)
    if log is not None:
        log(f"reusing {out}: a finished run with these options (val top-1 {100 * summary['val_top1']:.1f}%)")
    return summary
