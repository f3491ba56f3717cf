"""``python -m minivb.bench decode``: milliseconds per clip on one core, minivb (OpenCV) vs PyAV vs a frame store.

Also the pieces it is built from, usable on their own: the PyAV readers (:func:`pyav_sequential`,
:func:`pyav_seek`) and the generated test clips (:func:`write_test_video`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.framestore import convert_video, read_store_frames
from ..plumbing.cli import UsageError, positive_int
from ..video import VideoDecodeError, read_frames, sample_indices, video_info
from .report import LiveTable, fmt, fmt_range, machine_facts, markdown_table, ratios, summarize

READERS = {"minivb": "minivb", "pyav_seq": "PyAV sequential", "pyav_seek": "PyAV seek", "store": "frame store"}
MAX_DIFF = 2  # largest pixel difference that still counts as "the same frame" (colour conversion)
STORE_MAX_MEAN_DIFF = 8.0  # JPEG at quality 90 stays far below this; another frame's pixels do not

# --------------------------------------------------------------------------- test videos


def _test_frames(width: int, height: int, frames: int, seed: int):
    """uint8 RGB frames: a gradient moving right and down, plus noise (so compression has work to do)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8, 9, (7, height, width, 1), dtype=np.int16)  # a small bank, reused (x264 keeps 3 references)
    xs, ys = np.arange(width), np.arange(height)
    tint = int(rng.integers(0, 256))
    for t in range(frames):
        base = (((xs[None, :] + 3 * t) % 256) * 3 // 5 + ((ys[:, None] + 2 * t) % 256) * 2 // 5).astype(np.int16)
        rgb = np.stack([base, (base + tint) % 256, 255 - base], -1) + noise[t % len(noise)]
        yield np.clip(rgb, 0, 255).astype(np.uint8)


def write_test_video(
    path: str | os.PathLike, width: int = 340, height: int = 256, frames: int = 300, fps: int = 30, seed: int = 0
) -> str:
    """Write a test clip → the codec used: H.264 (libx264 defaults: B-frames, keyframe every 250) via imageio-ffmpeg,
    else OpenCV's MPEG-4 part 2 (``mp4v``) if imageio-ffmpeg is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for rgb in _test_frames(width, height, frames, seed):
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()
        return "mp4v"
    raw_rgb_in = f"-f rawvideo -pix_fmt rgb24 -s {width}x{height} -r {fps} -i -"  # the frames, on stdin
    options = f"-hide_banner -loglevel error -y {raw_rgb_in} -c:v libx264 -pix_fmt yuv420p".split()
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), *options, str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for rgb in _test_frames(width, height, frames, seed):
        proc.stdin.write(rgb.tobytes())
    _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"ffmpeg could not write {path}: {err.decode().strip()}")
    return "h264"


# --------------------------------------------------------------------------- PyAV readers


class NotFrameExact(Exception):
    """A reader could not deliver exactly the frames asked for."""


def _pyav_open(path):
    """A PyAV container and its first video stream, decoding on one thread."""
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.thread_count = 1
    return container, stream


def _collect(frames, index_of, indices) -> np.ndarray:
    """Decode ``frames`` (PyAV, presentation order) until the last wanted index → uint8 RGB ``(N, H, W, 3)``."""
    idx = [int(i) for i in indices]
    wanted, last, got = set(idx), max(idx), {}
    for n, frame in enumerate(frames):
        i = index_of(n, frame)
        if i in wanted and i not in got:
            got[i] = frame.to_ndarray(format="rgb24")
        if i >= last:
            break
    missing = sorted(wanted - got.keys())
    if missing:
        raise NotFrameExact(f"frame(s) {missing[:3]} not delivered")
    return np.stack([got[i] for i in idx])


def pyav_sequential(path, indices) -> np.ndarray:
    """Frames ``indices`` (presentation order) by decoding from the start with PyAV."""
    container, stream = _pyav_open(path)
    with container:
        return _collect(container.decode(stream), lambda n, frame: n, indices)


def pyav_seek(path, indices) -> np.ndarray:
    """Frames ``indices`` by seeking to the keyframe before the first one, then decoding forward (index from pts)."""
    container, stream = _pyav_open(path)
    with container:
        rate, tb = stream.average_rate, stream.time_base
        if not rate or not tb:
            raise NotFrameExact("the stream has no average frame rate or time base")
        start = stream.start_time or 0
        target = start + int(round(int(min(indices)) / (rate * tb)))
        container.seek(target, backward=True, any_frame=False, stream=stream)

        def index_of(n, frame):
            if frame.pts is None:
                raise NotFrameExact("a frame without a presentation timestamp")
            return round((frame.pts - start) * tb * rate)

        return _collect(container.decode(stream), index_of, indices)


# --------------------------------------------------------------------------- decode benchmark


@contextlib.contextmanager
def _one_core():
    """Restrict this process to one core while the block runs (then restore it); yields notes saying how."""
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    notes = [
        "one core: cv2.setNumThreads(1) (minivb's FFmpeg decoder then runs on one thread), torch.set_num_threads(1), "
        "PyAV stream thread_type NONE / thread_count 1"
    ]
    if cpus is not None:
        cpu = min(cpus)
        os.sched_setaffinity(0, {cpu})
        notes.append(f"process pinned to CPU {cpu} (sched_setaffinity)")
    else:
        notes.append("the process could not be pinned to one CPU (no sched_setaffinity here)")
    try:
        yield notes
    finally:  # a caller in the same process (a test, a notebook) gets its cores and threads back
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)


def _clip_calls(total: int, opts) -> dict[str, list[np.ndarray]]:
    """Per style, the index lists each reader is called with (one call = one file opening)."""
    g = torch.Generator().manual_seed(opts.seed)
    train = [sample_indices(total, opts.num_frames, opts.stride, "random", generator=g) for _ in range(opts.clips)]
    evaluation = sample_indices(total, opts.num_frames, opts.stride, "uniform", num_clips=opts.clips)
    return {"train": train, "eval": [evaluation.reshape(-1)]}


def _check(name: str, fn, path, calls: list, reference: list[np.ndarray]) -> dict:
    """Run a reader once on ``calls`` and compare with ``reference`` (minivb's frames)."""
    try:
        out = [fn(path, idx) for idx in calls]
    except Exception as e:  # a reader that fails is reported, not timed
        return {"ok": False, "reason": f"{type(e).__name__}: {e}"}
    if name == "store":  # other size and JPEG-compressed: compare with the source frames scaled the same way
        h, w = out[0].shape[1:3]
        scaled = [np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in r]) for r in reference]
        diff = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(out, scaled)]))
        ok = diff <= STORE_MAX_MEAN_DIFF
        return {
            "ok": ok,
            "mean_abs_diff": diff,
            **({} if ok else {"reason": f"mean |diff| {diff:.1f} > {STORE_MAX_MEAN_DIFF}"}),
        }
    if any(a.shape != b.shape for a, b in zip(out, reference)):
        return {"ok": False, "reason": "frames of another shape"}
    diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(out, reference))
    exact = all(np.array_equal(a, b) for a, b in zip(out, reference))
    ok = diff <= MAX_DIFF
    return {
        "ok": ok,
        "max_abs_diff": diff,
        "equal": exact,
        **({} if ok else {"reason": f"max |diff| {diff} > {MAX_DIFF}"}),
    }


def _time_readers(readers: dict, calls: list, repeats: int) -> dict[str, list[float]]:
    """Milliseconds each reader takes for all ``calls``, per repeat (the readers' order rotates between repeats)."""
    names, times = list(readers), {name: [] for name in readers}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, path = readers[name]
            t0 = time.perf_counter()
            for idx in calls:
                fn(path, idx)
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def _bench_style(readers: dict, calls: list, clips: int, repeats: int) -> dict:
    """Check every reader against minivb, then time those that pass → the style's results."""
    path = readers["minivb"][1]
    reference = [read_frames(path, idx) for idx in calls]
    checks = {name: _check(name, fn, p, calls, reference) for name, (fn, p) in readers.items() if name != "minivb"}
    timed = {name: readers[name] for name in readers if name == "minivb" or checks[name]["ok"]}
    raw = _time_readers(timed, calls, repeats)
    ms = {name: [t / clips for t in raw.get(name, [])] for name in readers}
    result = {
        "clips": clips,
        "checks": checks,
        "ms_per_clip": {name: summarize(v) | {"repeats": v} for name, v in ms.items()},
    }
    result["ratios"] = {f"{n}/minivb": ratios(ms[n], ms["minivb"]) for n in ("pyav_seq", "pyav_seek") if n in readers}
    result["ratios"]["minivb/store"] = ratios(ms["minivb"], ms["store"])
    return result


def _bench_file(video: Path, opts, have_av: bool, store: Path, tick) -> dict:
    """Every reader and style on one file (``store``: where its frame store goes; ``tick()`` after each style)."""
    info = video_info(video)
    convert_video(video, store, short_side=256, step=1, quality=90)  # the file as a frame store, every frame
    readers = {"minivb": (read_frames, video)}
    if have_av:
        readers |= {"pyav_seq": (pyav_sequential, video), "pyav_seek": (pyav_seek, video)}
    readers["store"] = (read_store_frames, store)
    calls = _clip_calls(info.frames, opts)
    styles = {}
    for style, c in calls.items():
        styles[style] = _bench_style(readers, c, opts.clips, opts.repeats)
        tick()
    return {
        "file": str(video),
        "name": video.name,
        "width": info.width,
        "height": info.height,
        "frames": info.frames,
        "fps": info.fps,
        "bytes": video.stat().st_size,
        "store_bytes": store.stat().st_size,
        "styles": styles,
    }


def _decode_videos(opts, folder: Path, notes: list[str]) -> list[Path]:
    """The files to benchmark: ``--videos``, or two generated clips."""
    if opts.videos:
        return [Path(v) for v in opts.videos]
    made = []
    for width, height in ((340, 256), (1280, 720)):
        path = folder / f"test_{width}x{height}.mp4"
        codec = write_test_video(path, width, height, frames=300, fps=30)
        made.append(path)
    notes.append(
        "files: generated, 300 frames at 30 fps, moving gradient + noise, "
        + (
            "H.264 (libx264 defaults: B-frames, keyframe interval 250)"
            if codec == "h264"
            else "MPEG-4 part 2 (mp4v): imageio-ffmpeg is not installed, so no H.264"
        )
    )
    return made


def check_videos(paths) -> None:
    """``--videos`` before any work: each a file the decoder can read (else one line naming it and why)."""
    for v in paths:
        if not Path(v).is_file():
            raise UsageError(f"--videos {v}: no such file")
        try:
            video_info(v, exact=False)
        except VideoDecodeError as e:
            raise UsageError(f"--videos {v}: {e.reason}") from None


def run_decode(opts, argv: list[str]) -> dict:
    """The ``decode`` subcommand → its results (also printed)."""
    check_videos(opts.videos or ())
    facts = machine_facts(argv)
    try:
        import av  # noqa: F401

        have_av = True
    except ImportError:
        have_av = False
    settings = {k: getattr(opts, k) for k in ("repeats", "num_frames", "stride", "clips", "seed")}
    with _one_core() as notes, tempfile.TemporaryDirectory(prefix="minivb-bench-") as tmp:
        if not have_av:
            notes.append("PyAV is not installed (pip install av): minivb and the frame store only")
        videos = _decode_videos(opts, Path(tmp), notes)
        notes.append(
            f"styles: train = {opts.clips} clips of {opts.num_frames} frames, stride {opts.stride}, random starts "
            f"(seed {opts.seed}), one call each; eval = {opts.clips} evenly spaced clips in one call"
        )
        result = {"benchmark": "decode", "machine": facts, "settings": settings, "notes": notes}
        with LiveTable(result, TIMING_HEADERS, _timing_cells, 2 * len(videos), "style", left=2) as table:
            for i, v in enumerate(videos):
                table.add(_bench_file(v, opts, have_av, Path(tmp) / f"store_{i}.jpgs", table.tick))
    print(decode_summary(result["results"]))
    return result


def _check_cell(check: dict | None) -> str:
    if check is None:
        return "—"
    if not check["ok"]:
        return f"not frame-exact ({check['reason']})"
    if "mean_abs_diff" in check:
        return f"mean |diff| {check['mean_abs_diff']:.2f} (JPEG)"
    return "identical" if check["equal"] else f"max |diff| {check['max_abs_diff']}"


TIMING_HEADERS = ["file", "style", *[f"{label} ms/clip" for label in READERS.values()]]
TIMING_HEADERS += ["PyAV seq / minivb", "PyAV seek / minivb", "minivb / store"]


def _timing_cells(f: dict) -> list[list[str]]:
    """The timing table's rows of one file: one per style."""
    rows = []
    for style, s in f["styles"].items():
        ms, r = s["ms_per_clip"], s["ratios"]
        rows.append(
            [
                f["name"],
                style,
                *[fmt(ms.get(n, {}).get("median")) for n in READERS],
                *[fmt_range(r.get(k, {})) for k in ("pyav_seq/minivb", "pyav_seek/minivb", "minivb/store")],
            ]
        )
    return rows


def decode_summary(files: list[dict]) -> str:
    """What follows the timing table: how to read it, and the frame-check table (Markdown)."""
    checks = [
        [
            f["name"],
            f"{f['width']}×{f['height']}",
            f["frames"],
            f"{f['fps']:.2f}",
            style,
            *[_check_cell(s["checks"].get(n)) for n in ("pyav_seq", "pyav_seek", "store")],
        ]
        for f in files
        for style, s in f["styles"].items()
    ]
    c = markdown_table(
        ["file", "size", "frames", "fps", "style", "PyAV seq vs minivb", "PyAV seek vs minivb", "store vs minivb"],
        checks,
        left=8,
    )
    return (
        "\nms/clip: median over the repeats; ratios: median (min–max) of the per-repeat ratios "
        f"(A / B = A's time / B's time: > 1 means B is faster).\n\n{c}"
    )


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``decode`` subcommand and its options (``parents``: the shared options)."""
    d = sub.add_parser(
        "decode",
        parents=parents,
        help="Milliseconds per clip on one core: minivb (OpenCV) vs PyAV vs a frame store.",
        description="Time reading the same clips of the same files on one core with minivb (OpenCV), PyAV "
        "(decoding from the start, or seeking) and a frame store made from each file, for training-style and "
        "evaluation-style clips. Every reader's frames are checked against minivb's before anything is timed.",
    )
    d.add_argument("--videos", nargs="+", metavar="FILE", help="videos to read (default: two generated H.264 clips)")
    d.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (default: 5)")
    d.add_argument("--num-frames", type=positive_int, default=16, help="frames per clip (default: 16)")
    d.add_argument("--stride", type=positive_int, default=4, help="source frames between clip frames (default: 4)")
    d.add_argument("--clips", type=positive_int, default=4, help="clips per file and style (default: 4)")
    return d
