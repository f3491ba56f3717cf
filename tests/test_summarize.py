"""minivb.summarize: streaming frames, sliding windows, KTS, keyframes, metrics, filmstrip, command line."""

import itertools
import json
import math
import struct

import numpy as np
import pytest
import torch
from videos import ffmpeg, presentation_times, stamped_frames, write_h264

from minivb.data.toy import concat_video
from minivb.engine.checkpoint import Preprocessing
from minivb.summarization import (
    MIN_SEGMENT_SECONDS,
    _square,
    _stream_windows,
    choose_k,
    filmstrip,
    kts,
    shot_cuts,
    shot_windows,
    summarize,
    summary_metrics,
    uniform_keyframes,
    window_indices,
)
from minivb.summarize import main
from minivb.video import VideoDecodeError, iter_frames, read_frames, video_info

# 5 segments of unequal lengths (120 frames): the centres of 5 equal parts (12, 36, 60, 84, 108) miss "shrinking"
# (40–52) and put two keyframes in "left_to_right", so uniform sampling scores coverage 0.8 here.
LABELS = ["left_to_right", "shrinking", "opening", "top_to_bottom", "growing"]
LENGTHS = [40, 12, 12, 40, 16]
TINY_PREP = Preprocessing(num_frames=4, stride=1, size=32)  # the clip of conftest's tiny_run


@pytest.fixture(scope="module")
def concat(tmp_path_factory):
    path = tmp_path_factory.mktemp("summ") / "concat.mp4"
    return path, concat_video(path, LABELS, LENGTHS, seed=3)


# --------------------------------------------------------------------------- iter_frames


def test_iter_frames_equals_read_frames_on_h264(tmp_path):
    path = write_h264(tmp_path / "b.mp4", stamped_frames(40))  # B-frames: decode order ≠ presentation order
    every = list(iter_frames(path))
    assert [i for i, _ in every] == list(range(40))
    np.testing.assert_array_equal(np.stack([f for _, f in every]), read_frames(path, range(40)))
    third = list(iter_frames(path, step=3))
    assert [i for i, _ in third] == list(range(0, 40, 3))
    np.testing.assert_array_equal(np.stack([f for _, f in third]), read_frames(path, range(0, 40, 3)))


def test_iter_frames_errors(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file"):
        iter_frames(tmp_path / "missing.mp4")  # raised at the call, not at the first next()
    (tmp_path / "text.mp4").write_text("not a video\n" * 10)
    with pytest.raises(VideoDecodeError):
        list(iter_frames(tmp_path / "text.mp4"))
    with pytest.raises(ValueError, match="step"):
        iter_frames(tmp_path / "missing.mp4", step=0)


# --------------------------------------------------------------------------- windows


def test_window_indices_cover_the_video():
    w = window_indices(100, 8, 2, 7)  # span 15
    assert w.shape[1] == 8 and w[0, 0] == 0 and w[-1, -1] == 99  # an extra window ends at the last frame
    assert (np.diff(w[:, 0])[:-1] == 7).all() and (np.diff(w, axis=1) == 2).all()
    assert window_indices(15, 8, 2, 7).tolist() == [list(range(0, 15, 2))]  # exactly one span
    short = window_indices(5, 8, 2, 7)  # shorter than a window: one window, frames spread evenly
    assert short.shape == (1, 8) and short[0, 0] == 0 and short[0, -1] == 4 and (np.diff(short[0]) >= 0).all()


def test_streamed_windows_equal_windows_cut_from_decoded_frames(concat):
    path, _ = concat
    w = window_indices(120, 4, 3, 5)
    got = torch.cat([clips for _, clips in _stream_windows(path, w, 32, batch_size=3)])  # (W, 4, 3, 32, 32)
    frames = read_frames(path, range(120))
    want = torch.stack([torch.stack([_square(frames[i], 32) for i in row]) for row in w.tolist()])
    assert got.dtype == torch.uint8 and torch.equal(got, want)


# --------------------------------------------------------------------------- KTS


def _scatter(x, bounds):
    return sum(((x[a:b] - x[a:b].mean(0)) ** 2).sum() for a, b in zip(bounds[:-1], bounds[1:]))


def test_kts_equals_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(60):
        W, D = rng.integers(1, 9), rng.integers(1, 4)
        k = int(rng.integers(1, W + 1))
        x = rng.normal(size=(W, D))
        bounds, cost = kts(x, k)
        best = min(_scatter(x, (0, *cuts, W)) for cuts in itertools.combinations(range(1, W), k - 1))
        assert len(bounds) == k + 1 and bounds[0] == 0 and bounds[-1] == W and (np.diff(bounds) > 0).all()
        assert cost == pytest.approx(best, abs=1e-9) and _scatter(x, bounds) == pytest.approx(best, abs=1e-9)


def test_kts_finds_obvious_steps_and_refuses_too_many_segments():
    x = np.repeat(np.eye(3), [5, 2, 7], axis=0)  # three constant runs
    bounds, cost = kts(torch.from_numpy(x).float(), 3)
    assert bounds.tolist() == [0, 5, 7, 14] and cost == pytest.approx(0)
    with pytest.raises(ValueError, match="at most 14"):
        kts(x, 15)


def test_choose_k_is_ktss_own_model_selection():
    """The criterion, written out from Potapov et al.'s cpd_auto (v = 1): scatter / W + m / 2W · (log(W / m) + 1)."""
    rng = np.random.default_rng(0)
    for lengths in ([60], [20, 15, 25], [10, 30, 10, 20, 30], [4, 40, 4]):
        centres = rng.normal(size=(len(lengths), 32))
        x = np.concatenate([c + 0.3 * rng.normal(size=(n, 32)) for c, n in zip(centres, lengths)])
        x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit rows, as the window embeddings
        W = len(x)
        k, criterion = choose_k(x, max_k=8)
        expected = [
            kts(x, j)[1] / W + ((j - 1) / (2 * W) * (math.log(W / (j - 1)) + 1) if j > 1 else 0) for j in range(1, 9)
        ]
        np.testing.assert_allclose(criterion, expected, rtol=1e-12)
        assert k == len(lengths) and k == int(np.argmin(expected)) + 1  # the true number of segments
    assert choose_k(np.eye(3), max_k=20)[1].shape == (3,)  # max_k is capped at W


def test_choose_k_gives_noise_no_segments_of_its_own():
    """Issue 30: real clips' window embeddings are noisy, and overlapping windows share their noise; KTS fitted the
    noise with short segments (17 for a 10-second Kinetics clip of one activity). No segment under 2 s: one."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(42, 128))
    x = 0.07 + np.stack([noise[i : i + 3].sum(0) for i in range(40)]) / (3 * 128) ** 0.5  # 3 windows share noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # (40, 128) unit rows, each ‖x − mean‖² ≈ 0.6
    at = np.arange(41) / 4  # 10 s: a boundary between windows every 0.25 s
    assert choose_k(x, max_k=20)[0] == 14 and choose_k(x, max_k=20, at=at)[0] == 1
    steps = np.repeat(np.eye(3), [12, 9, 19], axis=0)  # three activities of 3, 2.25 and 4.75 s
    k, _ = choose_k(steps, max_k=20, at=at)
    assert k == 3 and kts(steps, k, at)[0].tolist() == [0, 12, 21, 40]
    at = np.arange(41) / 8  # 5 s: the activities last 1.5, 1.125 and 2.375 s
    assert choose_k(steps, max_k=20, at=at)[0] == 2 and (np.diff(kts(steps, 2, at)[0]) >= 16).all()  # ≥ 2 s each
    with pytest.raises(ValueError, match="3 segments of at least 2 s do not fit in 5.00 s"):
        kts(steps, 3, at)


# --------------------------------------------------------------------------- metrics


def test_uniform_keyframes():
    assert uniform_keyframes(120, 5) == [12, 36, 60, 84, 108]
    assert uniform_keyframes(10, 1) == [5] and uniform_keyframes(3, 3) == [0, 1, 2]


def test_summary_metrics_hand_made_cases():
    segs = [("a", 0, 10), ("b", 10, 20), ("c", 20, 30), ("d", 30, 40)]
    perfect = summary_metrics([5, 15, 25, 35], segs)
    assert perfect == {"coverage": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "matched": 4}
    twice = summary_metrics([1, 9, 25, 35], segs)  # two in "a": one matches, one is redundant; "b" missed
    assert (
        twice["matched"] == 3 and twice["precision"] == 0.75 and twice["recall"] == 0.75 and twice["coverage"] == 0.75
    )
    fewer = summary_metrics([10, 39], segs)  # segment bounds: start included, end excluded
    assert fewer["matched"] == 2 and fewer["precision"] == 1.0 and fewer["recall"] == 0.5
    assert fewer["f1"] == pytest.approx(2 / 3)
    outside = summary_metrics([45, 5], segs)  # a keyframe past every segment matches nothing
    assert outside["precision"] == 0.5 and outside["coverage"] == 0.25
    assert summary_metrics([], segs)["f1"] == 0.0


# --------------------------------------------------------------------------- summarizing


def test_concat_video_ground_truth(concat):
    path, segs = concat
    assert [s[0] for s in segs] == LABELS and segs[0][1] == 0 and segs[-1][2] == sum(LENGTHS)
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:]))
    assert video_info(path).frames == sum(LENGTHS)


def test_pixel_features_beat_uniform_on_known_segments(concat):
    # What this tests: the windows + KTS + keyframe pipeline, on raw-pixel features (no model). Each toy segment has
    # its own background and objects, so pixels separate the segments; the tiny_run model (2 epochs) is too weak to
    # be tested this way. With 4-frame windows, hop 2, it finds all five segments; uniform sampling misses one.
    path, segs = concat
    s = summarize(None, path, TINY_PREP, 5, features="pixels")
    frames = [f.frame for f in s.keyframes]
    assert s.k == 5 and frames == sorted(frames) and s.shots == 5 and s.windows == 55  # windows inside each shot
    ours, uniform = summary_metrics(frames, segs), summary_metrics(uniform_keyframes(s.frames, 5), segs)
    assert uniform["coverage"] == 0.8 and ours["coverage"] == 1.0 and ours["f1"] > uniform["f1"]
    for f in s.keyframes:
        assert f.start_frame <= f.frame < f.end_frame and f.time == pytest.approx(f.frame / 8, abs=1e-3)
    assert [f.start_frame for f in s.keyframes][0] == 0 and s.keyframes[-1].end_frame == 120
    assert all(a.end_frame == b.start_frame for a, b in zip(s.keyframes, s.keyframes[1:]))
    assert [f.start_frame for f in s.keyframes[1:]] == [40, 52, 64, 104]  # segment boundaries at the shot cuts


def test_times_are_the_frames_own_and_the_filmstrip_keeps_the_pixels_shape(concat, tmp_path):
    """The same video starting at 0.5 s, its pixels 5:3 (wider than tall): times and picture follow the file."""
    path, _ = concat
    late = tmp_path / "late_wide.mp4"
    args = ("-i", str(path), "-output_ts_offset", "0.5", "-vf", "setsar=5/3", "-c:v", "libx264", str(late))
    assert ffmpeg("-loglevel", "error", *args).returncode == 0
    reference = presentation_times(late)  # 0.5, 0.625, … (8 fps)
    assert reference[0] == pytest.approx(0.5) and len(reference) == 120
    s = summarize(None, late, TINY_PREP, 5, features="pixels")
    for f in s.keyframes:
        assert f.time == pytest.approx(reference[f.frame], abs=1e-3)  # not frame / fps: 0.5 s later
        assert f.start_time == pytest.approx(reference[f.start_frame], abs=1e-3)
    assert s.keyframes[-1].end_time == pytest.approx(reference[-1] + 1 / 8, abs=1e-3)  # where the last frame ends
    fig = filmstrip(late, s)
    fig.canvas.draw()
    panel = fig.axes[0].get_window_extent()  # the first keyframe as drawn, in pixels
    assert panel.width / panel.height == pytest.approx(5 / 3, rel=0.02)  # 64×64 pixels, each 5:3
    assert fig.axes[-1].get_xlim() == pytest.approx((0.5, reference[-1] + 1 / 8), abs=1e-3)  # the timeline


def test_without_k_no_segment_is_shorter_than_two_seconds(tmp_path):
    """Issue 30: not told K, a video got more keyframes than its length supports. 8 seconds, a new scene every second
    (a different tile lit): segments of at least MIN_SEGMENT_SECONDS, so 4, each of two scenes (the old code: 8)."""
    frames = np.zeros((64, 64, 64, 3), np.uint8)  # 8 s at 8 fps
    for i in range(8):
        frames[8 * i : 8 * i + 8, 32 * (i // 4) : 32 * (i // 4) + 32, 16 * (i % 4) : 16 * (i % 4) + 16] = 255
    s = summarize(None, write_h264(tmp_path / "tiles.mp4", frames, fps=8), TINY_PREP, features="pixels")
    assert MIN_SEGMENT_SECONDS == 2 and s.shots == 8 and s.k_chosen
    assert [(f.start_time, f.end_time) for f in s.keyframes] == [(0, 2), (2, 4), (4, 6), (6, 8)]


def test_a_piped_matroska_is_summarized(concat, tmp_path):
    """Issue 30: a file whose header holds no frame count (Matroska written to a pipe) was "no decodable frames"."""
    path, _ = concat
    piped = ffmpeg("-loglevel", "error", "-i", str(path), "-c", "copy", "-f", "matroska", "-")
    assert piped.returncode == 0, piped.stderr.decode()
    (tmp_path / "piped.mkv").write_bytes(piped.stdout)
    s = summarize(None, tmp_path / "piped.mkv", TINY_PREP, 5, features="pixels")
    assert s.frames == 120 and [f.frame for f in s.keyframes] == [
        f.frame for f in summarize(None, path, TINY_PREP, 5, features="pixels").keyframes
    ]


def test_a_filmstrip_of_many_keyframes_stays_viewable(concat):
    """Issue 30: 15 keyframes made a strip 3,600 pixels wide, and the segments' colours repeated after 10."""
    path, _ = concat
    fig = filmstrip(path, summarize(None, path, TINY_PREP, 15, features="pixels"))
    assert tuple(fig.get_size_inches() * fig.dpi) == pytest.approx((5 * 240, 270 + 2 * 200))  # 3 rows of 5
    panels = fig.axes[:-1]  # the last is the timeline
    assert len(panels) == 15 and len({ax.spines["top"].get_edgecolor() for ax in panels}) == 15


def test_without_k_kts_chooses_how_many(concat, tiny_run, tmp_path, capsys):
    path, _ = concat
    s = summarize(None, path, TINY_PREP, features="pixels")
    assert s.k_chosen and s.to_dict()["k_chosen"] and s.k in (4, 5)  # 5 segments; pixels merge two (measured: 4)
    assert not summarize(None, path, TINY_PREP, 3, features="pixels").k_chosen
    assert summarize(None, path, TINY_PREP, features="pixels", max_k=2).k <= 2
    out = tmp_path / "strip.png"
    assert main([str(path), "--checkpoint", str(tiny_run), "--out", str(out), "--max-k", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    k = int(lines[0].split()[0])
    plural = "segment" if k == 1 else "segments"
    assert lines[0] == f"{k} {plural}, chosen by kernel temporal segmentation (at most 6, none under 2 s)"
    assert len(lines) == 1 + k and lines[1].startswith("keyframe 1: frame") and 1 <= k <= 6
    assert main([str(path), "--checkpoint", str(tiny_run), "--out", str(out), "--max-k", "1", "--force"]) == 0
    assert capsys.readouterr().out.startswith("1 segment, chosen")  # not "1 segments"


def test_summarize_refuses_more_keyframes_than_windows(concat):
    path, _ = concat
    with pytest.raises(ValueError, match="only 55 windows"):
        summarize(None, path, TINY_PREP, 56, features="pixels")


def test_shot_cuts_find_scene_changes_not_motion(tmp_path):
    path = tmp_path / "shots.mp4"
    segs = concat_video(path, ["growing", "left_to_right", "closing"], [32, 16, 40], seed=1, shot=16)
    frames, cuts = shot_cuts(path)
    assert frames == 88 and cuts == [16, 32, 48, 64, 80]  # every 16 frames a new scene, within and between segments
    assert [s[1:] for s in segs] == [(0, 32), (32, 48), (48, 88)]
    # a camera panning over a textured scene changes every frame a lot: no spike, no cut
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (64, 400, 3), np.uint8)
    pan = np.stack([scene[:, 6 * t : 6 * t + 64] for t in range(50)])
    write_h264(tmp_path / "pan.mp4", pan)
    assert shot_cuts(tmp_path / "pan.mp4") == (50, [])
    # shot-aware windows never take frames from two shots
    windows = shot_windows(frames, cuts, 4, 2, 3)  # (W, 4)
    shot = np.searchsorted(cuts, windows, side="right")
    assert (shot == shot[:, :1]).all() and set(np.unique(windows)) <= set(range(frames))


# --------------------------------------------------------------------------- command line


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cli_end_to_end(tiny_run, concat, tmp_path, capsys):
    path, _ = concat
    out, js = tmp_path / "out" / "strip.png", tmp_path / "times.json"
    assert main([str(path), "--checkpoint", str(tiny_run), "--k", "4", "--out", str(out), "--json", str(js)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"keyframe {n}: frame ") for n, line in enumerate(lines, 1))
    width, height = _png_size(out.read_bytes())
    assert width == 4 * 240 and height == 270
    doc = json.loads(js.read_text())
    for line, kf in zip(lines, doc["keyframes"]):  # frames first–last (the JSON's end is exclusive), times start – end
        seg = kf["segment"]
        assert f"segment frames {seg['start_frame']}–{seg['end_frame'] - 1} " in line
    assert "–119 (" in lines[-1] and "– 15.0 s)" in lines[-1]  # 120 frames: the last is 119, it ends at 15 s
    assert {"video", "fps", "frames", "k", "keyframes"} <= doc.keys() and doc["k"] == 4 and doc["fps"] == 8.0
    assert doc["frames"] == 120 and len(doc["keyframes"]) == 4
    frames = [kf["frame"] for kf in doc["keyframes"]]
    assert frames == sorted(frames) and all(0 <= f < 120 for f in frames)
    for kf in doc["keyframes"]:
        seg = kf["segment"]
        assert kf["time"] == pytest.approx(kf["frame"] / 8, abs=1e-3)
        assert seg["start_frame"] <= kf["frame"] < seg["end_frame"] and seg["end_time"] == pytest.approx(
            seg["end_frame"] / 8
        )
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_never_writes_over_its_inputs_or_an_existing_file(tiny_run, concat, tmp_path, capsys, one_line_error):
    """D2 of the hardening issue: --out on the input video replaced it with a PNG, --json overwrote a checkpoint,
    --out and --json on one file lost the PNG. Inputs are never written; other files only with --force."""
    import shutil

    video = tmp_path / "long.mp4"
    shutil.copy(concat[0], video)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p: p.read_bytes() for p in (video, run / "last.pt", run / "best.pt")}
    base = [str(video), "--checkpoint", str(run), "--k", "3"]
    one_line_error(main, [*base, "--out", str(video), "--force"], "is one of this command's inputs")
    one_line_error(
        main,
        [*base, "--out", str(tmp_path / "s.png"), "--json", str(run / "last.pt"), "--force"],
        "is one of this command's inputs",
    )
    one_line_error(main, [*base, "--out", str(tmp_path / "s.png"), "--json", str(run / "best.pt")], "already exists")
    one_line_error(main, [*base, "--out", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.png")], "both name")
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "s.png").exists()
    strip = tmp_path / "strip.png"
    strip.write_bytes(b"an earlier filmstrip")
    one_line_error(main, [*base, "--out", str(strip)], "already exists; pass --force")
    assert strip.read_bytes() == b"an earlier filmstrip"
    one_line_error(main, [*base, "--out", str(strip), "--force"], "it does not say minivb.summarize wrote it")
    assert strip.read_bytes() == b"an earlier filmstrip"  # not summarize's: kept even with --force
    strip.unlink()
    assert main([*base, "--out", str(strip)]) == 0
    assert main([*base, "--out", str(strip), "--force"]) == 0 and strip.read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    one_line_error(main, [*base, "--out", str(run / "best.pt"), "--force"], "--force replaces only")  # a checkpoint
    capsys.readouterr()


def test_a_video_too_long_to_segment_is_refused_before_any_work(
    tiny_run, concat, tmp_path, monkeypatch, one_line_error
):
    """D13: the segmentation's memory grows with the square of the window count; a long video swapped the
    machine. The estimate is checked against the memory before a window is embedded (here: a machine of 64 KB)."""
    import minivb.summarization

    embedded = []
    monkeypatch.setattr(minivb.summarization, "memory_bytes", lambda device: 1 << 16)
    monkeypatch.setattr(minivb.summarization, "_embed_windows", lambda *a, **k: embedded.append(1))
    path, _ = concat
    err = one_line_error(main, [str(path), "--checkpoint", str(tiny_run), "--k", "3", "--out", str(tmp_path / "s.png")])
    assert "gives 55 windows at hop" in err and "raise --hop" in err and not embedded


def test_a_frame_store_is_named_as_such(tiny_run, tmp_path, one_line_error):
    """D20: summarize on a .jpgs frame store said "no decodable frames"; a store is not a video to summarize."""
    store = tmp_path / "clip.jpgs"
    store.write_bytes(b"MVBJPGS1")
    err = one_line_error(
        main, [str(store), "--checkpoint", str(tiny_run), "--k", "2", "--out", str(tmp_path / "s.png")]
    )
    assert "a minivb frame store" in err and "summarize the original video" in err


def test_cli_errors(tiny_run, concat, tmp_path, one_line_error, run_module):
    path, _ = concat
    out = str(tmp_path / "s.png")
    ok = ["--checkpoint", str(tiny_run), "--out", out]
    one_line_error(main, [str(tmp_path / "nope.mp4"), *ok, "--k", "3"], "no such file")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    one_line_error(main, [str(tmp_path / "broken.mp4"), *ok, "--k", "3"], "broken.mp4")
    one_line_error(main, [str(path), *ok, "--k", "0"], "--k")
    one_line_error(main, [str(path), *ok, "--k", "100"], "only 55 windows")
    (tmp_path / "file").write_text("x")
    one_line_error(
        main, [str(path), "--checkpoint", str(tiny_run), "--out", str(tmp_path / "file" / "s.png"), "--k", "3"], "--out"
    )
    one_line_error(main, [str(path), "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--k", "3"], "is a folder")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    one_line_error(main, [str(path), "--checkpoint", str(tmp_path / "bad.pt"), "--out", out, "--k", "3"], "bad.pt")
    one_line_error(
        main, [str(path), "--checkpoint", str(tmp_path / "none.pt"), "--out", out, "--k", "3"], "--checkpoint"
    )
    assert not (tmp_path / "s.png").exists()
    help_ = run_module("minivb.summarize", "--help", timeout=60)
    assert help_.returncode == 0 and "--k" in help_.stdout and "--checkpoint" in help_.stdout
