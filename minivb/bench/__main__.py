"""``python -m minivb.bench {decode,loader,flops,contention,ood,language}``: the benchmarks of :mod:`minivb.bench`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import bench
from ..plumbing import runs
from ..plumbing.cli import Parser, run_main, seed
from ..plumbing.files import write_json
from ..video import VideoDecodeError
from . import contention, decode, flops, language, loader, ood
from .report import Interrupted

COMMANDS = {"decode": decode.run_decode, "loader": loader.run_loader, "flops": flops.run_flops}
COMMANDS["contention"] = contention.run_contention
COMMANDS["ood"] = ood.run_ood
COMMANDS["language"] = language.run_language


def build_parser() -> argparse.ArgumentParser:
    """``python -m minivb.bench {decode,…,language}``; each module adds its own subcommand's options."""
    p = Parser(
        prog="python -m minivb.bench",
        description=" ".join(bench.__doc__.split("\n\n")[0].split()),  # the first paragraph, as one line
        epilog="python -m minivb.bench decode --help / loader --help / flops --help / contention --help / ood --help / "
        "language --help "
        "for the options of each. Each prints its table a row at a time, as measured (progress on stderr); "
        "Ctrl-C keeps the rows so far.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{decode,loader,flops,contention,ood,language}")
    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument(
        "--json",
        metavar="PATH",
        help="also write every number to PATH as strict JSON (refused if it exists; after Ctrl-C: the rows "
        "measured so far, marked interrupted)",
    )
    json_opt.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    seed_opt = argparse.ArgumentParser(add_help=False)
    seed_opt.add_argument("--seed", type=seed, default=0, help="seed of the random choices (default: 0)")
    decode.add_parser(sub, [json_opt, seed_opt])
    loader.add_parser(sub, [json_opt, seed_opt])
    flops.add_parser(sub, [json_opt])
    contention.add_parser(sub, [json_opt])
    ood.add_parser(sub, [json_opt, seed_opt])
    language.add_parser(sub, [json_opt, seed_opt])
    return p


def _inputs(opts: argparse.Namespace) -> list[Path]:
    """The files a benchmark reads that --json must never name: its --videos, its --checkpoint (a file, or a run
    folder's checkpoints), its --data-root's index files."""
    inputs = [Path(v) for v in getattr(opts, "videos", None) or ()]
    checkpoint = getattr(opts, "checkpoint", None)
    if checkpoint:
        inputs += [Path(checkpoint), *Path(checkpoint).glob("*.pt")]
    root = getattr(opts, "data_root", None)
    if root:
        inputs += [p for pattern in ("*.csv", "*.txt", "*/*.csv", "*/*.txt") for p in Path(root).glob(pattern)]
    return inputs


def _write(path: str | None, result: dict) -> None:
    """``--json``: ``result`` as strict JSON (if it was given)."""
    if path:
        write_json(path, {"command": "minivb.bench", **result})
        print(f"\nwrote {path}" + (" (interrupted: the rows measured so far)" if result.get("interrupted") else ""))


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.bench``: 0 on success, 2 on a usage error, 130 after Ctrl-C (the rows measured so far
    printed, and with ``--json`` written)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = build_parser().parse_args(argv)

    def work() -> None:
        if opts.json:  # before the benchmark: in a folder that exists, never an input, no earlier result unless --force
            runs.output_file(
                Path(opts.json), "--json", "minivb.bench", force=opts.force, inputs=_inputs(opts), make=False
            )
        try:
            result = COMMANDS[opts.command](opts, argv)
        except Interrupted as stop:  # Ctrl-C: the rows measured so far, then status 130
            _write(opts.json, stop.result)
            raise
        _write(opts.json, result)

    return run_main(work, errors=(VideoDecodeError,))  # a video that breaks mid-benchmark: one line


if __name__ == "__main__":
    raise SystemExit(main())
