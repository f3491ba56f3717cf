"""Used by notebook 07's exercises: the mean reciprocal rank of raw embeddings (07.1), the calibration error with
bins of equal mass (07.2), and a prediction: what does a video played backwards retrieve (07.3)?"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .judging import Answer, Exercise, Mistake, Prediction, between, is_number, number_hint

# --------------------------------------------------------------------------- 07.1 mean reciprocal rank


def _mrr_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, d, classes in [(40, 8, 4), (30, 16, 10), (12, 4, 3)]:
        scale = torch.randn(n, 1, generator=g).exp()  # raw [CLS] states: lengths that differ a lot
        emb = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
        labels = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]  # every label at least twice
        cases.append((emb, labels))
    # classes of unequal size (10, 5, 3 and 2 videos), so that a mean per class is not the mean over the queries
    emb = torch.randn(20, 6, generator=g, dtype=torch.float64) * torch.randn(20, 1, generator=g).exp()
    cases.append((emb, torch.tensor([0] * 10 + [1] * 5 + [2] * 3 + [3] * 2)[torch.randperm(20, generator=g)]))
    return cases


def _similarity(emb, how="cosine", self_too=False):
    """(N, N) how near each video is to each other one (larger: nearer), itself at −inf unless ``self_too``."""
    if how == "cosine":
        sim = F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T
    elif how == "columns":  # normalised over the wrong axis
        sim = F.normalize(emb, dim=0) @ F.normalize(emb, dim=0).T
    elif how == "dot":
        sim = emb @ emb.T
    else:
        sim = -torch.cdist(emb, emb)
    return sim if self_too else sim.fill_diagonal_(-math.inf)


def _relevant_ranks(emb, labels, **kw):
    """Per query, the ranks 1, 2, … (nearest first) at which videos of its label come: a list of (R_q,) tensors."""
    order = _similarity(emb, **kw).argsort(dim=1, descending=True)
    n = len(labels)
    ranked = order if kw.get("self_too") else order[:, : n - 1]  # itself last (−inf): left out
    hits = labels[ranked] == labels[:, None]  # (N, N−1)
    return [torch.nonzero(row).flatten() + 1 for row in hits]


def _mrr(emb, labels, pick=lambda r: r[0], rank_from=1, **kw):
    return torch.stack([1 / (pick(r) - 1 + rank_from).double() for r in _relevant_ranks(emb, labels, **kw)]).mean()


def _mrr_reference(emb, labels):
    return _mrr(emb, labels).item()


def _mrr_compare(got, want: float, args: tuple) -> str | None:
    how = (
        "rank the other videos by cosine similarity to the query (the embeddings are not unit length), nearest "
        "first; the query scores 1 / the rank of the first one with its label; average over the queries"
    )
    return number_hint(got, want, f"mean_reciprocal_rank(…) on {len(args[1])} videos", how)


def _mrr_far(emb, labels):
    sim = _similarity(emb).fill_diagonal_(math.inf)  # least similar first, itself (now +inf) last
    order = sim.argsort(dim=1)[:, : len(labels) - 1]
    hits = labels[order] == labels[:, None]
    return torch.stack([1 / (torch.nonzero(row).flatten()[0] + 1).double() for row in hits]).mean()


def _mrr_self_at_zero(emb, labels):
    """Itself "excluded" by a similarity of 0: it still outranks every video with a negative cosine, and counts."""
    sim = _similarity(emb, self_too=True).fill_diagonal_(0.0)
    hits = labels[sim.argsort(dim=1, descending=True)] == labels[:, None]  # (N, N), itself among them
    return torch.stack([1 / (torch.nonzero(row).flatten()[0] + 1).double() for row in hits]).mean()


def _mrr_per_class(emb, labels):
    rr = torch.stack([1 / r[0].double() for r in _relevant_ranks(emb, labels)])
    return torch.stack([rr[labels == c].mean() for c in labels.unique()]).mean()


MRR_MISTAKES = (
    Mistake(
        "every query finds itself first, so every reciprocal rank is 1: a query is not its own neighbour",
        lambda emb, labels: _mrr(emb, labels, self_too=True),
    ),
    Mistake(
        "ranked by the dot product: these embeddings are not unit length, and a long vector wins every dot product; "
        "cosine similarity divides by both lengths",
        lambda emb, labels: _mrr(emb, labels, how="dot"),
    ),
    Mistake(
        "ranked by Euclidean distance: with vectors of different lengths the nearest point is not the smallest "
        "angle; the exercise ranks by cosine similarity",
        lambda emb, labels: _mrr(emb, labels, how="distance"),
    ),
    Mistake(
        "ranked from the least similar: the nearest video is the one with the *largest* cosine similarity",
        lambda emb, labels: _mrr_far(emb, labels),
    ),
    Mistake(
        "a rank counted from 0 divides by zero when the nearest other video has the label: ranks start at 1",
        lambda emb, labels: _mrr(emb, labels, rank_from=0),
    ),
    Mistake(
        "that is the reciprocal rank of the *last* video with the query's label: MRR takes the first",
        lambda emb, labels: _mrr(emb, labels, pick=lambda r: r[-1]),
    ),
    Mistake(
        "that averages 1 / rank over every video with the query's label: MRR takes only the first one",
        lambda emb, labels: torch.stack([(1 / r.double()).mean() for r in _relevant_ranks(emb, labels)]).mean(),
    ),
    Mistake(
        "that is recall@1 (a query scores 1 or 0): a query whose first match comes at rank r scores 1 / r",
        lambda emb, labels: torch.stack([(r[0] == 1).double() for r in _relevant_ranks(emb, labels)]).mean(),
    ),
    Mistake(
        "averaged per class, then over the classes: MRR is the mean over the queries, so a large class counts more",
        _mrr_per_class,
    ),
    Mistake(
        "the query's own similarity was set to 0, but a cosine similarity goes down to −1: the query still outranks "
        "the videos at a negative cosine and finds itself; set it to −inf, or leave it out",
        _mrr_self_at_zero,
    ),
    Mistake(
        "normalised over the wrong axis: each video (a row) is divided by its own length, dim=1",
        lambda emb, labels: _mrr(emb, labels, how="columns"),
    ),
)


MEAN_RECIPROCAL_RANK = Exercise(
    "07.1",
    "mean_reciprocal_rank(embeddings, labels) → fraction",
    _mrr_cases,
    _mrr_reference,
    _mrr_compare,
    MRR_MISTAKES,
)

# ------------------------------------------------------------------- 07.2 the calibration error, equal-mass bins


def _ece_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(7)
    cases = []
    for n, classes, bins, sharp in [(60, 4, 5, 2.0), (120, 8, 10, 2.5), (40, 3, 5, 1.0)]:
        logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * sharp  # over-confident, as trained nets
        labels = torch.randint(classes, (n,), generator=g)
        conf = logits.softmax(dim=1).amax(dim=1)
        odds = torch.where(conf < conf.median(), 0.95, 0.5)  # unsure answers mostly right, sure ones half right
        labels = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < odds, logits.argmax(1), labels)
        cases.append((logits.softmax(dim=1), labels, bins))  # n divisible by bins: every bin holds n / bins videos
    return cases


def _bins_by_mass(conf: torch.Tensor, bins: int) -> list[torch.Tensor]:
    """The videos' indices, sorted by confidence, cut into ``bins`` runs of equal size."""
    return list(conf.argsort().chunk(bins))


def _ece(probs, labels, bins, split=_bins_by_mass, conf_of=None, gap=lambda a, c: (a - c).abs(), total="weighted"):
    conf, pred = probs.max(dim=1)
    if conf_of is not None:
        conf = conf_of(probs, labels)
    right = (pred == labels).double()
    parts = [(len(b), gap(right[b].mean(), conf[b].mean())) for b in split(conf, bins) if len(b)]
    if total == "max":
        return torch.stack([g for _, g in parts]).max()
    if total == "sum":
        return torch.stack([g for _, g in parts]).sum()
    return sum(n / len(probs) * g for n, g in parts)


def _ece_reference(probs, labels, bins):
    return _ece(probs, labels, bins).item()


def _ece_compare(got, want: float, args: tuple) -> str | None:
    how = (
        "sort the videos by confidence (their largest probability), cut them into `bins` groups of equal size, "
        "and add up each group's |accuracy − mean confidence| weighted by its share of the videos"
    )
    return number_hint(got, want, f"adaptive_ece(…) on {len(args[1])} videos and {args[2]} bins", how)


def _equal_width(conf, bins):
    which = torch.bucketize(conf, torch.linspace(0, 1, bins + 1, dtype=conf.dtype)[1:-1])
    return [torch.nonzero(which == b).flatten() for b in range(bins)]


def _ece_unsorted_right(probs, labels, bins):
    conf, pred = probs.max(dim=1)
    right = (pred == labels).double()  # in the videos' order, while the confidences are sorted
    parts = zip(conf.sort().values.chunk(bins), right.chunk(bins))
    return sum(len(c) / len(probs) * (r.mean() - c.mean()).abs() for c, r in parts)


EQUAL_MASS_MISTAKES = (
    Mistake(
        "those are equal-*width* bins, the ECE of section 2: here every bin holds the same number of videos — "
        "sort them by confidence and cut the sorted list into equal parts",
        lambda p, y, b: _ece(p, y, b, split=_equal_width),
    ),
    Mistake(
        "the videos were cut into groups in the order they came, not sorted by confidence first",
        lambda p, y, b: _ece(p, y, b, split=lambda c, k: list(torch.arange(len(c)).chunk(k))),
    ),
    Mistake(
        "a gap without its absolute value lets over- and under-confident bins cancel: take |accuracy − confidence|",
        lambda p, y, b: _ece(p, y, b, gap=lambda a, c: a - c),
    ),
    Mistake(
        "squared gaps (a Brier-like error): the calibration error adds |accuracy − confidence|, not its square",
        lambda p, y, b: _ece(p, y, b, gap=lambda a, c: (a - c) ** 2),
    ),
    Mistake(
        "that is the *maximum* calibration error (the worst bin): ECE is the weighted sum over the bins",
        lambda p, y, b: _ece(p, y, b, total="max"),
    ),
    Mistake(
        "the confidence is the model's largest probability (what it answers), not the probability of the true class",
        lambda p, y, b: _ece(p, y, b, conf_of=lambda probs, labels: probs[torch.arange(len(labels)), labels]),
    ),
    Mistake(
        "the bins were cut by the confidence of the *least* likely class: a video's confidence is its largest "
        "probability",
        lambda p, y, b: _ece(p, y, b, conf_of=lambda probs, labels: probs.min(dim=1).values),
    ),
    Mistake(
        "each bin's gap added as it is, whatever its size: weight it by its share of the videos, |B_b| / N",
        lambda p, y, b: _ece(p, y, b, total="sum"),
    ),
    Mistake(
        "the confidences were sorted but the answers' rightness was not: sort both by the same order (argsort of the "
        "confidences), so that each bin's accuracy is of its own videos",
        lambda p, y, b: _ece_unsorted_right(p, y, b),
    ),
    Mistake(
        "groups of `bins` videos each: the exercise asks for `bins` groups, of N / bins videos each",
        lambda p, y, b: _ece(p, y, b, split=lambda c, k: list(c.argsort().split(k))),
    ),
    Mistake(
        "each video's own |right − confidence|, averaged: the gap is taken per bin, between the bin's accuracy and "
        "its mean confidence, so that over- and under-confident videos in a bin can balance",
        lambda p, y, b: _ece(p, y, len(p)),
    ),
)


ADAPTIVE_ECE = Exercise(
    "07.2",
    "adaptive_ece(probs, labels, bins) → calibration error",
    _ece_cases,
    _ece_reference,
    _ece_compare,
    EQUAL_MASS_MISTAKES,
)


# --------------------------------------------------------------------------- 07.3 a video played backwards, as a query

REVERSED_QUERY = Prediction(
    "07.3",
    "a fraction between 0 and 1",
    is_number,
    (
        Answer(
            between(0.0, 0.1),
            "the trained model reads the order of the frames: a left_to_right video played backwards *is* a "
            "right_to_left video to it, so its nearest neighbour is of the twin class nearly every time",
            0.0,
            right=True,
        ),
        Answer(
            between(0.1, 0.3),
            "that is about chance (23 of 191 others share a query's class), as for a model that is lost; this one "
            "is not lost: it knows what a backwards clip looks like to it",
            0.125,
        ),
        Answer(
            between(0.3, 0.7),
            "a coin toss between the class and its twin is how the order-blind model sees direction; the trained "
            "model sees it clearly — which direction does a reversed clip show it?",
            0.5,
        ),
        Answer(
            between(0.7, 1.0),
            "the same frames, but not in the same order: the trained model's embedding depends on the order "
            "through the time embedding, and a reversed video shows the twin's motion",
            1.0,
        ),
        Answer(lambda x: True, "recall@1 is a fraction of the queries, between 0 and 1", -1),
    ),
)

EXERCISES = (MEAN_RECIPROCAL_RANK, ADAPTIVE_ECE, REVERSED_QUERY)
