"""Masked visual-token pretraining: the original VideoBERT idea, at toy scale (``python -m minivb.pretrain``).

VideoBERT (Sun et al., "VideoBERT: A Joint Model for Video and Language Representation
Learning", ICCV 2019) does not feed continuous features to its Transformer. It first turns
video into discrete *visual words* (S3D features of 1.5 s clips, hierarchical k-means:
12⁴ = 20,736 words; :mod:`minivb.visual_words`), then pretrains a BERT on them exactly like on
text: 15% of the positions are chosen; a chosen position's input becomes [MASK] 80% of the
time, a random word 10%, stays unchanged 10%; cross-entropy recovers the original word at the
chosen positions only. (The paper also puts the speech's text in the same sequence.)

    python -m minivb.pretrain                          # toy set: 64 words, 20 epochs, ~30 s on a CPU
    python -m minivb.pretrain --subset k400            # ImageNet ResNet-18 tokenizer, 12⁴ words, the k400 model size
    python -m minivb.train --init-from runs/pretrain-toy-…   # fine-tune the classifier from it

Here, scaled down so it runs on a CPU:

    clip (B, T, 3, H, W) ──frozen CNN, minus the clip's mean, unit length──▶ (B, T, F)   (motion_features)
        ──HierarchicalKMeans.assign──▶ words (B, T)                           (one word per frame)
        ──mask_tokens──▶ inputs (B, T) (with [MASK] = vocab_size), targets (B, T) (-100 = not chosen)
        ──WordBERT──▶ logits (B, T, vocab_size) ──MaskedTokenLoss──▶ scalar

:class:`WordBERT` names and shapes ``time_embed``, ``cls_token`` and ``transformer.*`` exactly
as :class:`~minivb.model.VideoBERT` does, so :func:`minivb.checkpoint.init_from_pretrained` can copy the
pretrained Transformer into a classifier. :class:`MaskedWords` + :func:`collate` yield
``(inputs, targets, [])`` batches and :class:`MaskedTokenLoss` takes ``(logits, targets)``: the
pretraining runs in :func:`minivb.loop.train_one_epoch` unchanged. One process (no DDP): the
sentences are tiny; the cost at k400 scale is the feature pass, which uses ``--workers`` and the GPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import runs
from .checkpoint import PRETRAIN_FORMAT, load_file, save_checkpoint
from .checks import UsageError, check_int, check_transformer
from .data import registry
from .data.clips import ClipDataset, ShardedSampler, limit_items, report_skipped, sample_seed
from .data.loader import clip_loader
from .device import check_batch_fits, resolve_device
from .encoder import build_encoder
from .files import write_json
from .loop import TrainState, stop_signals, train_one_epoch, warmup_cosine
from .model import EMBED_STD
from .signals import sigterm_raises
from .transformer import Transformer
from .visual_words import HierarchicalKMeans, Vocabulary, frame_features, kmeans, tokenize

__all__ = [
    "IGNORE_INDEX",
    "frame_features",
    "kmeans",
    "HierarchicalKMeans",
    "Vocabulary",
    "tokenize",
    "mask_tokens",
    "WordBERTConfig",
    "WordBERT",
    "MaskedTokenLoss",
    "masked_accuracy",
    "evaluate_masked",
    "MaskedWords",
    "collate",
    "motion_features",
    "tokenize_clips",
    "pretrain",
]

IGNORE_INDEX = -100  # target of a position that was not chosen (F.cross_entropy's default ignore_index)
_MASK_STREAM = 11  # domain tag for sample_seed (minivb.data.clips uses 1…3, minivb.visual_words 12)


# --------------------------------------------------------------------------- masking


def mask_tokens(
    ids: torch.Tensor, vocab_size: int, *, generator: torch.Generator, p: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ids ``(B, T)`` → ``(inputs (B, T), targets (B, T))``.

    Each sequence gets ``n`` chosen positions, uniformly without replacement, with ``n`` =
    ``p·T`` rounded up or down at random so that its mean is ``p·T`` (at least 1). Targets: the
    original word at chosen positions, :data:`IGNORE_INDEX` elsewhere. Inputs at chosen
    positions: [MASK] (= ``vocab_size``) with probability 0.8, a uniformly random word
    (``0 … vocab_size-1``, possibly the original) with 0.1, unchanged with 0.1. All draws come
    from ``generator`` (a CPU generator); the results are on ``ids``'s device.
    """
    vocab_size = check_int("vocab_size", vocab_size)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be shaped (B, T) with T ≥ 1, got {tuple(ids.shape)}")
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    B, T = ids.shape
    g = dict(generator=generator)
    order = torch.rand(B, T, **g).argsort(1).argsort(1)  # (B, T): a random rank of every position
    expected = p * T
    n = int(expected) + (torch.rand(B, **g) < expected - int(expected)).long()  # (B,) stochastic rounding
    chosen = order < n.clamp(min=1)[:, None]  # (B, T) bool
    u = torch.rand(B, T, **g)
    random_words = torch.randint(vocab_size, (B, T), **g)
    chosen, u, random_words = chosen.to(ids.device), u.to(ids.device), random_words.to(ids.device)
    inputs = torch.where(chosen & (u < 0.8), vocab_size, ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_words, inputs)
    targets = torch.where(chosen, ids, IGNORE_INDEX)
    return inputs, targets


# --------------------------------------------------------------------------- model


@dataclass
class WordBERTConfig:
    """Everything needed to rebuild a :class:`WordBERT`. vocab_size: words (the [MASK] id is
    ``vocab_size``); num_frames: the longest sequence (size of the time embedding)."""

    vocab_size: int
    num_frames: int = 16
    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "num_frames", "dim", "depth", "num_heads"):
            setattr(self, name, check_int(name, getattr(self, name)))
        check_transformer(self.dim, self.num_heads, self.mlp_ratio, self.dropout)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def to_dict(self) -> dict:
        return asdict(self)


class WordBERT(nn.Module):
    """A BERT over visual words: ``forward(ids (B, T) long)`` → logits ``(B, T, vocab_size)``.

    ``word_embed`` (vocab_size + 1 rows: the words, then [MASK]) + ``time_embed``
    ``(num_frames, dim)`` on the word tokens, ``cls_token`` ``(1, 1, dim)`` prepended, then
    ``transformer`` and ``head`` (dim → vocab_size: predicts words, never [MASK]).
    ``time_embed``, ``cls_token`` and ``transformer.*`` have VideoBERT's names, shapes and
    initialisation (``word_embed`` too is trunc-normal with ``EMBED_STD``, so "what" and "when"
    start at the same scale), so they load into a :class:`~minivb.model.VideoBERT` of the same
    dim/depth/heads/num_frames.
    """

    def __init__(self, config: WordBERTConfig):
        super().__init__()
        if not isinstance(config, WordBERTConfig):
            raise ValueError(f"config must be a WordBERTConfig, got {type(config).__name__}")
        c = self.config = config
        self.word_embed = nn.Embedding(c.vocab_size + 1, c.dim)  # row vocab_size: [MASK]
        self.time_embed = nn.Parameter(torch.zeros(c.num_frames, c.dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = Transformer(c.dim, c.depth, c.num_heads, c.mlp_ratio, c.dropout)
        self.head = nn.Linear(c.dim, c.vocab_size)
        for p in (self.word_embed.weight, self.time_embed, self.cls_token):
            nn.init.trunc_normal_(p, std=EMBED_STD)

    def initial_state(self, ids: torch.Tensor) -> torch.Tensor:
        """H₀: ids ``(B, T)`` → ``(B, 1 + T, dim)``; token ``1 + t`` is frame t."""
        if ids.ndim != 2:
            raise ValueError(f"ids must be shaped (B, T) (long word ids), got {tuple(ids.shape)}")
        B, T = ids.shape
        if T > self.config.num_frames:
            raise ValueError(
                f"sequence has {T} words but the time embedding covers at most num_frames={self.config.num_frames}"
            )
        x = self.word_embed(ids) + self.time_embed[:T]  # (B, T, dim)
        return torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + T, dim)

    def hidden_states(
        self, ids: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """H ``(B, 1 + T, dim)`` and, if ``need_weights``, every layer's attention ``(B, heads, 1 + T, 1 + T)``."""
        return self.transformer(self.dropout(self.initial_state(ids)), need_weights=need_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.hidden_states(ids)
        return self.head(h[:, 1:])  # word positions (B, T, dim) → (B, T, vocab_size)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the final word-token states ``(B, dim)`` (for a linear probe)."""
        return self.hidden_states(ids)[0][:, 1:].mean(1)

    def cls_state(self, ids: torch.Tensor) -> torch.Tensor:
        """The final [CLS] state ``(B, dim)`` (no term of the masked-token loss reads it: compare with
        :meth:`features`)."""
        return self.hidden_states(ids)[0][:, 0]

    def configure_optimizers(self, lr: float, weight_decay: float, *, fused: bool = False) -> torch.optim.AdamW:
        """AdamW as :meth:`VideoBERT.configure_optimizers`: no weight decay on embeddings, norms and biases."""
        embeddings = {"word_embed.weight", "time_embed", "cls_token"}
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            (no_decay if p.ndim < 2 or name in embeddings else decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), fused=fused)


# --------------------------------------------------------------------------- loss and metrics


class MaskedTokenLoss(nn.Module):
    """Cross-entropy over the chosen positions: logits ``(B, T, V)``, targets ``(B, T)`` → scalar.

    The mean over positions whose target is not :data:`IGNORE_INDEX` (0, not NaN, if there are none).
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.shape[:-1] != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
        total = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


@torch.no_grad()
def masked_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """``(correct, count)`` over the chosen positions (top-1 of logits ``(B, T, V)`` vs targets ``(B, T)``)."""
    chosen = targets != IGNORE_INDEX
    return int((logits.argmax(-1)[chosen] == targets[chosen]).sum()), int(chosen.sum())


@torch.no_grad()
def evaluate_masked(model: nn.Module, loader, device: torch.device | str = "cpu") -> dict:
    """Masked-token loss and accuracy over a loader of ``(inputs, targets, _)`` batches → dict(loss, accuracy,
    count)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for inputs, targets, _ in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs).float()  # (B, T, V)
        chosen = targets != IGNORE_INDEX
        loss_sum += float(F.cross_entropy(logits[chosen], targets[chosen], reduction="sum"))
        c, n = masked_accuracy(logits, targets)
        correct, count = correct + c, count + n
    model.train(was_training)
    return dict(loss=loss_sum / max(count, 1), accuracy=correct / max(count, 1), count=count)


# --------------------------------------------------------------------------- data


class MaskedWords(Dataset):
    """Tokenised sequences ``(N, T)`` → masked samples ``(inputs (T,), targets (T,))``.

    ``dataset[i]`` (epoch from :meth:`set_epoch`) or ``dataset[(epoch, i)]`` (as a
    :class:`~minivb.data.clips.ShardedSampler` with ``with_epoch=True`` yields it). The masking
    is drawn from ``sample_seed(·, seed, epoch, i)``: the same whatever the worker or a resume.
    Training: a new masking every epoch. ``train=False``: always epoch 0's masking, so
    validation numbers are comparable across epochs.
    """

    def __init__(self, ids: torch.Tensor, vocab_size: int, *, seed: int = 0, train: bool = True, p: float = 0.15):
        if ids.ndim != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a long tensor shaped (N, T), got {ids.dtype} {tuple(ids.shape)}")
        self.vocab_size = check_int("vocab_size", vocab_size)
        if len(ids) and not (0 <= int(ids.min()) and int(ids.max()) < vocab_size):
            raise ValueError(f"word ids must be in 0 … {vocab_size - 1}, got {int(ids.min())} … {int(ids.max())}")
        self.ids, self.seed, self.train, self.p, self.epoch = ids.cpu(), int(seed), bool(train), float(p), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = (int(i[0]), int(i[1])) if isinstance(i, tuple) else (self.epoch, int(i))
        epoch = epoch if self.train else 0
        g = torch.Generator().manual_seed(sample_seed(_MASK_STREAM, self.seed, epoch, i))
        inputs, targets = mask_tokens(self.ids[i][None], self.vocab_size, generator=g, p=self.p)
        return inputs[0], targets[0]  # (T,), (T,)


def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """``(inputs (B, T), targets (B, T), [])``: the shape of the trainer's ``(videos, labels, skipped)`` batches."""
    inputs, targets = zip(*samples)
    return torch.stack(inputs), torch.stack(targets), []


# --------------------------------------------------------------------------- the tokenizer and the sentences


FEATURE_BATCH = 32  # clips per batch of the tokenizer's feature pass
MOTION_FLOOR = 0.05  # motion_features: changes under 5% of a frame's feature length are not stretched to length 1


def motion_features(encoder: nn.Module, videos: torch.Tensor) -> torch.Tensor:
    """The tokenizer's features: :func:`frame_features` minus their mean over the clip, unit length ``(B, T, F)``.

    S3D's features (the paper's) respond to motion; a single frame's CNN features mostly to the
    scene. Taking away what every frame of the clip shares (the background, the static objects)
    leaves what *changes*: where the moving object is now, how large, how open. Scaling every
    vector to length 1 lets k-means cluster by the *kind* of change, not by how much changed (without
    it, the frames that differ little from their clip's mean collapse into one word: 44% of the toy frames).
    A change smaller than :data:`MOTION_FLOOR` of the frame's own feature length is scaled as if it were that
    long, so a still frame stays near 0 (one "nothing moves" word) instead of rounding noise blown up to length 1.
    """
    f = frame_features(encoder, videos)  # (B, T, F)
    change = f - f.mean(dim=1, keepdim=True)  # (B, T, F)
    floor = MOTION_FLOOR * f.norm(dim=-1, keepdim=True)  # (B, T, 1): below this, "nothing changes" stays near 0
    return change / torch.maximum(change.norm(dim=-1, keepdim=True), floor).clamp(min=1e-12)


def clip_dataset(items: list, opts: dict) -> ClipDataset:
    """The evaluation-style clips (centre clip, centre square) of ``items`` that the tokenizer reads."""
    classes = sorted({it.label for it in items})
    return ClipDataset(
        items,
        classes,
        opts["num_frames"],
        opts["stride"],
        train=False,
        size=opts["size"],
        preload=registry.get(opts["subset"]).preload,
    )


@torch.no_grad()
def _features(encoder, data: ClipDataset, opts: dict, device, flips: bool):
    """Yield motion features ``(B, T, F)`` of every batch of clips (then of its two mirror images, if ``flips``)."""
    for videos, _, skipped in clip_loader(data, device, FEATURE_BATCH, opts["workers"]):
        report_skipped(skipped)
        if videos is None:
            continue
        videos = videos.to(device)  # (B, T, 3, H, W) uint8
        for v in (videos, videos.flip(-1), videos.flip(-2)) if flips else (videos,):  # mirrors: more data, no labels
            yield motion_features(encoder, v).cpu()


def tokenize_clips(encoder, vocabulary, data: ClipDataset, opts: dict, device, flips: bool = False) -> torch.Tensor:
    """Every clip of ``data`` → its words ``(N, T)`` long; with ``flips``, each batch of 32 clips is followed by its
    left–right and then its top–bottom mirror images (3× the sentences)."""
    parts = [vocabulary.assign(f) for f in _features(encoder, data, opts, device, flips)]  # (B·k, T) each
    return torch.cat(parts) if parts else torch.zeros(0, opts["num_frames"], dtype=torch.long)


def check_options(opts: dict, device: torch.device) -> None:
    """Refuse, before any work, options that would fail or exhaust memory later: a Transformer whose sizes do
    not fit together, more words than the frames k-means is fitted on, a feature batch larger than memory."""
    words = opts["clusters"] ** opts["levels"]
    if words > opts["kmeans_frames"]:
        raise UsageError(
            f"--clusters {opts['clusters']} ** --levels {opts['levels']} = {words:,} words, more than the "
            f"{opts['kmeans_frames']:,} frames k-means is fitted on (--kmeans-frames); lower them"
        )
    try:
        WordBERTConfig(words, opts["num_frames"], opts["dim"], opts["depth"], opts["heads"])
    except ValueError as e:
        raise UsageError(f"model options: {e}") from None
    t, size = opts["num_frames"], opts["size"]
    check_batch_fits(device, FEATURE_BATCH, t, size, f"{FEATURE_BATCH} clips × --num-frames {t} × 3 × --size {size}²")


def _tokenizer(opts: dict, device: torch.device) -> nn.Module:
    """The frozen CNN that turns frames into features (random weights for the toy set: no labels anywhere)."""
    torch.manual_seed(opts["seed"])
    try:
        return build_encoder(opts["encoder"], opts["grid"], opts["pretrained"]).to(device).eval()
    except RuntimeError as e:  # ImageNet weights neither cached nor downloadable
        raise UsageError(" ".join(str(e).split()).replace("pass pretrained=False", "pass --no-pretrained")) from None


def _sentences(
    encoder: nn.Module, train_items: list, val_items: list, opts: dict, device: torch.device, log
) -> tuple[HierarchicalKMeans, torch.Tensor, torch.Tensor]:
    """Fit the vocabulary on a sample of training frames, then every clip → a sentence: ``(vocabulary, train (N, T),
    val (M, T))``."""
    start = time.perf_counter()
    train_clips, val_clips = clip_dataset(train_items, opts), clip_dataset(val_items, opts)
    sample = limit_items(train_items, max(1, opts["kmeans_frames"] // opts["num_frames"]), opts["seed"])
    sample_clips = train_clips if len(sample) == len(train_items) else clip_dataset(sample, opts)
    feats = torch.cat(list(_features(encoder, sample_clips, opts, device, opts["flips"])))  # (N, T, F)
    vocabulary = HierarchicalKMeans.fit(feats.flatten(0, 1), opts["levels"], opts["clusters"], opts["seed"])
    log(
        f"minivb.pretrain: {vocabulary.vocab_size} visual words ({opts['levels']} levels × {opts['clusters']} "
        f"clusters; "
        f"{int((vocabulary.counts > 0).sum())} used) from {len(feats) * opts['num_frames']} frames of "
        f"{opts['encoder']} "
        f"features ({vocabulary.dim}-d), {time.perf_counter() - start:.0f} s"
    )
    train_ids = (
        vocabulary.assign(feats)
        if sample_clips is train_clips  # the sample was every clip: its features are here
        else tokenize_clips(encoder, vocabulary, train_clips, opts, device, opts["flips"])
    )
    return vocabulary, train_ids, tokenize_clips(encoder, vocabulary, val_clips, opts, device)


def _masked_modeling(
    model: WordBERT,
    train_ids: torch.Tensor,
    val_ids: torch.Tensor,
    opts: dict,
    device: torch.device,
    majority: float,
    log,
    out: Path,
    options: dict,
) -> list[dict]:
    """Masked visual-token modeling in the trainer's own loop (``train_one_epoch``) → one history row per epoch.

    After every epoch the model, optimizer, schedule and history go to ``out/progress.pt``, and a run that
    finds one there continues after its last epoch (bit-identical on a CPU: the masking and the order are
    functions of (seed, epoch, index)). SIGTERM or Ctrl-C stop at the next step → :class:`Stopped`.
    """
    V = model.config.vocab_size
    train_set = MaskedWords(train_ids, V, seed=opts["seed"])
    sampler = ShardedSampler(len(train_set), shuffle=True, seed=opts["seed"], with_epoch=True)
    loader = DataLoader(train_set, batch_size=opts["batch_size"], sampler=sampler, collate_fn=collate)
    val_loader = DataLoader(MaskedWords(val_ids, V, seed=opts["seed"], train=False), batch_size=256, collate_fn=collate)
    optimizer = model.configure_optimizers(opts["lr"], opts["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(len(loader), opts["epochs"] * len(loader)))
    state, criterion, history = TrainState(), MaskedTokenLoss(), []
    first = 0
    if (out / "progress.pt").is_file():  # a stopped run: continue after its last finished epoch
        saved = load_file(out / "progress.pt", "pretraining progress", "delete it to start the epochs again")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        history, first, state.step = list(saved["history"]), int(saved["epoch"]), int(saved["step"])
        log(f"minivb.pretrain: continuing after epoch {first} of {opts['epochs']}")
    with stop_signals() as stopped:
        for epoch in range(first, opts["epochs"]):
            sampler.set_epoch(epoch)
            if not train_one_epoch(
                model, loader, optimizer, scheduler, criterion, state, device, stop=lambda: stopped() is not None
            ):
                raise Stopped(stopped(), epoch)  # progress.pt holds the epochs before this one
            _end_epoch(model, val_loader, device, state, history, epoch, opts, majority, log)
            save_checkpoint(
                out / "progress.pt",
                dict(
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    history=history,
                    epoch=epoch + 1,
                    step=state.step,
                    args=options,
                ),
            )
            if stopped() is not None and epoch + 1 < opts["epochs"]:
                raise Stopped(stopped(), epoch + 1)
    return history


def _end_epoch(model, val_loader, device, state: TrainState, history: list, epoch: int, opts: dict, majority, log):
    """An epoch's history row (training loss, validation loss, masked-token accuracy) and its log line."""
    val = evaluate_masked(model, val_loader, device)
    row = dict(
        epoch=epoch + 1,
        train_loss=state.loss_sum / max(state.loss_count, 1),
        val_loss=val["loss"],
        masked_top1=val["accuracy"],
    )
    history.append(row)
    state.loss_sum, state.loss_count = 0.0, 0
    log(
        f"epoch {epoch + 1:>3}/{opts['epochs']}  loss {row['train_loss']:.4f}  val loss {val['loss']:.4f}  "
        f"masked top-1 {100 * val['accuracy']:5.1f}%  (majority word {100 * majority:.1f}%)"
    )


class Stopped(Exception):
    """SIGTERM or Ctrl-C stopped pretraining (``.signal``); ``words.pt`` and ``progress.pt`` in the run's folder
    keep what is finished, and ``--resume`` continues from them."""

    def __init__(self, signal_name: str | None, epochs_done: int, out: Path | None = None):
        super().__init__(f"stopped by {signal_name} after {epochs_done} finished epoch(s)")
        self.signal, self.epochs_done, self.out = signal_name, epochs_done, out


def _quiet(*args) -> None:
    """A log that says nothing."""


def pretrain(given: dict, log: Callable[..., None] | None = print) -> dict:
    """``python -m minivb.pretrain``'s work → its summary (the dict written to summary.json).

    ``log`` takes the run's lines (``None`` silences them; ``summary["history"]`` has every epoch's numbers).

    Three steps: the tokenizer CNN (:func:`_tokenizer`) → the vocabulary and every clip as a sentence of
    words (:func:`_sentences`) → masked visual-token modeling of a :class:`WordBERT` (:func:`_masked_modeling`).
    """
    log = log or _quiet
    if given.get("resume"):
        return _resume(given, log)
    dataset = registry.get(given.get("subset"))
    subset = dataset.name
    opts = (
        dict(subset=subset, data_root=dataset.root, out=None, seed=0, device="auto", limit=None)
        | dataset.pretrain_preset
        | given
    )
    if opts["workers"] is None:
        opts["workers"] = max(1, (os.cpu_count() or 2) - 1)
    start = time.perf_counter()
    device = resolve_device(opts["device"])
    check_options(opts, device)  # every option before any work (the tokenizer and k-means take minutes at scale)
    dataset.prepare(opts["data_root"])  # the toy set is made if missing
    train_items, val_items, _ = dataset.load(opts["data_root"])
    train_items = limit_items(train_items, opts["limit"], opts["seed"])
    out = Path(opts["out"]) if opts["out"] else runs.new_run_folder(f"pretrain-{subset}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; choose a folder")
    lock = runs.claim(out)  # the folder is this run's until it ends (a second run into it is refused)
    try:
        if (out / "words.pt").exists() and not (out / "pretrain.pt").exists():
            raise UsageError(f"--out {out} holds a stopped pretraining run; continue it with --resume {out}")
        held = [f for f in ("pretrain.pt", *runs.RUN_FILES) if (out / f).exists()]
        if held:  # a finished pretraining run, or a training run: never written over
            raise UsageError(f"--out {out} already holds a run ({', '.join(held)}); choose another --out")
        return _pretrain_into(out, opts, device, train_items, val_items, start, log)
    finally:
        runs.release(out, lock)


RESUME_OPTIONS = ("device", "workers")  # what may differ when continuing a stopped run


def _resume(given: dict, log) -> dict:
    """Continue the stopped run in folder ``given["resume"]``: its words and finished epochs, its options."""
    out = Path(given["resume"])
    if not (out / "words.pt").is_file():
        what = "a finished run (pretrain.pt)" if (out / "pretrain.pt").is_file() else "no stopped pretraining run"
        raise UsageError(f"--resume {out}: it holds {what} (words.pt is written once the vocabulary is built)")
    words = load_file(out / "words.pt", "pretraining words", "delete the folder and pretrain again")
    other = {k: v for k, v in given.items() if k not in (*RESUME_OPTIONS, "resume") and words["args"].get(k) != v}
    if other:
        flag = "--" + next(iter(other)).replace("_", "-")
        raise UsageError(f"--resume {out}: {flag} differs from the stopped run's; drop it to continue that run")
    opts = dict(words["args"]) | {k: given[k] for k in RESUME_OPTIONS if k in given}
    device = resolve_device(opts["device"])
    lock = runs.claim(out)
    try:
        return _pretrain_into(out, opts, device, None, None, time.perf_counter() - words["seconds"], log)
    finally:
        runs.release(out, lock)


def _pretrain_into(
    out: Path, opts: dict, device: torch.device, train_items: list, val_items: list, start: float, log
) -> dict:
    """The three steps of :func:`pretrain`, writing ``pretrain.pt`` and ``summary.json`` into ``out`` (held).

    The vocabulary and the sentences go to ``out/words.pt`` once made (a resumed run starts from them: the
    tokenizer and k-means are not run again); both working files are removed when the run is done.
    """
    try:
        return _pretrain_steps(out, opts, device, train_items, val_items, start, log)
    except KeyboardInterrupt:  # a second Ctrl-C, or one during the feature pass and k-means
        raise Stopped("SIGINT", 0, out) from None
    except Stopped as e:
        e.out = out
        raise


def _words(
    out: Path, opts: dict, options: dict, device, train_items: list | None, val_items: list | None, start: float, log
) -> tuple[nn.Module, HierarchicalKMeans, torch.Tensor, torch.Tensor]:
    """Tokenizer → vocabulary and sentences, kept in ``words.pt`` (or read from it, resuming)
    → (tokenizer, vocabulary, train sentences, val sentences)."""
    resuming = (out / "words.pt").is_file()
    encoder = _tokenizer(opts | ({"pretrained": False} if resuming else {}), device)  # (its weights are saved)
    if resuming:
        words = load_file(out / "words.pt", "pretraining words", "delete the folder and pretrain again")
        encoder.load_state_dict(words["tokenizer"])
        return encoder, HierarchicalKMeans.from_state_dict(words["vocabulary"]), words["train_ids"], words["val_ids"]
    with sigterm_raises(lambda: Stopped("SIGTERM", 0)):  # (nothing of this phase is kept)
        vocabulary, train_ids, val_ids = _sentences(encoder, train_items, val_items, opts, device, log)
    seconds = time.perf_counter() - start
    save_checkpoint(
        out / "words.pt",
        dict(
            vocabulary=vocabulary.state_dict(),
            train_ids=train_ids,
            val_ids=val_ids,
            tokenizer=encoder.state_dict(),
            args=options,
            seconds=seconds,
        ),
    )
    return encoder, vocabulary, train_ids, val_ids


def _pretrain_steps(
    out: Path, opts: dict, device: torch.device, train_items: list | None, val_items: list | None, start: float, log
) -> dict:
    """Tokenizer → vocabulary and sentences (or those of ``words.pt``, resuming) → masked modeling → pretrain.pt."""
    options = {k: v for k, v in opts.items() if k not in ("out", "resume")} | {"out": str(out)}
    encoder, vocabulary, train_ids, val_ids = _words(out, opts, options, device, train_items, val_items, start, log)
    majority = float((val_ids == vocabulary.majority_word).float().mean()) if val_ids.numel() else 0.0
    torch.manual_seed(opts["seed"])
    config = WordBERTConfig(vocabulary.vocab_size, opts["num_frames"], opts["dim"], opts["depth"], opts["heads"])
    model = WordBERT(config).to(device)
    history = _masked_modeling(model, train_ids, val_ids, opts, device, majority, log, out, options)

    summary = dict(
        masked_top1=history[-1]["masked_top1"],
        majority_top1=majority,
        vocab_size=vocabulary.vocab_size,
        words_used=int((vocabulary.counts > 0).sum()),
        train_sequences=len(train_ids),
        val_sequences=len(val_ids),
        epochs=opts["epochs"],
        seconds=round(time.perf_counter() - start, 1),
        history=history,
    )
    save_checkpoint(
        out / "pretrain.pt",
        dict(
            format=PRETRAIN_FORMAT,
            version=1,
            model=model.state_dict(),
            config=config.to_dict(),
            vocabulary=vocabulary.state_dict(),
            tokenizer=dict(encoder=opts["encoder"], grid=opts["grid"], state=encoder.state_dict()),
            args=options,
            summary=summary,
        ),
    )
    write_json(out / "summary.json", summary | {"args": options})
    for working in ("words.pt", "progress.pt"):  # pretrain.pt holds all of it now
        (out / working).unlink(missing_ok=True)
    log(
        f"done: masked top-1 {100 * summary['masked_top1']:.1f}% (majority word {100 * majority:.1f}%), "
        f"{summary['seconds']:.0f} s → {out}"
    )
    return summary
