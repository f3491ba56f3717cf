"""Benchmarks anyone can rerun: video decoding, data loading against the model's own speed, and the model's FLOPs.

    python -m minivb.bench decode                          # two generated H.264 clips (340×256, 1280×720)
    python -m minivb.bench decode --videos a.mp4 b.mp4 --repeats 5
    python -m minivb.bench loader --preset toy             # the toy set, generated in a temp folder
    python -m minivb.bench loader --preset k400 --encoder small --size 112 --batch-size 8 --steps 5
    python -m minivb.bench loader --preset k400 --data-root data/kinetics400 --device cuda --workers 8
    python -m minivb.bench decode --json decode.json       # every number as strict JSON too
    python -m minivb.bench flops                           # GFLOPs per clip: the k400 model and variants
    python -m minivb.bench contention                      # toy training clips/s alone and beside a busy process

``decode``: milliseconds per clip on one core for the same files and frame indices, read by
:func:`minivb.video.read_frames` (OpenCV), by PyAV (decode from the start; or seek to the
keyframe before the first wanted frame), and from a frame store (``.jpgs``) made from the file,
for training-style clips (random starts) and evaluation-style clips (evenly spaced). Every
reader's frames are checked against ``read_frames`` before anything is timed.

``loader``: clips per second of (1) the trainer's DataLoader alone, (2) the model's training
step alone on synthetic input, (3) both together, for the prepared frame stores and for the
original videos of a Kinetics-shaped folder (or the toy set).

``flops``: forward FLOPs per clip of the k400 preset's model and of variants of it (fewer or
more frames, a coarser grid, smaller frames, a bigger Transformer, a ResNet-50 trunk), split
into CNN and Transformer + head, counted by ``torch.utils.flop_counter.FlopCounterMode`` with
the fused attention kernel's matmuls added by formula.

``contention``: clips per second of the toy model's training step with the cores to itself and beside
a busy process (a Python loop; a multithreaded torch matmul loop), under libgomp's default wait
policy (long spins), under ``GOMP_SPINCOUNT=1000`` (what ``import minivb`` sets), under
``OMP_WAIT_POLICY=PASSIVE`` and on one thread.

Machines are noisy, so speed is reported as ratios against a reference measured in the same
run, as min/median/max over ``--repeats`` repeats. Output: a header with the machine and the
command line, then Markdown tables (ready for the README).

Modules: :mod:`~minivb.bench.report` (numbers, tables, JSON, header), :mod:`~minivb.bench.decode`,
:mod:`~minivb.bench.loader`, :mod:`~minivb.bench.flops`, :mod:`~minivb.bench.contention`.
"""

from __future__ import annotations

from .. import video  # noqa: F401  first: it quiets FFmpeg before cv2 is imported

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from ..cli import Parser, UsageError, run_main, seed  # noqa: E402
from . import contention, decode, flops, loader  # noqa: E402
from .contention import run_contention  # noqa: E402
from .decode import pyav_seek, pyav_sequential, run_decode, write_test_video  # noqa: E402
from .flops import run_flops  # noqa: E402
from .loader import run_loader  # noqa: E402
from ..cli import write_json  # noqa: E402

__all__ = ["main", "build_parser", "run_decode", "run_loader", "run_flops", "run_contention", "pyav_sequential", "pyav_seek",
           "write_test_video"]

COMMANDS = {"decode": run_decode, "loader": run_loader, "flops": run_flops, "contention": run_contention}


def build_parser() -> argparse.ArgumentParser:
    """``python -m minivb.bench {decode,loader,flops,contention}``; each module adds its own subcommand's options."""
    p = Parser(prog="python -m minivb.bench", description=__doc__.split("\n\n")[0],
               epilog="python -m minivb.bench decode --help / loader --help / flops --help / contention --help "
               "for the options of each")
    sub = p.add_subparsers(dest="command", required=True, metavar="{decode,loader,flops,contention}")
    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument("--json", metavar="PATH", help="also write every number to PATH as strict JSON")
    seed_opt = argparse.ArgumentParser(add_help=False)
    seed_opt.add_argument("--seed", type=seed, default=0, help="seed of the random choices (default: 0)")
    decode.add_parser(sub, [json_opt, seed_opt])
    loader.add_parser(sub, [json_opt, seed_opt])
    flops.add_parser(sub, [json_opt])
    contention.add_parser(sub, [json_opt])
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.bench``: 0 on success, 2 on a usage error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = build_parser().parse_args(argv)

    def work() -> None:
        if opts.json and not Path(opts.json).resolve().parent.is_dir():
            raise UsageError(f"--json {opts.json}: its folder does not exist")
        result = COMMANDS[opts.command](opts, argv)
        if opts.json:
            write_json(opts.json, result)
            print(f"\nwrote {opts.json}")

    return run_main(work)
