"""minivb.exercises: every check tells a wrong answer from a right one, with a hint, in one line.

The right answers are the solutions notebooks (notebooks/solutions/), which nbval runs: there each check
prints "correct". Here: the wrong answers a learner is likely to write, an answer not attempted, one that fails.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minivb.exercises import EXERCISES, check


def todo(*args):
    raise NotImplementedError


def plain_attention(q, k, v, *rest):
    return F.scaled_dot_product_attention(q, k, v)


WRONG = {
    "01.1": [
        lambda n, fps, target: list(range(0, n, round(fps / target))),  # a whole step: drifts, and a frame too many
        lambda n, fps, target: [int(k * fps / target) for k in range(math.ceil(n / fps * target))][::-1],  # reversed
        lambda n, fps, target: [round(k * fps / target) for k in range(math.ceil(n / fps * target))],  # 62/30·15 > 31
    ],
    "01.2": [
        lambda frame, size, stride: np.stack([frame[:size, :size]]),  # one region
        lambda frame, size, stride: np.stack(  # column by column
            [
                frame[y : y + size, x : x + size]
                for x in range(0, frame.shape[1] - size + 1, stride)
                for y in range(0, frame.shape[0] - size + 1, stride)
            ]
        ),
    ],
    "02.1": [lambda layers: sum(k for k, _ in layers), lambda layers: 1 + sum(k - 1 for k, _ in layers)],  # no stride
    "02.2": [
        lambda fmap, grid: F.adaptive_avg_pool2d(fmap, grid).flatten(1),  # (C, grid²): transposed
        lambda fmap, grid: F.adaptive_max_pool2d(fmap, grid).flatten(1).T,  # max, not mean
    ],
    "03.1": [plain_attention, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True).flip(1)],
    "03.2": [plain_attention],
    "04.1": [
        lambda x, w_q, w_k, w_v, heads, kv: x,
        lambda x, w_q, w_k, w_v, heads, kv: (
            F.scaled_dot_product_attention(  # key/value heads tiled, not grouped
                *(
                    t.view(x.shape[0], x.shape[1], -1, x.shape[2] // heads).transpose(1, 2)
                    for t in (x @ w_q, (x @ w_k).repeat(1, 1, heads // kv), (x @ w_v).repeat(1, 1, heads // kv))
                )
            )
            .transpose(1, 2)
            .reshape(x.shape)
        ),
    ],
    "04.2": [
        lambda A: -(A * A.log()).sum(-1).mean(dim=(0, 2)),  # 0 · log 0 = NaN
        lambda A: -torch.xlogy(A, A).sum(-1).mean(dim=(0, 1)),  # averaged over the heads, not the queries
    ],
    "05.1": [
        lambda T, dim: torch.zeros(T, dim),
        lambda T, dim: torch.cat(  # all sines, then all cosines: the right numbers in the wrong columns
            [
                torch.sin(torch.arange(T)[:, None] / 10000 ** (torch.arange(0, dim, 2) / dim)),
                torch.cos(torch.arange(T)[:, None] / 10000 ** (torch.arange(0, dim, 2) / dim)),
            ],
            dim=1,
        ),
    ],
    "05.2": [lambda dim, depth, r: depth * 12 * dim * dim],  # the famous 12·d² per layer: no biases, no norms
    "06.1": [
        lambda logits, target, eps: F.cross_entropy(logits, target),  # ε ignored
        lambda logits, target, eps: (
            (1 - eps) * F.cross_entropy(logits, target)  # ε spread over the others only
            + eps
            * -(logits.log_softmax(1).sum(1) - logits.log_softmax(1).gather(1, target[:, None])[:, 0]).mean()
            / (logits.shape[1] - 1)
        ),
    ],
    "06.2": [
        lambda logits, labels, k: (logits.argmax(1) == labels).float().mean(),  # top-1 whatever k
        lambda logits, labels, k: (logits.topk(k, 1).indices == labels[:, None]).sum(),  # a count, not a fraction
    ],
    "07.1": [
        lambda emb, labels, k: (labels[(emb @ emb.T).topk(k, 1).indices] == labels[:, None]).any(1).float().mean(),
    ],  # itself included: always 1
    "07.2": [
        lambda G: G.trace(),  # the scatter around 0, not around the mean
        lambda G: G.trace() - G.sum() / G.shape[0] ** 2,
    ],
    "08.1": [
        lambda p, c: torch.cdist(p, c).min(1).values.sum(),  # distances, not squared
        lambda p, c: torch.cdist(p, c).pow(2).sum(),  # every centroid, not the nearest
    ],
    "08.2": [
        lambda train, val: (val == torch.bincount(val.flatten()).argmax()).float().mean(),  # the val majority
    ],
}


def test_every_exercise_has_wrong_answers_here():
    assert WRONG.keys() == EXERCISES.keys()
    assert all(" → " in e.task for e in EXERCISES.values())  # what a function should return, for a hint


@pytest.mark.parametrize("exercise", list(WRONG))
def test_a_wrong_answer_gets_a_hint_not_a_pass(exercise, capsys):
    for answer in WRONG[exercise]:
        assert check(exercise, answer) is False
        line = capsys.readouterr().out
        assert line.startswith(f"{exercise} not yet: ") and line.count("\n") == 1 and len(line) > 40, line


def test_not_attempted_and_failing_answers(capsys):
    for exercise in EXERCISES:
        assert check(exercise, todo) is False
        assert capsys.readouterr().out == f"{exercise} not attempted yet\n"
    assert check("02.1", lambda layers: layers[99]) is False
    assert capsys.readouterr().out == "02.1 not yet: your function raised IndexError: list index out of range\n"
    with pytest.raises(ValueError, match="no exercise '09.1'; there are 01.1, 01.2"):
        check("09.1", todo)


def test_the_causal_hint_names_the_missing_mask(capsys):
    check("03.1", plain_attention)
    assert "without a mask" in capsys.readouterr().out


# --------------------------------------------------------------------------- answers the check used to misjudge


@pytest.mark.parametrize("exercise", ["06.2", "07.1", "08.2"])
@pytest.mark.parametrize("value", [math.nan, torch.tensor(math.nan), math.inf, -math.inf])
def test_nan_or_inf_is_not_a_fraction(exercise, value, capsys):
    assert check(exercise, lambda *args: value) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{exercise} not yet: ") and "not a number between 0 and 1" in out, out


def test_an_answer_may_change_its_inputs_in_place(capsys):
    def causal_attention(q, k, v):  # right, but scales q in place
        q /= math.sqrt(q.shape[-1])
        future = torch.triu(torch.ones(q.shape[-2], q.shape[-2], dtype=torch.bool), diagonal=1)
        return (q @ k.transpose(-2, -1)).masked_fill(future, -math.inf).softmax(-1) @ v

    assert check("03.1", causal_attention) is True, capsys.readouterr().out


def test_a_return_value_of_the_wrong_type_is_named_not_blamed_on_the_function(capsys):
    check("01.1", lambda n, fps, target: None)
    assert capsys.readouterr().out == "01.1 not yet: your function returned NoneType, expected frame indices\n"
    check("08.1", lambda p, c: None)
    assert capsys.readouterr().out == "08.1 not yet: your function returned NoneType, expected Σ min ‖x − c‖²\n"
    check("06.2", lambda logits, labels, k: (logits.argmax(1) == labels).float())  # per clip, not the fraction
    assert capsys.readouterr().out == "06.2 not yet: your function returned Tensor shaped (50,), expected one number\n"


def test_recall_leaves_out_a_video_alone_in_its_class_as_retrieval_metrics_does(capsys):
    from minivb.retrieval import retrieval_metrics

    assert check("07.1", lambda emb, labels, k: retrieval_metrics(emb, labels, ks=(k,))[f"recall@{k}"]) is True

    def recall_at_k(emb, labels, k):  # the solutions notebook's answer: a video alone counts as a miss
        sim = (emb @ emb.T).fill_diagonal_(-math.inf)
        return (labels[sim.topk(k, dim=1).indices] == labels[:, None]).any(1).float().mean().item()

    assert check("07.1", recall_at_k) is True  # also accepted: notebook 07's exercise text allows either
    assert capsys.readouterr().out == "07.1 correct\n07.1 correct\n"
