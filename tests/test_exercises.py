"""minivb.exercises: every check tells a wrong answer from a right one, with the hint for the mistake made.

Each exercise's bank of known mistakes (minivb/exercise_bank/) is fed to its check: each mistake gets its own hint
and none passes. Every worked answer of the solutions notebooks (notebooks/solutions/) passes. Wrong answers that
are in no bank get a hint too; forbidden calls are refused and put back; predictions get their reasons.
"""

import contextlib
import io
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import adaptive_avg_pool2d as imported_pool
from torch.nn.functional import cross_entropy as imported_cross_entropy
from torch.nn.functional import scaled_dot_product_attention as imported_attention

from minivb import attention, transformer
from minivb.exercise_bank.judging import Exercise, Prediction
from minivb.exercises import EXERCISES, check

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
FUNCTIONS = {i: e for i, e in EXERCISES.items() if isinstance(e, Exercise)}
PREDICTIONS = {i: e for i, e in EXERCISES.items() if isinstance(e, Prediction)}


def todo(*args):
    raise NotImplementedError


def verdict(exercise, answer, capsys):
    """(check's return value, the line it printed)."""
    right = check(exercise, answer)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one line
    return right, out[:-1]


# --------------------------------------------------------------------------- the banks


def test_every_notebook_has_exercises_and_from_04_on_a_prediction():
    assert sorted({i[:2] for i in EXERCISES}) == [f"{n:02d}" for n in range(1, 11)]
    assert sorted(i[:2] for i in PREDICTIONS) == ["04", "05", "06", "07", "08", "09", "10"]
    assert all(" → " in e.task for e in FUNCTIONS.values())  # what a function should return, for a hint


@pytest.mark.parametrize("exercise", list(FUNCTIONS))
def test_each_exercise_knows_at_least_five_mistakes_each_with_its_own_hint(exercise):
    hints = [m.hint for m in FUNCTIONS[exercise].mistakes]
    assert len(hints) >= 5 and len(set(hints)) == len(hints)


BANK = [(i, k) for i, e in FUNCTIONS.items() for k in range(len(e.mistakes))]


@pytest.mark.parametrize("exercise, k", BANK, ids=[f"{i}-{k}" for i, k in BANK])
def test_a_known_mistake_gets_its_own_hint_and_never_passes(exercise, k, capsys):
    mistake = FUNCTIONS[exercise].mistakes[k]
    assert verdict(exercise, mistake.answer, capsys) == (False, f"{exercise} not yet: {mistake.hint}")


@pytest.mark.parametrize("exercise", list(PREDICTIONS))
def test_every_kind_of_prediction_gets_its_reason(exercise, capsys):
    answers = PREDICTIONS[exercise].answers
    assert sum(a.right for a in answers) == 1 and len({a.reason for a in answers}) == len(answers)
    for a in answers:
        word = "correct" if a.right else "not yet"
        assert verdict(exercise, a.example, capsys) == (a.right, f"{exercise} {word}: {a.reason}")
    assert verdict(exercise, None, capsys) == (False, f"{exercise} not attempted yet")
    right, line = verdict(exercise, "no idea", capsys)
    assert not right and line == f"{exercise} not yet: expected {PREDICTIONS[exercise].task}, got 'no idea'"


# --------------------------------------------------------------------------- the solutions pass


def solution_cells(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_worked_answer_passes(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace = {}
        for source in solution_cells(path):
            exec(compile(source, str(path), "exec"), namespace)
    number = path.name[:2]
    said = re.findall(r"^(\d\d\.\d) (correct|not yet)", out.getvalue(), re.M)
    assert said == [(i, "correct") for i in EXERCISES if i.startswith(number)], out.getvalue()


# --------------------------------------------------------------------------- wrong answers in no bank


def plain_attention(q, k, v, *rest):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ v


UNKNOWN = {
    "01.1": lambda n, fps, target: [round(k * fps / target) for k in range(-(-n * target // fps))][::-1],  # reversed
    "01.2": lambda frame, size, stride: frame[None, :size, :size][:, ::-1],  # flipped
    "02.1": lambda layers: 2 ** len(layers) + 1,
    "02.2": lambda fmap, grid: fmap.flatten(1).T[: grid * grid],
    "03.1": lambda q, k, v: plain_attention(q, k, v).flip(1),
    "03.2": lambda q, k, v, lengths: v,
    "04.1": lambda x, w_q, w_k, w_v, heads, kv: x,
    "04.2": lambda A: A.max(-1).values.mean(dim=(0, 2)),
    "05.1": lambda T, dim: torch.zeros(T, dim),
    "05.2": lambda dim, depth, r: 7,
    "06.1": lambda logits, target, eps, prior: logits.mean(),
    "06.2": lambda logits, labels: torch.linspace(0, 1, logits.shape[1]),
    "07.1": lambda emb, labels: 0.5,
    "07.2": lambda probs, labels, bins: 0.5,
    "08.1": lambda E, sigma: 1.0,
    "09.1": lambda p, w, c: 3.0,
    "09.2": lambda train, val: 0.5,
    "10.1": lambda ids, tok, pos, seg: 2 * tok[ids],
    "10.2": lambda scores, k: 0.5,
}


@pytest.mark.parametrize("exercise", list(FUNCTIONS))
def test_a_wrong_answer_in_no_bank_gets_a_general_hint(exercise, capsys):
    right, line = verdict(exercise, UNKNOWN[exercise], capsys)
    assert not right and line.startswith(f"{exercise} not yet: ") and len(line) > 40, line
    assert line[len(f"{exercise} not yet: ") :] not in {m.hint for m in FUNCTIONS[exercise].mistakes}


def test_not_attempted_and_failing_answers(capsys):
    for exercise in FUNCTIONS:
        assert verdict(exercise, todo, capsys) == (False, f"{exercise} not attempted yet")
    assert verdict("02.1", lambda layers: layers[99], capsys) == (
        False,
        "02.1 not yet: your function raised IndexError: list index out of range",
    )
    with pytest.raises(ValueError, match="no exercise '11.1'; there are 01.1, 01.2"):
        check("11.1", todo)


def test_a_return_value_of_the_wrong_type_is_named_not_blamed_on_the_function(capsys):
    assert verdict("01.1", lambda n, fps, target: None, capsys)[1] == (
        "01.1 not yet: your function returned None, expected frame indices: does it end with `return …`?"
    )
    assert (
        verdict("09.1", lambda p, w, c: "3", capsys)[1]
        == "09.1 not yet: your function returned str, expected one number"
    )
    per_query = verdict("07.1", lambda emb, labels: torch.ones(len(labels)), capsys)[1]
    assert per_query == "07.1 not yet: your function returned Tensor shaped (40,), expected one number"
    assert verdict("03.1", 3, capsys)[1] == "03.1 not yet: check expects your function here, got int"


@pytest.mark.parametrize("exercise", ["08.1", "09.1", "09.2"])
@pytest.mark.parametrize("value", [math.nan, torch.tensor(math.nan), math.inf, -math.inf])
def test_nan_or_inf_is_never_a_number(exercise, value, capsys):
    right, line = verdict(exercise, lambda *args: value, capsys)
    assert not right and line.startswith(f"{exercise} not yet: ") and "not a finite number" in line, line


def test_an_answer_may_change_its_inputs_in_place(capsys):
    def causal_attention(q, k, v):  # right, but scales q in place
        q /= math.sqrt(q.shape[-1])
        future = torch.triu(torch.ones(q.shape[-2], q.shape[-2], dtype=torch.bool), diagonal=1)
        return (q @ k.transpose(-2, -1)).masked_fill(future, -math.inf).softmax(-1) @ v

    assert verdict("03.1", causal_attention, capsys) == (True, "03.1 correct")


def test_01_1_has_no_floating_point_trap_for_a_whole_number_answer(capsys):
    def sample_at_fps(num_frames, fps, target_fps):  # whole numbers all the way: 62 · 15 / 30 is exactly 31
        return [(2 * k * fps + target_fps) // (2 * target_fps) for k in range(-(-num_frames * target_fps // fps))]

    assert verdict("01.1", sample_at_fps, capsys) == (True, "01.1 correct")


# --------------------------------------------------------------------------- forbidden calls


FORBIDDEN = {
    "02.2": lambda fmap, grid: nn.AdaptiveAvgPool2d(grid)(fmap).flatten(1).T,
    "03.1": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "04.1": lambda x, w_q, w_k, w_v, heads, kv: (
        F.scaled_dot_product_attention(
            *((x @ w).unflatten(-1, (-1, x.shape[-1] // heads)).transpose(1, 2) for w in (w_q, w_k, w_v)),
            enable_gqa=True,
        )
        .transpose(1, 2)
        .flatten(2)
    ),
    "04.2": lambda A: torch.distributions.Categorical(probs=A).entropy().mean(dim=(0, 2)),
    "05.2": lambda dim, depth, r: sum(p.numel() for p in attention.MultiHeadAttention(dim, 4).parameters()),
    "06.1": lambda logits, target, eps, prior: F.cross_entropy(logits, target, label_smoothing=eps),
}


PUT_BACK = [
    (F, "adaptive_avg_pool2d"),
    (F, "adaptive_avg_pool1d"),
    (torch, "adaptive_avg_pool1d"),
    (torch._C._nn, "adaptive_avg_pool2d"),
    (F, "scaled_dot_product_attention"),
    (attention, "scaled_dot_product_attention"),
    (F, "cross_entropy"),
    (nn.Module, "parameters"),
    (nn.Module, "named_parameters"),
    (nn.Module, "state_dict"),
    (torch.distributions.Categorical, "entropy"),
    (nn.Module, "modules"),
    (nn.Module, "named_modules"),
    (transformer.Transformer, "__init__"),
    (transformer.TransformerLayer, "__init__"),
]


@pytest.mark.parametrize("exercise", list(FORBIDDEN))
def test_a_forbidden_call_is_refused_and_put_back(exercise, capsys):
    kept = [(owner, name, getattr(owner, name), name in vars(owner)) for owner, name in PUT_BACK]
    right, line = verdict(exercise, FORBIDDEN[exercise], capsys)
    assert not right and line.startswith(f"{exercise} not yet: {exercise} asks you to write ") and "is off" in line
    assert all(getattr(owner, name) is value and (name in vars(owner)) == own for owner, name, value, own in kept)
    assert F.cross_entropy(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(math.log(2))  # works again


def test_a_call_that_is_only_forbidden_with_an_option_works_without_it(capsys):
    def grouped_query_attention(x, w_q, w_k, w_v, heads, kv_heads):  # F.scaled_dot_product_attention, grouped by hand
        B, L, dim = x.shape
        d = dim // heads
        q = (x @ w_q).view(B, L, heads, d).transpose(1, 2)
        k, v = (
            (x @ w).view(B, L, kv_heads, d).transpose(1, 2).repeat_interleave(heads // kv_heads, 1) for w in (w_k, w_v)
        )
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, dim)

    assert verdict("04.1", grouped_query_attention, capsys) == (True, "04.1 correct")


# --------------------------------------------------------------------------- a hostile learner's answers


def count_by_walking_the_module(dim, depth, ratio):  # reads the weights of a built module: not counted from pieces
    t = transformer.Transformer(dim, depth, num_heads=4, mlp_ratio=ratio)
    return sum(p.numel() for m in t.modules() for p in m._parameters.values())


def count_by_walking_torch_layers(dim, depth, ratio):
    layer = nn.TransformerEncoderLayer(dim, 4, round(dim * ratio))
    return depth * sum(m.weight.numel() + m.bias.numel() for m in layer.modules() if hasattr(m, "bias")) + 2 * dim


BYPASSES = {  # a forbidden call under another name, or the module walked instead of asked: each was judged correct
    "02.2": lambda fmap, grid: imported_pool(fmap, grid).flatten(1).T,
    "02.2 C": lambda fmap, grid: torch._C._nn.adaptive_avg_pool2d(fmap, grid).flatten(1).T,  # what F calls
    "03.1": lambda q, k, v: imported_attention(q, k, v, is_causal=True),
    "06.1": lambda logits, target, eps, prior: imported_cross_entropy(
        logits, (1 - eps) * F.one_hot(target, logits.shape[1]) + eps * prior
    ),
    "05.2": count_by_walking_the_module,
    "05.2 torch": count_by_walking_torch_layers,
}


@pytest.mark.parametrize("exercise", list(BYPASSES))
def test_a_forbidden_call_under_an_imported_name_or_a_walked_module_is_refused(exercise, capsys):
    number = exercise[:4]
    right, line = verdict(number, BYPASSES[exercise], capsys)
    assert not right and line.startswith(f"{number} not yet: {number} asks you to write ") and "is off" in line, line
    # the learner's names are theirs again afterwards
    assert imported_pool is F.adaptive_avg_pool2d and imported_cross_entropy is F.cross_entropy
    assert imported_attention is F.scaled_dot_product_attention
    assert transformer.Transformer(8, 1, num_heads=4).norm.weight.numel() == 8


def bgr_regions(frame, size, stride):  # a view with negative strides: the check reads it, and knows the mistake
    tops, lefts = range(0, frame.shape[0] - size + 1, stride), range(0, frame.shape[1] - size + 1, stride)
    return np.stack([frame[y : y + size, x : x + size] for y in tops for x in lefts])[..., ::-1]


WERE_ACCEPTED_OR_MISREAD = [  # (exercise, a wrong answer, the start of what check now says)
    (
        "05.2",
        lambda dim, depth, r: _count_with_hidden(dim, depth, math.ceil(dim * r)),
        "the hidden width is rounded up",
    ),
    ("07.1", "per class", "averaged per class, then over the classes"),
    ("01.2", bgr_regions, "the channels are reversed"),
    ("02.1", lambda layers: str(_field(layers)), "your function returned str, expected an int"),
    ("02.1", lambda layers: True, "your function returned bool, expected an int"),
    ("05.2", lambda dim, depth, r: str(_count_with_hidden(dim, depth, round(dim * r))), "your function returned str"),
    ("10.1", lambda ids, tok, pos, seg: h0_row_by_row(ids, tok, pos, seg).astype(np.float16), "H₀ is float16"),
    ("10.1", lambda ids, tok, pos, seg: h0_with_segments(ids, tok, pos, seg, 2), "the first visual word after [>]"),
    (
        "10.1",
        lambda ids, tok, pos, seg: h0_fixed_slot(ids, tok, pos, seg),
        "every row takes its segments from the batch",
    ),
    (
        "10.1",
        lambda ids, tok, pos, seg: h0_text_without_segment(ids, tok, pos, seg),
        "the text positions add no segment",
    ),
    ("10.2", lambda scores, k: recall_from_one_based_ranks(scores, k), "that looks at the k − 1 best videos"),
    ("10.2", lambda scores, k: ((scores > scores.diag()).sum(1) < k).float().mean(), "each score is compared with its"),
    ("10.2", lambda scores, k: int(((scores > scores.diag()[:, None]).sum(1) < k).sum()) // len(scores), "a whole-num"),
    ("10.2", lambda scores, k: 0, "recall@1 over 50 narrations gave 0: "),  # not blamed on //: one case finds all
]


def h0_with_segments(ids, tok, pos, seg, start):  # segment 1 from `start` positions after each row's [>]
    separator = (ids == 3).long().argmax(1, keepdim=True)
    return tok[ids] + pos + seg[(torch.arange(ids.shape[1]) >= separator + start).long()]


def h0_fixed_slot(ids, tok, pos, seg):  # section 3's fixed slot: the longest text's [>] for every row
    slot = int((ids == 3).nonzero()[:, 1].max())
    return tok[ids] + pos + seg[(torch.arange(ids.shape[1]) > slot).long()]


def h0_text_without_segment(ids, tok, pos, seg):  # segment 1's row added after [>], nothing before it
    separator = (ids == 3).long().argmax(1, keepdim=True)
    return tok[ids] + pos + (torch.arange(ids.shape[1]) > separator)[..., None] * seg[1]


def recall_from_one_based_ranks(scores, k):  # rank 1 is the best video, then compared with < k
    order = scores.argsort(dim=1, descending=True)
    ranks = (order == torch.arange(len(scores))[:, None]).nonzero()[:, 1] + 1
    return (ranks < k).float().mean().item()


def _field(layers):
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf, jump = rf + (kernel - 1) * jump, jump * stride
    return rf


def _count_with_hidden(dim, depth, hidden):
    return depth * (4 * dim + 4 * (dim * dim + dim) + 2 * dim * hidden + hidden + dim) + 2 * dim


def mrr_per_class(emb, labels):
    sim = F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T
    sim.fill_diagonal_(-math.inf)
    order = sim.argsort(dim=1, descending=True)
    rr = torch.tensor([1 / (int((labels[order[i]] == labels[i]).nonzero()[0]) + 1) for i in range(len(labels))])
    return torch.stack([rr[labels == c].mean() for c in labels.unique()]).mean()


@pytest.mark.parametrize(
    "exercise, answer, said", WERE_ACCEPTED_OR_MISREAD, ids=lambda x: x if isinstance(x, str) else ""
)
def test_a_wrong_answer_once_accepted_or_misread_gets_its_hint(exercise, answer, said, capsys):
    answer = mrr_per_class if answer == "per class" else answer
    right, line = verdict(exercise, answer, capsys)
    assert not right and line.startswith(f"{exercise} not yet: {said}"), line


def sample_loop(num_frames, fps, target_fps):
    out, k = [], 0
    while k * fps < num_frames * target_fps:
        out.append((2 * k * fps + target_fps) // (2 * target_fps))
        k += 1
    return np.array(out)


def pool_numpy(fmap, grid):
    a, (_, h, w) = fmap.numpy(), fmap.shape
    spans = [[(i * n // grid, -(-(i + 1) * n // grid)) for i in range(grid)] for n in (h, w)]
    return np.stack([a[:, r0:r1, c0:c1].mean(axis=(1, 2)) for r0, r1 in spans[0] for c0, c1 in spans[1]])


def receptive_field_backwards(layers):  # from the output cell down: r ← r · stride + kernel − stride
    r = 1
    for kernel, stride in reversed(layers):
        r = r * stride + kernel - stride
    return float(r)


def padded_loop(q, k, v, lengths):
    out = torch.zeros_like(q)
    for b, n in enumerate(lengths.tolist()):
        out[b, :n] = (q[b, :n] @ k[b, :n].T / math.sqrt(q.shape[-1])).softmax(-1) @ v[b, :n]
    return out


def sinusoid_numpy(T, dim):  # the usual tutorial's table, exp(−log 10000 · 2i / dim)
    pe, t = np.zeros((T, dim)), np.arange(T)[:, None]
    div = np.exp(np.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe[:, 0::2], pe[:, 1::2] = np.sin(t * div), np.cos(t * div)
    return pe


def topk_numpy(logits, labels):
    return list((np.argsort(-logits.numpy(), axis=1) == labels.numpy()[:, None]).cumsum(axis=1).mean(axis=0))


def mrr_drop_self(emb, labels):  # itself first in its own ranking (cosine 1), then dropped
    n = emb / emb.norm(dim=1, keepdim=True)
    order = (n @ n.T).argsort(dim=1, descending=True)[:, 1:]
    return float(np.mean([1 / (int((labels[row] == labels[i]).nonzero()[0]) + 1) for i, row in enumerate(order)]))


def ece_descending(probs, labels, bins):  # sorted from the most confident: the same groups
    conf, pred = probs.max(dim=1)
    order = conf.argsort(descending=True)
    right = (pred == labels).double()[order]
    return sum((r.mean() - c.mean()).abs() / bins for c, r in zip(conf[order].chunk(bins), right.chunk(bins)))


def h0_row_by_row(ids, tok, pos, seg):  # a list of rows, each position's three table rows added one by one
    rows = []
    for row in ids.tolist():
        separator = row.index(3)  # [>]
        rows.append(torch.stack([tok[t] + pos[i] + seg[int(i > separator)] for i, t in enumerate(row)]))
    return torch.stack(rows).numpy()


RIGHT_ANSWERS_WRITTEN_ANOTHER_WAY = {
    "01.1": sample_loop,
    "01.2": lambda frame, size, stride: (
        np.lib.stride_tricks.sliding_window_view(frame, (size, size), axis=(0, 1))[::stride, ::stride]
        .transpose(0, 1, 3, 4, 2)
        .reshape(-1, size, size, 3)
    ),
    "02.1": receptive_field_backwards,
    "02.2": pool_numpy,
    "03.1": lambda q, k, v: (
        (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
        .masked_fill(torch.ones(q.shape[1], q.shape[1]).triu(1).bool(), -1e9)
        .softmax(-1)
        @ v
    ).numpy(),
    "03.2": padded_loop,
    "04.2": lambda A: torch.special.entr(A).sum(-1).mean(dim=(0, 2)),
    "05.1": sinusoid_numpy,
    "06.1": lambda logits, target, eps, prior: (
        (1 - eps) * F.nll_loss(logits.log_softmax(1), target) - eps * (prior * logits.log_softmax(1)).sum(1).mean()
    ),
    "06.2": topk_numpy,
    "07.1": mrr_drop_self,
    "07.2": ece_descending,
    "08.1": lambda E, sigma: len(E) - torch.exp(-(torch.cdist(E, E) ** 2) / (2 * sigma**2)).sum() / len(E),
    "10.1": h0_row_by_row,
    "10.2": lambda scores, k: np.mean([i in np.argsort(-row)[:k] for i, row in enumerate(scores.numpy())]),
}


@pytest.mark.parametrize("exercise", list(RIGHT_ANSWERS_WRITTEN_ANOTHER_WAY))
def test_a_right_answer_written_another_way_passes(exercise, capsys):
    assert verdict(exercise, RIGHT_ANSWERS_WRITTEN_ANOTHER_WAY[exercise], capsys) == (True, f"{exercise} correct")


def test_10_a_right_answer_of_another_type_passes(capsys):  # each was judged wrong
    def recall_as_a_fraction(scores, k):
        found = sum(int((row > row[i]).sum()) < k for i, row in enumerate(scores))
        return Fraction(found, len(scores))

    assert verdict("10.2", recall_as_a_fraction, capsys) == (True, "10.2 correct")
    assert verdict("10.3", torch.tensor(1), capsys)[0] and verdict("10.3", np.array(1.0), capsys)[0]


@pytest.mark.parametrize("named", [0.5, 0.995, 1.005, 7.995, 3.5])
def test_10_3_a_number_of_classes_is_a_whole_number(named, capsys):  # 0.995 was told "expected … 0 … 8"
    assert verdict("10.3", named, capsys) == (
        False,
        f"10.3 not yet: expected a whole number of classes, 0 … 8, got {named}",
    )


def test_a_right_answer_returned_as_a_view_with_negative_strides_passes(capsys):
    def split_overlapping(frame, size, stride):  # built bottom-right first, then put in order by a reversed view
        tops, lefts = range(0, frame.shape[0] - size + 1, stride), range(0, frame.shape[1] - size + 1, stride)
        return np.stack([frame[y : y + size, x : x + size] for y in reversed(tops) for x in reversed(lefts)])[::-1]

    assert verdict("01.2", split_overlapping, capsys) == (True, "01.2 correct")
