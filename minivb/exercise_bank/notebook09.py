"""Used by notebook 09's exercises: the weighted k-means objective (09.1), the majority baseline (09.2), and a
prediction: how many visual words does one class use (09.3)?"""

from __future__ import annotations

import torch

from .judging import Answer, Exercise, Mistake, Prediction, between, is_number, number_hint

# --------------------------------------------------------------------------- 09.1 the weighted k-means objective


def _inertia_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, k, d in [(100, 4, 2), (50, 8, 16), (3, 3, 5)]:
        points, centroids = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
        weights = torch.randint(1, 6, (n,), generator=g).float()  # how many frames each point stands for
        cases.append((points, weights, centroids))
    return cases


def _inertia(points, weights, centroids, *, square=True, nearest=torch.amin, w_power=1, per=None):
    d = torch.cdist(points.double(), centroids.double())  # (N, K) distances
    d = d**2 if square else d
    total = (weights.double() ** w_power * nearest(d, dim=1)).sum()
    return total if per is None else total / per(weights)


def _inertia_reference(points, weights, centroids):
    return _inertia(points, weights, centroids).item()  # Σ_i w_i min_j ‖x_i − c_j‖²


def _inertia_compare(got, want: float, args: tuple) -> str | None:
    points, _, centroids = args
    how = "each point adds its weight times its squared distance to its nearest centroid"
    return number_hint(got, want, f"the weighted inertia of {len(points)} points, {len(centroids)} centroids", how)


INERTIA_MISTAKES = (
    Mistake(
        "the weights are left out: a point of weight 3 stands for three frames, so its squared distance counts 3 times",
        lambda p, w, c: _inertia(p, torch.ones_like(w), c).item(),
    ),
    Mistake(
        "the distances are not squared: the inertia adds squared distances, w_i · min_j ‖x_i − c_j‖²",
        lambda p, w, c: _inertia(p, w, c, square=False).item(),
    ),
    Mistake(
        "every centroid counted: each point adds its distance to its *nearest* centroid only",
        lambda p, w, c: _inertia(p, w, c, nearest=torch.sum).item(),
    ),
    Mistake(
        "each point's *farthest* centroid: a point belongs to its nearest one, min over j",
        lambda p, w, c: _inertia(p, w, c, nearest=torch.amax).item(),
    ),
    Mistake(
        "the weight is squared (it went inside the square, ‖w (x − c)‖²): a point of weight 3 counts like three "
        "copies of it, 3 · ‖x − c‖², not 9 ·",
        lambda p, w, c: _inertia(p, w, c, w_power=2).item(),
    ),
    Mistake(
        "divided by the total weight: the inertia is a sum, not a weighted mean",
        lambda p, w, c: _inertia(p, w, c, per=torch.sum).item(),
    ),
    Mistake(
        "divided by the number of points: the inertia is a sum over the points, not a mean",
        lambda p, w, c: _inertia(p, w, c, per=len).item(),
    ),
    Mistake(
        "the square root of the weights: a point of weight 3 counts 3 times, w_i · min_j ‖x_i − c_j‖²",
        lambda p, w, c: _inertia(p, w, c, w_power=0.5).item(),
    ),
    Mistake(
        "that adds up the *index* of each point's nearest centroid (argmin): take the distance itself (min)",
        lambda p, w, c: (w.double() * torch.cdist(p.double(), c.double()).argmin(dim=1).double()).sum().item(),
    ),
    Mistake(
        "the minimum was taken over the points (dim 0) for each centroid: each *point* takes its nearest centroid, "
        "the minimum over the centroids (dim 1)",
        lambda p, w, c: (torch.cdist(p.double(), c.double()) ** 2).amin(dim=0).sum().item(),
    ),
)

WEIGHTED_INERTIA = Exercise(
    "09.1",
    "weighted_inertia(points, weights, centroids) → Σ w min ‖x − c‖²",
    _inertia_cases,
    _inertia_reference,
    _inertia_compare,
    INERTIA_MISTAKES,
)

# --------------------------------------------------------------------------- 09.2 the majority baseline


def _majority_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for vocab, first, second in ((5, 1, 3), (64, 7, 40)):
        train = torch.randint(0, vocab, (40, 8), generator=g)
        train[:25, :4] = first  # the most frequent word, all in the first half of the sentences …
        train[:12, 4:] = second  # … and a word frequent only in the second half
        val = torch.randint(0, vocab, (10, 8), generator=g)
        val[:3, :4], val[3:7, 4:] = first, second  # in the validation words the second is the more frequent
        cases.append((train, val))
    train = torch.randint(0, 10, (20, 8), generator=g)
    train[:, 0] = 2  # the word of position 0 in every sentence (20 times) …
    train[:, 1:4] = 5  # … and the most frequent word overall (60 times), never at position 0
    val = torch.randint(0, 10, (60, 8), generator=g)
    val[:, 4:] = 7  # so many validation words that training and validation together favour another word
    cases.append((train, val))
    return cases


def _majority_reference(train, val):
    word = torch.bincount(train.flatten()).argmax()  # the most frequent training word
    return (val == word).double().mean().item()


def _majority_compare(got, want: float, args: tuple) -> str | None:
    how = "find the word most frequent in the *training* sentences, then the fraction of validation words that are it"
    return number_hint(got, want, "majority_accuracy", how)


def _per_position(train, val):
    words = torch.stack([torch.bincount(column, minlength=100).argmax() for column in train.T])  # (T,)
    return (val == words[None, :]).double().mean().item()


MAJORITY_MISTAKES = (
    Mistake(
        "the most frequent word of the training and validation words together: the baseline is chosen on the "
        "training words only, as a model is trained on them; the validation words only score it",
        lambda train, val: (
            (val == torch.bincount(torch.cat([train.flatten(), val.flatten()])).argmax()).double().mean().item()
        ),
    ),
    Mistake(
        "the most frequent word at the first position only: the baseline's word is the most frequent over every "
        "position of every training sentence",
        lambda train, val: (val == torch.bincount(train[:, 0]).argmax()).double().mean().item(),
    ),
    Mistake(
        "that is a percentage: return a fraction between 0 and 1",
        lambda train, val: 100 * (val == torch.bincount(train.flatten()).argmax()).double().mean().item(),
    ),
    Mistake(
        "the most frequent word is taken from the validation sentences: a baseline, like a model, is chosen on the "
        "training words only; the validation words only score it",
        lambda train, val: (val == torch.bincount(val.flatten()).argmax()).double().mean().item(),
    ),
    Mistake(
        "that is the training words' own share of the most frequent word: score it on the validation words",
        lambda train, val: (train == torch.bincount(train.flatten()).argmax()).double().mean().item(),
    ),
    Mistake(
        "that is the word itself: return the fraction of validation words equal to it",
        lambda train, val: int(torch.bincount(train.flatten()).argmax()),
    ),
    Mistake(
        "that is how many validation words match: divide by the number of validation words",
        lambda train, val: int((val == torch.bincount(train.flatten()).argmax()).sum()),
    ),
    Mistake(
        "that is the *least* frequent training word: the baseline always answers the most frequent one",
        lambda train, val: (val == torch.bincount(train.flatten()).argmin()).double().mean().item(),
    ),
    Mistake(
        "one word per position: the baseline answers one word everywhere, the most frequent over all positions",
        _per_position,
    ),
)

MAJORITY_ACCURACY = Exercise(
    "09.2",
    "majority_accuracy(train_ids, val_ids) → fraction",
    _majority_cases,
    _majority_reference,
    _majority_compare,
    MAJORITY_MISTAKES,
)

# --------------------------------------------------------------------------- 09.3 how many words does a class use?

WORDS_PER_CLASS = Prediction(
    "09.3",
    "a number of words, 0 … 64",
    lambda x: is_number(x) and 0 <= x <= 64,
    (
        Answer(
            between(25, 64),
            "most of the vocabulary: the words were made without labels, from single frames' change, and most kinds "
            "of change (a little, a lot, on the left, at the end of a clip) happen in every class; a word says "
            "little about the class — the mix and the order of the words do",
            45,
            right=True,
        ),
        Answer(
            between(0, 8),
            "a clip has 8 frames, but there are 96 clips, and clips differ in speed, size, colour and start: "
            "even one clip uses about 5 or 6 different words",
            8,
        ),
        Answer(
            between(8, 25),
            "that is about a class's share if the 64 words were split among the 8 classes; but they were made "
            "without labels, from what changes within one frame, and such changes are not class-specific",
            8 * 2,
        ),
    ),
)

EXERCISES = (WEIGHTED_INERTIA, MAJORITY_ACCURACY, WORDS_PER_CLASS)
