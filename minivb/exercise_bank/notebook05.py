"""Used by notebook 05's exercises: a sinusoidal time embedding (05.1), the Transformer's parameters counted from
its pieces (05.2), and a prediction: does a frozen time embedding still see the order of the frames (05.3)?"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import transformer
from .judging import Answer, Exercise, Forbidden, Mistake, Prediction, is_number, tensor_hint
from .notebook02 import whole_number_hint

# --------------------------------------------------------------------------- 05.1 a sinusoidal time embedding


def _sinusoid_cases() -> list[tuple]:
    return [(8, 16), (32, 64), (5, 2), (3, 6)]


def _sinusoid(T, dim, *, positions=None, exponent=None, inverted=False, order="interleave"):
    """The table, and each way of getting it wrong: ``positions`` t (default 0 … T−1), the ``exponent`` of 10000
    per sin/cos pair (default 2i/dim), the angle t · 10000^e instead of t / 10000^e, and the column ``order``
    ("interleave": sin in even columns; "halves": all sines, then all cosines; "swapped": cos in even columns)."""
    t = (torch.arange(T, dtype=torch.float64) if positions is None else positions)[:, None]  # (T, 1)
    i = torch.arange(dim // 2, dtype=torch.float64)[None, :]  # (1, dim/2)
    e = 2 * i / dim if exponent is None else exponent(i, dim)
    angle = t * 10000**e if inverted else t / 10000**e  # (T, dim/2)
    if order == "halves":
        return torch.cat([angle.sin(), angle.cos()], dim=1)
    pair = [angle.cos(), angle.sin()] if order == "swapped" else [angle.sin(), angle.cos()]
    return torch.stack(pair, dim=-1).reshape(T, dim)


def _sinusoid_reference(T: int, dim: int) -> torch.Tensor:
    return _sinusoid(T, dim)


def _sinusoid_compare(got, want, args: tuple) -> str | None:
    hint = tensor_hint(got, want, f"sinusoidal_embedding{args}")
    return None if hint is None else hint + ": column 2i is sin(t / 10000^(2i/dim)), column 2i + 1 the cos of it"


def _per_column(T, dim):
    """Each column its own angle, t / 10000^(j/dim) for column j: sin in the even columns, cos in the odd."""
    t = torch.arange(T, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = t / 10000 ** (j / dim)
    return torch.where(j % 2 == 0, angle.sin(), angle.cos())


SINUSOID_MISTAKES = (
    Mistake(
        "the right numbers in the wrong columns: all sines then all cosines; they alternate — column 2i the sin, "
        "column 2i + 1 the cos of the same angle",
        lambda T, dim: _sinusoid(T, dim, order="halves"),
    ),
    Mistake(
        "sin and cos are swapped: column 2i is the sin, column 2i + 1 the cos",
        lambda T, dim: _sinusoid(T, dim, order="swapped"),
    ),
    Mistake(
        "every column has its own angle: a sin column and the cos column after it share one angle, "
        "t / 10000^(2i/dim) for the pair i = 0 … dim/2 − 1",
        _per_column,
    ),
    Mistake(
        "the exponent is i / dim: the pair i turns at t / 10000^(2i/dim) — mind the 2",
        lambda T, dim: _sinusoid(T, dim, exponent=lambda i, d: i / d),
    ),
    Mistake(
        "the exponent counts twice: for pair i it is 2i/dim with i = 0, 1, 2, … (if your i already runs over the even "
        "columns 0, 2, 4, …, it is i/dim)",
        lambda T, dim: _sinusoid(T, dim, exponent=lambda i, d: 4 * i / d),
    ),
    Mistake(
        "the angle is multiplied by 10000^(2i/dim): it is divided, so the later pairs turn slower, not faster",
        lambda T, dim: _sinusoid(T, dim, inverted=True),
    ),
    Mistake(
        "the times start at 1: row t is time t = 0, 1, …, T − 1 (row 0: sin 0 = 0 and cos 0 = 1)",
        lambda T, dim: _sinusoid(T, dim, positions=torch.arange(1, T + 1, dtype=torch.float64)),
    ),
    Mistake(
        "transposed: one row per time, (T, dim)",
        lambda T, dim: _sinusoid(T, dim).T,
    ),
    Mistake(
        "every pair turns at the same speed, t itself: the exponent 2i/dim was computed with integer division (//), "
        "which makes it 0 — divide with /",
        lambda T, dim: _sinusoid(T, dim, exponent=lambda i, d: (2 * i) // d),
    ),
    Mistake(
        "an extra leading axis, (1, T, dim), as for a batch: the table is (T, dim); the model adds it to its tokens",
        lambda T, dim: _sinusoid(T, dim)[None],
    ),
)

SINUSOIDAL_EMBEDDING = Exercise(
    "05.1",
    "sinusoidal_embedding(T, dim) → (T, dim)",
    _sinusoid_cases,
    _sinusoid_reference,
    _sinusoid_compare,
    SINUSOID_MISTAKES,
)

# --------------------------------------------------------------------------- 05.2 count the parameters


def _count_cases() -> list[tuple]:
    # 20 · 1.33 = 26.6 and 24 · 1.3 = 31.2: rounding, truncating and rounding up give different hidden widths
    return [(64, 2, 4.0), (128, 4, 2.0), (32, 1, 1.0), (20, 2, 1.33), (24, 2, 1.3)]


def _count_reference(dim: int, depth: int, mlp_ratio: float) -> int:
    module = transformer.Transformer(dim, depth, num_heads=4, mlp_ratio=mlp_ratio)  # counted before the learner's runs
    return sum(p.numel() for p in module.parameters())


def _count_compare(got, want: int, args: tuple) -> str | None:
    how = (
        "count, per layer, two LayerNorms (a weight and a bias each), the four dim × dim projections of attention "
        "with their biases, the MLP's two Linear layers with biases; and the final LayerNorm once"
    )
    return whole_number_hint(got, want, f"transformer_parameters{args}", how)


def _count(dim, depth, ratio, *, norm=2, norms=2, attention=4, bias=True, mlp_bias=True, hidden=None, final=1):
    """The count, and each way of getting it wrong: ``norm`` vectors per LayerNorm, ``norms`` LayerNorms per layer,
    ``attention`` projections, their ``bias``, the MLP's ``mlp_bias`` and ``hidden`` width, ``final`` LayerNorms."""
    h = round(dim * ratio) if hidden is None else hidden
    layer = norms * norm * dim + attention * (dim * dim + bias * dim) + 2 * dim * h + mlp_bias * (h + dim)
    return depth * layer + final * norm * dim


COUNT_MISTAKES = (
    Mistake(
        "12 · dim² per layer is the famous estimate, not the count: add the biases and the LayerNorms",
        lambda dim, depth, r: depth * 12 * dim * dim,
    ),
    Mistake(
        "the final LayerNorm is missing: pre-norm adds one after the last layer (a weight and a bias)",
        lambda dim, depth, r: _count(dim, depth, r, final=0),
    ),
    Mistake(
        "the final LayerNorm is counted once per layer: there is one for the whole stack, after the last layer",
        lambda dim, depth, r: _count(dim, depth, r, final=depth),
    ),
    Mistake(
        "a LayerNorm learns two vectors of dim numbers: a scale (weight) and a shift (bias)",
        lambda dim, depth, r: _count(dim, depth, r, norm=1),
    ),
    Mistake(
        "one LayerNorm per layer is missing: a pre-norm layer has two, one before attention, one before the MLP",
        lambda dim, depth, r: _count(dim, depth, r, norms=1),
    ),
    Mistake(
        "attention's projections have biases: W_Q, W_K, W_V and W^H are nn.Linear layers, dim × dim + dim each",
        lambda dim, depth, r: _count(dim, depth, r, bias=False),
    ),
    Mistake(
        "one of attention's four projections is missing: W_Q, W_K, W_V — and W^H, which mixes the heads",
        lambda dim, depth, r: _count(dim, depth, r, attention=3),
    ),
    Mistake(
        "the MLP's two Linear layers have biases: hidden numbers for the first, dim for the second",
        lambda dim, depth, r: _count(dim, depth, r, mlp_bias=False),
    ),
    Mistake(
        "the MLP is as wide as the model: its hidden width is round(dim · mlp_ratio)",
        lambda dim, depth, r: _count(dim, depth, r, hidden=dim),
    ),
    Mistake(
        "the hidden width is truncated: it is round(dim · mlp_ratio) (20 · 1.33 = 26.6 → 27)",
        lambda dim, depth, r: _count(dim, depth, r, hidden=int(dim * r)),
    ),
    Mistake(
        "the hidden width is rounded up: it is round(dim · mlp_ratio), to the nearest whole number (24 · 1.3 = 31.2 "
        "→ 31)",
        lambda dim, depth, r: _count(dim, depth, r, hidden=math.ceil(dim * r)),
    ),
    Mistake(
        "a count of parameters is a whole number: the MLP's hidden width is round(dim · mlp_ratio), a whole number "
        "of units",
        lambda dim, depth, r: _count(dim, depth, r, hidden=dim * r),
    ),
    Mistake(
        "the MLP is 4 · dim wide whatever mlp_ratio says: here its hidden width is round(dim · mlp_ratio)",
        lambda dim, depth, r: _count(dim, depth, r, hidden=4 * dim),
    ),
)

TRANSFORMER_PARAMETERS = Exercise(
    "05.2",
    "transformer_parameters(dim, depth, mlp_ratio) → int",
    _count_cases,
    _count_reference,
    _count_compare,
    COUNT_MISTAKES,
    forbidden=(
        Forbidden(nn.Module, "parameters", "Module.parameters()"),
        Forbidden(nn.Module, "named_parameters", "Module.named_parameters()"),
        Forbidden(nn.Module, "state_dict", "Module.state_dict()"),
        Forbidden(nn.Module, "modules", "Module.modules()"),  # walking a built module to read its weights
        Forbidden(nn.Module, "named_modules", "Module.named_modules()"),
        Forbidden(transformer.Transformer, "__init__", "building a minivb.transformer.Transformer"),
        Forbidden(transformer.TransformerLayer, "__init__", "building a minivb.transformer.TransformerLayer"),
    ),
    write="the count from the pieces' shapes",
)

# --------------------------------------------------------------------------- 05.3 a frozen time embedding


def _pair(x) -> bool:
    return isinstance(x, (tuple, list)) and len(x) == 2 and all(is_number(v) and 0 <= v <= 8 for v in x)


FROZEN_TIME = Prediction(
    "05.3",
    "a pair of counts out of 8: (with the sinusoidal table, with one row repeated)",
    _pair,
    (
        Answer(
            lambda x: tuple(x) == (8, 0),
            "a table needs no training to tell the frames apart, only rows that differ: with the sinusoidal table, "
            "frame t of the reversed clip carries row t while its picture was frame T − 1 − t's, so every clip's "
            "tokens change and so do its logits; one row repeated adds the same vector to every frame — no time at "
            "all — and the reversed clip is the same set of tokens, so no logits change",
            (8, 0),
            right=True,
        ),
        Answer(
            lambda x: tuple(x) == (0, 0),
            "frozen is not blind: the sinusoidal rows differ from frame to frame, so playing a clip backwards pairs "
            "each picture with another row, and the tokens are not a shuffle of the old ones",
            (0, 0),
        ),
        Answer(
            lambda x: tuple(x) == (8, 8),
            "one row repeated adds the same vector to the tokens of every frame: it says nothing about when, so the "
            "reversed clip's tokens are the old ones reordered — and attention does not see order",
            (8, 8),
        ),
        Answer(
            lambda x: tuple(x) == (0, 8),
            "both the wrong way round: which table gives frame 0 and frame 7 different vectors?",
            (0, 8),
        ),
        Answer(
            lambda x: x[0] == 8,
            "the sinusoidal count is right; with one row repeated, can the logits depend on the order at all? Then "
            "they change for all clips or for none",
            (8, 3),
        ),
        Answer(
            lambda x: x[1] == 0,
            "the repeated row's count is right; the sinusoidal rows differ for every pair of frames, so is there a "
            "clip whose reversal leaves its tokens a mere reordering?",
            (4, 0),
        ),
        Answer(
            lambda x: True,
            "for one model and one table, either the order reaches the tokens or it does not: the answer for each "
            "table is all 8 clips or none",
            (4, 4),
        ),
    ),
)

EXERCISES = (SINUSOIDAL_EMBEDDING, TRANSFORMER_PARAMETERS, FROZEN_TIME)
