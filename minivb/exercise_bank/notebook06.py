"""Used by notebook 06's exercises: label smoothing toward a prior, by hand (06.1), the top-k accuracy of every k
(06.2), and a prediction: how sure is the trained model (06.3)?"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .judging import Answer, Exercise, Forbidden, Mistake, Prediction, between, is_number, number_hint, tensor_hint

# --------------------------------------------------------------------------- 06.1 smoothing toward a prior


def _smooth_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for B, C, eps in [(4, 8, 0.1), (16, 40, 0.2), (3, 5, 0.0), (2, 3, 0.5)]:
        logits, target = torch.randn(B, C, generator=g) * 2, torch.randint(0, C, (B,), generator=g)
        prior = (torch.randn(C, generator=g) * 1.5).softmax(0)  # class frequencies, say: (C,), sums to 1
        cases.append((logits, target, eps, prior))
    return cases


def _smooth_reference(logits, target, eps, prior):
    q = (1 - eps) * F.one_hot(target, logits.shape[1]) + eps * prior  # (B, C): the smoothed targets
    return F.cross_entropy(logits, q)  # PyTorch's own cross-entropy against probability targets


def _smooth_compare(got, want, args: tuple) -> str | None:
    logits, _, eps, _ = args
    how = (
        "the target puts 1 − ε on the true class and spreads ε over all classes in proportion to the prior (the "
        "true one too); the loss is −Σ_c q_c log p_c, averaged over the batch"
    )
    return number_hint(got, want.item(), f"with {logits.shape[1]} classes and ε = {eps}, your loss", how)


def _smoothed(logits, target, eps, prior, *, q=None, log_p=None, reduce=torch.mean, sign=-1):
    """The loss for targets ``q`` and log-probabilities ``log_p`` (the right ones by default), reduced over the
    batch: the right answer, and each way of getting it wrong."""
    onehot = F.one_hot(target, logits.shape[1]).double()
    q = (1 - eps) * onehot + eps * prior if q is None else q
    log_p = logits.log_softmax(dim=1) if log_p is None else log_p
    return reduce(sign * (q * log_p).sum(dim=1))


SMOOTH_MISTAKES = (
    Mistake(
        "ε is spread evenly over the C classes (ε / C each): here it is spread in proportion to the prior, ε · prior_c",
        lambda lg, t, eps, prior: _smoothed(
            lg, t, eps, prior, q=(1 - eps) * F.one_hot(t, lg.shape[1]) + eps / lg.shape[1]
        ),
    ),
    Mistake(
        "no smoothing: with ε > 0 the target moves ε of its mass off the true class, onto the classes in proportion "
        "to the prior",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, q=F.one_hot(t, lg.shape[1])),
    ),
    Mistake(
        "ε · π_c is divided by C too: the prior already sums to 1 — it takes the place of section 3's 1/C",
        lambda lg, t, eps, prior: _smoothed(
            lg, t, eps, prior, q=(1 - eps) * F.one_hot(t, lg.shape[1]) + eps * prior / lg.shape[1]
        ),
    ),
    Mistake(
        "the true class gets no share of ε: ε · prior_c goes to every class, the true one too, on top of its 1 − ε",
        lambda lg, t, eps, prior: _smoothed(
            lg, t, eps, prior, q=(1 - eps) * F.one_hot(t, lg.shape[1]) + eps * prior * (1 - F.one_hot(t, lg.shape[1]))
        ),
    ),
    Mistake(
        "the target sums to 1 + ε: the true class keeps 1 − ε, not 1, before ε · prior is added",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, q=F.one_hot(t, lg.shape[1]) + eps * prior),
    ),
    Mistake(
        "summed over the batch: the loss is the mean over the clips of the batch",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, reduce=torch.sum),
    ),
    Mistake(
        "the logits are not log-probabilities: take log p = log_softmax(logits) over the classes first",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, log_p=lg),
    ),
    Mistake(
        "the softmax runs over the batch: the probabilities of one clip are over its classes (dim 1)",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, log_p=lg.log_softmax(dim=0)),
    ),
    Mistake(
        "negative: log p ≤ 0, so the loss −Σ q log p is ≥ 0 — mind the minus sign",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, sign=1),
    ),
    Mistake(
        "averaged over the classes too (a mean over all B × C terms): sum −q_c log p_c over the classes, then "
        "average over the batch",
        lambda lg, t, eps, prior: _smoothed(lg, t, eps, prior, reduce=lambda per_clip: per_clip.mean() / lg.shape[1]),
    ),
    Mistake(
        "that is the KL divergence from q to p: it is the cross-entropy minus q's own entropy, which is not 0 once "
        "the target is smoothed; the loss is the cross-entropy −Σ_c q_c log p_c",
        lambda lg, t, eps, prior: F.kl_div(
            lg.log_softmax(dim=1), (1 - eps) * F.one_hot(t, lg.shape[1]) + eps * prior, reduction="batchmean"
        ),
    ),
)

SMOOTHED_CROSS_ENTROPY = Exercise(
    "06.1",
    "smoothed_cross_entropy(logits, target, eps, prior) → loss",
    _smooth_cases,
    _smooth_reference,
    _smooth_compare,
    SMOOTH_MISTAKES,
    forbidden=(Forbidden(F, "cross_entropy", "F.cross_entropy (or nn.CrossEntropyLoss)"),),
    write="the cross-entropy −Σ q log p",
)

# --------------------------------------------------------------------------- 06.2 top-k accuracy for every k


def _curve_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(B, C, generator=g), torch.randint(0, C, (B,), generator=g)) for B, C in [(50, 8), (7, 40), (10, 3)]
    ]


def _rank(logits, labels):
    """(B,) how many classes score above each clip's true class: 0 when it is the top-1."""
    return (logits > logits.gather(1, labels[:, None])).sum(dim=1)


def _curve_reference(logits, labels):
    k = torch.arange(1, logits.shape[1] + 1)  # (C,)
    return (_rank(logits, labels)[:, None] < k[None, :]).double().mean(dim=0)  # (C,): entry k − 1 is top-k


def _curve_compare(got, want, args: tuple) -> str | None:
    logits = args[0]
    hint = tensor_hint(got, want, f"topk_curve(logits of shape {tuple(logits.shape)}, labels)")
    if hint:
        return hint + (
            ": entry k − 1 is the fraction of clips whose true class is among the k classes with the largest logits, "
            "for k = 1 … C"
        )
    return None


def _histogram(logits, labels):
    rank = _rank(logits, labels)
    return torch.stack([(rank == k).double().mean() for k in range(logits.shape[1])])


def _top_mass(logits, labels):
    p = logits.softmax(dim=1).sort(dim=1, descending=True).values  # (B, C)
    return p.cumsum(dim=1).mean(dim=0)


CURVE_MISTAKES = (
    Mistake(
        "the classes are ranked from the smallest logit up: top-k takes the k *largest* logits",
        lambda logits, labels: _curve_reference(-logits, labels),
    ),
    Mistake(
        "shifted by one: entry 0 is top-1 accuracy, and the last entry, top-C, is 1 (the true class is always among "
        "all C)",
        lambda logits, labels: torch.cat([torch.zeros(1), _curve_reference(logits, labels)[:-1].float()]),
    ),
    Mistake(
        "counts: divide by the number of clips, so that every entry is a fraction between 0 and 1",
        lambda logits, labels: _curve_reference(logits, labels) * len(labels),
    ),
    Mistake(
        "entry k − 1 is the share of clips whose true class comes exactly k-th: top-k counts the clips whose true "
        "class comes anywhere in the first k places, so the curve only rises",
        _histogram,
    ),
    Mistake(
        "those are error rates (1 − accuracy): the curve is the fraction of clips whose true class *is* among the k "
        "best",
        lambda logits, labels: 1 - _curve_reference(logits, labels),
    ),
    Mistake(
        "one entry short: k runs from 1 to C included, so the curve has C entries, the last one (top-C) 1",
        lambda logits, labels: _curve_reference(logits, labels)[:-1],
    ),
    Mistake(
        "one entry too many: the curve starts at k = 1 (entry 0 is top-1), not at k = 0",
        lambda logits, labels: torch.cat([torch.zeros(1, dtype=torch.float64), _curve_reference(logits, labels)]),
    ),
    Mistake(
        "percentages: each entry is a fraction between 0 and 1, not a percentage",
        lambda logits, labels: _curve_reference(logits, labels) * 100,
    ),
    Mistake(
        "that is the probability mass of the k most probable classes: top-k accuracy asks whether the true class "
        "is among them",
        _top_mass,
    ),
)

TOPK_CURVE = Exercise(
    "06.2",
    "topk_curve(logits, labels) → (C,) fractions",
    _curve_cases,
    _curve_reference,
    _curve_compare,
    CURVE_MISTAKES,
)

# --------------------------------------------------------------------------- 06.3 how sure is the trained model?

CONFIDENCE = Prediction(
    "06.3",
    "a probability between 0 and 1",
    is_number,
    (
        Answer(
            between(0.8, 0.95),
            "label smoothing caps it: the smoothed target gives the true class 1 − ε + ε/C = 0.9125, and the loss is "
            "lowest when the model's probabilities match the target, so a model right on nearly every clip still "
            "says about 0.9, never 1",
            0.9,
            right=True,
        ),
        Answer(
            between(0.95, 1.0),
            "nearly sure would be right for a model trained on one-hot targets; this one was trained with label "
            "smoothing (section 3), whose loss is lowest when p matches the target q: what does q give the true class?",
            1.0,
        ),
        Answer(
            between(0.4, 0.8),
            "the model is right on at least 95% of the validation clips, so it has every reason to be confident; "
            "what caps its confidence is the smoothed target of section 3: what does it give the true class?",
            0.6,
        ),
        Answer(
            between(0.0, 0.4),
            "that is a model that hardly knows (chance is 1/8 = 0.125); this one is right on at least 95% of the "
            "validation clips",
            0.125,
        ),
        Answer(lambda x: True, "a probability is between 0 and 1", 1.5),
    ),
)

EXERCISES = (SMOOTHED_CROSS_ENTROPY, TOPK_CURVE, CONFIDENCE)
