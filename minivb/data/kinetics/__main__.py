"""``python -m minivb.data.kinetics download | prepare | check`` (the library is :mod:`minivb.data.kinetics`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ...plumbing.cli import Parser, UsageError, nonnegative_int, positive_int, run_main
from .. import kinetics
from .downloads import DownloadError, NotEnoughSpace


def _print_check(root: Path, report: list[dict]) -> None:
    show = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
    print(
        f"Kinetics-400 under {root}  (the CVDF archive holds ≈{kinetics.EXPECTED['train'][0]:,} train / "
        f"≈{kinetics.EXPECTED['val'][0]:,} val / "
        f"≈{kinetics.EXPECTED['test'][0]:,} test clips; some listed clips are gone for good)"
    )
    print(f"{'split':<6} {'annotated':>10} {'on disk':>10} {'prepared':>10} {'bad':>8} {'expected':>10}")
    for r in report:
        print(
            f"{r['split']:<6} {show(r['annotated']):>10} {show(r['on_disk']):>10} {show(r['prepared']):>10} "
            f"{show(r['bad']):>8} {show(r['expected_clips']):>10}"
        )
    if any(r["bad"] for r in report):
        print(f"why each clip was left out: {root / 'bad_videos.csv'}")


def _quality(text: str) -> int:
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be 1..100, got {text}")
    return value


SPLIT_HELP = f"splits, one or more of {', '.join(kinetics.SPLITS)}"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m minivb.data.kinetics",
        description="Kinetics-400: download, prepare, check (see data/README.md).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{download,prepare,check}")
    common = Parser(add_help=False)
    common.add_argument("--root", default="data/kinetics400", help="data folder (default: data/kinetics400)")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=text, description=f"{text[0].upper()}{text[1:]}.")

    d = command("download", "fetch annotations and clips from the CVDF mirror (resumable)")
    r = command("prepare", "index the clips and write the training format, reporting the bad ones (resumable)")
    for q in (d, r):
        q.add_argument(
            "--split",
            nargs="+",
            choices=kinetics.SPLITS,
            default=["train", "val"],
            metavar="SPLIT",
            help=SPLIT_HELP + " (default: train val)",
        )
    d.add_argument("--workers", type=positive_int, default=4, help="parts fetched at once (default: 4)")
    d.add_argument(
        "--retries", type=nonnegative_int, default=3, help="retries per part before it is reported (default: 3)"
    )
    d.add_argument("--base-url", default=kinetics.BASE_URL, help=f"mirror (default: {kinetics.BASE_URL})")
    d.add_argument("--keep-archives", action="store_true", help="keep each part's .tar.gz after unpacking it")
    r.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    r.add_argument(
        "--short-side", type=positive_int, default=256, help="shrink frames to this shorter side (default: 256)"
    )
    r.add_argument("--frame-step", type=positive_int, default=4, help="keep every N-th frame (default: 4)")
    r.add_argument("--quality", type=_quality, default=90, metavar="1..100", help="JPEG quality (default: 90)")
    r.add_argument(
        "--min-frames",
        type=positive_int,
        default=16,
        help="a clip that keeps fewer frames (after --frame-step) is reported as bad (default: 16, the k400 "
        "preset's frames per clip)",
    )
    r.add_argument("--limit-classes", type=positive_int, help="only the first N classes (sorted): a quick subset")
    r.add_argument("--limit-per-class", type=positive_int, metavar="N", help="only the first N clips of each class")
    c = command("check", "count what is present against the expected numbers")
    c.add_argument(
        "--split",
        nargs="+",
        choices=kinetics.SPLITS,
        default=list(kinetics.SPLITS),
        metavar="SPLIT",
        help=SPLIT_HELP + " (default: all)",
    )
    return p


def _run(opts: argparse.Namespace) -> int:
    root = Path(opts.root)
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file; pass a folder")
    if opts.command == "download":
        try:
            failures = kinetics.download(
                root,
                opts.split,
                base_url=opts.base_url,
                workers=opts.workers,
                retries=opts.retries,
                keep_archives=opts.keep_archives,
            )
        except DownloadError as e:  # the annotations or a part list: a failed download, not a usage error
            print(f"error: {e}; check the network (or --base-url) and run the same command again", file=sys.stderr)
            return 1
        for line in failures:
            print(f"failed: {line}", file=sys.stderr)
        if failures:
            print(f"{len(failures)} part(s) failed; run the same command again to retry them", file=sys.stderr)
            return 1
        print(f"downloaded → {root}; next: python -m minivb.data.kinetics prepare --root {root}")
    elif opts.command == "prepare":
        try:
            summary = kinetics.prepare(
                root,
                opts.split,
                short_side=opts.short_side,
                frame_step=opts.frame_step,
                quality=opts.quality,
                min_frames=opts.min_frames,
                workers=opts.workers,
                limit_classes=opts.limit_classes,
                limit_per_class=opts.limit_per_class,
            )
        except kinetics.Stopped as e:  # the converted clips are kept (journal); exit 0 so a job can be requeued
            print(f"stopped by {e}; run the same command again to continue where it stopped", file=sys.stderr)
            return 0
        for split, s in summary.items():
            untrained = f", {s['untrained']:,} of a class no training clip has" if s["untrained"] else ""
            left = f"{s['bad']:,} left out{untrained} (see {root / 'bad_videos.csv'})" if s["bad"] else "none left out"
            print(f"{split}: {s['clips']:,} clip{'' if s['clips'] == 1 else 's'} prepared, {left}")
        print(f"next: python -m minivb.train --subset k400 --data-root {root}")
    else:
        _print_check(root, kinetics.check(root, opts.split))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.data.kinetics``: 0 on success, 1 if parts failed to download, 2 on a usage error."""
    opts = build_parser().parse_args(argv)
    status = run_main(lambda: _run(opts), errors=(NotEnoughSpace,))
    if status == 130:  # Ctrl-C: download and prepare both pick up where they stopped
        print("run the same command again to continue where it stopped", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
