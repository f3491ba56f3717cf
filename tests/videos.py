"""Test videos made on the fly: every frame stamped with its own index.

The index is written as 8 black/white blocks (one per bit) in the top band of the frame,
large enough to survive lossy compression, so a decoded frame says which frame it is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

BITS = 8  # up to 256 frames


def stamped_frames(n: int, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 RGB (n, H, W, 3): frame i carries i in its top 16 rows; the rest is a slow gradient."""
    frames = np.empty((n, height, width, 3), np.uint8)
    block = width // BITS
    for i in range(n):
        frames[i, 16:] = (np.arange(width)[None, :, None] * 2 + i * 5) % 200 + 20
        for b in range(BITS):
            frames[i, :16, b * block : (b + 1) * block] = 255 if (i >> b) & 1 else 0
    return frames


def read_stamp(frame: np.ndarray) -> int:
    """The index stamped into a decoded RGB frame."""
    width = frame.shape[1]
    block = width // BITS
    bits = [frame[4:12, b * block + 2 : (b + 1) * block - 2].mean() > 127 for b in range(BITS)]
    return sum(int(bit) << b for b, bit in enumerate(bits))


def ffmpeg(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    return subprocess.run([exe, "-hide_banner", *args], input=stdin, capture_output=True, check=False)


def write_h264(path: Path, frames: np.ndarray, fps: int = 25, faststart: bool = False, extra: tuple = ()) -> Path:
    """H.264 (libx264) with 3 B-frames between references and a pyramid: decode order ≠ presentation order.

    ``extra``: more ffmpeg output options (a start offset, a filter)."""
    n, h, w, _ = frames.shape
    args = [
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-bf",
        "3",
        "-g",
        "24",
        "-x264-params",
        "b-pyramid=normal",
        "-pix_fmt",
        "yuv420p",
    ]
    if faststart:
        args += ["-movflags", "+faststart"]
    proc = ffmpeg(*args, *extra, str(path), stdin=frames.tobytes())
    assert proc.returncode == 0, proc.stderr.decode()
    return path


def frame_types(path: Path) -> str:
    """Picture types (presentation order) as ffmpeg's showinfo filter reports them, e.g. 'IPBBB...'."""
    out = ffmpeg("-i", str(path), "-vf", "showinfo", "-f", "null", "-").stderr.decode()
    return "".join(line.split(" type:")[1][0] for line in out.splitlines() if " type:" in line)


def presentation_times(path: Path) -> np.ndarray:
    """The reference: each frame's presentation time in seconds as ffmpeg reads it (showinfo, timestamps kept)."""
    out = ffmpeg("-copyts", "-i", str(path), "-vf", "showinfo", "-f", "null", "-").stderr.decode()
    return np.array([float(line.split("pts_time:")[1].split()[0]) for line in out.splitlines() if "pts_time:" in line])


def write_opencv(path: Path, frames: np.ndarray, fourcc: str = "mp4v", fps: float = 25.0) -> Path:
    """A video written by OpenCV's own writer (mp4v → MPEG-4 part 2, MJPG → Motion JPEG)."""
    n, h, w, _ = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def sequential_decode(path: Path) -> np.ndarray:
    """The reference: read every frame in order with plain cv2.VideoCapture.read()."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def checkerboard_video(path: Path, frames: int = 8, size: int = 64) -> Path:
    """A still black-and-white checkerboard of 8-pixel squares (``mp4v``, 8 fps): nothing like a toy scene, for the
    "none of these classes" tests (a toy model 2 epochs old takes uniform noise for one of its scenes)."""
    board = (np.indices((size, size)).sum(axis=0) // 8 % 2 * 255).astype(np.uint8)  # (size, size)
    return write_opencv(Path(path), np.repeat(np.repeat(board[None, :, :, None], frames, 0), 3, 3), fps=8.0)
