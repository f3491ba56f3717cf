"""The training format for large data sets: a video's frames as JPEGs in one file, with an offset table.

Why (measured, see ``data/README.md``): decoding H.264 from frame 0 up to a clip's end and
resizing float frames costs ~100 ms per Kinetics clip on one core; decoding 16 JPEGs of
256-pixel frames costs ~5 ms, and a clip is one contiguous read. ``python -m
minivb.data.kinetics prepare`` converts every clip once; the loader then reads only the
frames it needs, as uint8, and crops before it resizes.

A ``.jpgs`` file (little-endian)::

    b"MVBJPGS1"                                    8 bytes: magic + format version
    frames, width, height, step : uint32 × 4       step = keep every step-th source frame
    fps                         : float64          of the stored frames (source fps / step)
    offsets                     : uint64 × (frames + 1)   byte offset of frame i = offsets[i]
    JPEG bytes of frame 0, 1, …                    frame i = data[offsets[i]:offsets[i + 1]]

Stored frame ``i`` is source frame ``i · step`` (presentation order, as :mod:`minivb.video`
counts them). Every stored frame is its own keyframe: a clip is read from where it starts, never
decoded from frame 0. Files are written to a temporary name and renamed, so a file that exists is
complete.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..plumbing.files import atomic_file
from ..video import VideoDecodeError, VideoInfo, as_indices, open_capture

SUFFIX = ".jpgs"
MAGIC = b"MVBJPGS1"
_HEADER = struct.Struct("<8s4Id")  # magic, frames, width, height, step, fps


@dataclass(frozen=True)
class StoreInfo:
    frames: int  # stored frames
    width: int
    height: int
    step: int  # stored frame i = source frame i * step
    fps: float  # of the stored frames


def encode_frames(frames: Iterable[np.ndarray], quality: int = 90) -> list[bytes]:
    """uint8 RGB frames ``(H, W, 3)`` → JPEG bytes (OpenCV's libjpeg, 4:2:0 chroma)."""
    out = []
    for rgb in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise ValueError("JPEG encoding failed")
        out.append(buf.tobytes())
    return out


def write_store(path: str | os.PathLike, jpegs: list[bytes], width: int, height: int, step: int, fps: float) -> Path:
    """Write JPEG-encoded frames (:func:`encode_frames`) as one ``.jpgs`` file, atomically."""
    if not jpegs:
        raise ValueError("a frame store needs at least one frame")
    path = Path(path)
    offsets = np.zeros(len(jpegs) + 1, np.uint64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    with atomic_file(path, durable=False) as f:  # rewritten by the next prepare if a crash loses it
        f.write(_HEADER.pack(MAGIC, len(jpegs), width, height, step, fps))
        f.write(offsets.astype("<u8").tobytes())
        for j in jpegs:
            f.write(j)
    return path


def _read_header(f, path) -> tuple[StoreInfo, np.ndarray]:
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size or head[:8] != MAGIC:
        raise VideoDecodeError(path, "not a minivb frame store (bad header)")
    _, n, width, height, step, fps = _HEADER.unpack(head)
    if n == 0 or min(width, height, step) == 0:
        raise VideoDecodeError(path, "damaged frame store (a zero count, size or step in its header)")
    size = os.fstat(f.fileno()).st_size  # every count is checked against the file before anything is read
    data = size - _HEADER.size - 8 * (n + 1)  # bytes left for the JPEGs
    if data < 0:
        raise VideoDecodeError(path, f"frame store is truncated or damaged (its header claims {n:,} frames)")
    offsets = np.frombuffer(f.read(8 * (n + 1)), "<u8")
    if offsets[0] != 0 or (np.diff(offsets.astype(np.int64)) < 0).any() or int(offsets[-1]) > data:
        raise VideoDecodeError(path, "frame store is truncated or damaged (its offset table)")
    return StoreInfo(n, width, height, step, fps), offsets


def store_info(path: str | os.PathLike) -> StoreInfo:
    """Frames, size, step and fps of a ``.jpgs`` file (reads its header only)."""
    try:
        with open(path, "rb") as f:
            info, _ = _read_header(f, path)  # (checks the counts and offsets against the file's size)
    except OSError as e:
        raise VideoDecodeError(path, e.strerror or str(e)) from None
    return info


def read_store_jpegs(path: str | os.PathLike, indices) -> tuple[StoreInfo, np.ndarray, np.ndarray, np.ndarray]:
    """The JPEG bytes of stored frames ``indices``, undecoded → ``(info, data, lengths, which)``.

    ``data`` (uint8) holds the F distinct wanted frames one after another, in order of first appearance;
    ``lengths`` ``(F,)`` their sizes in bytes; ``which`` ``(len(indices),)`` the position of ``indices[k]``
    among them. One read covers the span from the first to the last wanted frame (a clip is contiguous or
    nearly so). For decoding elsewhere: on the model's device (:mod:`minivb.data.device_decode`).
    """
    idx = as_indices(indices)
    try:
        with open(path, "rb") as f:
            info, offsets = _read_header(f, path)
            if idx.max() >= info.frames:
                raise VideoDecodeError(
                    path, f"frame {int(idx.max())} requested, but the store has {info.frames} frames"
                )
            lo, hi = int(idx.min()), int(idx.max())
            base = _HEADER.size + 8 * (info.frames + 1)
            f.seek(base + int(offsets[lo]))
            span = f.read(int(offsets[hi + 1] - offsets[lo]))
    except OSError as e:
        raise VideoDecodeError(path, e.strerror or str(e)) from None
    if len(span) != int(offsets[hi + 1] - offsets[lo]):
        raise VideoDecodeError(path, "frame store is truncated (JPEG data)")
    buf = np.frombuffer(span, np.uint8)
    distinct = np.array(list(dict.fromkeys(idx.tolist())), np.int64)  # each wanted frame once, in order
    starts = offsets[distinct].astype(np.int64) - int(offsets[lo])  # within span
    ends = offsets[distinct + 1].astype(np.int64) - int(offsets[lo])
    data = np.concatenate([buf[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
    position = {frame: k for k, frame in enumerate(distinct.tolist())}
    return info, data, ends - starts, np.array([position[i] for i in idx.tolist()], np.int64)


def read_store_frames(path: str | os.PathLike, indices) -> np.ndarray:
    """Decode stored frames ``indices`` → uint8 RGB ``(len(indices), H, W, 3)``.

    One read (:func:`read_store_jpegs`); only the wanted frames are decoded, each once (OpenCV's libjpeg).
    """
    _, data, lengths, which = read_store_jpegs(path, indices)
    decoded, start = [], 0
    for k, n in enumerate(lengths.tolist()):
        bgr = cv2.imdecode(data[start : start + n], cv2.IMREAD_COLOR)
        if bgr is None:
            frame = as_indices(indices)[which.tolist().index(k)]
            raise VideoDecodeError(path, f"frame {int(frame)} is not a decodable JPEG")
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        start += n
    return np.stack(decoded)[which]  # (len(indices), H, W, 3)


def _shrink(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """Scale a frame down (never up) so that its shorter side is ``short_side`` (area averaging)."""
    h, w = rgb.shape[:2]
    if min(h, w) <= short_side:
        return rgb
    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))  # (W, H) for OpenCV
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def convert_video(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    short_side: int = 256,
    step: int = 4,
    quality: int = 90,
    min_frames: int = 1,
) -> tuple[VideoInfo, StoreInfo]:
    """Decode a video once, keep every ``step``-th frame, shrink, JPEG-encode → ``target`` (``.jpgs``).

    Returns the source's :class:`~minivb.video.VideoInfo` (frames counted by decoding) and the
    store's :class:`StoreInfo`. Raises :class:`VideoDecodeError` for a file
    that does not decode, or that has fewer than ``min_frames`` frames (a still image is not a video).
    """
    cap = open_capture(source)
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    fps = fps if np.isfinite(fps) and fps > 0 else 0.0
    jpegs, n = [], 0
    try:
        while cap.grab():  # every frame is decoded (that is how frames are counted) …
            if n % step == 0:  # … but only the kept ones are converted, shrunk and encoded
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise VideoDecodeError(source, f"frame {n} could not be decoded")
                source_size = bgr.shape[1], bgr.shape[0]  # (W, H)
                rgb = _shrink(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), short_side)
                jpegs += encode_frames([rgb], quality)
            n += 1
    finally:
        cap.release()
    if n < max(1, min_frames):
        raise VideoDecodeError(source, f"too short: {n} decodable frame(s), need at least {min_frames}")
    height, width = rgb.shape[:2]
    write_store(target, jpegs, width, height, step, fps / step)
    return VideoInfo(n, fps, *source_size), StoreInfo(len(jpegs), width, height, step, fps / step)
