"""Used by every notebook's exercises: ``check("03.1", my_function)`` runs your answer and says whether it is right.

Every exercise is a function for you to write in the notebook. ``check`` calls it on inputs of its own and
compares the result with an independent reference — PyTorch's own function where one exists, else the formula
written out here, or the finished ``minivb`` code — or with a property any right answer has. It prints one line:

    03.1 correct
    03.1 not yet: <a hint: what is wrong, never the answer>
    03.1 not attempted yet                          (the function still raises NotImplementedError)

and returns ``True`` only when the answer is right. ``notebooks/solutions/`` holds one worked answer to each.
Your function gets copies of the inputs (changing them in place is fine), and the references come from the
originals. A fraction must be a finite number: NaN or inf is never right.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to write, and how to tell whether it is right."""

    id: str  # "NN.k": notebook NN, exercise k
    task: str  # one line: the function to write
    judge: Callable[[Callable], str | None]  # the answer → None if right, else a hint


def _same(got: Any, want: torch.Tensor, what: str, atol: float = 1e-5) -> str | None:
    """None if ``got`` is a tensor (or array) equal to ``want``; else what differs: type, shape or values."""
    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got)
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(want.shape):
        return f"{what} should be shaped {tuple(want.shape)}, got {tuple(got.shape)}"
    if not torch.allclose(got.double(), want.double(), atol=atol, rtol=1e-4):
        return f"{what} has the right shape but not the right values"
    return None


def _kind(x: Any) -> str:
    """The type of ``x`` for a hint: ``NoneType``, ``Tensor shaped (50,)``."""
    shape = f" shaped {tuple(x.shape)}" if isinstance(x, (torch.Tensor, np.ndarray)) else ""
    return type(x).__name__ + shape


def _fraction(got: Any, want: float, what: str, how: str) -> str | None:
    """None if ``got`` is one finite number (a one-element tensor or array too) within 1e-6 of ``want``; else a
    hint: the type if it is not one number, ``what`` gave … and ``how`` a right answer works if it is wrong."""
    if isinstance(got, (np.ndarray, np.generic)):
        got = torch.as_tensor(got)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)):
        return f"your function returned {_kind(got)}, expected one number"
    if not math.isfinite(got):
        return f"{what} gave {got}, not a number between 0 and 1 (a division by zero?): {how}"
    if abs(got - want) > 1e-6:
        return f"{what} gave {got!r}: {how}"
    return None


# --------------------------------------------------------------------------- 01 video preprocessing


def _sample_at_fps(answer: Callable) -> str | None:
    cases = [(300, 30.0, 5.0), (250, 25.0, 8.0), (91, 29.97, 2.0), (10, 24.0, 7.0), (62, 30.0, 15.0)]
    for frames, fps, target in cases:  # the last: 62 / 30 · 15 is 31.000000000000004 in floating point
        got = answer(frames, fps, target)
        got = [int(i) for i in got]
        want = math.ceil(frames / fps * target - 1e-9)  # one frame per 1/target seconds, from 0 s, inside the video
        case = f"sample_at_fps({frames}, {fps}, {target})"
        if len(got) != want:
            every = f"a {frames / fps:.2f} s video sampled every {1 / target:.3f} s"
            end = "; the last time kept is not inside the video" if len(got) == want + 1 else ""
            return f"{case} kept {len(got)} frames; {every} gives {want}{end}"
        if any(not 0 <= i < frames for i in got):
            return f"{case}: every index must be a frame of the video, 0 … {frames - 1}"
        far = [k for k, i in enumerate(got) if abs(i - k * fps / target) > 0.5 + 1e-9]
        if far:
            k = far[0]
            return f"{case}: the frame kept for time {k}/{target} s should be the one nearest to it, not frame {got[k]}"
    return None


def _split_overlapping(answer: Callable) -> str | None:
    rng = np.random.default_rng(0)
    for (h, w), size, stride in [((64, 64), 32, 16), ((48, 80), 16, 16), ((30, 40), 20, 10)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        tiles = torch.from_numpy(frame).permute(2, 0, 1).unfold(1, size, stride).unfold(2, size, stride)  # (3,a,b,s,s)
        want = tiles.permute(1, 2, 3, 4, 0).reshape(-1, size, size, 3)  # (R, size, size, 3), row by row
        hint = _same(answer(frame, size, stride), want, f"split_overlapping(a {h}×{w} frame, {size}, {stride})", 0)
        if hint and "shaped" in hint:
            return hint + "; R = ((H − size) // stride + 1) · ((W − size) // stride + 1)"
        if hint:
            return hint + " (regions go row by row: left to right, then the next row down)"
    return None


# --------------------------------------------------------------------------- 02 the CNN encoder


def _receptive_field(answer: Callable) -> str | None:
    for layers in [[(3, 1)], [(3, 2)] * 4, [(7, 2), (3, 2), (3, 1), (3, 1)], [(5, 1), (3, 3), (3, 1)]]:
        rf, jump = 1, 1  # the field of one cell, and how far apart neighbouring cells are, in input pixels
        for kernel, stride in layers:
            rf, jump = rf + (kernel - 1) * jump, jump * stride
        got = answer(layers)
        if got != rf:
            return (
                f"receptive_field({layers}) gave {got}: each layer widens the field by (kernel − 1) times the "
                "distance between its input cells in pixels, and each stride multiplies that distance"
            )
    return None


def _pool_to_grid(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for shape, grid in [((16, 4, 4), 2), ((8, 8, 8), 4), ((3, 6, 6), 3), ((5, 4, 4), 1)]:
        fmap = torch.randn(*shape, generator=g)
        want = F.adaptive_avg_pool2d(fmap, grid).flatten(1).T  # (grid², C): region r = row r // grid, col r % grid
        hint = _same(answer(fmap, grid), want, f"pool_to_grid(a {shape} map, {grid})")
        if hint:
            return hint + " (one row per region, numbered row by row; one column per channel)"
    return None


# --------------------------------------------------------------------------- 03 self-attention


def _qkv(seed: int, b: int = 2, length: int = 6, d: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, length, d, generator=g) for _ in range(3))


def _causal_attention(answer: Callable) -> str | None:
    for seed in range(3):
        q, k, v = _qkv(seed)
        unmasked, want = (F.scaled_dot_product_attention(q, k, v, is_causal=c) for c in (False, True))  # (B, L, D)
        got = answer(q, k, v)
        if _same(got, unmasked, "") is None:
            return "your output equals attention without a mask: position i must not see positions after i"
        hint = _same(got, want, "causal_attention(q, k, v)")
        if hint:
            return hint + ": mask the scores of every key j > i with −inf before the softmax"
    return None


def _padded_attention(answer: Callable) -> str | None:
    for seed in range(3):
        q, k, v = _qkv(seed, b=3)
        lengths = torch.tensor([6, 4, 1])
        keep = torch.arange(6)[None, :] < lengths[:, None]  # (B, L): real tokens
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, :])  # (B, L, D)
        got = answer(q, k, v, lengths)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return _same(got, want, "padded_attention(q, k, v, lengths)")
        for b, n in enumerate(lengths.tolist()):  # only real queries count: padded rows are ignored anyway
            if not torch.allclose(got[b, :n], want[b, :n], atol=1e-5):
                return (
                    f"sequence {b} (length {n}): its real tokens must give no weight to the padded keys "
                    f"(positions {n} …); mask their scores with −inf, per sequence"
                )
    return None


# --------------------------------------------------------------------------- 04 multi-head attention


def _gqa_reference(x, w_q, w_k, w_v, heads, kv_heads):
    B, L, dim = x.shape
    d = dim // heads
    q = (x @ w_q).view(B, L, heads, d).transpose(1, 2)  # (B, heads, L, d)
    k = (x @ w_k).view(B, L, kv_heads, d).transpose(1, 2)  # (B, kv_heads, L, d)
    v = (x @ w_v).view(B, L, kv_heads, d).transpose(1, 2)
    group = heads // kv_heads  # query heads 0 … group−1 share key/value head 0, and so on
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, heads, L, d)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, dim)  # concat the heads


def _grouped_query_attention(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    dim, heads = 16, 4
    for kv_heads in (4, 2, 1):  # 4: plain multi-head attention; 1: multi-query attention
        x = torch.randn(2, 5, dim, generator=g)
        w_q = torch.randn(dim, dim, generator=g) / 4
        w_k, w_v = (torch.randn(dim, kv_heads * dim // heads, generator=g) / 4 for _ in range(2))
        want = _gqa_reference(x, w_q, w_k, w_v, heads, kv_heads)
        hint = _same(answer(x, w_q, w_k, w_v, heads, kv_heads), want, f"with {kv_heads} key/value heads, the output")
        if hint:
            if kv_heads == heads:
                return hint + ": with as many key/value heads as query heads, this is plain multi-head attention"
            return hint + ": query heads 0 … h/g − 1 share key/value head 0, the next h/g share head 1, …"
    return None


def _attention_entropy(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 5, 5), (1, 4, 7, 7)]:
        scores = torch.randn(*shape, generator=g) * 3
        scores[..., -1] = -math.inf  # the last key masked: weights of exactly 0, whose 0 · log 0 counts as 0
        A = scores.softmax(dim=-1)  # (B, heads, L, L), rows sum to 1
        want = -torch.xlogy(A, A).sum(-1).mean(dim=(0, 2))  # (heads,): per row, then averaged over batch and queries
        hint = _same(answer(A), want, f"attention_entropy(A of shape {shape})")
        if hint:
            return hint + ": −Σ_j a_ij log a_ij per row (0 · log 0 = 0), averaged over the batch and the queries"
    return None


# --------------------------------------------------------------------------- 05 the VideoBERT model


def _sinusoidal_embedding(answer: Callable) -> str | None:
    for T, dim in [(8, 16), (32, 64), (5, 2)]:
        t = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
        i = torch.arange(dim // 2, dtype=torch.float64)[None, :]  # (1, dim/2)
        angle = t / 10000 ** (2 * i / dim)  # (T, dim/2)
        want = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T, dim)  # sin in even columns, cos in odd
        hint = _same(answer(T, dim), want, f"sinusoidal_embedding({T}, {dim})")
        if hint:
            return hint + ": column 2i is sin(t / 10000^(2i/dim)), column 2i + 1 the cos of the same angle"
    return None


def _transformer_parameters(answer: Callable) -> str | None:
    from .transformer import Transformer

    for dim, depth, mlp_ratio in [(64, 2, 4.0), (128, 4, 2.0), (32, 1, 1.0)]:
        want = sum(p.numel() for p in Transformer(dim, depth, num_heads=4, mlp_ratio=mlp_ratio).parameters())
        got = answer(dim, depth, mlp_ratio)
        if got != want:
            return (
                f"transformer_parameters({dim}, {depth}, {mlp_ratio}) gave {got}: count, per layer, two LayerNorms "
                "(a weight and a bias each), the four dim × dim projections of attention with their biases, the "
                "MLP's two Linear layers with biases; and the final LayerNorm once"
            )
    return None


# --------------------------------------------------------------------------- 06 training and evaluation


def _smoothed_cross_entropy(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for B, C, eps in [(4, 8, 0.1), (16, 400, 0.1), (3, 5, 0.0), (2, 3, 0.5)]:
        logits, target = torch.randn(B, C, generator=g) * 2, torch.randint(0, C, (B,), generator=g)
        want = F.cross_entropy(logits, target, label_smoothing=eps)  # PyTorch's own
        hint = _same(answer(logits, target, eps), want, f"smoothed_cross_entropy with {C} classes and ε = {eps}")
        if hint:
            return hint + ": the target puts 1 − ε on the true class and ε / C on every class (the true one too)"
    return None


def _topk_accuracy(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for B, C, k in [(50, 8, 1), (50, 8, 5), (7, 400, 5), (10, 3, 3)]:
        logits, labels = torch.randn(B, C, generator=g), torch.randint(0, C, (B,), generator=g)
        rank = (logits > logits.gather(1, labels[:, None])).sum(1)  # (B,): classes scored above the true one
        want = (rank < k).double().mean().item()
        how = (
            "a clip counts when its true class is among the k classes with the largest logits; the answer is the "
            "fraction of clips that count, between 0 and 1"
        )
        hint = _fraction(answer(logits, labels, k), want, f"topk_accuracy(…, k={k})", how)
        if hint:
            return hint
    return None


# --------------------------------------------------------------------------- 07 applications


def _recall_at_k(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for n, d, classes, k in [(40, 8, 4, 1), (40, 8, 4, 5), (30, 16, 10, 3)]:  # the last: one video of class 7
        emb = F.normalize(torch.randn(n, d, generator=g), dim=1)
        labels = torch.randint(0, classes, (n,), generator=g)
        sim = emb @ emb.T  # (n, n) cosine similarity
        sim.fill_diagonal_(-math.inf)  # a query is not its own neighbour
        nearest = sim.topk(k, dim=1).indices  # (n, k)
        hits = (labels[nearest] == labels[:, None]).any(1).double()  # (n,)
        alone = torch.bincount(labels)[labels] == 1  # (n,): no other video of its label, nothing to find
        want = hits[~alone].mean().item()  # left out, as notebook 07 §2 and minivb.retrieval.retrieval_metrics do
        got = answer(emb, labels, k)
        if _fraction(got, hits.mean().item(), "", "") is None:  # alone counted as a miss: the exercise allows it
            continue
        how = (
            "for every video, look at the k others most similar to it (never itself); it counts when one of them "
            "has its label; a video alone in its label has nothing to find"
        )
        hint = _fraction(got, want, f"recall_at_k(…, k={k})", how)
        if hint:
            return hint
    return None


def _scatter_from_gram(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for n, d in [(5, 3), (12, 32), (1, 4)]:
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        want = ((x - x.mean(0)) ** 2).sum()  # Σ_w ‖x_w − mean‖²
        got = answer(x @ x.T)
        hint = _same(torch.as_tensor(got, dtype=torch.float64), want, f"the scatter of {n} rows")
        if hint:
            return hint + ": ‖x_w − mean‖² expands into G_ww − (2/n) Σ_v G_wv + (1/n²) Σ_uv G_uv; sum over w"
    return None


# --------------------------------------------------------------------------- 08 visual words and pretraining


def _inertia(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for n, k, d in [(100, 4, 2), (50, 8, 16), (3, 3, 5)]:
        points, centroids = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
        want = torch.cdist(points, centroids).pow(2).min(1).values.sum()
        hint = _same(torch.as_tensor(answer(points, centroids)), want, f"the inertia of {n} points, {k} centroids")
        if hint:
            return hint + ": each point adds its squared distance to its nearest centroid (not its distance)"
    return None


def _majority_accuracy(answer: Callable) -> str | None:
    g = torch.Generator().manual_seed(0)
    for vocab in (5, 64):
        train = torch.randint(0, vocab, (40, 8), generator=g) % (vocab // 2 + 1)  # a skewed vocabulary
        val = torch.randint(0, vocab, (10, 8), generator=g)
        word = torch.bincount(train.flatten(), minlength=vocab).argmax()  # the most frequent training word
        want = (val == word).double().mean().item()
        how = (
            "find the word most frequent in the *training* sentences, then the fraction of validation words that are it"
        )
        hint = _fraction(answer(train, val), want, "majority_accuracy", how)
        if hint:
            return hint
    return None


EXERCISES = {
    e.id: e
    for e in [
        Exercise("01.1", "sample_at_fps(num_frames, fps, target_fps) → frame indices", _sample_at_fps),
        Exercise("01.2", "split_overlapping(frame, size, stride) → (R, size, size, 3) regions", _split_overlapping),
        Exercise("02.1", "receptive_field([(kernel, stride), …]) → int (pixels)", _receptive_field),
        Exercise("02.2", "pool_to_grid(feature_map (C, H, W), grid) → (grid², C)", _pool_to_grid),
        Exercise("03.1", "causal_attention(q, k, v) → (B, L, D)", _causal_attention),
        Exercise("03.2", "padded_attention(q, k, v, lengths) → (B, L, D)", _padded_attention),
        Exercise("04.1", "grouped_query_attention(x, w_q, w_k, w_v, …) → (B, L, dim)", _grouped_query_attention),
        Exercise("04.2", "attention_entropy(A (B, heads, L, L)) → (heads,)", _attention_entropy),
        Exercise("05.1", "sinusoidal_embedding(T, dim) → (T, dim)", _sinusoidal_embedding),
        Exercise("05.2", "transformer_parameters(dim, depth, mlp_ratio) → int", _transformer_parameters),
        Exercise("06.1", "smoothed_cross_entropy(logits, target, eps) → loss", _smoothed_cross_entropy),
        Exercise("06.2", "topk_accuracy(logits, labels, k) → fraction", _topk_accuracy),
        Exercise("07.1", "recall_at_k(embeddings, labels, k) → fraction", _recall_at_k),
        Exercise("07.2", "scatter_from_gram(G) → Σ‖x − mean‖²", _scatter_from_gram),
        Exercise("08.1", "inertia(points, centroids) → Σ min ‖x − c‖²", _inertia),
        Exercise("08.2", "majority_accuracy(train_ids, val_ids) → fraction", _majority_accuracy),
    ]
}


class _Raised(Exception):
    """The learner's function raised (its error is ``__cause__``), as opposed to the check failing on its result."""


class _Answer:
    """The learner's function, called on copies of the check's inputs; remembers what it returned last."""

    def __init__(self, function: Callable):
        self.function, self.returned = function, None

    def __call__(self, *args: Any) -> Any:
        args = copy.deepcopy(args)  # an answer may change its inputs in place (q /= …): the check's stay intact
        try:
            self.returned = self.function(*args)
        except NotImplementedError:
            raise
        except Exception as e:
            raise _Raised from e
        return self.returned


def check(exercise: str, answer: Callable) -> bool:
    """Run ``answer`` for exercise ``"NN.k"``, print one line (correct, a hint, or not attempted) → right or not."""
    if exercise not in EXERCISES:
        raise ValueError(f"no exercise {exercise!r}; there are {', '.join(EXERCISES)}")
    called = _Answer(answer)
    try:
        hint = EXERCISES[exercise].judge(called)
    except NotImplementedError:
        print(f"{exercise} not attempted yet")
        return False
    except _Raised as e:  # the learner's code failed: say how, in one line
        hint = f"your function raised {type(e.__cause__).__name__}: {e.__cause__}".splitlines()[0]
    except Exception:  # the check could not read what the function returned
        expected = EXERCISES[exercise].task.partition(" → ")[2]
        hint = f"your function returned {_kind(called.returned)}, expected {expected}"
    print(f"{exercise} correct" if hint is None else f"{exercise} not yet: {hint}")
    return hint is None
