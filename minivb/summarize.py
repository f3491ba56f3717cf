"""``python -m minivb.summarize``: a long video as K keyframes, drawn as a filmstrip (seed §6).

    python -m minivb.summarize long.mp4 --checkpoint runs/toy-20250101-120000 --k 5 \
        --out runs/strip.png --json runs/times.json

The work is :func:`minivb.summarization.summarize`: shots → windows → the model's embeddings →
kernel temporal segmentation → one keyframe per segment.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from . import summarization
from .data.framestore import SUFFIX as STORE_SUFFIX
from .engine.inference import load_model
from .plumbing import runs
from .plumbing.cli import Parser, UsageError, positive_int, run_main
from .plumbing.device import DEVICES, resolve_device
from .plumbing.files import write_atomic, write_json
from .summarization import filmstrip, format_time, summarize
from .video import VideoDecodeError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m minivb.summarize",
        description="Summarize a video as K keyframes: the video is cut into shots, the model embeds overlapping "
        "windows (its training clip) inside each shot, kernel temporal segmentation cuts the windows into K segments, "
        "and each segment gives the frame that its most typical window attends to most. Writes a filmstrip PNG (and "
        "optionally the keyframe times as JSON).",
    )
    p.add_argument("video", metavar="VIDEO", help="the video file")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt file written by python -m minivb.train, or a run folder (its last.pt)",
    )
    p.add_argument(
        "--k",
        type=positive_int,
        help="how many keyframes (segments) (default: chosen by kernel temporal segmentation's model selection)",
    )
    p.add_argument(
        "--max-k",
        type=positive_int,
        default=summarization.MAX_K,
        help=f"without --k: the most keyframes to consider (default: {summarization.MAX_K}); each segment lasts at "
        f"least {summarization.MIN_SEGMENT_SECONDS:g} s",
    )
    p.add_argument("--out", required=True, type=Path, help="the filmstrip PNG to write")
    p.add_argument("--json", type=Path, help="also write the keyframes (frame, time, segment) as JSON here")
    p.add_argument("--hop", type=positive_int, help="frames between window starts (default: half a window's span)")
    p.add_argument(
        "--features",
        choices=summarization.FEATURES,
        default="model",
        help="embed windows with the model, or use raw pixels (a baseline) (default: model)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --out / --json (never the inputs)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="windows per batch (default: 16)")
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto = cuda if available, else cpu (default: auto)"
    )
    return p


def run(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    checkpoint = runs.checkpoint_path(opts.checkpoint, "--checkpoint")
    inputs = (opts.video, checkpoint)  # never written over, not even with --force
    runs.output_file(opts.out, "--out", "minivb.summarize", force=opts.force, inputs=inputs)
    if opts.json is not None:
        if opts.json.resolve() == opts.out.resolve():
            raise UsageError(f"--out and --json both name {opts.out}; name two files")
        runs.output_file(opts.json, "--json", "minivb.summarize", force=opts.force, inputs=inputs)
    if str(opts.video).endswith(STORE_SUFFIX):  # a store keeps every few frames only: no shot cuts, no times to find
        raise UsageError(
            f"{opts.video}: a minivb frame store (every few frames of a video, as JPEGs), not a video: summarize "
            "the original video"
        )
    model, _, prep = load_model(checkpoint)
    device = resolve_device(opts.device)
    try:
        summary = summarize(
            model.to(device),
            opts.video,
            prep,
            opts.k,
            max_k=opts.max_k,
            hop=opts.hop,
            features=opts.features,
            batch_size=opts.batch_size,
            device=device,
        )  # an unreadable video: VideoDecodeError, one line
    except ValueError as e:  # more keyframes than windows: how many there are, and what to change
        raise UsageError(f"--k {opts.k}: {e}; ask for fewer keyframes (or lower --hop)") from None
    png = io.BytesIO()
    filmstrip(opts.video, summary).savefig(
        png,
        format="png",
        dpi=summarization.DPI,
        metadata={"Software": "minivb.summarize"},  # (who wrote it)
    )
    write_atomic(opts.out, png.getvalue())
    if opts.json is not None:
        write_json(opts.json, {"command": "minivb.summarize", **summary.to_dict()})
    if summary.k_chosen:
        print(
            f"{summary.k} segment{'s' * (summary.k != 1)}, chosen by kernel temporal segmentation (at most "
            f"{opts.max_k}, none under {summarization.MIN_SEGMENT_SECONDS:g} s)"
        )
    for n, f in enumerate(summary.keyframes, 1):  # a segment's frames: first–last; its times: start – end
        print(
            f"keyframe {n}: frame {f.frame} ({format_time(f.time, f.frame)}), segment frames "
            f"{f.start_frame}–{f.end_frame - 1} "
            f"({format_time(f.start_time, f.start_frame)} – {format_time(f.end_time, f.end_frame - 1)}), score "
            f"{f.score:.3f}"
        )
    print(f"wrote {opts.out}" + (f" and {opts.json}" if opts.json is not None else ""), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.summarize``: 0 on success, 2 on a usage error (bad option, checkpoint, video, output)."""
    return run_main(lambda: run(argv), errors=(VideoDecodeError,), lower="--batch-size, or raise --hop")


if __name__ == "__main__":
    raise SystemExit(main())
