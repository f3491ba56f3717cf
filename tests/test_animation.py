"""minivb.show: a clip as an animated image that plays in a notebook, and as a filmstrip legible at notebook width."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from minivb.show import NOTEBOOK_WIDTH, animated_image, filmstrip


def clip(T=6, H=8, W=10, seed=0):
    """Random uint8 frames (T, H, W, 3): no two alike, so the animation keeps every one."""
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def decoded(data):
    """The frames (RGB arrays) and per-frame durations (ms) Pillow reads back from an animated image."""
    image = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert("RGB")))
        durations.append(image.info.get("duration"))  # none in a one-frame PNG: a still picture
    return image, frames, durations


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("gif", b"GIF89a")])
def test_the_animation_decodes_to_every_frame_at_the_frame_rate(fmt, magic):
    frames = clip()
    data = animated_image(frames, fps=8, scale=3, format=fmt)
    assert data.startswith(magic)
    image, got, durations = decoded(data)
    assert image.n_frames == 6 and image.size == (30, 24)  # (width, height), each pixel a 3 × 3 square
    assert image.info["loop"] == 0  # loops forever
    assert durations == pytest.approx([125] * 6, abs=5)  # 1 / 8 s each (GIF counts in 10 ms)


def test_the_png_animation_keeps_every_pixel():
    frames = clip()
    _, got, _ = decoded(animated_image(frames, fps=25, scale=2))
    for frame, back in zip(frames, got):
        np.testing.assert_array_equal(back, frame.repeat(2, axis=0).repeat(2, axis=1))


def test_a_tensor_and_a_single_frame_are_clips_too():
    _, got, _ = decoded(animated_image(torch.from_numpy(clip(T=1)), fps=1, scale=1))
    np.testing.assert_array_equal(got[0], clip(T=1)[0])


def test_a_repeated_frame_is_shown_for_longer_and_the_clip_keeps_its_length():
    frames = clip(T=4)
    frames = np.concatenate([frames[:2], frames[1:2], frames[2:]])  # frame 1 twice in a row: 5 frames
    _, got, durations = decoded(animated_image(frames, fps=10, scale=1))
    assert len(got) == 4 and sum(durations) == pytest.approx(500)


@pytest.mark.parametrize(
    "frames, kwargs, message",
    [
        (clip().astype(np.float32), {}, "uint8"),
        (clip()[..., 0], {}, "uint8"),
        (clip()[:0], {}, "T >= 1"),
        (clip(), {"fps": 0}, "fps"),
        (clip(), {"fps": True}, "fps"),
        (clip(), {"scale": 0}, "scale"),
        (clip(), {"format": "mp4"}, "format"),
    ],
)
def test_wrong_input_is_refused_with_its_reason(frames, kwargs, message):
    with pytest.raises(ValueError, match=message):
        animated_image(frames, **({"fps": 8} | kwargs))


def test_the_filmstrip_shows_every_nth_frame_titled_with_its_number_and_time():
    fig = filmstrip(clip(T=16, H=64, W=64), every=2, fps=8, title="a clip")
    assert fig.get_figwidth() == NOTEBOOK_WIDTH
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 8 and len(shown) == 8  # 16 frames, every 2nd: 2 rows of 4
    assert [ax.get_title() for ax in shown[:3]] == ["frame 0 · 0 s", "frame 2 · 0.25 s", "frame 4 · 0.5 s"]
    assert all(ax.title.get_fontsize() >= 10 for ax in shown)  # readable at notebook width
    assert fig._suptitle.get_text() == "a clip"
    fig.canvas.draw()  # it draws, without pyplot


def test_the_filmstrip_leaves_the_last_row_blank_where_frames_run_out():
    fig = filmstrip(clip(T=6), columns=4)
    assert len(fig.axes) == 8 and sum(bool(ax.images) for ax in fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes if ax.images][-1] == "frame 5"
    assert len(filmstrip(clip(T=3), columns=8).axes) == 3  # fewer frames than columns: one short row


def test_importing_the_module_loads_no_drawing_library():
    code = "import json, sys, minivb.show; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert not {"PIL", "matplotlib", "IPython"} & loaded
