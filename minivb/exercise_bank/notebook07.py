"""Used by notebook 07's exercises: the mean reciprocal rank of raw embeddings (07.1), a segment's scatter under a
Gaussian kernel (07.2), and a prediction: what does a video played backwards retrieve (07.3)?"""

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
    return cases


def _similarity(emb, how="cosine", self_too=False):
    """(N, N) how near each video is to each other one (larger: nearer), itself at −inf unless ``self_too``."""
    if how == "cosine":
        sim = F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T
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
)


MEAN_RECIPROCAL_RANK = Exercise(
    "07.1",
    "mean_reciprocal_rank(embeddings, labels) → fraction",
    _mrr_cases,
    _mrr_reference,
    _mrr_compare,
    MRR_MISTAKES,
)

# --------------------------------------------------------------------------- 07.2 a segment's scatter, Gaussian kernel


def _scatter_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(n, d, generator=g, dtype=torch.float64), s) for n, d, s in [(5, 3, 1.5), (12, 8, 2.5), (4, 2, 0.7)]
    ]


def _kernel(E, sigma, *, power=2, two=True, sign=-1, sigma_power=2):
    d = torch.cdist(E, E) ** power  # (n, n)
    return torch.exp(sign * d / ((2 if two else 1) * sigma**sigma_power))


def _scatter(K, *, norm=None, per=1):
    n = K.shape[0]
    return (K.trace() - K.sum() / (n if norm is None else norm)) / per


def _scatter_reference(E, sigma):
    return _scatter(_kernel(E, sigma)).item()  # Σ_w K_ww − (1/n) Σ_vw K_vw, K_vw = exp(−‖e_v − e_w‖² / 2σ²)


def _scatter_compare(got, want: float, args: tuple) -> str | None:
    E, sigma = args
    how = (
        "build K_vw = exp(−‖e_v − e_w‖² / (2σ²)) for every pair, then the scatter from it exactly as from the Gram "
        "matrix: Σ_w K_ww − (1/n) Σ_vw K_vw"
    )
    return number_hint(got, want, f"gaussian_scatter({len(E)} rows, σ = {sigma})", how)


SCATTER_MISTAKES = (
    Mistake(
        "that is the scatter under the dot product (the Gram matrix E Eᵀ): here the kernel is Gaussian, "
        "K_vw = exp(−‖e_v − e_w‖² / (2σ²))",
        lambda E, s: _scatter(E @ E.T).item(),
    ),
    Mistake(
        "the distance is not squared: the Gaussian kernel is exp(−‖e_v − e_w‖² / (2σ²))",
        lambda E, s: _scatter(_kernel(E, s, power=1)).item(),
    ),
    Mistake(
        "the 2 is missing: the Gaussian kernel divides the squared distance by 2σ²",
        lambda E, s: _scatter(_kernel(E, s, two=False)).item(),
    ),
    Mistake(
        "σ is not squared: the Gaussian kernel divides the squared distance by 2σ²",
        lambda E, s: _scatter(_kernel(E, s, sigma_power=1)).item(),
    ),
    Mistake(
        "the exponent's sign: a Gaussian kernel falls with distance, exp(−‖e_v − e_w‖² / (2σ²)) ≤ 1",
        lambda E, s: _scatter(_kernel(E, s, sign=1)).item(),
    ),
    Mistake(
        "the 1/n is missing: ‖x_w − mean‖² expands into K_ww − (2/n) Σ_v K_wv + (1/n²) Σ_uv K_uv; sum over w",
        lambda E, s: _scatter(_kernel(E, s), norm=1).item(),
    ),
    Mistake(
        "divided by n² instead of n: summed over the n rows w, the (1/n²) Σ_uv K_uv term counts n times",
        lambda E, s: _scatter(_kernel(E, s), norm=len(E) ** 2).item(),
    ),
    Mistake(
        "that is the mean squared distance to the mean: the scatter is the sum over the rows, Σ_w ‖φ(e_w) − mean‖²",
        lambda E, s: _scatter(_kernel(E, s), per=len(E)).item(),
    ),
)

GAUSSIAN_SCATTER = Exercise(
    "07.2",
    "gaussian_scatter(E, sigma) → a number",
    _scatter_cases,
    _scatter_reference,
    _scatter_compare,
    SCATTER_MISTAKES,
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

EXERCISES = (MEAN_RECIPROCAL_RANK, GAUSSIAN_SCATTER, REVERSED_QUERY)
