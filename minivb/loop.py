"""Built in notebook 06, §3.
The training loop, one for both trainers (:mod:`minivb.engine.training` and :mod:`minivb.engine.pretraining`).

    "We train and evaluate our model with a training set and a validation set."
                                                                   — seed, §5

One epoch is :func:`train_one_epoch`: forward → loss → backward → clip gradients → optimizer and
schedule step, counted in a :class:`TrainState` (the Annotated Transformer's pattern); the schedule
is :func:`warmup_cosine`; :func:`validate` measures a classifier. Around the loop: stop signals
(SIGTERM and Ctrl-C ask the loop to save and stop), the RNG states a checkpoint carries, and the
DataLoader workers' share of the cores. The loop knows no data set and no model: whatever
``loader`` yields ``(videos, labels, skipped)`` and ``model(videos)`` scores, ``criterion`` compares.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from .metrics import Accuracy
from .plumbing import distributed
from .plumbing.device import autocast
from .plumbing.samples import report_skipped

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


def train_step(model, videos, labels, optimizer, scheduler, criterion, step: int) -> tuple[float, float]:
    """One optimizer step on a batch already on the model's device: forward → loss → backward → clip gradients →
    optimizer and schedule step → ``(loss, learning rate of the step)``. A loss or gradient that is not finite
    raises :class:`Diverged` (naming ``step``) before the weights change."""
    with autocast(videos.device):  # bf16 on CUDA
        logits = model(videos)  # (B, C), or a tuple of outputs (the joint model's token and alignment logits)
    logits = logits.float() if torch.is_tensor(logits) else tuple(x.float() for x in logits)
    loss = criterion(logits, labels)  # cross-entropy with label smoothing (or the model's own objectives)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # (DDP averages the gradients across processes here)
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0).item()  # ‖g‖ before clipping
    loss_value = loss.item()
    if not (math.isfinite(grad_norm) and math.isfinite(loss_value)):  # before the weights change
        # (a NaN on any process makes the averaged gradient, so ‖g‖, NaN on every process: all stop together)
        raise Diverged(
            f"training diverged at step {step} (loss {loss_value}, gradient norm {grad_norm}); "
            f"the last checkpoint is kept; lower --lr (or raise --warmup-epochs) and start again"
        )
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()  # the learning rate of the next step
    return loss_value, lr


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    criterion: nn.Module,
    state: TrainState,
    device: torch.device,
    *,
    world_size: int = 1,
    stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[TrainState], None] | None = None,
) -> bool:
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
        loss_value, state.lr = train_step(model, videos, labels, optimizer, scheduler, criterion, state.step + 1)
        state.step += 1
        state.loss_sum += loss_value * len(labels)
        state.loss_count += len(labels)
        state.tick()
        if on_step is not None:
            on_step(state)
    state.tick()
    return True


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    world_size: int = 1,
    *,
    progress: bool = False,
) -> dict:
    """Centre-clip validation → :meth:`~minivb.metrics.Accuracy.result` (loss, top-1, top-5, per class,
    confusion; summed over processes) + ``skipped`` (unreadable videos). ``progress``: a bar on a terminal."""
    from tqdm import tqdm

    model.eval()
    metrics, skipped = Accuracy(num_classes, device), torch.zeros((), dtype=torch.int64, device=device)
    bar = tqdm(loader, desc="validating", unit="batch", leave=False, disable=None if progress else True)
    for videos, labels, bad in bar:
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


# --------------------------------------------------------------------------- around the loop


@contextlib.contextmanager
def stop_signals():
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


def rng_state(device: torch.device) -> dict:
    """The torch CPU (and CUDA) generator states: a checkpoint carries them so a resume draws the same numbers."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
