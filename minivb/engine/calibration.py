"""A model that knows when it does not know: temperature scaling, calibration error, out-of-distribution scores.

A classifier's softmax is a confidence only if it is *calibrated*: of the videos it answers with 80%, about 80%
should be right. Networks trained with cross-entropy are usually over-confident, and they answer one of their
classes for any input, however far it is from what they were trained on. Two tools, both fitted on the
validation set after training, with the weights left as they are:

**Temperature scaling** (Guo et al., 2017): one scalar ``T > 0`` divides every logit before the softmax::

    p_c(z; T) = exp(z_c / T) / Σ_k exp(z_k / T)          (T > 1 softens, T < 1 sharpens; argmax unchanged)
    NLL(T)    = −1/N · Σ_i log p_{y_i}(z_i; T)            T = argmin NLL(T), searched over log T

**Expected calibration error** over ``bins`` equal-width bins of the confidence ``conf_i = max_c p_c``
(``B_b`` = the videos whose confidence falls in ``((b−1)/bins, b/bins]``)::

    ECE = Σ_b |B_b| / N · |acc(B_b) − conf(B_b)|        acc = fraction right, conf = mean confidence in the bin

**Out-of-distribution scores** (higher = more in-distribution), from the logits ``z`` of one view::

    msp       = max_c p_c(z; T)                          maximum softmax probability (Hendrycks & Gimpel, 2017)
    max_logit = max_c z_c                                (Hendrycks et al., 2022)
    energy    = T · log Σ_c exp(z_c / T)                 the negative free energy (Liu et al., 2020)

**Embedding-space scores** (higher = more in-distribution), from the ``[CLS]`` embedding ``x`` of one view (what
the output layer reads: ``VideoBERT.embed``), fitted on the *training* set's embeddings (:func:`fit_embeddings`)::

    mahalanobis = −min_c (x − μ_c)ᵀ Σ_λ⁻¹ (x − μ_c)    class means μ_c, one shared shrunk covariance (Lee et al., 2018)
    knn         = 1/k · Σ_{j ≤ k} cos(x, b_(j))          the k most similar training embeddings (Sun et al., 2022)

A video seen as several views gets the *mean of its views' scores* (:func:`video_scores`,
:meth:`EmbeddingFit.scores`), and its probabilities are the mean of its views' calibrated softmaxes
(:func:`calibrated_probs`). A video is rejected ("none of these classes") when its score is below a threshold
chosen on the validation set so that a share ``acceptance`` of the in-distribution videos passes
(:func:`threshold_for`). :func:`auroc` measures how well a score separates in- from out-of-distribution videos,
whatever the threshold.

Everything here takes logits (or embeddings) as tensors (or anything ``torch.as_tensor`` takes), computes in
float64, and refuses NaN or infinite values with a ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

T_RANGE = (0.01, 100.0)  # where fit_temperature searches T
SCORES = ("msp", "max_logit", "energy")  # the candidate OOD scores of ood_scores, higher = more in-distribution
EMBEDDING_SCORES = ("mahalanobis", "knn")  # the candidates of EmbeddingFit.scores: from [CLS] embeddings, not logits
SHRINKAGE = 0.1  # λ of fit_mahalanobis: the share of the covariance replaced by its mean variance times I


# --------------------------------------------------------------------------- checks


def _finite(name: str, values, ndim: tuple[int, ...]) -> torch.Tensor:
    """``values`` as a float64 tensor with one of ``ndim`` dimensions, not empty and finite, or ``ValueError``."""
    t = torch.as_tensor(values, dtype=torch.float64).detach().cpu()  # (a list straight to float64, not via float32)
    if t.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite value{'s' * (bad > 1)}")
    return t


def _labels(labels, n: int, classes: int) -> torch.Tensor:
    """Class indices ``(n,)`` in ``0 … classes−1``, or ``ValueError``."""
    y = torch.as_tensor(labels).detach().to("cpu")
    if y.shape != (n,) or y.is_floating_point() or y.is_complex():
        raise ValueError(f"labels must be {n} class indices (integers), got {y.dtype} of shape {tuple(y.shape)}")
    if n and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must lie in 0 … {classes - 1}, got {int(y.min())} … {int(y.max())}")
    return y.long()


def _temperature(T: float) -> float:
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"the temperature must be a finite number > 0, got {T!r}")
    return float(T)


# --------------------------------------------------------------------------- temperature


def calibrated_probs(logits, T: float = 1.0) -> torch.Tensor:
    """Logits ``(N, C)`` or ``(N, V, C)`` (V views per video) → probabilities ``(N, C)``: softmax(z / T) of every
    view, averaged over the views."""
    z = _finite("logits", logits, (2, 3))
    p = (z / _temperature(T)).softmax(dim=-1)  # (N, C) or (N, V, C)
    return p.mean(dim=1) if p.ndim == 3 else p


def nll(logits, labels, T: float = 1.0) -> float:
    """NLL(T) = −1/N · Σ_i log p_{y_i}: the mean negative log-likelihood of the labels under
    :func:`calibrated_probs` (for one view, ``F.cross_entropy(z / T, y)``)."""
    p = calibrated_probs(logits, T)  # (N, C)
    y = _labels(labels, len(p), p.shape[1])
    return -p[torch.arange(len(p)), y].clamp_min(torch.finfo(p.dtype).tiny).log().mean().item()


def fit_temperature(logits, labels, grid: int = 41, tol: float = 1e-7) -> float:
    """The ``T`` in :data:`T_RANGE` that minimizes :func:`nll` on ``logits (N, C)`` or ``(N, V, C)`` and
    ``labels (N,)``. Deterministic: the best of ``grid`` values of log T evenly spaced over the range, then a
    golden-section search between its neighbours down to ``tol`` in log T.

    With no mistake to pay for (every prediction right) the NLL falls as T → 0: the result is then the range's
    lower end, 0.01 — a validation set without errors cannot say how sharp the model may be. One class: 1.
    """
    z = _finite("logits", logits, (2, 3))
    y = _labels(labels, len(z), z.shape[-1])
    if z.shape[-1] == 1:
        return 1.0  # one class: every T gives probability 1, nothing to calibrate

    def f(u: float) -> float:  # NLL as a function of u = log T
        return nll(z, y, math.exp(u))

    lo, hi = (math.log(t) for t in T_RANGE)
    us = [lo + (hi - lo) * i / (grid - 1) for i in range(grid)]
    best = min(range(grid), key=lambda i: f(us[i]))  # the first of equal values: deterministic
    a, b = us[max(best - 1, 0)], us[min(best + 1, grid - 1)]  # the minimum lies between the best's neighbours
    g = (math.sqrt(5) - 1) / 2  # golden section: each step keeps 0.618 of the bracket
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:  # the minimum is in [a, d]
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:  # in [c, b]
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    u = min((us[best], a, b, (a + b) / 2), key=f)  # never worse than the grid's best
    return math.exp(u)


# --------------------------------------------------------------------------- calibration error


class Reliability:
    """Per-bin accuracy and confidence of probabilities ``(N, C)`` against ``labels (N,)``: the data of a
    reliability diagram. Bin ``b`` (0-based) holds the confidences in ``(edges[b], edges[b+1]]``.

    ``edges (bins+1,)``, ``counts (bins,)``, ``accuracy`` and ``confidence (bins,)`` (NaN in an empty bin),
    ``ece`` (:func:`expected_calibration_error`) and ``accuracy_all`` / ``confidence_all`` over every video.
    """

    def __init__(self, probs, labels, bins: int = 15):
        p = _finite("probs", probs, (2,))
        if (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones(len(p), dtype=p.dtype), atol=1e-4):
            raise ValueError("probs must be probabilities: non-negative rows that sum to 1")
        if not (isinstance(bins, int) and bins >= 1):
            raise ValueError(f"bins must be an integer ≥ 1, got {bins!r}")
        y = _labels(labels, len(p), p.shape[1])
        conf, pred = p.max(dim=1)  # (N,), (N,): ties go to the lower class index, as argmax does
        right = (pred == y).double()  # (N,)
        self.edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)  # (bins+1,)
        which = torch.bucketize(conf, self.edges[1:-1], right=False)  # (N,) bin b: edges[b] < conf ≤ edges[b+1]
        self.counts = torch.bincount(which, minlength=bins)  # (bins,)
        n = self.counts.double()
        nan = torch.full((bins,), math.nan, dtype=torch.float64)
        self.accuracy = torch.where(n > 0, torch.zeros(bins).double().index_add(0, which, right) / n, nan)
        self.confidence = torch.where(n > 0, torch.zeros(bins).double().index_add(0, which, conf) / n, nan)
        gaps = (self.accuracy - self.confidence).abs().nan_to_num(0.0)  # (bins,), 0 for an empty bin
        self.ece = (n / len(p) * gaps).sum().item()
        self.accuracy_all, self.confidence_all = right.mean().item(), conf.mean().item()

    def to_dict(self) -> dict:
        """Plain numbers for JSON (``None`` for an empty bin's accuracy and confidence)."""

        def plain(t: torch.Tensor) -> list:
            return [None if math.isnan(v) else v for v in t.tolist()]

        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "accuracy": plain(self.accuracy),
            "confidence": plain(self.confidence),
            "ece": self.ece,
        }


def reliability(probs, labels, bins: int = 15) -> Reliability:
    """The reliability diagram's data (:class:`Reliability`) of probabilities ``(N, C)`` and ``labels (N,)``."""
    return Reliability(probs, labels, bins)


def expected_calibration_error(probs, labels, bins: int = 15) -> float:
    """ECE = Σ_b |B_b| / N · |acc(B_b) − conf(B_b)| over ``bins`` equal-width confidence bins; ``probs (N, C)``,
    ``labels (N,)``. 0 is perfectly calibrated; 1 − accuracy for a model always 100% sure."""
    return Reliability(probs, labels, bins).ece


def plot_reliability(rel: Reliability, ax=None, title: str | None = None, label: str = "model"):
    """Draw a reliability diagram → the matplotlib Axes: each bin's accuracy as a bar over its confidence range,
    the gap to the bin's mean confidence in red, the diagonal of perfect calibration, the ECE in the legend.
    Without ``ax`` a new Figure (Agg canvas, no pyplot) is made: ``ax.figure.savefig(...)``."""
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 5), tight_layout=True)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
    left, width = rel.edges[:-1].numpy(), (rel.edges[1:] - rel.edges[:-1]).numpy()  # (bins,)
    full = rel.counts.numpy() > 0
    acc, conf = rel.accuracy.numpy()[full], rel.confidence.numpy()[full]
    ax.bar(left[full], acc, width=width[full], align="edge", color="tab:blue", edgecolor="black", label=label)
    gap = dict(color="tab:red", alpha=0.3, edgecolor="tab:red", label="gap to the mean confidence")
    ax.bar(left[full], conf - acc, bottom=acc, width=width[full], align="edge", **gap)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")
    ax.set_title(title or f"reliability: ECE {100 * rel.ece:.1f}% ({int(rel.counts.sum())} videos)")
    ax.legend(loc="upper left", fontsize=8)
    return ax


# --------------------------------------------------------------------------- out-of-distribution scores


def ood_scores(logits, T: float = 1.0) -> dict[str, torch.Tensor]:
    """Logits ``(…, C)`` → the candidate scores ``{name: (…)}`` of :data:`SCORES`, higher = more in-distribution:
    ``msp`` = max softmax(z / T), ``max_logit`` = max z, ``energy`` = T · logsumexp(z / T)."""
    z = _finite("logits", logits, (1, 2, 3))
    T = _temperature(T)
    return {
        "msp": (z / T).softmax(dim=-1).amax(dim=-1),
        "max_logit": z.amax(dim=-1),
        "energy": T * (z / T).logsumexp(dim=-1),
    }


def video_scores(logits, T: float = 1.0) -> dict[str, torch.Tensor]:
    """Logits ``(N, V, C)`` of V views per video → each score of :func:`ood_scores` averaged over the views,
    ``{name: (N,)}``."""
    z = _finite("logits", logits, (3,))
    return {name: s.mean(dim=1) for name, s in ood_scores(z, T).items()}


def threshold_for(scores, acceptance: float = 0.95) -> float:
    """The threshold ``t`` that accepts (score ≥ t) at least ``acceptance`` of ``scores (N,)`` and as few more as
    ties allow: the ⌈acceptance · N⌉-th highest score."""
    s = _finite("scores", scores, (1,))
    if not (isinstance(acceptance, (int, float)) and 0 < acceptance <= 1):
        raise ValueError(f"acceptance must be in (0, 1], got {acceptance!r}")
    keep = max(1, math.ceil(round(acceptance * len(s), 9)))  # (round: 0.95 · 100 is 95.00000000000001)
    return s.sort(descending=True).values[keep - 1].item()


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of telling ``in_scores (N,)`` from ``out_scores (M,)`` (higher = in):
    P(s_in > s_out) + ½ · P(s_in = s_out) over all pairs, from ranks (Mann–Whitney U; ties get their mean rank).
    1: every in-distribution video scores above every other; 0.5: no better than chance."""
    a, b = _finite("in_scores", in_scores, (1,)), _finite("out_scores", out_scores, (1,))
    both = torch.cat([a, b])  # (N + M,)
    values, group, count = torch.unique(both, sorted=True, return_inverse=True, return_counts=True)
    first = count.cumsum(0) - count  # (G,) 0-based position of each group of equal values
    rank = (first + (count + 1) / 2)[group]  # (N + M,) 1-based mean rank
    u = rank[: len(a)].sum().item() - len(a) * (len(a) + 1) / 2  # pairs won by the in-distribution side, ties ½
    return u / (len(a) * len(b))


# --------------------------------------------------------------------------- embedding-space scores


def fit_mahalanobis(features, labels, shrinkage: float = SHRINKAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Training embeddings ``(N, D)`` and their labels ``(N,)`` → ``(class means (C, D), precision (D, D))`` of a
    Gaussian per class with one shared covariance (Lee et al., 2018), ``C`` = the classes that occur::

        μ_c = mean of the x_i with y_i = c
        Σ̂   = 1/N · Σ_i (x_i − μ_{y_i}) (x_i − μ_{y_i})ᵀ             the shared (within-class) covariance
        Σ_λ = (1 − λ) · Σ̂ + λ · (tr Σ̂ / D) · I                      shrinkage λ = ``shrinkage`` in (0, 1]
        precision = Σ_λ⁻¹

    The shrinkage keeps Σ_λ invertible where Σ̂ is not (fewer samples than dimensions, one sample per class): its
    smallest eigenvalue is at least λ · tr Σ̂ / D (λ if Σ̂ = 0).
    """
    x = _finite("features", features, (2,))  # (N, D)
    y = _labels(labels, len(x), classes=math.inf)  # (N,) any class index ≥ 0
    if not (isinstance(shrinkage, (int, float)) and 0 < shrinkage <= 1):
        raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage!r}")
    classes = y.unique()  # (C,) sorted
    means = torch.stack([x[y == c].mean(dim=0) for c in classes])  # (C, D)
    centred = x - means[torch.searchsorted(classes, y)]  # (N, D): x_i − μ_{y_i}
    cov = centred.T @ centred / len(x)  # (D, D)
    D = x.shape[1]
    scale = cov.trace().item() / D or 1.0  # the mean variance; 1 where every sample is its class mean
    shrunk = (1 - shrinkage) * cov + shrinkage * scale * torch.eye(D, dtype=cov.dtype)  # (D, D)
    precision = torch.linalg.inv(shrunk)
    return means, (precision + precision.T) / 2  # (symmetric up to rounding)


def mahalanobis_scores(features, means, precision) -> torch.Tensor:
    """Embeddings ``(…, D)`` → ``−min_c (x − μ_c)ᵀ Σ_λ⁻¹ (x − μ_c)`` ``(…)``: minus the squared Mahalanobis distance
    to the nearest class mean (:func:`fit_mahalanobis`); higher = more in-distribution, 0 at a class mean."""
    x = _finite("features", features, (1, 2, 3))
    mu, P = _finite("means", means, (2,)), _finite("precision", precision, (2,))  # (C, D), (D, D)
    if not (x.shape[-1] == mu.shape[1] == P.shape[0] == P.shape[1]):
        raise ValueError(f"features {tuple(x.shape)}, means {tuple(mu.shape)}, precision {tuple(P.shape)} disagree")
    diff = x[..., None, :] - mu  # (…, C, D)
    d2 = ((diff @ P) * diff).sum(dim=-1)  # (…, C): (x − μ_c)ᵀ P (x − μ_c)
    return -d2.amin(dim=-1)


def knn_scores(features, bank, k: int = 1) -> torch.Tensor:
    """Embeddings ``(…, D)`` → the mean cosine similarity to their ``k`` nearest training embeddings ``bank (M, D)``
    ``(…)`` (Sun et al., 2022: nearest neighbours of L2-normalised features)::

        knn(x) = 1/k · Σ_{j ≤ k} cos(x, b_(j))       cos(x, b) = xᵀb / (‖x‖ ‖b‖), b_(1), b_(2), … most similar first

    In [−1, 1], higher = more in-distribution; 1 = the direction of a training embedding. (For unit vectors
    ‖x̂ − b̂‖² = 2 − 2 cos: the nearest by cosine are the nearest by distance.)"""
    x, b = _finite("features", features, (1, 2, 3)), _finite("bank", bank, (2,))  # (…, D), (M, D)
    if x.shape[-1] != b.shape[1]:
        raise ValueError(f"features have {x.shape[-1]} dimensions, the bank {b.shape[1]}")
    if not (isinstance(k, int) and 1 <= k <= len(b)):
        raise ValueError(f"k must be an integer in 1 … {len(b)} (the bank's size), got {k!r}")
    sims = F.normalize(x, dim=-1) @ F.normalize(b, dim=1).T  # (…, M)
    return sims.topk(k, dim=-1).values.mean(dim=-1)


@dataclass(frozen=True)
class EmbeddingFit:
    """What the embedding-space scores keep of the training set (:func:`fit_embeddings`): ``means (C, D)`` and
    ``precision (D, D)`` for :func:`mahalanobis_scores`, ``bank (M, D)`` (every training view) for
    :func:`knn_scores`."""

    means: torch.Tensor
    precision: torch.Tensor
    bank: torch.Tensor

    def scores(self, features, k: int = 1) -> dict[str, torch.Tensor]:
        """Embeddings ``(N, V, D)`` of V views per video → ``{name: (N,)}`` of :data:`EMBEDDING_SCORES`, each view's
        score averaged over the views (as :func:`video_scores` does)."""
        x = _finite("features", features, (3,))
        return {
            "mahalanobis": mahalanobis_scores(x, self.means, self.precision).mean(dim=1),
            "knn": knn_scores(x, self.bank, k).mean(dim=1),
        }


def fit_embeddings(features, labels, shrinkage: float = SHRINKAGE) -> EmbeddingFit:
    """Training embeddings ``(N, V, D)`` (or ``(N, D)``) and labels ``(N,)`` → :class:`EmbeddingFit`: every view
    is a training sample of its video's class."""
    x = _finite("features", features, (2, 3))
    if x.ndim == 3:
        N, V = x.shape[:2]
        y = _labels(labels, N, classes=math.inf).repeat_interleave(V)  # (N·V,) each video's label V times
        x = x.flatten(0, 1)  # (N·V, D)
    else:
        y = labels
    return EmbeddingFit(*fit_mahalanobis(x, y, shrinkage), x)
