"""``python -m minivb.bench loader``: clips per second of the trainer's DataLoader alone, of the model's training
step alone on synthetic input, and of both together, for frame stores and original videos (or the toy set), with
the frame stores' JPEGs decoded by the workers (``--decode cpu``) and/or on the model's device (``gpu``)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import itertools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..data import registry
from ..data.device_decode import resolve_decode
from ..data.loader import auto_workers
from ..engine.options import TrainOptions
from ..engine.training import build_forward, build_model, build_optimization
from ..loop import train_step
from ..plumbing.cli import UsageError, fraction, nonnegative_int, positive_int
from ..plumbing.device import DECODE_CHOICES, DEVICES, resolve_device
from .decode import check_videos, write_test_video
from .report import (
    LiveTable,
    add_overrides,
    fmt,
    fmt_range,
    machine_facts,
    markdown_table,
    ratios,
    summarize,
    usable_cpus,
)

OVERRIDES = ("encoder", "size", "num_frames", "stride", "grid", "dim", "depth", "heads", "batch_size", "preload")
MEASURES = ("loader", "model", "training")
DESCRIPTION = (  # for --help
    "Measure whether data loading keeps up with training: clips per second of the trainer's DataLoader alone, of "
    "the model's training step alone on synthetic input, and of both together, for prepared frame stores and "
    "original videos (or the toy set), with JPEGs decoded by the workers or on the model's device."
)


def _loader_settings(opts) -> dict:
    """The preset, with the options given on the command line; never pretrained weights."""
    base = dict(subset=opts.preset, preset=opts.preset, **registry.get(opts.preset).preset)
    s = dict(base, pretrained=False, compile=opts.compile, seed=opts.seed)
    s.update({k: getattr(opts, k) for k in OVERRIDES if getattr(opts, k) is not None})
    preset = s["workers"] if s["workers"] is not None else auto_workers()  # None: the trainer's choice
    s["workers"] = opts.workers if opts.workers is not None else min(preset, usable_cpus())
    if opts.threads:
        torch.set_num_threads(opts.threads)
    s["threads"] = torch.get_num_threads()
    return s


def build_step(s: dict, num_classes: int, device: torch.device):
    """The trainer's model, optimizer, schedule and loss for settings ``s`` (a preset's keys) → ``(parameter count,
    step(videos, labels) → clips)``: one training step, the trainer's own (:func:`minivb.loop.train_step`)."""
    opts = TrainOptions.from_dict(s)
    model = build_model(opts, num_classes, device, rank=0, world_size=1)  # seeded from --seed; --size checked
    optimizer, scheduler, criterion = build_optimization(model, opts, 1, device)
    forward, count = build_forward(model, opts, device, world_size=1), itertools.count(1)

    def step(videos: torch.Tensor, labels: torch.Tensor) -> int:
        train_step(forward, videos, labels, optimizer, scheduler, criterion, next(count))
        return len(labels)

    return sum(p.numel() for p in model.parameters()), step


def _dataset(items: list, classes: list[str], s: dict):
    try:
        return TrainOptions.from_dict(s).clip_dataset(items, classes, train=True)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _batches(dataset, s: dict, device: torch.device):
    """The trainer's DataLoader, epoch after epoch → endless ``(videos, labels)`` (uint8; on the device with
    ``s["decode"]`` gpu: decoded there)."""
    from ..data.clips import ShardedSampler

    sampler = ShardedSampler(len(dataset), shuffle=True, seed=s["seed"], with_epoch=True)
    loader = TrainOptions.from_dict(s).loader(dataset, device, sampler, s["batch_size"])  # the trainer's loader
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


def _rate(batches, consume, warmup: int, steps: int, device: torch.device, tick) -> float:
    """Clips per second of ``consume(videos, labels) → clips`` over ``steps`` batches, after ``warmup``
    (``tick()`` after each batch: the progress bar)."""
    for _ in range(warmup):
        consume(*next(batches))
        tick()
    _sync(device)
    t0, clips = time.perf_counter(), 0
    for _ in range(steps):
        clips += consume(*next(batches))
        tick()
    _sync(device)
    return clips / (time.perf_counter() - t0)


def _measure_source(dataset, s: dict, device: torch.device, opts, step, tick) -> dict[str, list[float]]:
    """Per repeat: model alone, loader alone, both → clips/s lists (``tick()`` after each batch)."""

    def move(videos, labels):
        videos, labels = videos.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        _sync(device)
        return len(labels)

    def train(videos, labels):
        return step(videos.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    shape = (s["batch_size"], s["num_frames"], 3, s["size"], s["size"])
    synthetic = (
        torch.randint(0, 256, shape, dtype=torch.uint8, device=device),
        torch.randint(0, len(dataset.classes), (s["batch_size"],), device=device),
    )
    rates = {m: [] for m in opts.measure}
    for _ in range(opts.repeats):
        if "model" in rates:
            rates["model"].append(_rate(itertools.repeat(synthetic), step, opts.warmup, opts.steps, device, tick))
        for name, consume in (("loader", move), ("training", train)):
            if name in rates:
                with _loader(dataset, s, device) as batches:
                    rates[name].append(_rate(batches, consume, opts.warmup, opts.steps, device, tick))
    return rates


def _load(root: Path, what: str):
    from ..data.clips import load_items

    try:
        return load_items(root, "train")
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"{what}: {e}") from None


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
        raise UsageError(
            "minivb.data.kinetics.prepare is not available; pass --data-root with a prepared folder"
        ) from None
    root = folder / "k400"
    sources = [Path(v) for v in opts.videos] if opts.videos else []
    if not sources:
        for c in range(opts.classes):
            sources.append(folder / f"source_{c}.mp4")
            write_test_video(sources[-1], 340, 256, frames=300, fps=30, seed=c)
    per_class = _clips_per_class(opts, s)
    _fill_class_folders(root, sources, opts.classes, per_class)
    t0 = time.perf_counter()
    prepare(root, splits=("train",), workers=max(1, usable_cpus()))  # a progress bar on a terminal
    what = ", ".join(p.name for p in sources) if opts.videos else "generated H.264 clips (340×256, 300 frames, 30 fps)"
    notes.append(
        f"data: {opts.classes} classes × {per_class} clips of {what} in a temp folder, prepared by "
        f"minivb.data.kinetics.prepare in {time.perf_counter() - t0:.1f} s"
    )
    return root


def _sources(opts, s: dict, folder: Path, notes: list[str]) -> list[tuple[str, list, list[str]]]:
    """``[(source name, items, classes)]`` to measure."""
    if opts.data_root and not Path(opts.data_root).is_dir():
        raise UsageError(f"--data-root {opts.data_root}: no such folder")
    check_videos(opts.videos or ())  # before the temporary data set that would hide which file was bad
    dataset = registry.get(opts.preset)
    if dataset.make is not None:  # the toy set: made here unless --data-root names one
        root = Path(opts.data_root) if opts.data_root else folder / dataset.name
        if not opts.data_root:
            dataset.make(root)
        notes.append(f"data: the {dataset.name} set in {root if opts.data_root else 'a temp folder'} (train split)")
        return [(dataset.name, *_load(root, f"{dataset.name} set"))]
    root = _kinetics_root(opts, s, folder, notes)
    bases = {"prepared": (root, "prepared frame stores"), "originals": (root / "originals", "original videos")}
    return [(name, *_load(*bases[name])) for name in opts.sources]


def _loader_notes(s: dict, opts, device: torch.device, runs: list[tuple]) -> list[str]:
    """What the header says about the settings, before anything is measured."""
    used = ", ".join(
        f"{k}={s[k]}" for k in ("encoder", "size", "num_frames", "stride", "grid", "dim", "depth", "heads")
    )
    notes = [
        f"model: {used}, pretrained=False"
        + (", torch.compile" if s["compile"] else "")
        + (", bf16 autocast, channels-last" if device.type == "cuda" else ""),
        f"loader: batch size {s['batch_size']}, "
        + (f"{s['workers']} workers (persistent, prefetch_factor 4)" if s["workers"] else "no workers (main process)")
        + f", preload={s['preload']}; {opts.warmup} warm-up + {opts.steps} timed steps × {opts.repeats} repeats; "
        f"torch threads in the main process: {s['threads']}",
    ]
    if "training" in opts.measure and s["workers"] and opts.steps <= 4 * s["workers"]:
        notes.append(
            f"caution: the loader's queue holds up to {4 * s['workers']} batches, which can hide a loader slower "
            f"than the model over {opts.steps} steps; use --steps > {4 * s['workers']} for steady state"
        )
    for source, files in {name: len(items) for name, items, *_ in runs}.items():
        batches = math.ceil(files / s["batch_size"])
        if batches < 2 * max(1, s["workers"]):
            notes.append(
                f"caution: an epoch of {source} is only {batches} batch(es), so epoch tails (idle workers) "
                f"weigh on the numbers; use more data (--per-class) for steady state"
            )
    if device.type == "cpu" and s["workers"] and "training" in opts.measure:
        notes.append("on the CPU the loader's workers and the model share the same cores")
    return notes


def run_loader(opts, argv: list[str]) -> dict:
    """The ``loader`` subcommand → its results (also printed, each row as soon as it is measured)."""
    device = resolve_device(opts.device)
    facts, s, notes = machine_facts(argv, device), _loader_settings(opts), []
    params, step = None, None
    settings = (
        s
        | {k: getattr(opts, k) for k in ("preset", "steps", "warmup", "repeats", "measure", "decode", "gpu_share")}
        | {"device": str(device)}
    )
    with tempfile.TemporaryDirectory(prefix="minivb-bench-") as tmp:
        runs = _runs(opts, s, Path(tmp), notes, device)
        notes = _loader_notes(s, opts, device, runs) + notes
        result = {"benchmark": "loader", "machine": facts, "settings": settings, "notes": notes}
        batches = len(runs) * opts.repeats * len(set(opts.measure)) * (opts.warmup + opts.steps)
        with LiveTable(result, LOADER_HEADERS, lambda row: [_loader_cells(row)], batches, "batch") as table:
            for name, items, classes, decode, share in runs:
                if {"model", "training"} & set(opts.measure):
                    params, step = build_step(s, len(classes), device)
                dataset = _dataset(items, classes, s)
                gpu = {"decode": decode, "gpu_share": share}
                rates = _measure_source(dataset, s | gpu, device, opts, step, table.tick)
                table.add(_loader_row(name, len(items), len(classes), decode, share, rates))
    built = f"{params / 1e6:.2f}M parameters" if params else "not built (--measure without model or training)"
    notes.append(f"model: {built}")
    rows = result["results"]
    versus, decoders = source_ratios(rows), decode_ratios(rows)
    print(loader_summary(rows), f"- {notes[-1]}", sep="\n")
    return (
        result
        | ({"prepared/originals": versus} if versus else {})
        | ({"gpu/cpu decoding": decoders} if decoders else {})
    )


def _loader_row(source: str, files: int, classes: int, decode: str, share: float, rates: dict) -> dict:
    """A row of the results: a source and its decoding → clips/s and the ratios to the model alone."""
    return {
        "source": source,
        "decode": decode if share == 1 else f"{decode} {share:g}",  # gpu 0.5: half of it on the GPU
        "gpu_share": share,
        "files": files,
        "classes": classes,
        "clips_per_s": {m: summarize(v) | {"repeats": v} for m, v in rates.items()},
        "ratios": {
            f"{m}/model": ratios(rates[m], rates["model"])
            for m in ("training", "loader")
            if m in rates and "model" in rates
        },
    }


LOADER_HEADERS = [
    "source",
    "decode",
    "files",
    "loader alone clips/s",
    "model alone clips/s",
    "training clips/s",
    "training / model",
    "loader / model",
]


def _loader_cells(r: dict) -> list[str]:
    c, q = r["clips_per_s"], r["ratios"]
    return [
        r["source"],
        r["decode"],
        r["files"],
        *[fmt(c.get(m, {}).get("median")) for m in MEASURES],
        fmt_range(q.get("training/model", {})),
        fmt_range(q.get("loader/model", {})),
    ]


def loader_summary(rows: list[dict]) -> str:
    """What follows the table: how to read it, prepared / originals and gpu / cpu decoding."""
    table = (
        "\nclips/s: median over the repeats; ratios: median (min–max) of the per-repeat ratios. "
        "training / model near 1: the loader keeps up; loader / model ≥ 1: it can."
    )
    versus = source_ratios(rows)
    if versus:
        cells = [[m, fmt_range(q)] for m, q in versus.items()]
        table += "\n\n" + markdown_table(["clips/s of prepared / originals", "median (min–max)"], cells)
    decoders = decode_ratios(rows)
    if decoders:
        cells = [[f"{m}, {label}", fmt_range(q)] for label, by in decoders.items() for m, q in by.items()]
        table += "\n\n" + markdown_table(["clips/s of decode gpu / cpu (frame stores)", "median (min–max)"], cells)
    return table


def source_ratios(rows: list[dict]) -> dict:
    """prepared / originals for each measurement, repeat by repeat (when both sources were measured; cpu decoding)."""
    by = {r["source"]: r["clips_per_s"] for r in rows if r["decode"] == "cpu"}
    if not {"prepared", "originals"} <= by.keys():
        return {}
    return {
        m: ratios(by["prepared"][m]["repeats"], by["originals"][m]["repeats"])
        for m in ("loader", "training")
        if m in by["prepared"]
    }


def decode_ratios(rows: list[dict]) -> dict:
    """``{gpu row's decode: {measurement: gpu / cpu}}`` for the frame stores, repeat by repeat (when the cpu path
    was measured too): one entry for ``gpu`` and one for each other ``--gpu-share`` (``gpu 0.5``)."""
    by = {r["decode"]: r["clips_per_s"] for r in rows if r["source"] in ("prepared", "toy")}
    if "cpu" not in by:
        return {}
    return {
        label: {m: ratios(c[m]["repeats"], by["cpu"][m]["repeats"]) for m in ("loader", "training") if m in c}
        for label, c in by.items()
        if label.startswith("gpu")
    }


def _runs(opts, s: dict, folder: Path, notes: list[str], device: torch.device) -> list[tuple]:
    """``[(source, items, classes, decode, gpu share)]``: each source with each ``--decode`` that applies to it
    (gpu decoding needs frame stores: the original videos are measured with cpu decoding only), gpu once for
    each ``--gpu-share``."""
    if opts.gpu_share != [1.0] and "gpu" not in opts.decode:
        raise UsageError("--gpu-share goes with --decode gpu (e.g. --decode cpu gpu --gpu-share 1 0.5)")
    runs: dict[tuple, tuple] = {}
    for name, items, classes in _sources(opts, s, folder, notes):
        paths = [it.path for it in items]
        for choice in opts.decode:
            try:
                preset = opts.preset if opts.preload is None else None  # the preset turned preload on
                decode = resolve_decode(choice, device, paths, preload=s["preload"], preset=preset)
            except ValueError as e:
                if choice == "gpu" and name == "originals":
                    notes.append("decode gpu: not for the original videos (it decodes frame stores)")
                    continue
                raise UsageError(str(e)) from None
            for share in opts.gpu_share if decode == "gpu" else [1.0]:  # auto and cpu: measured once
                runs.setdefault((name, decode, share), (name, items, classes, decode, share))
    return list(runs.values())


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``loader`` subcommand and its options (``parents``: the shared options)."""
    what = "Clips per second of the trainer's DataLoader alone, its training step alone, and both."
    g = sub.add_parser("loader", parents=parents, help=what, description=DESCRIPTION)
    g.add_argument("--preset", choices=tuple(registry.DATASETS), default="k400", help="trainer preset (default: k400)")
    g.add_argument(
        "--data-root",
        help="prepared data (k400: train.csv and originals/train.csv; toy: a toy set); default: made in a temp folder",
    )
    g.add_argument(
        "--sources",
        nargs="+",
        choices=("prepared", "originals"),
        default=["prepared", "originals"],
        metavar="SOURCE",
        help="k400: prepared (the frame stores) and/or originals (the videos) (default: both)",
    )
    g.add_argument(
        "--measure",
        nargs="+",
        choices=MEASURES,
        default=list(MEASURES),
        metavar="WHAT",
        help=f"what to time, one or more of {', '.join(MEASURES)} (default: all)",
    )
    g.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda if available (default)")
    g.add_argument(
        "--workers", type=nonnegative_int, help="DataLoader workers (default: the preset's, at most the CPUs)"
    )
    g.add_argument("--steps", type=positive_int, default=10, help="timed batches (default: 10)")
    g.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed batches first (default: 2)")
    g.add_argument("--repeats", type=positive_int, default=3, help="timed repeats (default: 3)")
    g.add_argument(
        "--decode",
        nargs="+",
        choices=DECODE_CHOICES,
        default=["auto"],
        metavar="WHERE",
        help="where the frame stores' JPEGs are decoded: cpu (the workers), gpu (the main process, on the "
        "model's device; the workers only read bytes), or both in one run: --decode cpu gpu (default: auto = cpu)",
    )
    g.add_argument(
        "--gpu-share",
        nargs="+",
        type=fraction,
        default=[1.0],
        metavar="F",
        help="with --decode gpu: the share of each batch's clips decoded on the device, the workers decode the "
        "rest; several measure each: --gpu-share 1 0.5 0.25 (default: 1)",
    )
    g.add_argument("--threads", type=positive_int, help="torch threads in the main process (default: torch's choice)")
    _made_data_options(g)
    _trainer_options(g.add_argument_group("overrides of the preset (as python -m minivb.train takes them)"))
    return g


def _made_data_options(g) -> None:
    """What the k400 benchmark makes its data from when no --data-root is given."""
    g.add_argument(
        "--videos", nargs="+", metavar="FILE", help="k400 without --data-root: clips to fill the class folders with"
    )
    g.add_argument("--classes", type=positive_int, default=4, help="k400 without --data-root: classes (default: 4)")
    g.add_argument(
        "--per-class",
        type=positive_int,
        help="k400 without --data-root: clips per class (default: 2 batches per worker in an epoch, at least 6)",
    )


def _trainer_options(m) -> None:
    add_overrides(m, ("--encoder", "--size", "--num-frames", "--stride", "--grid", "--dim", "--depth", "--heads"))
    m.add_argument("--batch-size", type=positive_int, help="clips per batch")
    m.add_argument("--preload", action=argparse.BooleanOptionalAction, help="decode every video into memory first")
    m.add_argument("--compile", action="store_true", help="torch.compile the model")
