"""Used by notebook 10's exercises: the joint model's input H₀ when each row has its own layout (10.1), recall@k of
text-to-video search from a score matrix (10.2), and a prediction: how many classes does the text prior name (10.3)?"""

from __future__ import annotations

import decimal
import math
import numbers

import numpy as np
import torch

from ..language import CLS, PAD, SEP, TO_VIDEO
from .judging import Answer, Exercise, Mistake, Prediction, is_number, number_hint, tensor_hint

# --------------------------------------------------------------------------- 10.1 H₀ of tightly packed sequences


def _packed(g: torch.Generator, rows: int, vocab: int, length: int) -> torch.Tensor:
    """``rows`` sequences ``[CLS] text [>] video [SEP] [PAD] …`` of ``length`` ids, each with its own text and video
    lengths (so each row's ``[>]`` is somewhere else); words are ids ``6 … vocab-1``."""
    ids = torch.full((rows, length), PAD, dtype=torch.long)
    for r in range(rows):
        n_text = int(torch.randint(2, length // 2, (1,), generator=g))
        n_video = int(torch.randint(1, length - n_text - 3 + 1, (1,), generator=g))
        if r == 0:
            n_video = min(n_video, length - n_text - 4)  # the first row ends in [PAD]: every case has padding
        words = torch.randint(6, vocab, (n_text + n_video,), generator=g)
        row = [CLS, *words[:n_text].tolist(), TO_VIDEO, *words[n_text:].tolist(), SEP]
        ids[r, : len(row)] = torch.tensor(row)
    return ids


def _h0_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for rows, vocab, length, dim in [(4, 30, 16, 8), (3, 50, 24, 6), (5, 20, 12, 4)]:
        ids = _packed(g, rows, vocab, length)
        tables = (torch.randn(n, dim, generator=g) for n in (vocab, length, 2))  # token, position, segment
        cases.append((ids, *tables))
    return cases


def _after_separator(ids: torch.Tensor, inclusive: bool = False) -> torch.Tensor:
    """(B, L) long: 1 at every position after the row's [>] (and at [>] itself if ``inclusive``), else 0."""
    marks = (ids == TO_VIDEO).long().cumsum(1)  # 1 from [>] on
    return marks if inclusive else marks - (ids == TO_VIDEO).long()


def _h0(ids, tok, pos, seg, *, segments=None, positions=None, token_scale=1.0, use_seg=True, use_pos=True):
    segments = _after_separator(ids) if segments is None else segments
    positions = torch.arange(ids.shape[1]).expand_as(ids) if positions is None else positions
    h = token_scale * tok[ids]
    if use_pos:
        h = h + pos[positions]
    if use_seg:
        h = h + seg[segments]
    return h  # (B, L, D)


def _h0_reference(ids, tok, pos, seg):
    return _h0(ids, tok, pos, seg)  # E_token(id) + E_position(i) + E_segment(0 up to [>], 1 after)


def _h0_compare(got, want: torch.Tensor, args: tuple) -> str | None:
    dtype = getattr(got, "dtype", None)  # a half-precision or integer H₀: say so, not that the layout is wrong
    if isinstance(got, (torch.Tensor, np.ndarray)) and tuple(got.shape) == tuple(want.shape) and dtype is not None:
        whole = not got.is_floating_point() if isinstance(got, torch.Tensor) else np.issubdtype(dtype, np.integer)
        low = dtype in (torch.float16, torch.bfloat16, np.float16) or (whole and dtype != torch.bool)
        if low and not torch.allclose(torch.as_tensor(got).double(), want.double(), atol=1e-5):
            return (
                f"H₀ is {dtype}: the tables hold float32 rows, and adding them as {dtype} rounds them; keep their "
                "dtype (or a wider one)"
            )
    hint = tensor_hint(got, want, "H₀")
    if hint and "right shape" in hint:
        return (
            f"{hint}: each position adds its token's row, its position's row and its segment's row (segment 0 up to "
            "and including the row's own [>], 1 after it)"
        )
    return hint


def _first_rows_separator(ids: torch.Tensor) -> torch.Tensor:
    where = int((ids[0] == TO_VIDEO).nonzero()[0])
    return (torch.arange(ids.shape[1]) > where).long().expand_as(ids)


def _video_only_segment(ids: torch.Tensor) -> torch.Tensor:
    return _after_separator(ids) * (ids != PAD).long()  # the [PAD] after [SEP] back in segment 0


def _one_separator_for_all(ids: torch.Tensor) -> torch.Tensor:
    last = int((ids == TO_VIDEO).long().argmax(1).max())  # the longest text's [>]: section 3's fixed slot
    return (torch.arange(ids.shape[1]) > last).long().expand_as(ids)


def _restarted_positions(ids: torch.Tensor) -> torch.Tensor:
    i = torch.arange(ids.shape[1]).expand_as(ids)
    start = (ids == TO_VIDEO).long().argmax(1, keepdim=True) + 1  # (B, 1): where the video begins
    return torch.where(i >= start, i - start, i)


H0_MISTAKES = (
    Mistake(
        "the segment embedding is missing: H₀ adds three rows per position — token, position and segment",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, use_seg=False),
    ),
    Mistake(
        "the position embedding is missing: without it the model cannot tell the first word from the last",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, use_pos=False),
    ),
    Mistake(
        "[>] is in segment 1 here: it closes the text, so it belongs to segment 0; segment 1 starts after it",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, segments=_after_separator(ids, inclusive=True)),
    ),
    Mistake(
        "every row takes its segments from the first row's [>]: here each row's text has its own length, so find "
        "each row's own [>]",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, segments=_first_rows_separator(ids)),
    ),
    Mistake(
        "every row takes its segments from the batch's last [>] (the longest text's), as section 3's fixed slot "
        "does: here each row's text has its own length, so find each row's own [>]",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, segments=_one_separator_for_all(ids)),
    ),
    Mistake(
        "the first visual word after [>] is still in segment 0 here: segment 1 begins at the position right after "
        "the row's [>], not one later",
        lambda ids, tok, pos, seg: _h0(
            ids, tok, pos, seg, segments=_after_separator(ids).roll(1, 1) * _after_separator(ids)
        ),
    ),
    Mistake(
        "the text positions add no segment row: segment 0 has a row of its own in the segment table (its first "
        "row), added at every position up to [>], as segment 1's is after it",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, use_seg=False) + _after_separator(ids)[..., None] * seg[1],
    ),
    Mistake(
        "the segments are swapped: the text (with [CLS] and [>]) is segment 0, the video after [>] segment 1",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, segments=1 - _after_separator(ids)),
    ),
    Mistake(
        "the token rows are scaled by √D: that is the original Transformer's embedding; BERT (and VideoBERT) add the "
        "three rows as they are",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, token_scale=math.sqrt(tok.shape[1])),
    ),
    Mistake(
        "the [PAD] positions are set to zero: H₀ embeds every position, [PAD] too; the attention mask, not H₀, keeps "
        "[PAD] out",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg) * (ids != PAD)[..., None],
    ),
    Mistake(
        "the positions start again from 0 after [>]: positions count through the whole sequence, 0 … L−1, and the "
        "segment says which part a position is in",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, positions=_restarted_positions(ids)),
    ),
    Mistake(
        "the [PAD] positions after [SEP] were put back in segment 0: the task puts every position after [>] in "
        "segment 1",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, segments=_video_only_segment(ids)),
    ),
    Mistake(
        "[SEP] and the [PAD] after it are in segment 0 here, as if segment 1 were the visual words only: the task "
        "puts every position after the row's [>] in segment 1",
        lambda ids, tok, pos, seg: _h0(ids, tok, pos, seg, segments=_video_only_segment(ids) * (ids != SEP).long()),
    ),
)

INITIAL_STATE = Exercise(
    "10.1",
    "initial_state(ids, token_table, position_table, segment_table) → H₀ (B, L, D)",
    _h0_cases,
    _h0_reference,
    _h0_compare,
    H0_MISTAKES,
)

# --------------------------------------------------------------------------- 10.2 recall@k of text-to-video search


def _recall_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, k, boost in [(50, 1, 2.0), (50, 5, 1.0), (30, 10, 0.5), (40, 3, 1.5), (20, 12, 4.0)]:  # the last: all found
        scores = torch.randn(n, n, generator=g) + boost * torch.eye(n)  # its own video scores a little higher
        cases.append((scores, k))
    return cases


def _recall(scores, k, *, above=torch.gt, within=lambda rank, k: rank < k, per=None, right=None):
    """Narration i's own video is video i: the share of narrations with it among their k best-scored videos."""
    right = scores.diag()[:, None] if right is None else right
    rank = above(scores, right).sum(1)  # (N,) videos scored above (or with) the right one
    hits = within(rank, k).double()
    return hits.sum().item() if per == "count" else (hits.mean() if per is None else hits.mean() / per(k)).item()


def _recall_reference(scores, k):
    return _recall(scores, k)


def _recall_compare(got, want: float, args: tuple) -> str | None:
    scores, k = args
    if isinstance(got, (numbers.Rational, decimal.Decimal)) and not isinstance(got, bool):
        got = float(got)  # a Fraction(41, 50) is a fraction too
    how = f"for each narration (a row), is its own video (column i) among the {k} highest scores of the row?"
    return number_hint(got, want, f"recall@{k} over {len(scores)} narrations", how)


RECALL_MISTAKES = (
    Mistake(
        "that ranks the columns: each video looking for its narration (video-to-text). Text-to-video ranks each row: "
        "one narration's scores against every video",
        lambda scores, k: _recall(scores.T.contiguous(), k),
    ),
    Mistake(
        "that looks at the k − 1 best videos: a narration whose own video scores highest has 0 videos above it and "
        "counts for recall@1. Is the right video counted among the videos that beat it (≥ instead of >), or a rank "
        "that starts at 1 compared with < k?",
        lambda scores, k: _recall(scores, k, above=torch.ge),
    ),
    Mistake(
        "that looks at the k + 1 best videos: the right video is among the k best when fewer than k videos score "
        "above it",
        lambda scores, k: _recall(scores, k, within=lambda rank, k: rank <= k),
    ),
    Mistake(
        "the videos are ranked from the lowest score up: a higher alignment score means a better match",
        lambda scores, k: _recall(scores, k, above=torch.lt),
    ),
    Mistake(
        "that is how many narrations found their video: divide by the number of narrations",
        lambda scores, k: _recall(scores, k, per="count"),
    ),
    Mistake(
        "that is a percentage: return a fraction between 0 and 1",
        lambda scores, k: 100 * _recall(scores, k),
    ),
    Mistake(
        "that is recall@1 whatever k: the right video counts if it is anywhere among the k best, not only first",
        lambda scores, k: _recall(scores, 1),
    ),
    Mistake(
        "that is precision@k (hits / k): with one right video per narration, recall@k only asks whether it is "
        "among the k best",
        lambda scores, k: _recall(scores, k, per=float),
    ),
    Mistake(
        "each score is compared with its column's right score: scores.diag() lines up along the last dimension, so "
        "score[i, j] meets score[j, j]; each row's scores should meet that row's own right score, score[i, i]",
        lambda scores, k: _recall(scores, k, right=scores.diag()[None, :]),
    ),
    Mistake(
        "that is the share of narrations whose own video is *not* among the k best: recall counts the ones found",
        lambda scores, k: 1 - _recall(scores, k),
    ),
    Mistake(
        "a whole-number division (//) drops the fraction: the hits over the narrations is a number between 0 and 1, "
        "divide with /",
        lambda scores, k: _recall(scores, k, per="count") // len(scores),
    ),
)

RECALL_AT_K = Exercise(
    "10.2",
    "recall_at_k(scores, k) → fraction",
    _recall_cases,
    _recall_reference,
    _recall_compare,
    RECALL_MISTAKES,
)

# --------------------------------------------------------------------------- 10.3 how many classes does the prior name?


def _classes(x):
    """A prediction as a number of classes: a one-element tensor or array as its number; None if not a whole number
    from 0 to 8."""
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim == 0:
        x = x.item()
    return x if is_number(x) and 0 <= x <= 8 and float(x).is_integer() else None


def _named(low: int, high: int):
    return lambda x: _classes(x) is not None and low <= _classes(x) <= high


PRIOR_CLASSES = Prediction(
    "10.3",
    "a whole number of classes, 0 … 8",
    lambda x: _classes(x) is not None,
    (
        Answer(
            _named(1, 1),
            "one: the prior's input has no video — the same '[CLS] here the [MASK] [MASK] … [>] [PAD] … [SEP]' for "
            "every clip — so every clip gets the same scores and the same class; 24 of the 192 clips are that "
            "class: 12.5%, exactly chance",
            1,
            right=True,
        ),
        Answer(
            _named(0, 0),
            "every clip gets a class: the one whose best phrase scores highest, so at least one class is named",
            0,
        ),
        Answer(
            _named(2, 7),
            "what could make the prior name one class for one clip and another for the next? Its input holds no "
            "video, and the text is the same template for every clip",
            4,
        ),
        Answer(
            _named(8, 8),
            "naming every class would need an answer that changes with the video; the prior's input is the same "
            "token sequence for all 192 clips",
            8,
        ),
    ),
)

EXERCISES = (INITIAL_STATE, RECALL_AT_K, PRIOR_CLASSES)
