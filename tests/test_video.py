"""minivb.video: frame-exact decoding, honest frame counts, sampling, regions, bad input."""

import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from videos import (
    ffmpeg,
    frame_types,
    presentation_times,
    read_stamp,
    sequential_decode,
    stamped_frames,
    write_h264,
    write_opencv,
)

from minivb.video import (
    VideoDecodeError,
    frame_times,
    merge_regions,
    read_clip,
    read_frames,
    sample_indices,
    split_regions,
    video_info,
)

N = 90  # frames in the test videos


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    return write_h264(tmp_path_factory.mktemp("v") / "bframes.mp4", stamped_frames(N))


@pytest.fixture(scope="module")
def mp4v(tmp_path_factory):
    return write_opencv(tmp_path_factory.mktemp("v") / "mpeg4.mp4", stamped_frames(N), "mp4v")


# --------------------------------------------------------------------------- frame-exactness


def test_h264_test_file_really_has_b_frames(h264):
    types = frame_types(h264)
    assert len(types) == N and "B" in types  # decode order differs from presentation order


@pytest.mark.parametrize("video", ["h264", "mp4v"])
def test_read_frames_is_frame_exact_at_random_unsorted_indices(video, request):
    path = request.getfixturevalue(video)
    reference = sequential_decode(path)  # (N, H, W, 3)
    assert [read_stamp(f) for f in reference] == list(range(N))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, N, 25)  # unsorted, with repeats
    idx[:2] = [N - 1, 0]
    frames = read_frames(path, idx)
    assert frames.shape == (25, 64, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, reference[idx])
    assert [read_stamp(f) for f in frames] == idx.tolist()


def test_read_frames_returns_rgb(tmp_path):
    red = np.zeros((4, 32, 32, 3), np.uint8)
    red[..., 0] = 255
    frames = read_frames(write_opencv(tmp_path / "red.avi", red, "MJPG"), [0, 3])
    assert frames[..., 0].min() > 200 and frames[..., 2].max() < 60  # R high, B low: not BGR


def test_read_frames_accepts_lists_ranges_and_tensors(h264):
    a = read_frames(h264, [3, 1])
    np.testing.assert_array_equal(a, read_frames(h264, torch.tensor([3, 1])))
    assert [read_stamp(f) for f in read_frames(h264, range(4))] == [0, 1, 2, 3]


def test_real_kinetics_style_h264_fixture_is_frame_exact_if_present():
    """The shared Kinetics clip (not shipped with the project): checked only where it exists."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "k400_arm_wrestling.mp4"
    if not path.exists():
        pytest.skip("shared Kinetics fixture not present (it is not part of the project)")
    reference = sequential_decode(path)
    idx = [279, 0, 150, 151, 17, 150]
    np.testing.assert_array_equal(read_frames(path, idx), reference[idx])
    assert video_info(path).frames == 280


# --------------------------------------------------------------------------- video_info


def test_video_info(h264):
    info = video_info(h264)
    assert (info.frames, info.width, info.height) == (N, 64, 64)
    assert info.fps == pytest.approx(25.0)
    assert info.pixel_aspect == 1.0


def test_pixel_aspect_is_the_files_sample_aspect_ratio(tmp_path):
    wide = write_h264(tmp_path / "wide.mp4", stamped_frames(5), extra=("-vf", "setsar=5/3"))
    assert video_info(wide).pixel_aspect == pytest.approx(5 / 3)  # 64×64 stored, 107×64 shown


# A late start; a variable frame rate: 11 frames 40 ms apart, then 120 ms apart.
LATE = ("-output_ts_offset", "0.5")
VARIABLE = ("-vf", "setpts='if(lt(N,10),N,10+3*(N-10))/(25*TB)'", "-fps_mode", "passthrough")


def test_frame_times_are_the_files_own_timestamps(tmp_path, h264):
    """Against ffmpeg's own reading of the same files: a plain file, a variable frame rate, a late start."""
    np.testing.assert_allclose(frame_times(h264), np.arange(N) / 25, atol=1e-9)
    variable = write_h264(tmp_path / "variable.mp4", stamped_frames(30), extra=VARIABLE)
    reference = presentation_times(variable)
    assert reference[11] - reference[10] == pytest.approx(0.12)  # the file really is variable
    np.testing.assert_allclose(frame_times(variable), reference, atol=1e-6)  # not i / fps
    late = write_h264(tmp_path / "late.mp4", stamped_frames(30), extra=LATE)
    reference, got = presentation_times(late), frame_times(late)
    assert reference[0] == pytest.approx(0.5)
    np.testing.assert_allclose(np.diff(got), np.diff(reference), atol=1e-6)  # exact from frame to frame
    assert abs(got[0] - reference[0]) <= 0.5 / 25 + 1e-9  # the start: OpenCV gives it in whole frames only


def test_a_file_without_a_frame_count_is_counted_and_timed(tmp_path, h264):
    """Issue 30: Matroska written to a pipe and a raw H.264 stream hold no frame count in their header;
    frame_times said "no decodable frames". The count is then made by decoding, the times from the frame rate."""
    mkv, raw = tmp_path / "piped.mkv", tmp_path / "raw.h264"
    piped = ffmpeg("-loglevel", "error", "-i", str(h264), "-c", "copy", "-f", "matroska", "-")  # to a pipe
    assert piped.returncode == 0, piped.stderr.decode()
    mkv.write_bytes(piped.stdout)
    assert ffmpeg("-loglevel", "error", "-i", str(h264), "-c", "copy", str(raw)).returncode == 0
    for path in (mkv, raw):
        assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) <= 0  # really no count
        assert video_info(path, exact=False).frames == video_info(path).frames == N
        np.testing.assert_allclose(frame_times(path), np.arange(N) / 25, atol=1e-9)
        assert [read_stamp(f) for f in read_frames(path, [0, 45, N - 1])] == [0, 45, N - 1]


def _patch_avi_frame_count(data: bytearray, count: int) -> None:
    """Overwrite the AVI main header's dwTotalFrames and the stream header's dwLength."""
    i = data.find(b"avih")
    data[i + 8 + 16 : i + 8 + 20] = struct.pack("<I", count)
    j = data.find(b"strh")
    data[j + 8 + 32 : j + 8 + 36] = struct.pack("<I", count)


def test_video_info_counts_frames_when_the_header_lies(tmp_path):
    good = write_opencv(tmp_path / "good.avi", stamped_frames(20), "MJPG")
    data = bytearray(good.read_bytes())
    _patch_avi_frame_count(data, 500)
    liar = tmp_path / "liar.avi"
    liar.write_bytes(bytes(data))
    assert int(cv2.VideoCapture(str(liar)).get(cv2.CAP_PROP_FRAME_COUNT)) == 500  # the header really lies
    assert video_info(liar, exact=False).frames == 500  # trusting it is wrong ...
    assert video_info(liar).frames == 20  # ... counting is right
    with pytest.raises(VideoDecodeError, match="only 20 decodable frames"):
        read_frames(liar, [100])


def test_video_info_cache_sees_a_changed_file(tmp_path):
    path = write_opencv(tmp_path / "v.avi", stamped_frames(10), "MJPG")
    assert video_info(path).frames == 10
    write_opencv(path, stamped_frames(7), "MJPG")
    assert video_info(path).frames == 7


# --------------------------------------------------------------------------- bad input


def _bad_files(tmp_path, h264_source):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    # OpenCV/ffmpeg write the mp4 index (moov) at the end: cut it off.
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(h264_source.read_bytes()[: h264_source.stat().st_size // 2])
    png, jpeg = tmp_path / "photo.mp4", tmp_path / "picture.avi"  # still images under a video's name
    png.write_bytes(cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes())
    jpeg.write_bytes(cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes())
    return {
        "missing": (tmp_path / "nope.mp4", "no such file"),
        "directory": (tmp_path, "not a regular file"),
        "empty": (empty, "empty"),
        "not a video": (text, "not a readable video"),
        "truncated": (truncated, "not a readable video"),
        "png": (png, r"a still image \(PNG\), not a video"),
        "jpeg": (jpeg, r"a still image \(JPEG\), not a video"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "not a video", "truncated", "png", "jpeg"])
def test_bad_files_raise_video_decode_error_naming_the_file(kind, tmp_path, h264):
    path, reason = _bad_files(tmp_path, h264)[kind]
    for call in (lambda: read_frames(path, [0]), lambda: video_info(path), lambda: read_clip(path, 4)):
        with pytest.raises(VideoDecodeError, match=reason) as err:
            call()
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_file_with_index_in_front_decodes_what_is_there(tmp_path):
    """With the index at the front (faststart), a cut file opens; frames past the cut are an error."""
    full = write_h264(tmp_path / "full.mp4", stamped_frames(N), faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    n = video_info(cut).frames
    assert 0 < n < N
    assert [read_stamp(f) for f in read_frames(cut, [n - 1, 0])] == [n - 1, 0]
    with pytest.raises(VideoDecodeError, match=f"only {n} decodable frames") as err:
        read_frames(cut, [N - 1])
    assert str(cut) in str(err.value)


def test_index_past_the_end(h264):
    with pytest.raises(VideoDecodeError, match=f"frame {N} requested, but the video has only {N} decodable frames"):
        read_frames(h264, [0, N])


@pytest.mark.parametrize("indices", [[], [-1], [0.5], [[0, 1]]])
def test_bad_indices_are_value_errors(h264, indices):
    with pytest.raises(ValueError, match="indices"):
        read_frames(h264, indices)


# --------------------------------------------------------------------------- sampling


def test_center_clip():
    np.testing.assert_array_equal(sample_indices(100, 8, 4), 35 + 4 * np.arange(8))  # span 29, start (100 - 29) // 2
    np.testing.assert_array_equal(sample_indices(8, 8, 1), np.arange(8))


def test_random_clip_follows_the_generator_and_covers_every_start():
    draws = [sample_indices(20, 4, 2, "random", generator=torch.Generator().manual_seed(s)) for s in range(300)]
    again = sample_indices(20, 4, 2, "random", generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(draws[7], again)
    starts = {int(d[0]) for d in draws}
    assert starts == set(range(20 - 7 + 1))  # span 7 → starts 0..13, all reachable
    assert all((np.diff(d) == 2).all() for d in draws)


def test_uniform_clips_span_the_video():
    clips = sample_indices(100, 8, 2, "uniform", num_clips=3)
    assert clips.shape == (3, 8)
    assert clips[0, 0] == 0 and clips[-1, -1] == 99
    assert (np.diff(clips[:, 0]) > 0).all()
    np.testing.assert_array_equal(
        sample_indices(100, 8, 2, "uniform", num_clips=1)[0], sample_indices(100, 8, 2)
    )  # one view: the centre


@pytest.mark.parametrize("mode", ["center", "random", "uniform"])
def test_short_video_spreads_its_frames_over_the_clip(mode):
    idx = sample_indices(5, 8, 2, mode, num_clips=2, generator=torch.Generator().manual_seed(0))
    expected = np.array([0, 1, 1, 2, 2, 3, 3, 4])  # round(linspace(0, 4, 8)): in order, repeats allowed
    np.testing.assert_array_equal(idx[0] if mode == "uniform" else idx, expected)
    idx = sample_indices(10, 4, 5, mode, num_clips=2)  # span 16 > 10: the whole video, no repeats
    np.testing.assert_array_equal(idx[0] if mode == "uniform" else idx, [0, 3, 6, 9])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(total_frames=0, num_frames=4),
        dict(total_frames=10, num_frames=0),
        dict(total_frames=10, num_frames=4, stride=0),
        dict(total_frames=10, num_frames=2.5),
        dict(total_frames=10, num_frames=4, mode="middle"),
        dict(total_frames=10, num_frames=4, mode="uniform", num_clips=0),
    ],
)
def test_sample_indices_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        sample_indices(**kwargs)


def test_read_clip(h264):
    clip = read_clip(h264, 8, 3)
    assert clip.shape == (8, 64, 64, 3)
    assert [read_stamp(f) for f in clip] == sample_indices(N, 8, 3).tolist()
    views = read_clip(h264, 4, 2, "uniform", num_clips=3)
    assert views.shape == (3, 4, 64, 64, 3)
    assert [[read_stamp(f) for f in v] for v in views] == sample_indices(N, 4, 2, "uniform", num_clips=3).tolist()
    g = torch.Generator().manual_seed(3)
    clip = read_clip(h264, 4, 2, "random", generator=g, total_frames=N)
    assert [read_stamp(f) for f in clip] == sample_indices(
        N, 4, 2, "random", generator=torch.Generator().manual_seed(3)
    ).tolist()


# --------------------------------------------------------------------------- regions


def test_split_regions_matches_hand_slicing_and_round_trips():
    frames = np.random.default_rng(0).integers(0, 256, (3, 12, 18, 3), dtype=np.uint8)  # (T, H, W, C)
    regions = split_regions(frames, 3)
    assert regions.shape == (3, 9, 4, 6, 3)
    for r in range(9):
        row, col = divmod(r, 3)
        np.testing.assert_array_equal(regions[:, r], frames[:, row * 4 : (row + 1) * 4, col * 6 : (col + 1) * 6])
    np.testing.assert_array_equal(merge_regions(regions, 3), frames)
    t = torch.from_numpy(frames)
    np.testing.assert_array_equal(split_regions(t, 3).numpy(), regions)  # tensors work the same
    np.testing.assert_array_equal(split_regions(frames, 1)[:, 0], frames)


def test_merge_regions_rejects_bad_grids():
    with pytest.raises(ValueError, match="grid"):
        merge_regions(np.zeros((2, 4, 3, 3, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="expected 9 regions"):
        merge_regions(np.zeros((2, 4, 3, 3, 3), np.uint8), 3)


@pytest.mark.parametrize(
    "grid,shape,match",
    [
        (5, (2, 12, 18, 3), "not divisible by grid 5"),
        (0, (2, 12, 18, 3), "grid"),
        (2.0, (2, 12, 18, 3), "grid"),
        (2, (12, 18), "shaped"),
    ],
)
def test_split_regions_rejects_bad_input(grid, shape, match):
    with pytest.raises(ValueError, match=match):
        split_regions(np.zeros(shape, np.uint8), grid)


# --------------------------------------------------------------------------- DataLoader workers


class _Clips(torch.utils.data.Dataset):
    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 6

    def __getitem__(self, i):
        frames = read_frames(self.path, [i, i + 10])
        return torch.from_numpy(frames), cv2.getNumThreads()


def test_safe_and_single_threaded_in_dataloader_workers(h264):
    loader = torch.utils.data.DataLoader(_Clips(h264), batch_size=2, num_workers=2)
    frames, threads = zip(*loader)
    frames = torch.cat(frames).numpy()
    assert [[read_stamp(f) for f in clip] for clip in frames] == [[i, i + 10] for i in range(6)]
    assert torch.cat(threads).tolist() == [1] * 6  # OpenCV's pool limited to 1 thread per worker


def test_dataloader_workers_do_not_hang_after_opencv_used_its_threads(h264):
    """OpenCV's thread pool does not survive fork(): minivb.video shrinks it around every fork."""
    script = f"""
import numpy as np, cv2, torch
import minivb.video as video
big = np.zeros((2160, 3840, 3), np.uint8)
for _ in range(3):
    cv2.cvtColor(big, cv2.COLOR_RGB2BGR)  # large enough for OpenCV to start its pool's threads
class Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        frames = video.read_frames({str(h264)!r}, [i])
        return torch.from_numpy(cv2.cvtColor(np.ascontiguousarray(big[:1080]), cv2.COLOR_RGB2BGR)[:1, :1]), len(frames)
if __name__ == "__main__":
    threads = cv2.getNumThreads()
    loader = torch.utils.data.DataLoader(Clips(), batch_size=2, num_workers=2)
    print(sum(int(n.sum()) for _, n in loader), cv2.getNumThreads() == threads)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["4", "True"]  # every worker answered; the parent kept its threads


@pytest.mark.parametrize("faststart", [False, True])
def test_a_sound_only_file_is_named_as_such(tmp_path, faststart):
    """D25 of the hardening issue: an audio-only MP4 was "unknown format or truncated"; it has no video stream.
    (Its index — the moov box with the track handlers — sits at the end, or at the start with faststart.)"""
    from videos import ffmpeg

    path = tmp_path / "sound.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-c:a",
        "aac",
        *(["-movflags", "+faststart"] if faststart else []),
        str(path),
    )
    with pytest.raises(VideoDecodeError, match=r"sound.mp4: no video stream \(the file holds sound only\)"):
        video_info(path)
    cut = tmp_path / "cut.mp4"  # a video cut short is still "truncated", not "sound only"
    cut.write_bytes(write_h264(tmp_path / "v.mp4", stamped_frames(10)).read_bytes()[:300])
    with pytest.raises(VideoDecodeError, match="unknown format or truncated|decod"):
        video_info(cut)
