"""Built in notebook 09, §2.
Masked visual-token pretraining: the original VideoBERT idea, at toy scale (``python -m minivb.pretrain``).

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
as :class:`~minivb.model.VideoBERT` does, so :func:`minivb.engine.checkpoint.init_from_pretrained` can copy the
pretrained Transformer into a classifier. :class:`MaskedWords` + :func:`collate` yield
``(inputs, targets, [])`` batches and :class:`MaskedTokenLoss` takes ``(logits, targets)``: the
pretraining runs in :func:`minivb.loop.train_one_epoch` unchanged. The run around it (the data set, the feature pass,
the run's folder) is :func:`minivb.engine.pretraining.pretrain`. One process (no DDP): the
sentences are tiny; the cost at k400 scale is the feature pass, which uses ``--workers`` and the GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .model import EMBED_STD, adamw
from .plumbing.checks import check_int, check_transformer
from .plumbing.samples import sample_seed
from .transformer import Transformer
from .visual_words import frame_features

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
        return adamw(self, lr, weight_decay, {"word_embed.weight", "time_embed", "cls_token"}, fused=fused)


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
