"""``python -m minivb.evaluate``: multi-view testing of a checkpoint — top-1/top-5, per-class accuracy, confusion.

    python -m minivb.evaluate --checkpoint runs/toy-20250101-120000            # its last.pt, 3 clips × 1 crop
    python -m minivb.evaluate --checkpoint runs/k400-…/best.pt --clips 4 --crops 3

Writes ``summary.json``, ``confusion.png``, ``reliability.png`` and ``predictions.csv`` to ``--out``; with the
checkpoint's confidence record (:mod:`minivb.engine.confidence`) also the calibration error before and after its
temperature, and how many videos pass its two tests. The work is
:mod:`minivb.engine.evaluation`; the views default to the checkpoint's :class:`~minivb.engine.checkpoint.Preprocessing`.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from .engine import calibration as cal
from .engine.checkpoint import Preprocessing, model_from_checkpoint, read_checkpoint
from .engine.confidence import Confidence
from .engine.evaluation import dataset_from_checkpoint, evaluate, plot_confusion
from .plumbing import runs
from .plumbing.cli import Parser, UsageError, add_decode_option, nonnegative_int, positive_int, run_main
from .plumbing.device import DEVICES, check_batch_fits, resolve_device
from .plumbing.files import write_atomic, write_json


def build_parser() -> argparse.ArgumentParser:
    """The command line: what to evaluate, on which views, how, and where the results go."""
    p = Parser(
        prog="python -m minivb.evaluate",
        description="Evaluate a checkpoint written by python -m minivb.train with multi-view testing: each video is "
        "cut into CLIPS evenly spaced temporal clips × CROPS spatial crops, the softmax probabilities are averaged "
        "over those views, and top-1, top-5, per-class accuracy and a confusion matrix are reported. Writes "
        "summary.json, confusion.png, reliability.png (calibration before and after the checkpoint's temperature) and "
        "predictions.csv to --out.",
        epilog="views: the toy set defaults to 3 clips × 1 crop — its frames are square and already at the model's "
        "size (3 crops would be the same picture) and its videos are short, so a few clips cover them. Kinetics-400 "
        "defaults to 4 clips × 3 crops, as in Video Swin; SlowFast and X3D report 10 × 3. The reason: a Kinetics "
        "video is about 10 s but one clip (16 frames, stride 4, at 25-30 fps) covers only about 2 s, so several "
        "uniform clips are needed to see the whole action; and the frames are wider than tall, so after resizing the "
        "shorter side, 3 crops (left, centre, right) cover the full width. Cost grows with clips × crops; accuracy "
        "gains flatten after a few views. 1 × 1 is the trainer's own validation (centre clip, centre crop).",
    )
    _input_options(p)
    _run_options(p)
    _output_options(p)
    return p


def _input_options(p: argparse.ArgumentParser) -> None:
    """The checkpoint, the data it is evaluated on, and the views per video."""
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt file written by python -m minivb.train, or a run folder (uses its last.pt, the final "
        "weights that the run's summary.json reports; pass best.pt explicitly for the best epoch)",
    )
    p.add_argument("--data-root", help="data folder (default: the one the checkpoint was trained on)")
    p.add_argument(
        "--split", default="val", help="split to evaluate: root/SPLIT.csv or root/SPLIT/<label>/ (default: val)"
    )
    p.add_argument("--clips", type=positive_int, help="temporal clips per video (default: toy 3, k400 4)")
    p.add_argument(
        "--crops",
        type=int,
        choices=(1, 3),
        help="spatial crops per clip: 1 = centre, 3 = along the long side (default: toy 1, k400 3)",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        help="evaluate only N videos (the same fixed subset the trainer's --limit-val takes)",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    """Batch, workers, where frames are decoded, and the device."""
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="videos per batch; each brings clips × crops views (default: 8)",
    )
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader worker processes (default: 0)")
    add_decode_option(p)
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto = cuda if available, else cpu; bf16 autocast on cuda (default: auto)",
    )


def _output_options(p: argparse.ArgumentParser) -> None:
    """The output folder, and whether an earlier evaluation there may be overwritten."""
    p.add_argument(
        "--out",
        help="output folder (default: CHECKPOINT_FOLDER/eval/<checkpoint name>-<split>-<clips>x<crops>); "
        "refused if it holds another command's files (a training run), or an earlier evaluation unless --force",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an earlier evaluation's files in --out (never another command's)",
    )


def _open(opts: argparse.Namespace) -> tuple[Path, dict, dict, Preprocessing, Path]:
    """The checkpoint (a file or a run folder's last.pt), its training options ({} if none), its preprocessing
    (views as given, else the record's) and --out."""
    path = runs.checkpoint_path(opts.checkpoint, "--checkpoint")
    try:
        ckpt = read_checkpoint(path)
        prep = Preprocessing.from_checkpoint(ckpt, opts.clips, opts.crops)
    except ValueError as e:
        raise UsageError(str(e)) from None
    args = ckpt["args"] if isinstance(ckpt.get("args"), dict) else {}
    out = Path(opts.out) if opts.out else path.parent / "eval" / f"{path.stem}-{opts.split}-{prep.clips}x{prep.crops}"
    runs.output_folder(out, "minivb.evaluate", "an evaluation", force=opts.force)
    return path, ckpt, args, prep, out


def _write_outputs(out: Path, summary: dict, result: dict, items: list, classes: list[str]) -> None:
    """summary.json, predictions.csv (one row per evaluated video, calibrated probabilities), confusion.png and
    reliability.png → ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    skipped = set(result["skipped_files"])
    kept = [it for it in items if it.path not in skipped]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "predicted", "probability", "correct"])
    for it, p, y in zip(kept, result["calibrated"], result["labels"].tolist()):
        j = int(p.argmax())
        writer.writerow([it.path, classes[y], classes[j], f"{p[j].item():.4f}", int(j == y)])
    write_atomic(out / "predictions.csv", buf.getvalue())
    ax = plot_confusion(
        result["confusion"],
        classes,
        title=f"{summary['split']}: top-1 {100 * result['top1']:.1f}% ({summary['clips']}×{summary['crops']} views)",
    )
    png = io.BytesIO()
    ax.figure.savefig(png, format="png", dpi=100)
    write_atomic(out / "confusion.png", png.getvalue())
    if result["num_videos"]:
        write_atomic(out / "reliability.png", _reliability_png(result, summary["calibration"]))


def _reliability_png(result: dict, c: dict) -> bytes:
    """The reliability diagrams before and after the temperature (one, before, where there is none) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("softmax", result["probs"])]  # before
    if c.get("temperature"):
        panels.append((f"T = {c['temperature']:.3g}", result["calibrated"]))  # after
    fig = Figure(figsize=(5 * len(panels), 5), tight_layout=True)
    FigureCanvasAgg(fig)
    for k, (name, probs) in enumerate(panels):
        rel = cal.reliability(probs, result["labels"])
        cal.plot_reliability(rel, fig.add_subplot(1, len(panels), k + 1), f"{name}: ECE {100 * rel.ece:.1f}%")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    return png.getvalue()


def _calibration(ckpt: dict, result: dict) -> dict:
    """What the checkpoint's confidence record makes of the evaluated videos: its temperature, the ECE before and
    after it (an older checkpoint: the ECE of the plain softmax only).
    Adds ``result["calibrated"]``: the probabilities predict prints."""
    record = Confidence.from_checkpoint(ckpt)
    result["calibrated"] = result["probs"]
    if not result["num_videos"]:
        return {}
    before = cal.expected_calibration_error(result["probs"], result["labels"])
    if record is None:
        return {"temperature": None, "ece_before": before, "note": "no confidence record (an older checkpoint)"}
    result["calibrated"] = cal.calibrated_probs(result["logits"], record.temperature).float()
    return {
        "temperature": record.temperature,
        "fitted_on": record.fitted_on,
        "ece_before": before,
        "ece_after": cal.expected_calibration_error(result["calibrated"], result["labels"]),
    }


def _device(opts: argparse.Namespace, prep: Preprocessing):
    """--device resolved, refused early if a batch of --batch-size × clips × crops views cannot fit on it."""
    device = resolve_device(opts.device)
    b, clips, crops, t, size = opts.batch_size, prep.clips, prep.crops, prep.num_frames, prep.size
    what = f"--batch-size {b} × --clips {clips} × --crops {crops} × {t} frames × 3 × {size}²"
    check_batch_fits(device, b * clips * crops, t, size, what)
    return device


def _evaluate_views(opts: argparse.Namespace, model, dataset, prep: Preprocessing, device) -> dict:
    """:func:`~minivb.engine.evaluation.evaluate` with the command's views, batch, workers and --decode."""
    try:
        return evaluate(
            model,
            dataset,
            num_clips=prep.clips,
            num_crops=prep.crops,
            batch_size=opts.batch_size,
            workers=opts.workers,
            device=device,
            decode=opts.decode,
        )
    except ValueError as e:  # --decode gpu on videos (not frame stores), or where torchvision cannot decode
        raise UsageError(str(e)) from None


def _print_per_class(classes: list[str], per_class_top1: dict, confusion) -> None:
    """One line per class: its top-1 accuracy (``-`` where it has no video) and its number of videos."""
    width = max(len(c) for c in classes)
    for i, (c, a) in enumerate(per_class_top1.items()):
        print(
            f"  {c:<{width}}  {'   -  ' if a is None else f'{100 * a:5.1f}%'}  "
            f"({int(confusion[i].sum())} video{'' if confusion[i].sum() == 1 else 's'})"
        )


def run(argv: list[str] | None = None) -> dict:
    """The command line's work → the summary dict. Raises :class:`UsageError` for bad input."""
    opts = build_parser().parse_args(argv)
    path, ckpt, args, prep, out = _open(opts)
    device = _device(opts, prep)
    made = not out.exists()
    lock = runs.claim(out)  # before any work: an --out that cannot be written, or another evaluation's, is refused
    try:
        runs.output_folder(out, "minivb.evaluate", "an evaluation", force=opts.force)  # again, now that it is ours
        return _evaluate_into(out, opts, path, ckpt, args, prep, device)
    finally:
        runs.release(out, lock)
        if made and not any(out.iterdir()):  # refused before it wrote anything: no empty folder left behind
            out.rmdir()


def _evaluate_into(out: Path, opts, path: Path, ckpt: dict, args: dict, prep: Preprocessing, device) -> dict:
    """:func:`run`'s work, with ``out`` held: the data, the views through the model, the files, the report."""
    try:
        dataset = dataset_from_checkpoint(ckpt, opts.data_root, opts.split, opts.limit)
        model, classes = model_from_checkpoint(ckpt, path), list(ckpt["classes"])  # the file is read once
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    data_root = str(opts.data_root or args.get("data_root"))
    epochs = f"{ckpt.get('epoch', '?')} epoch{'' if ckpt.get('epoch') == 1 else 's'}"
    print(
        f"minivb.evaluate: {path} ({epochs}) on {len(dataset)} {opts.split} videos of "
        f"{data_root}, {prep.clips} clip(s) × {prep.crops} crop(s), {device.type} → {out}",
        flush=True,
    )
    result = _evaluate_views(opts, model.to(device), dataset, prep, device)
    summary = {  # what summary.json holds: the accuracies, the views, what was evaluated, the confusion matrix
        "command": "minivb.evaluate",
        "val_top1": result["top1"],
        "val_top5": result["top5"],
        "epochs": ckpt.get("epoch"),
        "seconds": round(result["seconds"], 2),
        "clips": prep.clips,
        "crops": prep.crops,
        "per_class_top1": dict(zip(classes, result["per_class_top1"])),
        "num_videos": result["num_videos"],
        "skipped": result["skipped"],
        "skipped_files": result["skipped_files"],
        "split": opts.split,
        "checkpoint": str(path),
        "data_root": data_root,
        "subset": args.get("subset"),
        "device": str(device),
        "confusion": result["confusion"].tolist(),
        "calibration": _calibration(ckpt, result),
    }
    _write_outputs(out, summary, result, dataset.items, classes)
    if len(classes) <= 50:
        _print_per_class(classes, summary["per_class_top1"], result["confusion"])
    c = summary["calibration"]
    if c.get("temperature"):
        print(
            f"calibration: ECE (15 bins) {100 * c['ece_before']:.1f}% → {100 * c['ece_after']:.1f}% with the "
            f"checkpoint's temperature {c['temperature']:.3f} (fitted on the validation set, {c['fitted_on']})"
        )
    elif c:
        print(f"calibration: ECE (15 bins) {100 * c['ece_before']:.1f}%; {c['note']}: train again to calibrate")
    print(
        f"val top-1 {100 * result['top1']:.1f}%  top-5 {100 * result['top5']:.1f}%  ({result['num_videos']} videos, "
        f"{result['skipped']} skipped, {prep.clips}×{prep.crops} views, {summary['seconds']:.0f} s) → {out}",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.evaluate``: 0 on success, 2 on a usage error (one line on stderr)."""
    return run_main(lambda: run(argv) and 0, lower="--clips, --crops or --batch-size")


if __name__ == "__main__":
    raise SystemExit(main())
