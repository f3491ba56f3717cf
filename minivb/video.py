"""Built in notebook 01, steps 1–4. Video files → frame sequences → regions (seed §3.1).

    "Video preprocessing: first, we convert the raw video into a frame sequence.
     Then each frame is split into several regions, to capture the spatial
     features in the video."                              — seed, §3 step 1

Everything here works on uint8 RGB arrays shaped ``(T, H, W, 3)`` (channels last,
as OpenCV and matplotlib like them). Decoding is done with OpenCV's FFmpeg backend,
reading *forward only*: we never trust ``CAP_PROP_POS_FRAMES`` seeking or the
container's frame count, because both can be wrong (B-frames, broken headers,
truncated files). Frame ``i`` is always the ``i``-th frame in presentation order.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

# FFmpeg and OpenCV print their complaints about a file straight to stderr; we turn every failure
# into a VideoDecodeError instead. minivb/__init__.py quiets both before cv2 is first imported (it
# runs before this module, or any module of the package, whatever is imported).
import cv2
import numpy as np
import torch

from .plumbing.checks import check_int


class VideoDecodeError(RuntimeError):
    """A file that cannot be decoded as asked. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # decodable frames (counted by decoding, unless exact=False and the header holds a count)
    fps: float  # frames per second from the container; 0.0 if it gives none
    width: int
    height: int
    pixel_aspect: float = 1.0  # a pixel's width / height (the container's sample aspect ratio); 1.0: square or unknown


# --------------------------------------------------------------------------- opening


def _in_dataloader_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def _decoder_threads() -> int:
    """FFmpeg decoder threads: 1 inside a DataLoader worker or after ``cv2.setNumThreads(1)``, else FFmpeg's choice (0).

    N workers × (all cores each) would oversubscribe the machine; the workers are the
    parallelism. OpenCV's own pool (colour conversion) is limited the same way.
    """
    if _in_dataloader_worker():
        if cv2.getNumThreads() != 1:
            cv2.setNumThreads(1)
        return 1
    return 1 if cv2.getNumThreads() == 1 else 0


# The first bytes of still-image files (GIF is left out: an animated GIF is a short video).
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _still_image_format(path: Path) -> str | None:
    """ "PNG", "JPEG", … if the file starts like a still image (whatever its name says), else None."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)


def open_capture(path: str | os.PathLike) -> cv2.VideoCapture:
    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(p, "a broken link (its target does not exist)" if p.is_symlink() else "no such file")
    if not p.is_file():
        raise VideoDecodeError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoDecodeError(p, "file is empty (0 bytes)")
    image = _still_image_format(p)
    if image:  # FFmpeg would open it as a one-frame "video"
        raise VideoDecodeError(p, f"a still image ({image}), not a video")
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, _decoder_threads()])
    if not cap.isOpened():
        cap.release()
        if _audio_only(p):
            raise VideoDecodeError(p, "no video stream (the file holds sound only)")
        raise VideoDecodeError(p, "not a readable video (FFmpeg cannot open it: unknown format or truncated)")
    return cap


def _audio_only(path: Path, scan: int = 4 << 20) -> bool:
    """Is ``path`` an MP4 / MOV (ISO base media) file whose tracks are sound only? Its track handlers
    (``hdlr`` boxes: ``soun`` for sound, ``vide`` for video) are read from the first and last ``scan`` bytes
    (the index sits at one end or the other)."""
    with open(path, "rb") as f:
        head = f.read(scan)
        if head[4:8] != b"ftyp":
            return False
        f.seek(max(len(head), f.seek(0, os.SEEK_END) - scan))
        data = head + f.read()
    handlers, i = set(), data.find(b"hdlr")
    while i >= 0:  # "hdlr", version and flags (4 bytes), pre_defined (4), then the handler type (4)
        handlers.add(data[i + 12 : i + 16])
        i = data.find(b"hdlr", i + 4)
    return b"soun" in handlers and b"vide" not in handlers


def _before_fork() -> None:
    _threads_before_fork.append(cv2.getNumThreads())
    cv2.setNumThreads(1)  # stops the pool's threads, so the child starts with a consistent (empty) pool


def _after_fork_in_parent() -> None:
    cv2.setNumThreads(_threads_before_fork.pop())


# OpenCV's thread pool does not survive fork(): a DataLoader worker forked while the parent's pool
# has threads hangs at its first OpenCV call that touches the pool. So every fork (a DataLoader
# worker, a multiprocessing pool) happens with the pool shrunk to one thread; the parent gets its
# threads back at once, the child keeps one (what a worker wants anyway).
_threads_before_fork: list[int] = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)


# --------------------------------------------------------------------------- info


@functools.lru_cache(maxsize=4096)
def _decode_pass(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, float]:
    """Decode the whole file once (cached per file version: path, mtime and size) → ``(ms, first_pts)``.

    ``ms``: ``(frames,)`` each frame's time in milliseconds from the stream's first frame (``CAP_PROP_POS_MSEC``);
    ``first_pts``: the first frame's own presentation time in frames of ``1 / fps`` (``CAP_PROP_PTS``; < 0: unknown).
    """
    cap = open_capture(path)
    try:
        ms, first_pts = [], -1.0
        while cap.grab():  # grab() demuxes + decodes, but skips the colour conversion
            if not ms:
                first_pts = float(cap.get(cv2.CAP_PROP_PTS))
            ms.append(cap.get(cv2.CAP_PROP_POS_MSEC))
        return np.asarray(ms, np.float64), first_pts
    finally:
        cap.release()


def _decoded(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    st = os.stat(path)
    return _decode_pass(str(path), st.st_mtime_ns, st.st_size)


def video_info(path: str | os.PathLike, exact: bool = True) -> VideoInfo:
    """Frame count, fps, width and height of a video.

    ``exact=True`` (default) counts frames by decoding the whole file once (cached per
    file version), because the container's count can be wrong; ``exact=False`` trusts
    the header (fast, for indexing large data sets), and counts by decoding only when the
    header holds no count (a stream written to a pipe, a raw ``.h264``).
    """
    cap = open_capture(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        header_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        sar = cap.get(cv2.CAP_PROP_SAR_NUM), cap.get(cv2.CAP_PROP_SAR_DEN)  # 0 or -1 when the file gives none
    finally:
        cap.release()
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, "no video stream (frame size is 0)")
    frames = header_frames if header_frames > 0 and not exact else len(_decoded(path)[0])
    if frames <= 0:
        raise VideoDecodeError(path, "no decodable frames")
    fps = fps if np.isfinite(fps) and fps > 0 else 0.0
    pixel_aspect = sar[0] / sar[1] if min(sar) > 0 else 1.0
    return VideoInfo(frames=frames, fps=fps, width=width, height=height, pixel_aspect=pixel_aspect)


def frame_times(path: str | os.PathLike) -> np.ndarray | None:
    """Each frame's presentation time in seconds, from the file's own timestamps → ``(frames,)`` float64.

    Not ``i / fps``: a file may start later than 0 s, and its frames need not be evenly spaced (variable frame
    rate). OpenCV gives each frame's time from the stream's first frame exactly (``CAP_PROP_POS_MSEC``), but
    the first frame's own time only in whole frames (``CAP_PROP_PTS``, in units of ``1 / fps``): a file that
    starts at 0.5 s at 25 fps starts here at 13 / 25 = 0.52 s, a start within half a frame. A file without
    timestamps gets ``i / fps``; ``None`` when it gives neither timestamps nor a frame rate. The decoding pass
    is the one :func:`video_info` counts frames with (one pass, cached, for both).
    """
    fps = video_info(path, exact=False).fps
    ms, first_pts = _decoded(path)
    if len(ms) == 0:
        raise VideoDecodeError(path, "no decodable frames")
    if len(ms) > 1 and np.all(np.diff(ms) > 0):  # real timestamps, strictly increasing
        times = (ms - ms[0]) / 1000
    elif fps > 0:  # no usable timestamps: the frame rate's grid
        times = np.arange(len(ms)) / fps
    elif len(ms) == 1:
        times = np.zeros(1)
    else:
        return None
    start = first_pts / fps if fps > 0 and np.isfinite(first_pts) and first_pts > 0 else 0.0
    return start + times


# --------------------------------------------------------------------------- frames


def as_indices(indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    idx = np.asarray(indices.tolist() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"indices must be a non-empty 1-D sequence of frame numbers, got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.min() < 0:
        raise ValueError(f"indices must be >= 0, got {int(idx.min())}")
    return idx.astype(np.int64)


def read_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Decode the frames at ``indices`` → uint8 RGB ``(len(indices), H, W, 3)``.

    Frame-exact: index ``i`` is the ``i``-th frame in presentation order, also for
    H.264 with B-frames. Indices may be unsorted or repeated. The file is decoded
    forward, once, and only up to the largest index.
    """
    idx = as_indices(indices)
    wanted = set(idx.tolist())
    last = int(idx.max())
    cap = open_capture(path)
    got: dict[int, np.ndarray] = {}
    try:
        for i in range(last + 1):
            if not cap.grab():
                raise VideoDecodeError(path, f"frame {last} requested, but the video has only {i} decodable frames")
            if i in wanted:
                ok, bgr = cap.retrieve()  # (H, W, 3) uint8 BGR
                if not ok or bgr is None:
                    raise VideoDecodeError(path, f"frame {i} could not be decoded")
                got[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # OpenCV is BGR; we are RGB
    finally:
        cap.release()
    return np.stack([got[i] for i in idx.tolist()])  # (len(indices), H, W, 3)


def iter_frames(path: str | os.PathLike, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the file forward, once → ``(index, frame uint8 RGB (H, W, 3))`` for frames 0, step, 2·step, …

    For long videos: one frame at a time, so the caller decides what to keep (a small copy,
    a feature) and the video is never held in memory at full resolution. Frames between the
    yielded ones are decoded (B-frames need their references) but not colour-converted.
    The file is opened at once (a missing or unreadable file raises here, not at the first
    ``next``); a file that gives no frame at all, or a frame that cannot be decoded, raises
    :class:`VideoDecodeError` while iterating. Stop early by closing the generator (or
    leaving the ``for`` loop): the decoder is released then.
    """
    step = check_int("step", step)
    cap = open_capture(path)  # raise now, not at the first next()

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        i = 0
        try:
            while cap.grab():
                if i % step == 0:
                    ok, bgr = cap.retrieve()  # (H, W, 3) uint8 BGR
                    if not ok or bgr is None:
                        raise VideoDecodeError(path, f"frame {i} could not be decoded")
                    yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                i += 1
            if i == 0:
                raise VideoDecodeError(path, "no decodable frames")
        finally:
            cap.release()

    return frames()


# --------------------------------------------------------------------------- sampling


def sample_indices(
    total_frames: int,
    num_frames: int,
    stride: int = 1,
    mode: str = "center",
    *,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Which frames make a clip of ``num_frames`` frames taken ``stride`` apart.

    mode:
      * ``"center"`` — the clip in the middle of the video (evaluation) → ``(num_frames,)``
      * ``"random"`` — a random start drawn from ``generator`` (training) → ``(num_frames,)``
      * ``"uniform"`` — ``num_clips`` clips with evenly spaced starts, first clip at the
        start and last clip at the end (multi-view testing) → ``(num_clips, num_frames)``;
        ``num_clips=1`` gives the centre clip

    A video shorter than the clip's span ``(num_frames - 1) * stride + 1`` gets its
    whole length spread evenly over the clip (``round(linspace(0, total - 1))``): the
    frames stay in time order and some repeat when ``total_frames < num_frames``.
    """
    total_frames, num_frames, stride, num_clips = (
        check_int(name, value)
        for name, value in (
            ("total_frames", total_frames),
            ("num_frames", num_frames),
            ("stride", stride),
            ("num_clips", num_clips),
        )
    )
    if mode not in ("center", "random", "uniform"):
        raise ValueError(f"mode must be 'center', 'random' or 'uniform', got {mode!r}")

    span = (num_frames - 1) * stride + 1
    offsets = np.arange(num_frames, dtype=np.int64) * stride  # (num_frames,)
    if span > total_frames:  # too short: cover the whole video instead
        clip = np.round(np.linspace(0, total_frames - 1, num_frames)).astype(np.int64)
        starts, offsets = np.zeros(num_clips if mode == "uniform" else 1, np.int64), clip
    else:
        max_start = total_frames - span
        if mode == "center":
            starts = np.array([max_start // 2])
        elif mode == "random":
            starts = np.array([int(torch.randint(0, max_start + 1, (1,), generator=generator))])
        else:
            # evenly spaced, first at the start and last at the end; a single clip sits in the centre
            starts = (
                np.round(np.linspace(0, max_start, num_clips)).astype(np.int64)
                if num_clips > 1
                else np.array([max_start // 2])
            )
    clips = starts[:, None] + offsets[None, :]  # (clips, num_frames)
    return clips if mode == "uniform" else clips[0]


def read_clip(
    path: str | os.PathLike,
    num_frames: int,
    stride: int = 1,
    mode: str = "center",
    *,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
    total_frames: int | None = None,
) -> np.ndarray:
    """Sample (:func:`sample_indices`) and decode (:func:`read_frames`) a clip.

    Returns uint8 RGB ``(num_frames, H, W, 3)``, or ``(num_clips, num_frames, H, W, 3)``
    for ``mode="uniform"``. Pass ``total_frames`` if you already know it (e.g. from a
    data set's index) to skip the counting pass.
    """
    total = video_info(path).frames if total_frames is None else total_frames
    idx = sample_indices(total, num_frames, stride, mode, num_clips=num_clips, generator=generator)
    frames = read_frames(path, idx.reshape(-1))  # (clips * num_frames, H, W, 3)
    return frames.reshape(idx.shape + frames.shape[1:])


def crop_boxes(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of ``num_crops`` size×size crops: 1 = centre; 3 = start/centre/end of the long side."""
    top, left = int(round((height - size) / 2)), int(round((width - size) / 2))  # as transforms.v2.CenterCrop
    if num_crops == 1:
        return [(top, left)]
    if width >= height:
        return [(top, 0), (top, left), (top, width - size)]
    return [(0, left), (top, left), (height - size, left)]


# --------------------------------------------------------------------------- regions


def _permute(x, axes):
    return x.permute(*axes) if isinstance(x, torch.Tensor) else x.transpose(axes)


def split_regions(frames: np.ndarray | torch.Tensor, grid: int) -> np.ndarray | torch.Tensor:
    """Split each frame into a ``grid × grid`` set of regions, row by row.

    ``(..., H, W, C)`` → ``(..., grid*grid, H/grid, W/grid, C)``; region ``r`` is the
    tile at row ``r // grid``, column ``r % grid``. Works on NumPy arrays and tensors.
    H and W must be multiples of ``grid`` (crop or resize first).
    """
    grid = check_int("grid", grid)
    if frames.ndim < 3:
        raise ValueError(f"frames must be shaped (..., H, W, C), got {tuple(frames.shape)}")
    *lead, h, w, c = frames.shape
    if h % grid or w % grid:
        raise ValueError(
            f"frame size {h}x{w} (HxW) is not divisible by grid {grid}; crop or resize it to a multiple of {grid} first"
        )
    n = len(lead)
    x = frames.reshape(*lead, grid, h // grid, grid, w // grid, c)  # (..., gy, h, gx, w, C)
    x = _permute(x, (*range(n), n, n + 2, n + 1, n + 3, n + 4))  # (..., gy, gx, h, w, C)
    return x.reshape(*lead, grid * grid, h // grid, w // grid, c)  # (..., R, h, w, C)


def merge_regions(regions: np.ndarray | torch.Tensor, grid: int) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`split_regions`: ``(..., grid*grid, h, w, C)`` → ``(..., grid*h, grid*w, C)``."""
    grid = check_int("grid", grid)
    if regions.ndim < 4:
        raise ValueError(f"regions must be shaped (..., R, h, w, C), got {tuple(regions.shape)}")
    *lead, r, h, w, c = regions.shape
    if r != grid * grid:
        raise ValueError(f"expected {grid * grid} regions for grid {grid}, got {r}")
    n = len(lead)
    x = regions.reshape(*lead, grid, grid, h, w, c)  # (..., gy, gx, h, w, C)
    x = _permute(x, (*range(n), n, n + 2, n + 1, n + 3, n + 4))  # (..., gy, h, gx, w, C)
    return x.reshape(*lead, grid * h, grid * w, c)
