"""Benchmarks anyone can rerun: video decoding, and data loading against the model's own speed.

    python -m minivb.bench decode                          # two generated H.264 clips (340×256, 1280×720)
    python -m minivb.bench decode --videos a.mp4 b.mp4 --repeats 5
    python -m minivb.bench loader --preset toy             # the toy set, generated in a temp folder
    python -m minivb.bench loader --preset k400 --encoder small --size 112 --batch-size 8 --steps 5
    python -m minivb.bench loader --preset k400 --data-root data/kinetics400 --device cuda --workers 8
    python -m minivb.bench decode --json decode.json       # every number as strict JSON too

``decode``: milliseconds per clip on one core for the same files and frame indices, read by
:func:`minivb.video.read_frames` (OpenCV), by PyAV (decode from the start; or seek to the
keyframe before the first wanted frame), and from a frame store (``.jpgs``) made from the file,
for training-style clips (random starts) and evaluation-style clips (evenly spaced). Every
reader's frames are checked against ``read_frames`` before anything is timed.

``loader``: clips per second of (1) the trainer's DataLoader alone, (2) the model's training
step alone on synthetic input, (3) both together, for the prepared frame stores and for the
original videos of a Kinetics-shaped folder (or the toy set).

Machines are noisy, so speed is reported as ratios against a reference measured in the same
run, as min/median/max over ``--repeats`` repeats. Output: a header with the machine and the
command line, then Markdown tables (ready for the README).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .video import read_frames, sample_indices, video_info  # first: it quiets FFmpeg before cv2 is imported

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .cli import DEVICES, Parser, UsageError, nonnegative_int, positive_int, resolve_device  # noqa: E402
from .data.framestore import convert_video, read_store_frames  # noqa: E402

__all__ = ["main", "build_parser", "run_decode", "run_loader", "pyav_sequential", "pyav_seek", "write_test_video"]

READERS = {"minivb": "minivb", "pyav_seq": "PyAV sequential", "pyav_seek": "PyAV seek", "store": "frame store"}
MAX_DIFF = 2  # largest pixel difference that still counts as "the same frame" (colour conversion)
STORE_MAX_MEAN_DIFF = 8.0  # JPEG at quality 90 stays far below this; another frame's pixels do not


# --------------------------------------------------------------------------- numbers and output


def summarize(values: list[float]) -> dict:
    """min/median/max of finite values (``None`` for each if there are none)."""
    good = [v for v in values if v is not None and math.isfinite(v)]
    if not good:
        return {"min": None, "median": None, "max": None}
    return {"min": min(good), "median": statistics.median(good), "max": max(good)}


def ratios(num: list[float], den: list[float]) -> dict:
    """Per-repeat ratios ``num[r] / den[r]`` → min/median/max and the list."""
    values = [a / b for a, b in zip(num, den) if a and b]
    return summarize(values) | {"repeats": values}


def fmt(value: float | None, digits: int | None = None) -> str:
    """A number for a table: ``digits`` decimals, or by default 2 below 10, 1 below 1000, else 0."""
    if value is None:
        return "—"
    if digits is None:
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


def fmt_range(stats: dict, digits: int = 2) -> str:
    """``median (min–max)``, or ``—``."""
    if stats.get("median") is None:
        return "—"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def markdown_table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table (``|`` in cells escaped); the first ``left`` columns are left-aligned, the others right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(headers))]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines)


def _finite(obj):
    """A copy of ``obj`` that strict JSON accepts: NaN/inf → None, NumPy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, data: dict) -> None:
    Path(path).write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return None


def machine_facts(argv: list[str], device: torch.device | None = None) -> dict:
    """CPU, library versions, device, date and the exact command line."""
    import torchvision

    name = torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else f"cpu ({_cpu_model()})"
    return {
        "command": f"python -m minivb.bench {shlex.join(argv)}".strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "usable_cpus": _usable_cpus(), "cpu": _cpu_model(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "opencv": cv2.__version__,
        "av": _version("av"), "numpy": np.__version__, "device": name,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def header(title: str, facts: dict) -> str:
    return "\n".join([
        f"## minivb.bench {title}", "",
        f"- command: `{facts['command']}`",
        f"- date: {facts['date']}",
        f"- machine: {facts['cpu_count']} CPUs ({facts['usable_cpus']} usable), {facts['cpu']}; {facts['platform']}; "
        f"load average at the start {fmt(facts['load_average'], 2)} (other work on the machine skews every number)",
        f"- device: {facts['device']}",
        f"- versions: Python {facts['python']}, torch {facts['torch']}, torchvision {facts['torchvision']}, "
        f"OpenCV {facts['opencv']}, PyAV {facts['av'] or 'not installed'}, NumPy {facts['numpy']}",
    ])


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


def write_test_video(path: str | os.PathLike, width: int = 340, height: int = 256, frames: int = 300, fps: int = 30,
                     seed: int = 0) -> str:
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
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
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


def _one_core() -> list[str]:
    """Restrict this process to one core; → notes saying how."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    notes = ["one core: cv2.setNumThreads(1) (minivb's FFmpeg decoder then runs on one thread), torch.set_num_threads(1), "
             "PyAV stream thread_type NONE / thread_count 1"]
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        notes.append(f"process pinned to CPU {cpu} (sched_setaffinity)")
    else:
        notes.append("the process could not be pinned to one CPU (no sched_setaffinity here)")
    return notes


def _make_store(video: Path, target: Path) -> Path:
    """The file as a frame store (``encode_frames`` + ``write_store``): every frame, shorter side 256, JPEG quality 90."""
    convert_video(video, target, short_side=256, step=1, quality=90)
    return target


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
        return {"ok": ok, "mean_abs_diff": diff, **({} if ok else {"reason": f"mean |diff| {diff:.1f} > {STORE_MAX_MEAN_DIFF}"})}
    if any(a.shape != b.shape for a, b in zip(out, reference)):
        return {"ok": False, "reason": "frames of another shape"}
    diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(out, reference))
    exact = all(np.array_equal(a, b) for a, b in zip(out, reference))
    ok = diff <= MAX_DIFF
    return {"ok": ok, "max_abs_diff": diff, "equal": exact, **({} if ok else {"reason": f"max |diff| {diff} > {MAX_DIFF}"})}


def _time_readers(readers: dict, calls: list, repeats: int) -> dict[str, list[float]]:
    """Milliseconds each reader takes for all ``calls``, per repeat (the readers' order rotates between repeats)."""
    names, times = list(readers), {name: [] for name in readers}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
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
    result = {"clips": clips, "checks": checks,
              "ms_per_clip": {name: summarize(v) | {"repeats": v} for name, v in ms.items()}}
    result["ratios"] = {f"{n}/minivb": ratios(ms[n], ms["minivb"]) for n in ("pyav_seq", "pyav_seek") if n in readers}
    result["ratios"]["minivb/store"] = ratios(ms["minivb"], ms["store"])
    return result


def _bench_file(video: Path, opts, have_av: bool, store: Path) -> dict:
    """Every reader and style on one file (``store``: where its frame store goes)."""
    info = video_info(video)
    _make_store(video, store)
    readers = {"minivb": (read_frames, video)}
    if have_av:
        readers |= {"pyav_seq": (pyav_sequential, video), "pyav_seek": (pyav_seek, video)}
    readers["store"] = (read_store_frames, store)
    calls = _clip_calls(info.frames, opts)
    styles = {style: _bench_style(readers, c, opts.clips, opts.repeats) for style, c in calls.items()}
    return {"file": str(video), "name": video.name, "width": info.width, "height": info.height, "frames": info.frames,
            "fps": info.fps, "bytes": video.stat().st_size, "store_bytes": store.stat().st_size, "styles": styles}


def _decode_videos(opts, folder: Path, notes: list[str]) -> list[Path]:
    """The files to benchmark: ``--videos``, or two generated clips."""
    if opts.videos:
        return [Path(v) for v in opts.videos]
    made = []
    for width, height in ((340, 256), (1280, 720)):
        path = folder / f"test_{width}x{height}.mp4"
        codec = write_test_video(path, width, height, frames=300, fps=30)
        made.append(path)
    notes.append("files: generated, 300 frames at 30 fps, moving gradient + noise, "
                 + ("H.264 (libx264 defaults: B-frames, keyframe interval 250)" if codec == "h264"
                    else "MPEG-4 part 2 (mp4v): imageio-ffmpeg is not installed, so no H.264"))
    return made


def run_decode(opts, argv: list[str]) -> dict:
    """The ``decode`` subcommand → its results (also printed)."""
    for v in opts.videos or ():
        if not Path(v).is_file():
            raise UsageError(f"--videos {v}: no such file")
    facts = machine_facts(argv)
    notes = _one_core()
    try:
        import av  # noqa: F401
        have_av = True
    except ImportError:
        have_av = False
        notes.append("PyAV is not installed (pip install av): minivb and the frame store only")
    with tempfile.TemporaryDirectory(prefix="minivb-bench-") as tmp:
        videos = _decode_videos(opts, Path(tmp), notes)
        files = [_bench_file(v, opts, have_av, Path(tmp) / f"store_{i}.jpgs") for i, v in enumerate(videos)]
    notes.append(f"styles: train = {opts.clips} clips of {opts.num_frames} frames, stride {opts.stride}, random starts "
                 f"(seed {opts.seed}), one call each; eval = {opts.clips} evenly spaced clips in one call")
    settings = {k: getattr(opts, k) for k in ("repeats", "num_frames", "stride", "clips", "seed")}
    result = {"benchmark": "decode", "machine": facts, "settings": settings, "notes": notes, "results": files}
    print(header("decode", facts), *[f"- {n}" for n in notes], "", decode_tables(files), sep="\n")
    return result


def _check_cell(check: dict | None) -> str:
    if check is None:
        return "—"
    if not check["ok"]:
        return f"not frame-exact ({check['reason']})"
    if "mean_abs_diff" in check:
        return f"mean |diff| {check['mean_abs_diff']:.2f} (JPEG)"
    return "identical" if check["equal"] else f"max |diff| {check['max_abs_diff']}"


def decode_tables(files: list[dict]) -> str:
    """The timing table and the frame-check table (Markdown)."""
    timing, checks = [], []
    for f in files:
        for style, s in f["styles"].items():
            ms, r = s["ms_per_clip"], s["ratios"]
            timing.append([f["name"], style, *[fmt(ms.get(n, {}).get("median")) for n in READERS],
                           *[fmt_range(r.get(k, {})) for k in ("pyav_seq/minivb", "pyav_seek/minivb", "minivb/store")]])
            checks.append([f["name"], f"{f['width']}×{f['height']}", f["frames"], f"{f['fps']:.2f}", style,
                           *[_check_cell(s["checks"].get(n)) for n in ("pyav_seq", "pyav_seek", "store")]])
    t = markdown_table(["file", "style", *[f"{label} ms/clip" for label in READERS.values()],
                        "PyAV seq / minivb", "PyAV seek / minivb", "minivb / store"], timing, left=2)
    c = markdown_table(["file", "size", "frames", "fps", "style", "PyAV seq vs minivb", "PyAV seek vs minivb",
                        "store vs minivb"], checks, left=8)
    return (f"{t}\n\nms/clip: median over the repeats; ratios: median (min–max) of the per-repeat ratios "
            f"(A / B = A's time / B's time: > 1 means B is faster).\n\n{c}")


# --------------------------------------------------------------------------- loader benchmark

OVERRIDES = ("encoder", "size", "num_frames", "stride", "grid", "dim", "depth", "heads", "batch_size", "preload")
MEASURES = ("loader", "model", "training")


def _loader_settings(opts) -> dict:
    """The preset, with the options given on the command line; never pretrained weights."""
    from .train import PRESETS

    s = dict(PRESETS[opts.preset], pretrained=False, compile=opts.compile, seed=opts.seed)
    s.update({k: getattr(opts, k) for k in OVERRIDES if getattr(opts, k) is not None})
    s["workers"] = opts.workers if opts.workers is not None else min(s["workers"], _usable_cpus())
    if opts.threads:
        torch.set_num_threads(opts.threads)
    s["threads"] = torch.get_num_threads()
    return s


def _build_step(s: dict, num_classes: int, device: torch.device):
    """The trainer's model, AdamW and loss → ``(parameter count, step(videos, labels) → clips)``."""
    from .cli import autocast
    from .model import VideoBERT
    from .train import _check_frame_size, _model_config, _param_groups

    model = VideoBERT(_model_config(s, num_classes, device)).to(device)
    _check_frame_size(model, s["size"], device)
    optimizer = torch.optim.AdamW(_param_groups(model, s["weight_decay"]), lr=s["lr"], fused=device.type == "cuda")
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=s["label_smoothing"])
    forward = torch.compile(model) if s["compile"] else model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    def step(videos: torch.Tensor, labels: torch.Tensor) -> int:
        with autocast(device):
            logits = forward(videos)
        loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()  # the trainer reads the loss every step (a synchronisation on CUDA)
        return len(labels)

    return sum(p.numel() for p in model.parameters()), step


def _dataset(items: list, classes: list[str], s: dict, toy: bool):
    from .data.clips import ClipDataset

    flips = {}
    if toy:
        from .data.toy import HFLIP, VFLIP

        flips = dict(hflip=HFLIP, vflip=VFLIP)
    try:
        return ClipDataset(items, classes, s["num_frames"], s["stride"], train=True, size=s["size"],
                           seed=s["seed"], preload=s["preload"], **flips)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _batches(dataset, s: dict, device: torch.device):
    """The trainer's DataLoader, epoch after epoch → endless ``(videos, labels)`` (uint8, on the CPU)."""
    from torch.utils.data import DataLoader

    from .data.clips import ShardedSampler, collate, worker_init

    sampler = ShardedSampler(len(dataset), shuffle=True, seed=s["seed"], with_epoch=True)
    w = s["workers"]
    loader = DataLoader(dataset, batch_size=s["batch_size"], sampler=sampler, num_workers=w, collate_fn=collate,
                        pin_memory=device.type == "cuda", worker_init_fn=worker_init if w else None,
                        persistent_workers=w > 0, prefetch_factor=4 if w else None, generator=torch.Generator())
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        good = 0
        for videos, labels, _ in loader:
            if videos is not None:
                good += 1
                yield videos, labels
        if not good:
            raise UsageError("no clip of the data set could be decoded")


@contextlib.contextmanager
def _loader(dataset, s: dict, device: torch.device):
    """:func:`_batches` whose worker processes are shut down on exit (so they do not compete with what follows)."""
    batches = _batches(dataset, s, device)
    try:
        yield batches
    finally:
        batches.close()
        del batches
        gc.collect()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(batches, consume, warmup: int, steps: int, device: torch.device) -> float:
    """Clips per second of ``consume(videos, labels) → clips`` over ``steps`` batches, after ``warmup``."""
    for _ in range(warmup):
        consume(*next(batches))
    _sync(device)
    t0, clips = time.perf_counter(), 0
    for _ in range(steps):
        clips += consume(*next(batches))
    _sync(device)
    return clips / (time.perf_counter() - t0)


def _measure_source(dataset, s: dict, device: torch.device, opts, step) -> dict[str, list[float]]:
    """Per repeat: model alone, loader alone, both → clips/s lists."""
    def move(videos, labels):
        videos, labels = videos.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        _sync(device)
        return len(labels)

    def train(videos, labels):
        return step(videos.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    shape = (s["batch_size"], s["num_frames"], 3, s["size"], s["size"])
    synthetic = (torch.randint(0, 256, shape, dtype=torch.uint8, device=device),
                 torch.randint(0, len(dataset.classes), (s["batch_size"],), device=device))
    rates = {m: [] for m in opts.measure}
    for _ in range(opts.repeats):
        if "model" in rates:
            rates["model"].append(_rate(itertools.repeat(synthetic), step, opts.warmup, opts.steps, device))
        for name, consume in (("loader", move), ("training", train)):
            if name in rates:
                with _loader(dataset, s, device) as batches:
                    rates[name].append(_rate(batches, consume, opts.warmup, opts.steps, device))
    return rates


def _load(root: Path, what: str):
    from .data.clips import load_items

    try:
        return load_items(root, "train")
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"{what}: {e}") from None


def _toy_root(opts, folder: Path) -> Path:
    if opts.data_root:
        return Path(opts.data_root)
    from .data import toy

    return toy.generate(folder / "toy")


def _clips_per_class(opts, s: dict) -> int:
    """``--per-class``, or enough clips for two batches per worker in each epoch (at least 6).

    On a tiny set every epoch ends with workers idle while the last batches are made; those tails would
    dominate the loader's numbers.
    """
    if opts.per_class:
        return opts.per_class
    return max(6, math.ceil(2 * s["batch_size"] * max(1, s["workers"]) / opts.classes))


def _fill_class_folders(root: Path, sources: list[Path], classes: int, per_class: int) -> None:
    """``root/train/class_<c>/clip_<k>.mp4``: the sources in turn (hard links where possible, else copies)."""
    for c in range(classes):
        for k in range(per_class):
            target = root / "train" / f"class_{c}" / f"clip_{k}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            source = sources[(c * per_class + k) % len(sources)]
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)


def _kinetics_root(opts, s: dict, folder: Path, notes: list[str]) -> Path:
    """``--data-root``, or a small Kinetics-shaped folder of H.264 clips, prepared by minivb.data.kinetics."""
    if opts.data_root:
        return Path(opts.data_root)
    try:
        prepare = importlib.import_module("minivb.data.kinetics").prepare
    except (ImportError, AttributeError):
        raise UsageError("minivb.data.kinetics.prepare is not available; pass --data-root with a prepared folder") from None
    root = folder / "k400"
    sources = [Path(v) for v in opts.videos] if opts.videos else []
    if not sources:
        for c in range(opts.classes):
            sources.append(folder / f"source_{c}.mp4")
            write_test_video(sources[-1], 340, 256, frames=300, fps=30, seed=c)
    per_class = _clips_per_class(opts, s)
    _fill_class_folders(root, sources, opts.classes, per_class)
    t0 = time.perf_counter()
    prepare(root, splits=("train",), workers=max(1, _usable_cpus()), progress=False)
    what = ", ".join(p.name for p in sources) if opts.videos else "generated H.264 clips (340×256, 300 frames, 30 fps)"
    notes.append(f"data: {opts.classes} classes × {per_class} clips of {what} in a temp folder, prepared by "
                 f"minivb.data.kinetics.prepare in {time.perf_counter() - t0:.1f} s")
    return root


def _sources(opts, s: dict, folder: Path, notes: list[str]) -> list[tuple[str, list, list[str]]]:
    """``[(source name, items, classes)]`` to measure."""
    if opts.data_root and not Path(opts.data_root).is_dir():
        raise UsageError(f"--data-root {opts.data_root}: no such folder")
    for v in opts.videos or ():
        if not Path(v).is_file():
            raise UsageError(f"--videos {v}: no such file")
    if opts.preset == "toy":
        root = _toy_root(opts, folder)
        notes.append(f"data: the toy set in {root if opts.data_root else 'a temp folder'} (train split)")
        return [("toy", *_load(root, "toy set"))]
    root = _kinetics_root(opts, s, folder, notes)
    bases = {"prepared": (root, "prepared frame stores"), "originals": (root / "originals", "original videos")}
    return [(name, *_load(*bases[name])) for name in opts.sources]


def _loader_notes(s: dict, opts, device: torch.device, params: int | None, rows: list[dict]) -> list[str]:
    used = ", ".join(f"{k}={s[k]}" for k in ("encoder", "size", "num_frames", "stride", "grid", "dim", "depth", "heads"))
    built = f"{params / 1e6:.2f}M parameters" if params else "not built (--measure without model or training)"
    notes = [f"model: {used}, pretrained=False, {built}"
             + (", torch.compile" if s["compile"] else "") + (", bf16 autocast, channels-last" if device.type == "cuda" else ""),
             f"loader: batch size {s['batch_size']}, "
             + (f"{s['workers']} workers (persistent, prefetch_factor 4)" if s["workers"] else "no workers (main process)")
             + f", preload={s['preload']}; {opts.warmup} warm-up + {opts.steps} timed steps × {opts.repeats} repeats; "
             f"torch threads in the main process: {s['threads']}"]
    if "training" in opts.measure and s["workers"] and opts.steps <= 4 * s["workers"]:
        notes.append(f"caution: the loader's queue holds up to {4 * s['workers']} batches, which can hide a loader slower "
                     f"than the model over {opts.steps} steps; use --steps > {4 * s['workers']} for steady state")
    for r in rows:
        batches = math.ceil(r["files"] / s["batch_size"])
        if batches < 2 * max(1, s["workers"]):
            notes.append(f"caution: an epoch of {r['source']} is only {batches} batch(es), so epoch tails (idle workers) "
                         f"weigh on the numbers; use more data (--per-class) for steady state")
    if device.type == "cpu" and s["workers"] and "training" in opts.measure:
        notes.append("on the CPU the loader's workers and the model share the same cores")
    return notes


def run_loader(opts, argv: list[str]) -> dict:
    """The ``loader`` subcommand → its results (also printed)."""
    device = resolve_device(opts.device)
    facts, s, notes = machine_facts(argv, device), _loader_settings(opts), []
    rows, params, step = [], None, None
    with tempfile.TemporaryDirectory(prefix="minivb-bench-") as tmp:
        for name, items, classes in _sources(opts, s, Path(tmp), notes):
            if {"model", "training"} & set(opts.measure):
                params, step = _build_step(s, len(classes), device)
            dataset = _dataset(items, classes, s, toy=opts.preset == "toy")
            rates = _measure_source(dataset, s, device, opts, step)
            rows.append({"source": name, "files": len(items), "classes": len(classes),
                         "clips_per_s": {m: summarize(v) | {"repeats": v} for m, v in rates.items()},
                         "ratios": {f"{m}/model": ratios(rates[m], rates["model"]) for m in ("training", "loader")
                                    if m in rates and "model" in rates}})
    notes = _loader_notes(s, opts, device, params, rows) + notes
    versus = source_ratios(rows)
    settings = s | {k: getattr(opts, k) for k in ("preset", "steps", "warmup", "repeats", "measure")} | {"device": str(device)}
    print(header("loader", facts), *[f"- {n}" for n in notes], "", loader_table(rows), sep="\n")
    return {"benchmark": "loader", "machine": facts, "settings": settings, "notes": notes, "results": rows,
            **({"prepared/originals": versus} if versus else {})}


def loader_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        c, q = r["clips_per_s"], r["ratios"]
        body.append([r["source"], r["files"], *[fmt(c.get(m, {}).get("median")) for m in MEASURES],
                     fmt_range(q.get("training/model", {})), fmt_range(q.get("loader/model", {}))])
    table = markdown_table(["source", "files", "loader alone clips/s", "model alone clips/s", "training clips/s",
                            "training / model", "loader / model"], body)
    table += ("\n\nclips/s: median over the repeats; ratios: median (min–max) of the per-repeat ratios. "
              "training / model near 1: the loader keeps up; loader / model ≥ 1: it can.")
    versus = source_ratios(rows)
    if versus:
        cells = [[m, fmt_range(q)] for m, q in versus.items()]
        table += "\n\n" + markdown_table(["clips/s of prepared / originals", "median (min–max)"], cells)
    return table


def source_ratios(rows: list[dict]) -> dict:
    """prepared / originals for each measurement, repeat by repeat (when both sources were measured)."""
    by = {r["source"]: r["clips_per_s"] for r in rows}
    if not {"prepared", "originals"} <= by.keys():
        return {}
    return {m: ratios(by["prepared"][m]["repeats"], by["originals"][m]["repeats"]) for m in ("loader", "training")
            if m in by["prepared"]}


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m minivb.bench", description=__doc__.split("\n\n")[0],
               epilog="python -m minivb.bench decode --help / loader --help for the options of each")
    sub = p.add_subparsers(dest="command", required=True, metavar="{decode,loader}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", metavar="PATH", help="also write every number to PATH as strict JSON")
    common.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random choices (default: 0)")

    d = sub.add_parser("decode", parents=[common], help="ms per clip: minivb (OpenCV) vs PyAV vs frame store, on one core")
    d.add_argument("--videos", nargs="+", metavar="FILE", help="videos to read (default: two generated H.264 clips)")
    d.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (default: 5)")
    d.add_argument("--num-frames", type=positive_int, default=16, help="frames per clip (default: 16)")
    d.add_argument("--stride", type=positive_int, default=4, help="source frames between clip frames (default: 4)")
    d.add_argument("--clips", type=positive_int, default=4, help="clips per file and style (default: 4)")

    g = sub.add_parser("loader", parents=[common], help="clips/s: DataLoader alone, model step alone, both")
    g.add_argument("--preset", choices=("k400", "toy"), default="k400", help="trainer preset (default: k400)")
    g.add_argument("--data-root", help="prepared data (k400: train.csv and originals/train.csv; toy: a toy set); "
                   "default: made in a temp folder")
    g.add_argument("--sources", nargs="+", choices=("prepared", "originals"), default=["prepared", "originals"],
                   help="k400: frame stores and/or the original videos (default: both)")
    g.add_argument("--measure", nargs="+", choices=MEASURES, default=list(MEASURES), help="what to time (default: all)")
    g.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda if available (default)")
    g.add_argument("--workers", type=nonnegative_int, help="DataLoader workers (default: the preset's, at most the CPUs)")
    g.add_argument("--steps", type=positive_int, default=10, help="timed batches (default: 10)")
    g.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed batches first (default: 2)")
    g.add_argument("--repeats", type=positive_int, default=3, help="timed repeats (default: 3)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=positive_int, help="torch threads in the main process (default: torch's choice)")
    g.add_argument("--videos", nargs="+", metavar="FILE", help="k400 without --data-root: clips to fill the class folders with")
    g.add_argument("--classes", type=positive_int, default=4, help="k400 without --data-root: classes (default: 4)")
    g.add_argument("--per-class", type=positive_int, help="k400 without --data-root: clips per class "
                   "(default: 2 batches per worker in an epoch, at least 6)")
    m = g.add_argument_group("overrides of the preset")
    m.add_argument("--encoder", choices=("small", "resnet18", "resnet50"))
    for flag in ("--size", "--num-frames", "--stride", "--grid", "--dim", "--depth", "--heads", "--batch-size"):
        m.add_argument(flag, type=positive_int)
    m.add_argument("--preload", action=argparse.BooleanOptionalAction, help="decode every video into memory first")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.bench``: 0 on success, 2 on a usage error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = build_parser().parse_args(argv)
    try:
        if opts.json and not Path(opts.json).resolve().parent.is_dir():
            raise UsageError(f"--json {opts.json}: its folder does not exist")
        result = run_decode(opts, argv) if opts.command == "decode" else run_loader(opts, argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if opts.json:
        write_json(opts.json, result)
        print(f"\nwrote {opts.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
