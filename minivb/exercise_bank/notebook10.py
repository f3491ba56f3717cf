"""Used by notebook 10's exercises: the joint model's input H₀ when each row has its own layout (10.1), recall@k of
text-to-video search from a score matrix (10.2), and a prediction: how many classes does the text prior name (10.3)?"""

from __future__ import annotations

import math

import torch

from ..language import CLS, PAD, SEP, TO_VIDEO
from .judging import Answer, Exercise, Mistake, Prediction, between, is_number, number_hint, tensor_hint

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
    for n, k, boost in [(50, 1, 2.0), (50, 5, 1.0), (30, 10, 0.5), (40, 3, 1.5)]:
        scores = torch.randn(n, n, generator=g) + boost * torch.eye(n)  # its own video scores a little higher
        cases.append((scores, k))
    return cases


def _recall(scores, k, *, above=torch.gt, within=lambda rank, k: rank < k, per=None):
    """Narration i's own video is video i: the share of narrations with it among their k best-scored videos."""
    rank = above(scores, scores.diag()[:, None]).sum(1)  # (N,) videos scored above (or with) the right one
    hits = within(rank, k).double()
    return hits.sum().item() if per == "count" else (hits.mean() if per is None else hits.mean() / per(k)).item()


def _recall_reference(scores, k):
    return _recall(scores, k)


def _recall_compare(got, want: float, args: tuple) -> str | None:
    scores, k = args
    how = f"for each narration (a row), is its own video (column i) among the {k} highest scores of the row?"
    return number_hint(got, want, f"recall@{k} over {len(scores)} narrations", how)


RECALL_MISTAKES = (
    Mistake(
        "that ranks the columns: each video looking for its narration (video-to-text). Text-to-video ranks each row: "
        "one narration's scores against every video",
        lambda scores, k: _recall(scores.T.contiguous(), k),
    ),
    Mistake(
        "the right video is counted among the videos that beat it (≥ instead of >): a narration whose own video "
        "scores highest has 0 videos above it, and counts for recall@1",
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

PRIOR_CLASSES = Prediction(
    "10.3",
    "a number of classes, 0 … 8",
    lambda x: is_number(x) and 0 <= x <= 8,
    (
        Answer(
            between(1, 1),
            "one: the prior's input has no video — the same '[CLS] here the [MASK] [MASK] … [>] [PAD] … [SEP]' for "
            "every clip — so every clip gets the same scores and the same class; 24 of the 192 clips are that "
            "class: 12.5%, exactly chance",
            1,
            right=True,
        ),
        Answer(
            between(0, 0.99),
            "every clip gets a class: the one whose best phrase scores highest, so at least one class is named",
            0,
        ),
        Answer(
            between(1.01, 7.99),
            "what could make the prior name one class for one clip and another for the next? Its input holds no "
            "video, and the text is the same template for every clip",
            4,
        ),
        Answer(
            between(8, 8),
            "naming every class would need an answer that changes with the video; the prior's input is the same "
            "token sequence for all 192 clips",
            8,
        ),
    ),
)

EXERCISES = (INITIAL_STATE, RECALL_AT_K, PRIOR_CLASSES)
