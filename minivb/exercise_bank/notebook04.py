"""Used by notebook 04's exercises: grouped-query attention (04.1), how sharp each head is (04.2), and a prediction:
which of section 3's heads is the sharpest (04.3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .judging import Answer, Exercise, Forbidden, Mistake, Prediction, is_number, tensor_hint

# --------------------------------------------------------------------------- 04.1 grouped-query attention


def _gqa_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for dim, heads, kv_heads in [(16, 4, 4), (16, 4, 2), (16, 4, 1), (24, 6, 3), (24, 6, 2)]:
        x = torch.randn(2, 5, dim, generator=g)
        w_q = torch.randn(dim, dim, generator=g) / 4
        w_k, w_v = (torch.randn(dim, kv_heads * dim // heads, generator=g) / 4 for _ in range(2))
        cases.append((x, w_q, w_k, w_v, heads, kv_heads))
    return cases


def _gqa_reference(x, w_q, w_k, w_v, heads, kv_heads):
    B, L, dim = x.shape
    d = dim // heads
    q = (x @ w_q).view(B, L, heads, d).transpose(1, 2)  # (B, heads, L, d)
    k = (x @ w_k).view(B, L, kv_heads, d).transpose(1, 2)  # (B, kv_heads, L, d)
    v = (x @ w_v).view(B, L, kv_heads, d).transpose(1, 2)
    group = heads // kv_heads  # query heads 0 … group−1 share key/value head 0, and so on
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, heads, L, d)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, dim)  # concat the heads


def _gqa_compare(got, want, args: tuple) -> str | None:
    heads, kv_heads = args[4:]
    hint = tensor_hint(got, want, f"with {heads} query heads and {kv_heads} key/value heads, the output")
    if hint and kv_heads == heads:
        return hint + ": with as many key/value heads as query heads, this is plain multi-head attention"
    if hint:
        return hint + ": query heads 0 … h/g − 1 share key/value head 0, the next h/g share head 1, …"
    return None


def _gqa(x, w_q, w_k, w_v, heads, kv_heads, *, share="interleave", scale=None, dim=-1, concat=True):
    """Grouped-query attention, and each way of getting it wrong: ``share`` how query heads find their key/value
    head ("interleave": in consecutive groups; "tile": round robin; "first": all use head 0), ``scale`` of the
    scores, the softmax's ``dim``, and whether the heads are put back side by side (``concat``) or just reshaped."""
    B, L, width = x.shape
    d = width // heads
    q = (x @ w_q).view(B, L, heads, d).transpose(1, 2)
    k = (x @ w_k).view(B, L, kv_heads, d).transpose(1, 2)
    v = (x @ w_v).view(B, L, kv_heads, d).transpose(1, 2)
    group = heads // kv_heads
    if share == "interleave":
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    elif share == "tile":
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    else:
        k, v = k[:, :1].expand(-1, heads, -1, -1), v[:, :1].expand(-1, heads, -1, -1)
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(d) if scale is None else scale)
    out = scores.softmax(dim=dim) @ v  # (B, heads, L, d)
    return out.transpose(1, 2).reshape(B, L, width) if concat else out.reshape(B, L, width)


def _gqa_heads_not_moved(x, w_q, w_k, w_v, heads, kv_heads):
    B, L, width = x.shape
    d, group = width // heads, heads // kv_heads
    q = (x @ w_q).view(B, L, heads, d)
    k, v = ((x @ w).view(B, L, kv_heads, d).repeat_interleave(group, dim=2) for w in (w_k, w_v))
    return ((q @ k.transpose(-2, -1)) / math.sqrt(d)).softmax(dim=-1).matmul(v).reshape(B, L, width)


GQA_MISTAKES = (
    Mistake(
        "the key/value heads are shared round robin (query head i uses key/value head i mod g): each group of h/g "
        "consecutive query heads shares one key/value head — heads 0 … h/g − 1 use head 0",
        lambda *a: _gqa(*a, share="tile"),
    ),
    Mistake(
        "every query head uses key/value head 0: there are g of them, one per group of h/g query heads",
        lambda *a: _gqa(*a, share="first"),
    ),
    Mistake(
        "the scores are not divided by √d: each head's attention is softmax(Q_h K_hᵀ/√d) with d = dim / heads",
        lambda *a: _gqa(*a, scale=1.0),
    ),
    Mistake(
        "the scores are divided by √dim: each head works on d = dim / heads channels, so divide by √d",
        lambda *a: _gqa(*a, scale=1 / math.sqrt(a[0].shape[-1])),
    ),
    Mistake(
        "the softmax runs over the queries: each query's weights over the keys sum to 1 (the last axis)",
        lambda *a: _gqa(*a, dim=-2),
    ),
    Mistake(
        "the head axis was not moved before attention: viewed as (B, L, heads, d), the scores compare the heads of "
        "one token; transpose to (B, heads, L, d) so that each head compares the L tokens",
        lambda *a: _gqa_heads_not_moved(*a),
    ),
    Mistake(
        "the heads are reshaped back without moving the head axis: (B, heads, L, d) → transpose to (B, L, heads, "
        "d) first, then merge the last two axes, as notebook 04 does to concatenate",
        lambda *a: _gqa(*a, concat=False),
    ),
)

GROUPED_QUERY_ATTENTION = Exercise(
    "04.1",
    "grouped_query_attention(x, w_q, w_k, w_v, …) → (B, L, dim)",
    _gqa_cases,
    _gqa_reference,
    _gqa_compare,
    GQA_MISTAKES,
    forbidden=(
        Forbidden(
            F,
            "scaled_dot_product_attention",
            "enable_gqa=True",
            when=lambda *args, **kwargs: bool(kwargs.get("enable_gqa")),
        ),
    ),
    write="the sharing of key/value heads",
)

# --------------------------------------------------------------------------- 04.2 how sharp is each head?


def _entropy_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for shape in [(2, 3, 5, 5), (1, 4, 7, 7)]:
        scores = torch.randn(*shape, generator=g) * 3
        scores[..., -1] = -math.inf  # the last key masked: weights of exactly 0, whose 0 · log 0 counts as 0
        cases.append((scores.softmax(dim=-1),))  # (B, heads, L, L), rows sum to 1
    return cases


def _entropy_reference(A):
    return -torch.xlogy(A, A).sum(-1).mean(dim=(0, 2))  # (heads,): per row, then averaged over batch and queries


def _entropy_compare(got, want, args: tuple) -> str | None:
    hint = tensor_hint(got, want, f"attention_entropy(A of shape {tuple(args[0].shape)})")
    if hint:
        return hint + ": −Σ_j a_ij log a_ij per row (0 · log 0 = 0), averaged over the batch and the queries"
    return None


ENTROPY_MISTAKES = (
    Mistake(
        "NaN: a masked key has weight 0, and 0 · log 0 is NaN in floating point; the entropy counts it as 0 "
        "(torch.xlogy(a, a) is a · log a with that convention)",
        lambda A: -(A * A.log()).sum(-1).mean(dim=(0, 2)),
    ),
    Mistake(
        "averaged over the batch and the heads: keep one number per head, averaged over the batch and the queries",
        lambda A: -torch.xlogy(A, A).sum(-1).mean(dim=(0, 1)),
    ),
    Mistake(
        "one number per batch item and head: average over the batch too → (heads,)",
        lambda A: -torch.xlogy(A, A).sum(-1).mean(dim=2),
    ),
    Mistake(
        "negative: log a ≤ 0 for a weight a ≤ 1, so the entropy −Σ a log a is ≥ 0 — mind the minus sign",
        lambda A: torch.xlogy(A, A).sum(-1).mean(dim=(0, 2)),
    ),
    Mistake(
        "summed over the queries: a head's entropy is its rows' entropies *averaged* over the queries (and batch)",
        lambda A: -torch.xlogy(A, A).sum(-1).sum(dim=2).mean(dim=0),
    ),
    Mistake(
        "in bits: the exercise's entropy uses the natural logarithm (a flat row over L keys has entropy log L)",
        lambda A: -torch.xlogy(A, A).sum(-1).mean(dim=(0, 2)) / math.log(2),
    ),
    Mistake(
        "in base 10: the exercise's entropy uses the natural logarithm (a flat row over L keys has entropy log L)",
        lambda A: -torch.xlogy(A, A).sum(-1).mean(dim=(0, 2)) / math.log(10),
    ),
    Mistake(
        "divided by log L (a normalised entropy, from 0 to 1): the exercise asks for the entropy itself, in nats, "
        "which for a flat row is log L",
        lambda A: -torch.xlogy(A, A).sum(-1).mean(dim=(0, 2)) / math.log(A.shape[-1]),
    ),
    Mistake(
        "averaged over the keys: a row's entropy is the *sum* −Σ_j a_ij log a_ij over its keys; only the rows "
        "(queries) and the batch are averaged",
        lambda A: -torch.xlogy(A, A).mean(-1).mean(dim=(0, 2)),
    ),
)

ATTENTION_ENTROPY = Exercise(
    "04.2",
    "attention_entropy(A (B, heads, L, L)) → (heads,)",
    _entropy_cases,
    _entropy_reference,
    _entropy_compare,
    ENTROPY_MISTAKES,
    forbidden=(Forbidden(torch.distributions.Categorical, "entropy", "torch.distributions.Categorical"),),
    write="the entropy −Σ a log a",
)

# --------------------------------------------------------------------------- 04.3 which head is the sharpest?

SHARPEST_HEAD = Prediction(
    "04.3",
    "a head of section 3: 1, 2 or 3",
    lambda x: is_number(x) and x in (1, 2, 3),
    (
        Answer(
            lambda x: x == 3,
            "head 3 compares positions: a query scores 4 with the 8 tokens of its own region (one per frame) and 0 "
            "with the 120 others, so most of its weight ties over 8 keys; head 2's over 16 (the regions of its "
            "frame), and head 1's background rows spread evenly over all 128",
            3,
            right=True,
        ),
        Answer(
            lambda x: x == 2,
            "head 2's row does tie over few keys — the 16 regions of the query's frame, all scoring 4 — but another "
            "head ties over fewer: count, for each head, how many keys share the query's code",
            2,
        ),
        Answer(
            lambda x: x == 1,
            "head 1 is sharp on the object's tokens, but most tokens are background with ≈ 0 in its 'what' channels: "
            "their rows spread evenly over all 128 keys, the flattest a row can be, and the average follows them",
            1,
        ),
    ),
)

EXERCISES = (GROUPED_QUERY_ATTENTION, ATTENTION_ENTROPY, SHARPEST_HEAD)
