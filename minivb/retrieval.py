"""Video retrieval with the [CLS] embedding: nearest videos by cosine similarity, and how good they are (seed §6).

    "VideoBERT performs well in a variety of video tasks, such as video classification,
     video retrieval and video summary generation."                    — seed, §6

A trained model already holds a retrieval system: the final hidden state of the [CLS]
token, ``VideoBERT.embed(video) → (B, dim)``, is the one vector the classifier reads, so
videos of the same action should land near each other. Every video becomes one unit vector
(each of its ``clips × crops`` views is embedded, the views' vectors are averaged, the mean
is L2-normalised), and two videos are as similar as the cosine of the angle between them::

    e = mean_v h_CLS(view_v) / ‖mean_v h_CLS(view_v)‖          (dim,), ‖e‖ = 1
    cos(a, b) = a·b / (‖a‖‖b‖) = a·b                           in [-1, 1]; 1 = same direction
    scores = queries @ gallery.T                                (Q, D) @ (D, N) → (Q, N)

A search is a matrix product followed by a sort. :func:`retrieval_metrics` scores a labelled
gallery leave-one-out (every video queries all the others; same label = relevant):
Recall@K and mAP. :func:`neighbour_confusion` shows which classes a video's nearest
neighbour comes from — on the toy set, whether the model confuses time-reversed twins.
:func:`pixel_embedding` is the baseline a learned embedding must beat: raw pixels averaged
over time (blind to frame order, so it cannot tell a twin from its reversal).

    python -m minivb.retrieve index --checkpoint runs/toy-… --data-root data/toy --split train --out runs/gallery.pt
    python -m minivb.retrieve evaluate --index runs/gallery.pt
    python -m minivb.retrieve search --index runs/gallery.pt clip.mp4 --k 5
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import GALLERY_FORMAT as FORMAT
from .checkpoint import Preprocessing, load_file, save_checkpoint
from .data.clips import Skipped
from .data.device_decode import resolve_decode
from .inference import in_chunks, map_videos, video_views

__all__ = [
    "PIXEL_GRID",
    "Gallery",
    "view_embedding",
    "pixel_embedding",
    "embed_videos",
    "search",
    "retrieval_metrics",
    "neighbour_confusion",
]

PIXEL_GRID = 8  # the pixel baseline: each mean frame pooled to 8×8 → 3·8·8 = 192 numbers


# --------------------------------------------------------------------------- embeddings


def view_embedding(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Views ``(B, V, T, 3, H, W)`` (or one view ``(B, T, 3, H, W)``) → unit [CLS] embeddings ``(B, dim)``, mean over
    views."""
    if views.ndim == 5:
        views = views[:, None]  # (B, 1, T, 3, H, W)
    B, V = views.shape[:2]
    h = in_chunks(model.embed, views.flatten(0, 1)).float()  # (B·V, dim)
    return F.normalize(h.view(B, V, -1).mean(1), dim=1)  # (B, dim), ‖row‖ = 1


def pixel_embedding(views: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: views ``(B, V, T, 3, H, W)`` uint8 → ``(B, 3·8·8)`` unit vectors.

    The mean frame (over views and time), average-pooled to 8×8, flattened, L2-normalised.
    Averaging over time forgets the frame order: a video and its reversal get the same vector.
    """
    if views.ndim == 5:
        views = views[:, None]
    frames = views.float().div(255).mean(dim=(1, 2))  # (B, 3, H, W)
    pooled = F.adaptive_avg_pool2d(frames, PIXEL_GRID)  # (B, 3, 8, 8)
    return F.normalize(pooled.flatten(1), dim=1)  # (B, 192)


@dataclass(eq=False)  # a tensor field: compare galleries field by field
class Gallery:
    """Embedded videos: ``embeddings (N, D)`` (unit rows), their ``paths``, ``labels`` (names, or None when
    unknown), ``classes`` (the label names in index order, or None), ``checkpoint`` (the model that made
    the embeddings, or None for :func:`pixel_embedding`), ``preprocessing`` (:class:`Preprocessing` as a dict) and
    ``fingerprint`` (:func:`~minivb.checkpoint.weights_fingerprint` of that model: queries must be embedded by the
    same weights; None for pixels, and for galleries made before it was stored)."""

    embeddings: torch.Tensor
    paths: list[str]
    labels: list[str] | None = None
    classes: list[str] | None = None
    checkpoint: str | None = None
    preprocessing: dict = field(default_factory=dict)
    fingerprint: str | None = None

    def __post_init__(self):
        if self.embeddings.ndim != 2 or len(self.paths) != len(self.embeddings):
            raise ValueError(
                f"embeddings must be (N, D) with one row per path, got {tuple(self.embeddings.shape)} for "
                f"{len(self.paths)} paths"
            )
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise ValueError(f"{len(self.labels)} labels for {len(self.paths)} paths")
        if not torch.isfinite(self.embeddings).all():  # a NaN row would be ranked as if it meant something
            bad = int((~torch.isfinite(self.embeddings)).any(dim=1).sum())
            raise ValueError(f"{bad} of {len(self.paths)} embeddings are not finite (NaN or inf)")
        if self.labels is not None and self.classes is not None:
            unknown = sorted(set(self.labels) - set(self.classes))
            if unknown:
                raise ValueError(f"labels outside the class list: {', '.join(map(repr, unknown[:5]))}")

    def __len__(self) -> int:
        return len(self.paths)

    def label_ids(self) -> torch.Tensor:
        """Labels → class indices ``(N,)`` (``classes`` order, or first appearance if there is no class list)."""
        if self.labels is None:
            raise ValueError("the gallery has no labels; index a labelled split (--data-root, --split)")
        names = self.classes or list(dict.fromkeys(self.labels))
        index = {c: i for i, c in enumerate(names)}
        return torch.tensor([index[y] for y in self.labels], dtype=torch.long)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically; plain tensors, strings and lists only (``torch.load(weights_only=True)`` reads it)."""
        return save_checkpoint(
            path,
            {
                "format": FORMAT,
                "version": 1,
                **dataclasses.asdict(self),
                "embeddings": self.embeddings.float().contiguous(),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Gallery":
        """The gallery at ``path``: a missing file → ``FileNotFoundError``, anything else → one-line ``ValueError``."""
        obj = load_file(path, "minivb gallery", "make one with python -m minivb.retrieve index")
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            what = (
                "a training checkpoint, not a gallery"
                if isinstance(obj, dict) and "model" in obj
                else "not a minivb gallery"
            )
            raise ValueError(f"{path} is {what}; make one with python -m minivb.retrieve index")
        try:
            return cls(**{f.name: obj[f.name] for f in dataclasses.fields(cls) if f.name in obj})
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"{path} is a damaged minivb gallery ({' '.join(str(e).split())[:200]})") from None


@torch.no_grad()
def embed_videos(
    model: nn.Module | None,
    paths: Sequence[str | os.PathLike],
    prep: Preprocessing,
    *,
    labels: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str | None = None,
    progress: str | None = None,
    decode: str = "auto",
) -> tuple[Gallery, list[Skipped]]:
    """Embed every video → ``(gallery of the videos that could be decoded, skipped files)``.

    ``model``: a VideoBERT (:func:`view_embedding`), or ``None`` for the raw-pixel baseline
    (:func:`pixel_embedding`). ``labels``: one per path (kept for the decoded ones). The
    gallery's ``checkpoint`` is left None: the caller knows where the model came from. ``decode``: where frame
    stores' JPEGs are decoded (:func:`~minivb.data.device_decode.resolve_decode`; ``ValueError`` if impossible).
    """
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} paths")
    if model is None:
        fn, dim, device = pixel_embedding, 3 * PIXEL_GRID**2, torch.device(device or "cpu")
    else:
        device = torch.device(device) if device is not None else next(model.parameters()).device
        model.eval()
        fn, dim = (lambda views: view_embedding(model, views)), model.config.dim
    encoded = resolve_decode(decode, device, [str(p) for p in paths]) == "gpu"
    rows, skipped = map_videos(
        fn,
        video_views(paths, prep, encoded=encoded),
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
    )
    kept = [i for i, r in enumerate(rows) if r is not None]
    embeddings = torch.stack([rows[i] for i in kept]) if kept else torch.zeros(0, dim)  # (N, D)
    return Gallery(
        embeddings,
        [str(paths[i]) for i in kept],
        None if labels is None else [str(labels[i]) for i in kept],
        None if classes is None else list(classes),
        None,
        dataclasses.asdict(prep),
    ), skipped


# --------------------------------------------------------------------------- search and metrics


def _ranking(scores: torch.Tensor, exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(Q, N)`` → ``(sorted scores, indices)`` best first, equal scores in index order (a stable sort)."""
    if exclude_self:
        scores = scores.clone()
        scores.diagonal().fill_(float("-inf"))  # query i is gallery item i: never its own neighbour
    return torch.sort(scores, dim=1, descending=True, stable=True)


def search(
    gallery: torch.Tensor, queries: torch.Tensor, k: int, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest gallery rows of each query → ``(scores (Q, k), indices (Q, k))``, best first.

    ``gallery (N, D)`` and ``queries (Q, D)`` hold unit rows, so cosine similarity is their dot
    product. Equal scores come in gallery order. ``exclude_self``: the queries are the gallery
    itself (``Q == N``) and item ``i`` is left out of query ``i``'s list. ``k`` is capped at
    the number of candidates.
    """
    if gallery.ndim != 2 or queries.ndim != 2 or gallery.shape[1] != queries.shape[1]:
        raise ValueError(
            f"gallery (N, D) and queries (Q, D) must share D, got {tuple(gallery.shape)} and {tuple(queries.shape)}"
        )
    if exclude_self and len(queries) != len(gallery):
        raise ValueError(
            f"exclude_self needs the gallery as the queries, got {len(queries)} queries for {len(gallery)} items"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = queries.float() @ gallery.float().T  # (Q, D) @ (D, N) → (Q, N) cosine similarities
    values, indices = _ranking(scores, exclude_self)
    k = min(k, len(gallery) - exclude_self)
    return values[:, :k], indices[:, :k]


def _label_ids(labels: torch.Tensor | Sequence[Hashable]) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        return labels.long()
    index: dict = {}
    return torch.tensor([index.setdefault(y, len(index)) for y in labels], dtype=torch.long)


def retrieval_metrics(
    embeddings: torch.Tensor, labels: torch.Tensor | Sequence[Hashable], ks: Sequence[int] = (1, 5, 10)
) -> dict:
    """Leave-one-out retrieval on a labelled gallery: every item queries all the others; same label = relevant.

    ``recall@k``: the fraction of queries with at least one relevant item among their ``k`` nearest
    (the metric-learning Recall@K). ``mAP``: the mean over queries of the average precision of the
    full ranking, ``AP = 1/R · Σ_{ranks r of the R relevant items} precision@r``. Queries without any
    relevant item (the only video of their label) are left out of both and counted in
    ``without_relevant``; ``queries`` = the queries that count. No such query → the metrics are None.
    Equal scores are ranked in index order.
    """
    y = _label_ids(labels)  # (N,)
    N = len(embeddings)
    if len(y) != N:
        raise ValueError(f"{len(y)} labels for {N} embeddings")
    if N < 2:  # no video has another to find
        return {f"recall@{k}": None for k in ks} | dict(mAP=None, queries=0, without_relevant=N, gallery=N)
    e = embeddings.float()
    _, order = _ranking(e @ e.T, exclude_self=True)  # (N, N), self last
    relevant = (y[order[:, : N - 1]] == y[:, None]).double()  # (N, N-1): rank r of query q is relevant
    num_relevant = relevant.sum(1)  # (N,)
    counted = num_relevant > 0
    hits = relevant.cumsum(1)  # (N, N-1): relevant items within the first r
    ranks = torch.arange(1, N, dtype=torch.double)  # 1 … N-1
    ap = (relevant * hits / ranks).sum(1) / num_relevant.clamp(min=1)  # (N,): mean precision at the relevant ranks
    q = int(counted.sum())
    result: dict = {f"recall@{k}": float(relevant[counted, :k].amax(1).mean()) if q else None for k in ks}
    result.update(mAP=float(ap[counted].mean()) if q else None, queries=q, without_relevant=N - q, gallery=N)
    return result


def neighbour_confusion(
    embeddings: torch.Tensor, labels: torch.Tensor | Sequence[int], num_classes: int
) -> torch.Tensor:
    """``(C, C)`` counts: row = a query's class, column = the class of its nearest other item.

    The diagonal holds Recall@1's hits; :func:`minivb.evaluation.plot_confusion` draws it.
    """
    y = torch.as_tensor(labels, dtype=torch.long)  # (N,)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    if len(y) < 2:
        return cm
    _, nearest = search(embeddings, embeddings, 1, exclude_self=True)  # (N, 1)
    cm.index_put_((y, y[nearest[:, 0]]), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return cm
