"""What the command lines (``python -m minivb.train``, ``minivb.evaluate``, …) share: a one-line-error parser,
number types for options, the options several commands take alike (and the --batch-size check that goes with
them), and ``run_main`` (exit statuses). Only commands import it."""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
import textwrap
from typing import Callable

from .checks import UsageError  # re-exported: every command raises it
from .device import DECODE_CHOICES, check_batch_fits, resolve_device
from .files import NoSpace
from .runs import release_outputs


def add_decode_option(parser, default: str = "auto") -> None:
    """``--decode {auto,cpu,gpu}``: where prepared frame stores' JPEGs are decoded (train, evaluate, predict,
    retrieve index/search, bench loader; :func:`minivb.data.device_decode.resolve_decode`). ``train`` passes
    ``argparse.SUPPRESS``: a resumed run keeps its own choice unless one is given."""
    parser.add_argument(
        "--decode",
        choices=DECODE_CHOICES,
        default=default,
        help="where frame stores' JPEGs are decoded: cpu = the DataLoader workers (OpenCV); gpu = the main "
        "process, a batch at a time on the model's device (nvjpeg on CUDA), the workers only read bytes "
        "(needs prepared .jpgs data); auto = cpu until gpu is measured faster (default: auto)",
    )


class Help(argparse.HelpFormatter):
    """argparse's help, but a description or epilog keeps its line breaks (a table of presets, paragraphs) and
    each of its lines wraps to the terminal."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            lead = len(line) - len(line.lstrip())  # an indented line (a preset) continues 4 spaces further in
            more = indent + " " * (lead + 4 if lead else 0)
            lines.append(
                textwrap.fill(line, width, initial_indent=indent, subsequent_indent=more, break_on_hyphens=False)
            )
        return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line, ``error: … (see <prog> --help)``, exit status 2 (no usage block),
    and whose help wraps every line (:class:`Help`)."""

    def __init__(self, *args, formatter_class=Help, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def number(kind, minimum, strict: bool):
    """An argparse ``type``: text → ``kind`` (int or float), finite and ``> minimum`` (strict) or ``>= minimum``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse


positive_int, nonnegative_int = number(int, 0, True), number(int, 0, False)


def fraction(text: str) -> float:
    """An argparse ``type`` for a share (``--gpu-share``): a number in [0, 1]."""
    value = number(float, 0.0, False)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be <= 1, got {text}")
    return value


def seed(text: str) -> int:
    """An argparse ``type`` for seeds: an integer in [0, 2**63) (what torch's generators take)."""
    value = nonnegative_int(text)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"must be < 2**63, got {text}")
    return value


def add_videos_argument(parser, dest: str = "videos", nargs: str = "+", metavar: str = "VIDEO") -> None:
    """The positional videos: files, or folders searched recursively (predict, retrieve index and search;
    :func:`minivb.engine.inference.find_videos`)."""
    parser.add_argument(
        dest, nargs=nargs, metavar=metavar, help="video files, or folders (every video under them, recursively)"
    )


def add_checkpoint_option(parser) -> None:
    """``--checkpoint`` (required): a trained model, a .pt file or a run folder (predict, retrieve index)."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt file written by python -m minivb.train, or a run folder (its last.pt)",
    )


def add_views_options(parser) -> None:
    """``--clips`` and ``--crops``: the views per video, the checkpoint's unless given (predict, retrieve index)."""
    parser.add_argument("--clips", type=positive_int, help="temporal clips per video (default: toy 3, k400 4)")
    parser.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (default: toy 1, k400 3)")


def views_device(opts: argparse.Namespace, prep):
    """--device resolved, refused early if --batch-size videos × their views (``prep``: the checkpoint's
    :class:`~minivb.engine.checkpoint.Preprocessing`) cannot fit on it (predict, retrieve)."""
    device = resolve_device(opts.device)
    b, clips, crops, t, size = opts.batch_size, prep.clips, prep.crops, prep.num_frames, prep.size
    what = f"--batch-size {b} × {clips} clips × {crops} crops × {t} frames × 3 × {size}²"
    check_batch_fits(device, b * clips * crops, t, size, what)
    return device


def out_of_memory(e: BaseException) -> str | None:
    """What an allocation that failed asked for ("7.5 GiB"), or None if ``e`` is not one (NumPy's and Python's
    ``MemoryError``, torch's CPU allocator and CUDA errors, which are ``RuntimeError``, OpenCV's ``cv2.error``)."""
    text = str(e)
    if not isinstance(e, MemoryError) and not any(
        k in text for k in ("can't allocate memory", "out of memory", "Cannot allocate memory", "Insufficient memory")
    ):
        return None
    asked = re.search(r"allocate (\d+) bytes|allocate ([\d.]+ ?[KMGTPE]i?B)", text)
    if asked is None:
        return "memory"
    if asked[1]:
        return f"{int(asked[1]) / 2**30:.1f} GiB"
    number, unit = re.match(r"([\d.]+) ?(\w+)", asked[2]).groups()
    return f"{float(number):g} {unit}"  # (NumPy writes "206. MiB")


def run_main(
    work: Callable[[], int | None], errors: tuple[type[Exception], ...] = (), lower: str = "--batch-size"
) -> int:
    """Every command line's ``main``: run ``work()`` → its exit status (``None`` → 0).

    :class:`UsageError` (and any of ``errors``) → ``error: <one line>`` on stderr, status 2; an allocation that
    failed → one line naming the options to ``lower``, status 1; Ctrl-C → one line, status 130 (``work`` saves
    what it must before re-raising). Log records (skipped videos, …) print as ``LEVEL: message`` unless the
    caller configured logging. The output files ``work`` held (:func:`~minivb.plumbing.runs.output_file`) are
    let go at the end.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C while the command loaded: now
        status = work()
    except (UsageError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NoSpace as e:
        print(f"error: {e.strerror}", file=sys.stderr)
        return 1
    except Exception as e:  # an allocation that failed; anything else is raised again
        asked = out_of_memory(e)
        if asked is None:
            raise
        print(f"error: out of memory (could not allocate {asked}); lower {lower}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        release_outputs()
    return 0 if status is None else int(status)
