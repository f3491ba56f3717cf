"""Used by notebook 01, step 2, and the notebooks that show a clip. A clip to look at: playing, and as a filmstrip.

A clip in minivb is an array of uint8 RGB frames ``(T, H, W, 3)`` (what :func:`minivb.video.read_frames` returns).
A notebook shows one in two ways:

- :func:`animated_image` writes the frames one after another into one image file, each shown for ``1 / fps``
  seconds, looping: ``IPython.display.Image(data=animated_image(frames, fps), format="png")`` plays the clip in
  the notebook's output, with no video codec, no player and no network. The default is an animated PNG (APNG):
  every colour kept exactly (a GIF has 256), played by every browser, and, as a PNG, not compared by nbval.
- :func:`filmstrip` lays every ``every``-th frame out in rows, large enough to read at a notebook's width, each
  titled with its frame number (and its time).

Pillow (which matplotlib depends on) writes the animation and matplotlib draws the filmstrip; both are imported
when called, so importing this module loads neither.
"""

from __future__ import annotations

import io
import math

import numpy as np

from .plumbing.checks import check_int

FORMATS = ("png", "gif")  # animated PNG (APNG) or GIF
NOTEBOOK_WIDTH = 9.0  # inches: a filmstrip this wide fills a notebook's output area
TITLE_INCHES = 0.3  # the height of one row of panel titles


def _frames(frames) -> np.ndarray:
    """``frames`` as a uint8 ``(T, H, W, 3)`` NumPy array with T ≥ 1, else ``ValueError``."""
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or not array.shape[0]:
        raise ValueError(f"frames must be uint8 RGB (T, H, W, 3) with T >= 1, got {array.dtype} {array.shape}")
    return array


def animated_image(frames, fps: float, *, scale: int = 4, format: str = "png") -> bytes:
    """A clip as the bytes of an animated image that loops: frame ``t`` of ``frames`` (uint8 RGB ``(T, H, W, 3)``,
    a NumPy array or a CPU tensor) is shown for ``1 / fps`` seconds, enlarged ``scale`` times with every pixel a
    ``scale × scale`` square (no smoothing: pixels stay pixels).

    ``format``: ``"png"`` (an animated PNG, every colour exact) or ``"gif"`` (256 colours). Pillow writes a run of
    identical frames as one frame shown for their total time, so a decoder may count fewer frames than T; the clip
    still lasts ``T / fps`` seconds (GIF rounds each frame's time to 10 ms).
    """
    from PIL import Image

    frames = _frames(frames)
    scale = check_int("scale", scale)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
        raise ValueError(f"fps must be a number > 0, got {fps!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)  # (T, scale·H, scale·W, 3)
    images = [Image.fromarray(frame) for frame in big]
    out = io.BytesIO()
    images[0].save(
        out, format=format.upper(), save_all=True, append_images=images[1:], duration=1000 / fps, loop=0
    )  # loop=0: forever
    return out.getvalue()


def filmstrip(frames, *, every: int = 1, columns: int = 4, title: str | None = None, fps: float | None = None):
    """Frames ``0, every, 2·every, …`` of ``frames`` (uint8 RGB ``(T, H, W, 3)``) in rows of ``columns``, each
    titled ``frame i`` (and ``i / fps`` seconds when ``fps`` is given), under an optional ``title`` → a matplotlib
    ``Figure`` (Agg canvas, no pyplot: a notebook shows it as a cell's value, or with ``display``).

    The figure is :data:`NOTEBOOK_WIDTH` inches wide whatever the number of columns, so that it fills a notebook's
    output area: fewer columns, larger frames. Four columns show a 64 × 64 frame over two inches wide.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames = _frames(frames)
    shown = range(0, len(frames), check_int("every", every))
    columns = min(check_int("columns", columns), len(shown))
    rows = math.ceil(len(shown) / columns)
    panel = NOTEBOOK_WIDTH / columns  # inches per frame, across
    height = rows * (panel * frames.shape[1] / frames.shape[2] + TITLE_INCHES) + (TITLE_INCHES if title else 0)
    fig = Figure(figsize=(NOTEBOOK_WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(shown):
            i = shown[k]
            ax.imshow(frames[i], interpolation="nearest")
            ax.set_title(f"frame {i}" + (f" · {i / fps:g} s" if fps else ""), fontsize=11)
    if title:
        fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    return fig
