"""Built in notebook 07, §3.
Video retrieval with the [CLS] embedding: nearest videos by cosine similarity, and how good they are (seed §6).

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
:func:`minivb.engine.gallery.embed_videos` embeds many videos in batches (and
:func:`~minivb.engine.gallery.pixel_embedding`, the baseline a learned embedding must beat: raw pixels averaged over
time, blind to frame order, so it cannot tell a twin from its reversal).

    python -m minivb.retrieve index --checkpoint runs/toy-… --data-root data/toy --split train --out runs/gallery.pt
    python -m minivb.retrieve evaluate --index runs/gallery.pt
    python -m minivb.retrieve search --index runs/gallery.pt clip.mp4 --k 5
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

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

    The diagonal holds Recall@1's hits; :func:`minivb.engine.evaluation.plot_confusion` draws it.
    """
    y = torch.as_tensor(labels, dtype=torch.long)  # (N,)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    if len(y) < 2:
        return cm
    _, nearest = search(embeddings, embeddings, 1, exclude_self=True)  # (N, 1)
    cm.index_put_((y, y[nearest[:, 0]]), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return cm
