"""minivb.metrics on every input: exact ties ranked by the documented rule, near-ties kept in the caller's precision.

The reference is plain Python: ``sorted`` over (−score, class index), i.e. highest score first, equal scores in
class-index order.
"""

import pytest
import torch

from minivb.metrics import Accuracy, accuracy_metrics


def by_hand(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """top-1, top-min(5, C) and the confusion matrix from a plain-Python ranking of every row."""
    C = scores.shape[1]
    k = min(5, C)
    top1 = topk = 0
    confusion = [[0] * C for _ in range(C)]
    for row, y in zip(scores.tolist(), labels.tolist()):
        ranking = sorted(range(C), key=lambda c: (-row[c], c))  # highest first; equal scores: lower index first
        top1 += ranking[0] == y
        topk += y in ranking[:k]
        confusion[y][ranking[0]] += 1
    return {"top1": top1 / len(labels), "top5": topk / len(labels), "confusion": confusion}


@pytest.mark.parametrize("C", [5, 7, 12, 3])
def test_exact_ties_follow_the_documented_rule(C):
    g = torch.Generator().manual_seed(C)
    N = 300
    scores = torch.randint(0, 3, (N, C), generator=g).double()  # 3 distinct values: ties in nearly every row
    labels = torch.randint(0, C, (N,), generator=g)
    want = by_hand(scores, labels)
    for m in [
        accuracy_metrics(scores, labels),
        accuracy_metrics(scores.float(), labels),  # ties are exact in any precision
        Accuracy(C).update(scores[:100], labels[:100]).update(scores[100:], labels[100:]).result(),  # in batches
    ]:
        assert m["top1"] == pytest.approx(want["top1"]) and m["top5"] == pytest.approx(want["top5"])
        assert m["confusion"].tolist() == want["confusion"]


def test_all_scores_equal():
    m = accuracy_metrics(torch.zeros(6, 6), torch.arange(6))  # one video per class, every class tied
    assert m["top1"] == pytest.approx(1 / 6) and m["top5"] == pytest.approx(5 / 6)  # classes 0 … 4 are the top 5
    assert m["confusion"][:, 0].tolist() == [1] * 6  # the predicted class is class 0 every time
    assert m["per_class_top1"] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_float64_near_ties_are_not_rounded_to_ties():
    scores = torch.tensor([[1.0, 1.0, 1.0 + 1e-9], [1.0, 1.0, 1.0 + 1e-9]], dtype=torch.float64)  # equal in float32
    m = accuracy_metrics(scores, torch.tensor([2, 0]))
    assert m["top1"] == 0.5 and m["confusion"].tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 1]]
    six = torch.ones(1, 6, dtype=torch.float64)
    six[0, 5] += 1e-12  # the last class, a hair above five others: in float32 all six tie and class 5 comes last
    m = accuracy_metrics(six, torch.tensor([5]))
    assert m["top1"] == 1.0 and m["top5"] == 1.0
