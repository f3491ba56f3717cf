"""``python -m minivb.predict``: classify any video with a trained checkpoint — top-k labels with probabilities.

    python -m minivb.predict clip.mp4 other.avi --checkpoint runs/toy-20250101-120000
    python -m minivb.predict my_videos/ --checkpoint runs/k400-…/best.pt --topk 3 --json

The work is :func:`minivb.engine.inference.classify`: the checkpoint's own preprocessing, ``clips × crops``
views per video, the calibrated softmax averaged over them, and the checkpoint's two tests
(:mod:`minivb.engine.confidence`): a video unlike the training videos, or one the model is unsure of, is answered
"none of the N classes" with the reason and the closest classes. ``--acceptance`` sets the share of validation
videos the tests let through (default 0.95); ``--no-reject`` switches them off.
"""

from __future__ import annotations

import argparse
import sys

from .engine.confidence import ACCEPTANCE
from .engine.inference import classify, find_videos, load_classifier
from .plumbing.cli import (
    Parser,
    UsageError,
    add_checkpoint_option,
    add_decode_option,
    add_videos_argument,
    add_views_options,
    fraction,
    nonnegative_int,
    positive_int,
    run_main,
    views_device,
)
from .plumbing.device import DEVICES
from .plumbing.samples import Skipped


def build_parser() -> argparse.ArgumentParser:
    """The command line: the videos and checkpoint, how many classes, text or JSON, the views, and how to run."""
    p = Parser(
        prog="python -m minivb.predict",
        description="Classify videos with a checkpoint written by python -m minivb.train: the top-k classes and their "
        "calibrated probabilities for each video (softmax averaged over clips × crops views, sampled as the "
        "checkpoint was trained). A video unlike the training videos, or one the model is unsure of, is answered "
        '"none of the N classes" with the reason and the closest classes. Videos may have any size, frame rate, '
        "orientation and length. A file that cannot be read is reported on one line and the others are still "
        "classified; the exit status is then 1.",
    )
    add_videos_argument(p)
    add_checkpoint_option(p)
    p.add_argument(
        "--topk",
        type=positive_int,
        default=5,
        help="how many classes to list per video (default: 5, at most the number of classes)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON document (a list, one object per video) instead of text"
    )
    p.add_argument(
        "--acceptance",
        type=fraction,
        default=ACCEPTANCE,
        help="the share of the checkpoint's validation videos that pass its two tests (default: 0.95); lower it to "
        "reject more, raise it to reject less",
    )
    p.add_argument(
        "--no-reject", action="store_true", help='never answer "none of the classes": always the most likely class'
    )
    add_views_options(p)
    p.add_argument("--batch-size", type=positive_int, default=4, help="videos per batch (default: 4)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader worker processes (default: 0)")
    add_decode_option(p)
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto = cuda if available, else cpu (default: auto)"
    )
    return p


def _results(paths: list[str], judged, kept: list[int], problems: list[Skipped], classes: list[str], topk: int):
    """One dict per video, problems first: ``path``, ``answer`` (a class, or ``None`` for "none of these" with the
    ``reason``), ``top`` ([{label, probability}], best first), ``distance`` (``None`` without a confidence record)
    and ``confidence``; or ``error``."""
    why, listed, row = {s.path: s.reason for s in problems}, set(paths), dict(zip(kept, range(len(kept))))
    out = [{"path": s.path, "error": s.reason} for s in problems if s.path not in listed]
    for i, path in enumerate(paths):
        if i not in row:
            out.append({"path": path, "error": why.get(path, "could not be decoded")})
            continue
        n = row[i]
        values, indices = judged.probs[n].topk(min(topk, len(classes)))
        top = [{"label": classes[j], "probability": round(v, 4)} for v, j in zip(values.tolist(), indices.tolist())]
        accepted = bool(judged.accepted[n])
        out.append(
            {
                "path": path,
                "answer": top[0]["label"] if accepted else None,
                **({} if accepted else {"reason": judged.reason(n)}),
                "top": top,
                "distance": None if judged.distance[n].isnan() else round(float(judged.distance[n]), 2),
                "confidence": round(float(judged.confidence[n]), 4),
            }
        )
    return out


def _line(r: dict, classes: list[str]) -> str:
    """A video's line of text: its classes and probabilities, or "none of the N classes" with why and the closest."""
    top = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"])
    if r["answer"] is not None:
        return f"{r['path']}: {top}"
    return f"{r['path']}: none of the {len(classes)} classes ({r['reason']}); closest: {top}"


def run(argv: list[str] | None = None) -> int:
    """The command line's work → exit status (0, or 1 if any video could not be classified)."""
    import json

    opts = build_parser().parse_args(argv)
    model, classes, prep, record = load_classifier(opts.checkpoint, opts.clips, opts.crops)
    if record is None:
        print(
            f"minivb.predict: note: {opts.checkpoint} has no confidence record (trained before there was one): the "
            'probabilities are uncalibrated and no video is answered "none of these"; train it again to get one',
            file=sys.stderr,
        )
    device = views_device(opts, prep)
    paths, problems = find_videos(opts.videos)
    try:
        judged, kept, skipped = classify(
            model.to(device),
            paths,
            prep,
            record,
            None if opts.no_reject else opts.acceptance,
            batch_size=opts.batch_size,
            workers=opts.workers,
            device=device,
            progress="classifying" if len(paths) > 1 else None,
            decode=opts.decode,
        )
    except ValueError as e:  # --decode gpu on videos (not frame stores), or where torchvision cannot decode
        raise UsageError(str(e)) from None
    results = _results(paths, judged, kept, problems + skipped, classes, opts.topk)
    for r in results:
        if "error" in r:
            print(f"minivb.predict: cannot classify {r['path']}: {r['error']}", file=sys.stderr)
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "top" in r:
                print(_line(r, classes))
    return 1 if any("error" in r for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.predict``: 0 if every video was classified, 1 if some could not be, 2 on a usage error."""
    return run_main(lambda: run(argv), lower="--clips, --crops or --batch-size")


if __name__ == "__main__":
    raise SystemExit(main())
