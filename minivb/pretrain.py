"""Visual words and masked visual-token pretraining: the original VideoBERT idea, at toy scale.

VideoBERT (Sun et al., "VideoBERT: A Joint Model for Video and Language Representation
Learning", ICCV 2019) does not feed continuous features to its Transformer. It first turns
video into discrete *visual words*, then pretrains a BERT on them exactly like on text:

* features: an S3D network (pretrained on Kinetics) gives one 1024-d vector per 1.5 s clip
  (30 frames, sampled at 20 fps);
* words: hierarchical k-means, 4 levels of 12 clusters each, so 12⁴ = 20,736 words, a
  word being a path from the root to a leaf;
* pretraining (of the video-only part; the paper also pairs the words with speech text):
  BERT's masked-token objective — 15% of the positions are chosen; a chosen
  position's input becomes [MASK] 80% of the time, a random word 10%, stays unchanged
  10%; the model is trained with cross-entropy to recover the original word at the chosen
  positions only.

Here, scaled down so it runs on a CPU:

    video (B, T, 3, H, W) ──frozen CNN──▶ (B, T, R, D_enc) ──concatenate regions──▶ (B, T, F), F = R·D_enc
        ──HierarchicalKMeans.assign──▶ words (B, T) in 0 … clusters**levels - 1      (one word per *frame*)
        ──mask_tokens──▶ inputs (B, T) (with [MASK] = vocab_size), targets (B, T) (-100 = not chosen)
        ──WordBERT──▶ logits (B, T, vocab_size) ──MaskedTokenLoss──▶ scalar

Differences of scale: one word per frame of a small CNN (not per 1.5 s of S3D), and fewer
words — ``HierarchicalKMeans.fit`` defaults to 2 levels of 12 (144 words), since a few thousand
toy frames cannot fill 20,736 words. A frame's feature is its region features concatenated (not averaged), so a word keeps the
coarse layout of the frame: *where* things are, not only *what*. :class:`WordBERT` names and
shapes ``time_embed``, ``cls_token`` and ``transformer.*`` exactly as
:class:`~minivb.model.VideoBERT` does, so the pretrained Transformer can be copied into a
VideoBERT classifier. :class:`MaskedWords` + :func:`collate` yield ``(inputs, targets, [])``
batches, and :class:`MaskedTokenLoss` takes ``(logits, targets)``: the pretraining runs in
:func:`minivb.train.train_one_epoch` unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .checks import check_int
from .data.clips import sample_seed
from .model import EMBED_STD
from .transformer import Transformer

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
]

IGNORE_INDEX = -100  # target of a position that was not chosen (F.cross_entropy's default ignore_index)
_MASK_STREAM, _NODE_STREAM = 11, 12  # domain tags for sample_seed (minivb.data.clips uses 1…3)


# --------------------------------------------------------------------------- features


@torch.no_grad()
def frame_features(encoder: nn.Module, videos: torch.Tensor) -> torch.Tensor:
    """One feature vector per frame from a frozen encoder: ``(B, T, 3, H, W)`` → ``(B, T, R·D_enc)`` float.

    The frame's region features concatenated in region order (row-major tiles), so the vector
    keeps the coarse layout. Runs in eval mode (BatchNorm uses its running statistics) and
    puts the encoder back into the mode it was in. The videos go to the encoder's device.
    """
    if videos.ndim != 5:
        raise ValueError(f"videos must be shaped (B, T, 3, H, W), got {tuple(videos.shape)}")
    was_training = encoder.training
    encoder.eval()
    try:
        param = next(encoder.parameters(), None)
        if param is not None:
            videos = videos.to(param.device)
        regions = encoder(videos)  # (B, T, R, D_enc)
    finally:
        encoder.train(was_training)
    return regions.flatten(2).float()  # (B, T, R·D_enc)


# --------------------------------------------------------------------------- k-means


def _nearest(x: torch.Tensor, centroids: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest centroid ``(N,)`` for x ``(N, F)``, centroids ``(k, F)``; ties → lowest index.

    ``valid`` ``(k,)`` bool: only those centroids can be chosen.
    """
    # ‖x - c‖² = ‖x‖² - 2 x·c + ‖c‖²; the ‖x‖² term is the same for every c, so argmin needs only the rest
    d = (centroids * centroids).sum(1) - 2 * x @ centroids.T  # (N, k)
    if valid is not None:
        d = d.masked_fill(~valid, float("inf"))
    return d.argmin(1)


def _sq_dist_to(x: torch.Tensor, centroids: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """Squared distance ``(N,)`` of every point to its own centroid."""
    return (x - centroids[assignment]).pow(2).sum(1)


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centroid uniformly, each next one with probability ∝ D² → ``(k, F)``.

    D = distance to the nearest centroid chosen so far. When every point coincides with a chosen
    centroid (fewer than k distinct points) the rest are drawn uniformly (duplicates).
    """
    N = len(x)
    idx = [int(torch.randint(N, (), generator=generator))]
    d2 = (x - x[idx[0]]).pow(2).sum(1)  # (N,)
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            j = int(torch.multinomial((d2 / total).double().cpu(), 1, generator=generator))
        else:
            j = int(torch.randint(N, (), generator=generator))
        idx.append(j)
        d2 = torch.minimum(d2, (x - x[j]).pow(2).sum(1))
    return x[idx].clone()


def kmeans(x: torch.Tensor, k: int, *, seed: int, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm: x ``(N, F)`` → ``(centroids (k, F), assignment (N,) long)``.

    k-means++ seeding from a ``torch.Generator`` seeded with ``seed`` (CPU), so the result is a
    function of ``(x, k, seed)``. Alternates "assign each point to its nearest centroid" and
    "move each centroid to the mean of its points" until the assignment stops changing or
    after ``iters`` rounds. A cluster left empty is re-seeded with the point farthest from its
    own centroid (the next empty one with the next farthest, …): deterministic.

    ``k > N`` raises ValueError. With fewer than ``k`` *distinct* points some centroids are
    duplicates and their clusters stay empty (ties go to the lowest index); check
    ``assignment.bincount(minlength=k)`` if that matters. The returned assignment is always the
    nearest-centroid assignment for the returned centroids.
    """
    k, iters = check_int("k", k), check_int("iters", iters)
    if x.ndim != 2:
        raise ValueError(f"x must be shaped (N, F), got {tuple(x.shape)}")
    if k > len(x):
        raise ValueError(f"k-means with k={k} clusters needs at least k points, got {len(x)}")
    x = x.float()
    generator = torch.Generator().manual_seed(int(seed))
    centroids = _kmeans_pp(x, k, generator).to(x.device)  # (k, F)
    assignment = None
    for _ in range(iters):
        new = _nearest(x, centroids)  # (N,)
        if assignment is not None and torch.equal(new, assignment):
            break  # converged: the centroids are already the means of these clusters
        assignment = new
        counts = torch.bincount(assignment, minlength=k)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)  # (k, F)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:  # re-seed with the points worst served by their centroid
            far = _sq_dist_to(x, centroids, assignment).argsort(descending=True, stable=True)
            for c, j in zip(empty, far.tolist()):
                centroids[c] = x[j]
    return centroids, _nearest(x, centroids)


# --------------------------------------------------------------------------- hierarchical vocabulary


class HierarchicalKMeans:
    """A vocabulary of visual words: a tree of k-means, ``levels`` deep, ``clusters`` children per node.

    Word id = the path through the tree in mixed radix, most significant digit first:
    ``word = ((d₀·C + d₁)·C + d₂)·C + …`` with ``dₗ`` the child chosen at level ``l`` and
    ``C = clusters``; so ``vocab_size = clusters**levels`` and ``word // C**(levels-1-l) % C`` is
    digit ``l``. The prefix of length ``l + 1`` (``word // C**(levels-1-l)``) names a node of level
    ``l + 1``; ``centroids[l]`` ``(C**(l+1), F)`` holds, at row ``prefix``, the centroid of that node.

    Small nodes: a node with ``n < C`` points is clustered into ``n`` clusters; more generally
    only the children that receive points (k-means with fewer distinct points than clusters
    leaves some empty) are *used* (``used[l]`` ``(C**(l+1),)`` bool). An unused child keeps the
    parent's centroid, is never chosen by :meth:`assign` and so never gets a word (its words
    are valid ids with count 0). Every node reached by a point has at least one used child, so
    every point gets a word, and two frames share a word only if they shared every cluster.

    ``counts`` ``(vocab_size,)``: how often each word occurs in the fitting data;
    :attr:`majority_word`: the most frequent one (a "predict the commonest word" baseline).
    Everything is plain tensors and ints (:meth:`state_dict`), so a vocabulary can live inside
    a checkpoint loaded with ``torch.load(weights_only=True)``. Memory: about
    ``vocab_size · 1.09 · F`` floats (12⁴ words of 2048 features: 185 MB).
    """

    def __init__(self, levels: int, clusters: int, centroids: list[torch.Tensor], used: list[torch.Tensor],
                 counts: torch.Tensor):
        self.levels, self.clusters = check_int("levels", levels), check_int("clusters", clusters)
        if clusters < 2:
            raise ValueError(f"clusters must be at least 2, got {clusters}")
        if len(centroids) != levels or len(used) != levels:
            raise ValueError(f"need {levels} levels of centroids and used flags, got {len(centroids)} and {len(used)}")
        for level, (c, u) in enumerate(zip(centroids, used)):
            n = clusters ** (level + 1)
            if c.ndim != 2 or len(c) != n or u.shape != (n,) or u.dtype != torch.bool:
                raise ValueError(f"level {level}: need centroids ({n}, F) and bool used ({n},), "
                                 f"got {tuple(c.shape)} and {tuple(u.shape)} {u.dtype}")
        if counts.shape != (clusters**levels,):
            raise ValueError(f"counts must be shaped ({clusters**levels},), got {tuple(counts.shape)}")
        self.centroids, self.used, self.counts = list(centroids), list(used), counts.long()

    @property
    def vocab_size(self) -> int:
        return self.clusters**self.levels

    @property
    def dim(self) -> int:
        """F, the feature size the vocabulary was fitted on."""
        return self.centroids[0].shape[1]

    @property
    def majority_word(self) -> int:
        """The most frequent word in the fitting data (lowest id on ties)."""
        return int(self.counts.argmax())

    @classmethod
    def fit(cls, x: torch.Tensor, levels: int = 2, clusters: int = 12, seed: int = 0, *, iters: int = 50
            ) -> "HierarchicalKMeans":
        """Cluster x ``(N, F)`` into ``clusters``, each cluster again into ``clusters``, … ``levels`` deep.

        Node ``prefix`` of level ``l`` runs :func:`kmeans` with seed ``sample_seed(·, seed, l, prefix)``:
        the vocabulary is a function of ``(x, levels, clusters, seed, iters)``.
        """
        levels, clusters = check_int("levels", levels), check_int("clusters", clusters)
        if clusters < 2:
            raise ValueError(f"clusters must be at least 2, got {clusters}")
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"x must be shaped (N, F) with N ≥ 1, got {tuple(x.shape)}")
        x = x.float()
        C, parent = clusters, x.mean(0, keepdim=True)  # parent centroids (C**l, F); level 0: the root
        prefix = torch.zeros(len(x), dtype=torch.long, device=x.device)  # (N,) node of every point
        centroids, used = [], []
        for level in range(levels):
            cent = parent.repeat_interleave(C, dim=0)  # (C**(l+1), F): unused children keep the parent's centroid
            use = torch.zeros(len(cent), dtype=torch.bool, device=x.device)
            for node, idx in _groups(prefix):
                points = x[idx]  # (n, F)
                c, a = kmeans(points, min(C, len(points)), seed=sample_seed(_NODE_STREAM, seed, level, node), iters=iters)
                nonempty = torch.bincount(a, minlength=len(c)) > 0
                cent[node * C : node * C + len(c)] = c
                use[node * C : node * C + len(c)] = nonempty
            if used:  # a used node that got no points (float rounding between kmeans and routing): one child, its centroid
                lone = used[-1] & ~use.view(-1, C).any(1)  # (C**l,)
                use.view(-1, C)[lone, 0] = True
            centroids.append(cent)
            used.append(use)
            prefix = _descend(x, prefix, cent, use, C)  # the same routing as assign(): fit and assign agree
            parent = cent
        counts = torch.bincount(prefix, minlength=C**levels).cpu()
        return cls(levels, clusters, [c.cpu() for c in centroids], [u.cpu() for u in used], counts)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(..., F)`` → words ``(...)`` long: descend the tree, nearest used child at each level."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"features have {x.shape[-1]} values, the vocabulary was fitted on {self.dim}")
        flat = x.reshape(-1, self.dim).float()  # (N, F)
        prefix = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
        for cent, use in zip(self.centroids, self.used):
            prefix = _descend(flat, prefix, cent.to(flat.device), use.to(flat.device), self.clusters)
        return prefix.reshape(x.shape[:-1])

    def path(self, words: torch.Tensor) -> torch.Tensor:
        """Words ``(...)`` → their digits ``(..., levels)``: the child chosen at each level."""
        powers = self.clusters ** torch.arange(self.levels - 1, -1, -1, device=words.device)
        return words[..., None] // powers % self.clusters

    def state_dict(self) -> dict:
        return dict(levels=self.levels, clusters=self.clusters, centroids=list(self.centroids), used=list(self.used),
                    counts=self.counts)

    @classmethod
    def from_state_dict(cls, state: dict) -> "HierarchicalKMeans":
        return cls(state["levels"], state["clusters"], state["centroids"], state["used"], state["counts"])


Vocabulary = HierarchicalKMeans


def _groups(prefix: torch.Tensor):
    """``(node, indices)`` for every distinct value of prefix ``(N,)``, ascending; indices in original order."""
    order = prefix.argsort(stable=True)
    nodes, sizes = torch.unique_consecutive(prefix[order], return_counts=True)
    return zip(nodes.tolist(), order.split(sizes.tolist()))


def _descend(x: torch.Tensor, prefix: torch.Tensor, cent: torch.Tensor, use: torch.Tensor, C: int) -> torch.Tensor:
    """One level down: prefix ``(N,)`` → ``prefix·C + nearest used child`` ``(N,)``."""
    out = torch.empty_like(prefix)
    for node, idx in _groups(prefix):
        rows = slice(node * C, node * C + C)
        out[idx] = node * C + _nearest(x[idx], cent[rows], use[rows])
    return out


def tokenize(encoder: nn.Module, vocabulary: HierarchicalKMeans, videos: torch.Tensor) -> torch.Tensor:
    """Videos ``(B, T, 3, H, W)`` → visual words ``(B, T)`` long (one per frame), on the encoder's device."""
    return vocabulary.assign(frame_features(encoder, videos))


# --------------------------------------------------------------------------- masking


def mask_tokens(ids: torch.Tensor, vocab_size: int, *, generator: torch.Generator, p: float = 0.15
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
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be a number > 0, got {self.mlp_ratio!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

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
            raise ValueError(f"sequence has {T} words but the time embedding covers at most "
                             f"num_frames={self.config.num_frames}")
        x = self.word_embed(ids) + self.time_embed[:T]  # (B, T, dim)
        return torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + T, dim)

    def hidden_states(self, ids: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """H ``(B, 1 + T, dim)`` and, if ``need_weights``, every layer's attention ``(B, heads, 1 + T, 1 + T)``."""
        return self.transformer(self.dropout(self.initial_state(ids)), need_weights=need_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.hidden_states(ids)
        return self.head(h[:, 1:])  # word positions (B, T, dim) → (B, T, vocab_size)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the final word-token states ``(B, dim)`` (for a linear probe)."""
        return self.hidden_states(ids)[0][:, 1:].mean(1)

    def cls_state(self, ids: torch.Tensor) -> torch.Tensor:
        """The final [CLS] state ``(B, dim)`` (no term of the masked-token loss reads it: compare with :meth:`features`)."""
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
    """Masked-token loss and accuracy over a loader of ``(inputs, targets, _)`` batches → dict(loss, accuracy, count)."""
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
