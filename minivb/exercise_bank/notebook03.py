"""Used by notebook 03's exercises: a causal mask (03.1), a padding mask per sequence (03.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import attention
from .judging import Exercise, Forbidden, Mistake, same_output, tensor_hint


def _qkv(seed: int, b: int = 2, length: int = 6, d: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, length, d, generator=g) for _ in range(3))


def _attend(q, k, v, keep=None, *, scale=None, dim=-1, fill=-math.inf, after=False, weights=False):
    """softmax(QKᵀ · scale, over ``dim``) V with the scores where ``keep`` is False set to ``fill`` (or, ``after``,
    the weights zeroed after the softmax): the right formula, and each way of getting it wrong."""
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if keep is not None and not after:
        scores = scores.masked_fill(~keep, fill)
    a = scores.softmax(dim=dim)
    if keep is not None and after:
        a = a.masked_fill(~keep, 0.0)
    return a if weights else a @ v


# --------------------------------------------------------------------------- 03.1 a causal mask


def _causal_cases() -> list[tuple]:
    return [_qkv(seed) for seed in range(3)]


def _causal_reference(q, k, v) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, L, D): PyTorch's own


def _past(q, diagonal: int = 0) -> torch.Tensor:
    """(L, L) True where key j ≤ i + diagonal: the keys query i may see (diagonal 0: itself and the past)."""
    length = q.shape[-2]
    return torch.ones(length, length, dtype=torch.bool).tril(diagonal)


def _causal_compare(got, want, args: tuple) -> str | None:
    hint = tensor_hint(got, want, "causal_attention(q, k, v)")
    return None if hint is None else hint + ": mask the scores of every key j > i with −inf before the softmax"


CAUSAL_MISTAKES = (
    Mistake(
        "your output equals attention without a mask: position i must not see positions after i",
        lambda q, k, v: _attend(q, k, v),
    ),
    Mistake(
        "the scores are not divided by √D: the mask is right, but the formula is softmax(QKᵀ/√D + M)",
        lambda q, k, v: _attend(q, k, v, _past(q), scale=1.0),
    ),
    Mistake(
        "the scores are divided by D: the formula divides by √D, the square root of the width",
        lambda q, k, v: _attend(q, k, v, _past(q), scale=1 / q.shape[-1]),
    ),
    Mistake(
        "the diagonal is masked too, so row 0 has no key left and becomes NaN: position i may see itself (j = i)",
        lambda q, k, v: _attend(q, k, v, _past(q, -1)),
    ),
    Mistake(
        "the mask is the wrong way round: position i may see positions j ≤ i (the past), and not the future",
        lambda q, k, v: _attend(q, k, v, _past(q).T),
    ),
    Mistake(
        "the softmax runs down the columns: each query's weights over the keys must sum to 1 (the last axis)",
        lambda q, k, v: _attend(q, k, v, _past(q), dim=-2),
    ),
    Mistake(
        "the future weights are zeroed after the softmax, so the rows no longer sum to 1: mask the scores with −inf "
        "before it",
        lambda q, k, v: _attend(q, k, v, _past(q), after=True),
    ),
    Mistake(
        "masked scores set to 0 still get weight (e⁰ = 1): a masked score must become −inf, whose weight is e^−∞ = 0",
        lambda q, k, v: _attend(q, k, v, _past(q), fill=0.0),
    ),
    Mistake(
        "that is the attention matrix A: the output mixes the values with it, A V",
        lambda q, k, v: _attend(q, k, v, _past(q), weights=True),
    ),
    Mistake(
        "the scores are divided by √L, the length of the sequence: the formula divides by √D, the width of a query",
        lambda q, k, v: _attend(q, k, v, _past(q), scale=1 / math.sqrt(q.shape[-2])),
    ),
    Mistake(
        "the mask is one off: position i also sees position i + 1; it may see j ≤ i only, so mask every j > i",
        lambda q, k, v: _attend(q, k, v, _past(q, 1)),
    ),
    Mistake(
        "the scores are K Qᵀ: row i of the scores must be query i against every key, Q Kᵀ",
        lambda q, k, v: _attend(k, q, v, _past(q)),
    ),
)

CAUSAL_ATTENTION = Exercise(
    "03.1",
    "causal_attention(q, k, v) → (B, L, D)",
    _causal_cases,
    _causal_reference,
    _causal_compare,
    CAUSAL_MISTAKES,
    forbidden=(
        Forbidden(F, "scaled_dot_product_attention", "F.scaled_dot_product_attention"),
        Forbidden(attention, "scaled_dot_product_attention", "minivb.attention.scaled_dot_product_attention"),
    ),
    write="the attention formula with its mask",
)

# --------------------------------------------------------------------------- 03.2 a padding mask, per sequence

LENGTHS = torch.tensor([4, 6, 1])


def _padded_cases() -> list[tuple]:
    return [(*_qkv(seed, b=3), LENGTHS.clone()) for seed in range(3)]


def _real(lengths: torch.Tensor, length: int = 6) -> torch.Tensor:
    return torch.arange(length)[None, :] < lengths[:, None]  # (B, L): real tokens


def _padded_reference(q, k, v, lengths) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_real(lengths)[:, None, :])  # (B, L, D)


def _real_rows(got, lengths):
    return [got[b, :n] for b, n in enumerate(lengths.tolist())]


def _padded_compare(got, want, args: tuple) -> str | None:
    lengths = args[3]
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return tensor_hint(got, want, "padded_attention(q, k, v, lengths)")
    for b, n in enumerate(lengths.tolist()):  # only real queries count: padded rows are thrown away anyway
        if not torch.allclose(got[b, :n].double(), want[b, :n].double(), atol=1e-5):
            return (
                f"sequence {b} (length {n}): its real tokens must give no weight to the padded keys (positions {n} …) "
                "and attend to its real keys as softmax(QKᵀ/√D) does; mask the padded keys' scores with −inf"
            )
    return None


def _same_real_rows(got, theirs, args: tuple) -> bool:
    """Two answers are the same where it matters: on the real queries (what padded queries produce is ignored)."""
    if not isinstance(got, torch.Tensor) or not isinstance(theirs, torch.Tensor) or got.shape != theirs.shape:
        return same_output(got, theirs)
    return all(same_output(a, b) for a, b in zip(_real_rows(got, args[3]), _real_rows(theirs, args[3])))


PADDED_MISTAKES = (
    Mistake(
        "your real tokens still give weight to the padded keys, as without a mask: hide the padded keys (columns) "
        "from every query, one mask row per sequence broadcast over the queries, (B, 1, L)",
        lambda q, k, v, lengths: _attend(q, k, v),
    ),
    Mistake(
        "one real token too few: sequence b's real tokens are positions 0 … lengths[b] − 1",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths - 1)[:, None, :]),
    ),
    Mistake(
        "one padded token counted as real: sequence b's real tokens are positions 0 … lengths[b] − 1",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths + 1)[:, None, :]),
    ),
    Mistake(
        "every sequence got the first sequence's length: the lengths differ, one mask row per sequence",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths[:1].expand(len(lengths)))[:, None, :]),
    ),
    Mistake(
        "the padded keys' weights are zeroed after the softmax, so the rows no longer sum to 1: mask the scores "
        "with −inf before it",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths)[:, None, :], after=True),
    ),
    Mistake(
        "the scores are not divided by √D: the mask is right, but attention is softmax(QKᵀ/√D) V",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths)[:, None, :], scale=1.0),
    ),
    Mistake(
        "the padded keys' scores are 0 (zeroed keys, or a mask filled with 0), and e⁰ = 1 still gives them weight: "
        "their scores must become −inf",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths)[:, None, :], fill=0.0),
    ),
    Mistake(
        "a causal mask too: here every real token may see every real key of its sequence, before it or after it; "
        "only the padded keys are hidden",
        lambda q, k, v, lengths: _attend(q, k, v, _real(lengths)[:, None, :] & _past(q)),
    ),
)

PADDED_ATTENTION = Exercise(
    "03.2",
    "padded_attention(q, k, v, lengths) → (B, L, D)",
    _padded_cases,
    _padded_reference,
    _padded_compare,
    PADDED_MISTAKES,
    same=_same_real_rows,
)

EXERCISES = (CAUSAL_ATTENTION, PADDED_ATTENTION)
