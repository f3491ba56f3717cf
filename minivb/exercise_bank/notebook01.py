"""Used by notebook 01's exercises: sample at a target frame rate (01.1), regions that overlap (01.2)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from .judging import Exercise, Mistake, as_tensor, kind, tensor_hint

# --------------------------------------------------------------------------- 01.1 sample at a target frame rate

# (frames, fps, target fps), all integers. No case puts a time exactly half-way between two frames, so "the nearest
# frame" is one frame. (62, 30, 15) and (300, 30, 5) end exactly on a time: 62 · 15 / 30 = 31 and 300 · 5 / 30 = 50.
SAMPLE_CASES = [(300, 30, 5), (250, 25, 9), (62, 30, 15), (10, 24, 7), (100, 24, 9), (12, 24, 30)]


def _sample_cases() -> list[tuple]:
    return list(SAMPLE_CASES)


def _sample_reference(frames: int, fps: int, target: int) -> list[int]:
    count = -(-frames * target // fps)  # the times k / target before the end, frames / fps: k · fps < frames · target
    return [round(Fraction(k * fps, target)) for k in range(count)]  # exact: the nearest frame to k · fps / target


def _sample_compare(got, want: list[int], args: tuple) -> str | None:
    frames, fps, target = args
    case = f"sample_at_fps({frames}, {fps}, {target})"
    indices = as_tensor(got)
    if indices is None:
        return f"your function returned {kind(got)}, expected frame indices"
    indices = indices.reshape(-1)
    if not torch.equal(indices, indices.round()):
        return f"{case} returned {indices[:4].tolist()} …: frame indices are whole numbers"
    got = [int(i) for i in indices]
    if len(got) != len(want):
        every = f"a {frames}-frame video at {fps} fps sampled every 1/{target} s"
        return f"{case} kept {len(got)} frames; {every} keeps {len(want)}"
    if any(not 0 <= i < frames for i in got):
        return f"{case}: every index must be a frame of the video, 0 … {frames - 1}"
    far = [k for k, i in enumerate(got) if abs(i - k * fps / target) > 0.5 + 1e-9]
    if far:
        k = far[0]
        return f"{case}: the frame kept for time {k}/{target} s should be the one nearest to it, not frame {got[k]}"
    return None


def _count(frames: int, fps: int, target: int) -> int:
    return -(-frames * target // fps)


SAMPLE_MISTAKES = (
    Mistake(
        "sample_at_fps(62, 30, 15) keeps a time too many: in floating point 62 / 30 · 15 is 31.000000000000004, so "
        "its ceiling is 32; the exercise's condition, k · fps < num_frames · target_fps, compares whole numbers",
        lambda n, fps, target: [round(k * fps / target) for k in range(math.ceil(n / fps * target))],
    ),
    Mistake(
        "the last time is missing: a video of 10 frames at 24 fps lasts 10/24 s, and time 2/7 s is still inside it "
        "— count the times before the end, a part of a step included",
        lambda n, fps, target: [round(k * fps / target) for k in range(n * target // fps)],
    ),
    Mistake(
        "the time N / fps is the end of the video, not inside it (the last frame starts 1 / fps earlier): keep only "
        "the times strictly before the end",
        lambda n, fps, target: [round(k * fps / target) for k in range(n * target // fps + 1)],
    ),
    Mistake(
        "the indices are truncated: time k / target_fps falls at frame k · fps / target_fps, often between two "
        "frames, and the nearest one is the rounded value, not the one below",
        lambda n, fps, target: [int(k * fps / target) for k in range(_count(n, fps, target))],
    ),
    Mistake(
        "a fixed step of round(fps / target_fps) frames drifts away from the times (25 / 9 is not 3) and changes "
        "how many frames you keep: compute the frame of each time k / target_fps on its own",
        lambda n, fps, target: list(range(0, n, max(1, round(fps / target)))),
    ),
    Mistake(
        "these are the times in seconds: return, for each time, the index of the frame nearest to it",
        lambda n, fps, target: [k / target for k in range(_count(n, fps, target))],
    ),
    Mistake(
        "the frames are spread evenly from the first to the last (the rule of a uniform clip): here they are one "
        "per 1 / target_fps seconds from time 0, and the last time need not fall on the last frame",
        lambda n, fps, target: np.linspace(0, n - 1, _count(n, fps, target)).round().astype(int).tolist(),
    ),
    Mistake(
        "the ratio is upside down: a frame lasts 1 / fps seconds, so time t is frame t · fps, and time k / "
        "target_fps is frame k · fps / target_fps",
        lambda n, fps, target: [round(k * target / fps) for k in range(_count(n, fps, target))],
    ),
    Mistake(
        "the indices are rounded up: time k / target_fps falls at frame k · fps / target_fps, and the frame nearest "
        "to it may be the one below",
        lambda n, fps, target: [math.ceil(k * fps / target) for k in range(_count(n, fps, target))],
    ),
    Mistake(
        "the first time is missing: the times start at 0 (k = 0, 1, 2, …), so frame 0 is always kept",
        lambda n, fps, target: [round(k * fps / target) for k in range(1, _count(n, fps, target) + 1)],
    ),
    Mistake(
        "a fixed step of fps // target_fps frames drifts away from the times (25 // 9 is 2, the times are 25 / 9 "
        "frames apart) and keeps too many frames: compute the frame of each time k / target_fps on its own",
        lambda n, fps, target: list(range(0, n, max(1, fps // target))),
    ),
)

SAMPLE_AT_FPS = Exercise(
    "01.1",
    "sample_at_fps(num_frames, fps, target_fps) → frame indices",
    _sample_cases,
    _sample_reference,
    _sample_compare,
    SAMPLE_MISTAKES,
)

# --------------------------------------------------------------------------- 01.2 regions that overlap


def _split_cases() -> list[tuple]:
    rng = np.random.default_rng(0)
    shapes = [((64, 64), 32, 16), ((48, 80), 16, 16), ((30, 40), 20, 10), ((36, 50), 16, 10)]
    return [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), size, stride) for (h, w), size, stride in shapes]


def _split_reference(frame: np.ndarray, size: int, stride: int) -> torch.Tensor:
    tiles = torch.from_numpy(frame).permute(2, 0, 1).unfold(1, size, stride).unfold(2, size, stride)  # (3, a, b, s, s)
    return tiles.permute(1, 2, 3, 4, 0).reshape(-1, size, size, 3)  # (R, size, size, 3), row by row


def _split_compare(got, want: torch.Tensor, args: tuple) -> str | None:
    frame, size, stride = args
    h, w = frame.shape[:2]
    hint = tensor_hint(got, want, f"split_overlapping(a {h}×{w} frame, {size}, {stride})", 0)
    if hint and "shaped" in hint:
        return hint + "; R = ((H − size) // stride + 1) · ((W − size) // stride + 1)"
    if hint:
        return hint + " (regions go row by row: left to right, then the next row down)"
    return None


def _corners(frame: np.ndarray, size: int, stride: int, stop: int = 1) -> tuple[range, range]:
    h, w = frame.shape[:2]
    return range(0, h - size + stop, stride), range(0, w - size + stop, stride)


def _flush(frame: np.ndarray, size: int, stride: int) -> tuple[list, list]:
    """The corners, and one more flush with the bottom (right) edge where the last one does not reach it."""
    h, w = frame.shape[:2]
    return [[*range(0, n - size, stride), n - size] for n in (h, w)]


def _squares(frame: np.ndarray, size: int, tops, lefts) -> np.ndarray:
    return np.stack([frame[y : y + size, x : x + size] for y in tops for x in lefts])


SPLIT_MISTAKES = (
    Mistake(
        "only one region: every size × size square whose corner lies on a multiple of stride, down and across, "
        "and that fits inside the frame, is a region",
        lambda frame, size, stride: np.stack([frame[:size, :size]]),
    ),
    Mistake(
        "the regions go column by column: number them row by row — left to right, then the next row down",
        lambda frame, size, stride: np.stack(
            [
                frame[y : y + size, x : x + size]
                for x in _corners(frame, size, stride)[1]
                for y in _corners(frame, size, stride)[0]
            ]
        ),
    ),
    Mistake(
        "the last row and column of squares are missing: a corner at H − size (or W − size) still fits, since the "
        "square then ends exactly at the frame's edge",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, stride, stop=0)),
    ),
    Mistake(
        "the squares do not overlap: their corners are stride pixels apart, not size",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, size)),
    ),
    Mistake(
        "size and stride are swapped: the squares are size × size, and their corners stride pixels apart",
        lambda frame, size, stride: _squares(frame, stride, *_corners(frame, stride, size)),
    ),
    Mistake(
        "the corners across use the frame's height: a frame is H high and W wide, and the corners across go up to "
        "W − size",
        lambda frame, size, stride: _squares(frame, size, *[_corners(frame, size, stride)[0]] * 2),
    ),
    Mistake(
        "each region should be (size, size, 3), channels last like the frame itself",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, stride)).transpose(0, 3, 1, 2),
    ),
    Mistake(
        "unfold puts each window's own axes last, after the channels, (rows, columns, 3, size, size): move the "
        "channel axis back to the end (permute) before you reshape to (R, size, size, 3)",
        lambda frame, size, stride: (
            torch.from_numpy(frame).unfold(0, size, stride).unfold(1, size, stride).reshape(-1, size, size, 3)
        ),
    ),
    Mistake(
        "each region is transposed (its rows are the frame's columns): a region is frame[y : y + size, x : x + size], "
        "rows first",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, stride)).transpose(0, 2, 1, 3),
    ),
    Mistake(
        "the pixel values changed: a region is a piece of the frame as it is (uint8, 0 … 255), not scaled",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, stride)) / 255.0,
    ),
    Mistake(
        "the channels are reversed: the frame is already RGB (minivb.video converted OpenCV's BGR), keep its "
        "channel order",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, stride))[..., ::-1].copy(),
    ),
    Mistake(
        "a region was added flush with the right or bottom edge: a corner lies on a multiple of stride, so when "
        "W − size is not one, the last pixels are simply left out",
        lambda frame, size, stride: _squares(frame, size, *_flush(frame, size, stride)),
    ),
    Mistake(
        "the regions are still in a grid of rows and columns: put them in one axis, row by row → (R, size, size, 3)",
        lambda frame, size, stride: _squares(frame, size, *_corners(frame, size, stride)).reshape(
            len(_corners(frame, size, stride)[0]), len(_corners(frame, size, stride)[1]), size, size, 3
        ),
    ),
)

SPLIT_OVERLAPPING = Exercise(
    "01.2",
    "split_overlapping(frame, size, stride) → (R, size, size, 3) regions",
    _split_cases,
    _split_reference,
    _split_compare,
    SPLIT_MISTAKES,
)

EXERCISES = (SAMPLE_AT_FPS, SPLIT_OVERLAPPING)
