"""Built in notebook 06, §3 and §5.
Classification metrics, one path for the trainer's validation and for :mod:`minivb.engine.evaluation`.

    top-1 = fraction of videos whose highest score is the true class
    top-5 = fraction whose true class is among the 5 highest scores (top-min(5, C))
    per-class top-1 of class c = confusion[c, c] / Σ_j confusion[c, j]   (None: no video of c)
    confusion[true, predicted] counts videos

Ranking: classes by score, highest first; equal scores in class-index order, lower index first (as
:func:`minivb.retrieval.retrieval_metrics` ranks videos, and as ``argmax`` picks). So a tie straddling the top k
is a hit when the true class is among the lowest-numbered tied classes that fit. (scikit-learn's
``top_k_accuracy_score`` breaks ties the other way, higher index first.) Scores keep the caller's dtype: float64
scores that differ by 1e-9 are not a tie.

:class:`Accuracy` accumulates these batch by batch (on the batch's device) and can be summed
across processes (:meth:`Accuracy.all_reduce`); :func:`accuracy_metrics` is the one-shot form.
"""

from __future__ import annotations

import torch

from .plumbing import distributed


class Accuracy:
    """Running top-1 / top-5 / mean loss / confusion matrix over batches of scores ``(B, C)`` and labels ``(B,)``."""

    def __init__(self, num_classes: int, device: str | torch.device = "cpu"):
        self.num_classes = num_classes
        self.k = min(5, num_classes)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-k hits
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)  # (C, C)

    def update(self, scores: torch.Tensor, labels: torch.Tensor, loss_sum: torch.Tensor | float = 0.0) -> "Accuracy":
        """Add a batch: ``scores`` (probabilities or logits) ``(B, C)``, ``labels`` ``(B,)``, the batch's summed
        loss."""
        if scores.ndim != 2 or labels.shape != scores.shape[:1] or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"need scores (N, {self.num_classes}) and labels (N,), got {tuple(scores.shape)} and "
                f"{tuple(labels.shape)}"
            )
        labels = labels.long()
        top = scores.sort(dim=1, descending=True, stable=True).indices[:, : self.k]  # (B, k), ties: lower index first
        hits = top == labels[:, None]  # (B, k)
        C = self.num_classes
        self.sums[0] += loss_sum
        self.sums[1] += hits[:, 0].sum()
        self.sums[2] += hits.any(1).sum()
        self.confusion += torch.bincount(labels * C + top[:, 0], minlength=C * C).view(C, C)
        return self

    def all_reduce(self, world_size: int) -> "Accuracy":
        """Sum the counts of every process (no-op for one process)."""
        distributed.all_reduce(self.sums, world_size)
        distributed.all_reduce(self.confusion, world_size)
        return self

    def result(self) -> dict:
        """``top1``, ``top5``, ``loss`` (mean), ``count`` (videos), ``per_class_top1`` (list; None for a class
        without videos), ``confusion`` ``(C, C)`` int64 on the CPU."""
        confusion = self.confusion.cpu()
        count = int(confusion.sum())
        rows = confusion.sum(1)  # (C,) videos per true class
        n = max(count, 1)
        loss, top1, topk = (self.sums.cpu() / n).tolist()
        per_class = [confusion[c, c].item() / rows[c].item() if rows[c] else None for c in range(self.num_classes)]
        return {
            "top1": top1,
            "top5": topk,
            "loss": loss,
            "count": count,
            "per_class_top1": per_class,
            "confusion": confusion,
        }


def accuracy_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> dict:
    """Scores ``(N, C)`` and labels ``(N,)`` → :meth:`Accuracy.result` (top-1, top-5, per-class, confusion)."""
    if scores.ndim != 2:
        raise ValueError(f"need scores (N, C) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    metrics = Accuracy(scores.shape[1] if num_classes is None else num_classes, scores.device)
    return metrics.update(scores, labels.to(scores.device)).result()
