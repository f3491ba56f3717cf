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
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minivb import attention
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
    assert sorted({i[:2] for i in EXERCISES}) == [f"0{n}" for n in range(1, 10)]
    assert sorted(i[:2] for i in PREDICTIONS) == ["04", "05", "06", "07", "08", "09"]
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
    with pytest.raises(ValueError, match="no exercise '10.1'; there are 01.1, 01.2"):
        check("10.1", todo)


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
    (F, "scaled_dot_product_attention"),
    (attention, "scaled_dot_product_attention"),
    (F, "cross_entropy"),
    (nn.Module, "parameters"),
    (nn.Module, "named_parameters"),
    (nn.Module, "state_dict"),
    (torch.distributions.Categorical, "entropy"),
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
