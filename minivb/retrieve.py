"""Video retrieval from the command line: index videos, search for the nearest ones, evaluate (seed §6).

    python -m minivb.retrieve index --checkpoint runs/toy-… --data-root data/toy --split train --out runs/gallery.pt
    python -m minivb.retrieve index --checkpoint runs/toy-… my_videos/ --out runs/mine.pt
    python -m minivb.retrieve search --index runs/gallery.pt clip.mp4 --k 5
    python -m minivb.retrieve evaluate --index runs/gallery.pt --confusion runs/neighbours.png
    python -m minivb.retrieve text "a ball slides to the left" --pretrained runs/pretrain-joint data/toy/val

The numbers are :mod:`minivb.retrieval`'s: one unit [CLS] vector per video (mean over its views),
cosine similarity, leave-one-out Recall@K and mAP. ``text`` searches videos with a sentence instead, through the
joint model of ``python -m minivb.pretrain --language joint`` (:mod:`minivb.engine.text_search`).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

from .data.clips import load_items
from .engine.checkpoint import Preprocessing, weights_fingerprint
from .engine.gallery import Gallery, embed_videos
from .engine.inference import find_videos, load_model
from .engine.text_search import text_search
from .plumbing import runs
from .plumbing.cli import (
    Parser,
    UsageError,
    add_checkpoint_option,
    add_decode_option,
    add_videos_argument,
    add_views_options,
    nonnegative_int,
    positive_int,
    run_main,
    views_device,
)
from .plumbing.device import DEVICES
from .plumbing.files import write_atomic
from .plumbing.samples import Skipped
from .retrieval import neighbour_confusion, retrieval_metrics, search

PROG = "python -m minivb.retrieve"
log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand each for index, search and evaluate."""
    p = Parser(
        prog=PROG,
        description="Video retrieval with a checkpoint written by python -m minivb.train: every video "
        "becomes one unit vector (the [CLS] embedding, averaged over clips × crops views) and videos are compared by "
        "cosine similarity. 'index' embeds videos into a gallery file, 'search' lists the gallery videos nearest to "
        "query videos, 'evaluate' scores a labelled gallery leave-one-out (Recall@1/5/10, mAP); 'text' lists the "
        "videos a sentence most likely narrates, with a run of python -m minivb.pretrain --language joint.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{index,search,evaluate,text}")
    _index_parser(sub)
    _search_parser(sub)
    _evaluate_parser(sub)
    _text_parser(sub)
    return p


def _text_parser(sub) -> None:
    """'text': a sentence, a joint pretraining run, the videos to search."""
    q = sub.add_parser(
        "text",
        help="the videos a sentence most likely narrates (a joint video-and-language model)",
        description="Turn every video into visual words as the joint pretraining run did, then score each (sentence, "
        "video) pair with the run's alignment head on [CLS] and list the K most likely videos. Words the model never "
        "heard are named on one line (they read as [UNK]); a video that cannot be read is reported on one line and "
        "the others are still searched, the exit status is then 1.",
    )
    q.add_argument("sentence", help='what to look for, in the narrations\' words, e.g. "a ball slides to the left"')
    add_videos_argument(q)
    q.add_argument("--pretrained", required=True, help="a run of python -m minivb.pretrain --language joint")
    q.add_argument("--k", type=positive_int, default=5, help="how many videos to list (default: 5)")
    q.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def _device_options(q: argparse.ArgumentParser) -> None:
    """--batch-size, --workers, --device and --decode: how 'index' and 'search' embed videos."""
    q.add_argument("--batch-size", type=positive_int, default=4, help="videos per batch (default: 4)")
    q.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader worker processes (default: 0)")
    q.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto = cuda if available, else cpu (default: auto)"
    )
    add_decode_option(q)


def _index_parser(sub) -> None:
    """'index': the videos (or a labelled split) to embed, the checkpoint, the gallery file to write."""
    q = sub.add_parser(
        "index",
        help="embed videos into a gallery file",
        description="Embed videos (files, folders, or a "
        "labelled split of a data set) with a checkpoint and write the gallery to --out. A file that cannot "
        "be read is reported on one line and the others are still indexed; the exit status is then 1.",
    )
    add_videos_argument(q, nargs="*")
    add_checkpoint_option(q)
    q.add_argument(
        "--data-root", help="index a labelled split of this data folder instead of VIDEOs (labels are stored)"
    )
    q.add_argument(
        "--split", default="val", help="with --data-root: root/SPLIT.csv or root/SPLIT/<label>/ (default: val)"
    )
    q.add_argument(
        "--out", required=True, help="the gallery file to write, e.g. gallery.pt (refused if it exists, unless --force)"
    )
    q.add_argument("--force", action="store_true", help="overwrite an existing --out")
    add_views_options(q)
    _device_options(q)


def _search_parser(sub) -> None:
    """'search': the query videos, the gallery, how many neighbours, text or JSON."""
    q = sub.add_parser(
        "search",
        help="the gallery videos nearest to query videos",
        description="Embed the query videos as "
        "the gallery was embedded (its checkpoint and views) and list the K most similar gallery videos "
        "(cosine similarity, and their labels if known). A query that cannot be read is reported on one "
        "line and the others are still searched; the exit status is then 1.",
    )
    add_videos_argument(q, "queries", metavar="QUERY")
    q.add_argument("--index", required=True, help="a gallery file written by 'index'")
    q.add_argument("--k", type=positive_int, default=5, help="how many neighbours to list per query (default: 5)")
    q.add_argument(
        "--json", action="store_true", help="print one JSON document (a list, one object per query) instead of text"
    )
    q.add_argument(
        "--checkpoint",
        help="the model that made the index, if it has moved since (default: the path stored in the index)",
    )
    _device_options(q)


def _evaluate_parser(sub) -> None:
    """'evaluate': the labelled gallery, text or JSON, and the confusion picture."""
    q = sub.add_parser(
        "evaluate",
        help="leave-one-out Recall@K and mAP of a labelled gallery",
        description="Every video of a "
        "labelled gallery queries all the others; a video of the same label is relevant. Recall@K: the "
        "fraction of queries with a relevant video among their K nearest; mAP: the mean average precision "
        "of the full ranking. Videos alone in their label are left out (and counted).",
    )
    q.add_argument("--index", required=True, help="a gallery file written by 'index --data-root … --split …'")
    q.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    q.add_argument(
        "--confusion",
        metavar="PNG",
        help="also draw the nearest-neighbour confusion matrix (row: a video's "
        "label, column: its nearest other video's label) to this picture (refused if it exists, unless --force)",
    )
    q.add_argument("--force", action="store_true", help="overwrite an existing --confusion picture (never --index)")


def _gallery(path: str) -> Gallery:
    """The gallery file --index names; a missing or damaged one is a usage error."""
    try:
        return Gallery.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--index: {e}") from None


def _report(problems: list[Skipped], verb: str) -> None:
    """One line on stderr per video that could not be read."""
    for s in problems:
        print(f"minivb.retrieve: cannot {verb} {s.path}: {s.reason}", file=sys.stderr)


def _embed(opts: argparse.Namespace, model, paths: list[str], prep: Preprocessing, **kw):
    """:func:`~minivb.engine.gallery.embed_videos` with the command's batch, workers and --decode options."""
    try:
        return embed_videos(
            model,
            paths,
            prep,
            batch_size=opts.batch_size,
            workers=opts.workers,
            decode=opts.decode,
            progress="embedding" if len(paths) > 1 else None,
            **kw,
        )
    except ValueError as e:  # --decode gpu on videos (not frame stores), or where torchvision cannot decode
        raise UsageError(str(e)) from None


def _index(opts: argparse.Namespace) -> int:
    """'index': embed the videos (or a labelled split) and write the gallery file."""
    out = Path(opts.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; name the gallery file, e.g. {out / 'gallery.pt'}")
    checkpoint = runs.checkpoint_path(opts.checkpoint, "--checkpoint")
    runs.output_file(out, "--out", "minivb.retrieve", force=opts.force, inputs=[checkpoint, *(opts.videos or [])])
    if bool(opts.videos) == bool(opts.data_root):
        raise UsageError(
            "name the videos to index (files or folders), or a labelled split with --data-root ROOT --split SPLIT, "
            "not both"
            if opts.videos
            else "nothing to index: name videos (files or folders), or --data-root ROOT --split SPLIT"
        )
    model, _, prep = load_model(checkpoint, opts.clips, opts.crops)
    device = views_device(opts, prep)
    labels = classes = None
    if opts.data_root:
        try:  # the data's own labels: retrieval needs no trained class
            items, classes = load_items(opts.data_root, opts.split)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
        paths, labels, problems = [it.path for it in items], [it.label for it in items], []
    else:
        paths, problems = find_videos(opts.videos)
    runs.writable_folder(out.parent, "--out")  # before the work, not after it
    gallery, skipped = _embed(
        opts,
        model.to(device),
        paths,
        prep,
        labels=labels,
        classes=classes,
        device=device,
    )
    _report(problems + skipped, "embed")
    if not len(gallery):
        print(f"minivb.retrieve: no video could be embedded; nothing written to {out}", file=sys.stderr)
        return 1
    gallery.checkpoint = str(checkpoint.resolve())
    gallery.fingerprint = weights_fingerprint(model)  # queries must be embedded by these very weights
    gallery.save(out)
    print(
        f"indexed {len(gallery)} videos ({gallery.embeddings.shape[1]}-d, {len(problems) + len(skipped)} skipped"
        f"{', labelled' if labels is not None else ''}, {prep.clips} clip(s) × {prep.crops} crop(s)) → {out}"
    )
    return 1 if problems or skipped else 0


def _gallery_model(opts: argparse.Namespace, gallery: Gallery, prep: Preprocessing):
    """The model that made the gallery (--checkpoint, else the stored path), checked against it; ``None`` if none."""
    model = None  # a gallery without a checkpoint holds raw-pixel embeddings (engine.gallery.pixel_embedding)
    checkpoint = opts.checkpoint or gallery.checkpoint
    if checkpoint is not None:
        if opts.checkpoint is None and not Path(checkpoint).exists():
            raise UsageError(
                f"the checkpoint that made {opts.index}, {checkpoint}, does not exist (moved or deleted?); "
                f"pass --checkpoint with that model"
            )
        model, _, own = load_model(checkpoint, prep.clips, prep.crops)
        if own != prep or model.config.dim != gallery.embeddings.shape[1]:
            raise UsageError(
                f"--checkpoint {checkpoint} is not the model that made {opts.index} (its views or embedding size "
                f"differ); pass the checkpoint that made the index, or index again"
            )
        if gallery.fingerprint is not None and weights_fingerprint(model) != gallery.fingerprint:
            raise UsageError(
                f"{checkpoint} is not the model that made {opts.index}: its weights differ (another model, or a "
                f"run that trained on after indexing); pass the checkpoint that made the index, or index again"
            )
        if gallery.fingerprint is None:  # an older gallery: the size and views match, the weights cannot be compared
            log.warning(
                f"{opts.index} stores no fingerprint of the weights that made it (an older gallery): whether "
                f"{checkpoint} is that model cannot be checked; index again to be sure"
            )
    return model


def _neighbours(
    gallery: Gallery, paths: list[str], problems: list[Skipped], skipped: list[Skipped], scores: list, indices: list
) -> list[dict]:
    """One dict per query, problems first: ``path`` and ``neighbours`` ([{rank, path, similarity, label?}]) or
    ``error``."""
    why = {s.path: s.reason for s in problems + skipped}
    rows = iter(zip(scores, indices))
    results = [{"path": s.path, "error": s.reason} for s in problems]
    for path in paths:
        if path in why:
            results.append({"path": path, "error": why[path]})
            continue
        values, found = next(rows)
        results.append(
            {
                "path": path,
                "neighbours": [
                    {
                        "rank": r + 1,
                        "path": gallery.paths[j],
                        "similarity": round(v, 4),
                        **({"label": gallery.labels[j]} if gallery.labels is not None else {}),
                    }
                    for r, (v, j) in enumerate(zip(values, found))
                ],
            }
        )
    return results


def _print_neighbours(results: list[dict]) -> None:
    """Each searched query's path, then its neighbours one a line: rank, similarity, path (label)."""
    for r in results:
        if "neighbours" in r:
            print(f"{r['path']}:")
            for n in r["neighbours"]:
                print(
                    f"  {n['rank']:>3}. {n['similarity']:+.4f}  {n['path']}"
                    + (f"  ({n['label']})" if "label" in n else "")
                )


def _search(opts: argparse.Namespace) -> int:
    """'search': embed the queries as the gallery was embedded, print their nearest gallery videos."""
    gallery = _gallery(opts.index)
    try:
        prep = Preprocessing(**gallery.preprocessing)
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"--index {opts.index} is a damaged minivb gallery (its preprocessing: {e}); index the videos again"
        ) from None
    model = _gallery_model(opts, gallery, prep)
    device = views_device(opts, prep)
    paths, problems = find_videos(opts.queries)
    queries, skipped = _embed(opts, None if model is None else model.to(device), paths, prep, device=device)
    scores, indices = search(gallery.embeddings, queries.embeddings, opts.k)  # (Q, k), (Q, k)
    results = _neighbours(gallery, paths, problems, skipped, scores.tolist(), indices.tolist())
    _report(problems + skipped, "search with")
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        _print_neighbours(results)
    return 1 if problems or skipped else 0


def _draw_confusion(png: Path, confusion, classes: list[str], metrics: dict) -> None:
    """The nearest-neighbour confusion matrix (C, C) → the picture ``png`` (--confusion)."""
    from .engine.evaluation import plot_confusion

    ax = plot_confusion(confusion, classes, title=f"nearest neighbour: recall@1 {100 * metrics['recall@1']:.1f}%")
    ax.set(xlabel="label of the nearest other video", ylabel="label of the query")
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=100, metadata={"Software": "minivb.retrieve"})  # (who wrote it)
    write_atomic(png, buf.getvalue())


def _print_metrics(index: str, metrics: dict, labels: int) -> None:
    """The gallery (videos, labels present) and its queries, Recall@K and mAP on one line, and a note where a Recall@K
    is trivial."""
    alone = metrics["without_relevant"]
    print(
        f"{index}: {metrics['gallery']} videos of {labels} label{'' if labels == 1 else 's'}, leave-one-out: "
        f"{metrics['queries']} queries" + (f" ({alone} alone in their label left out)" if alone else "")
    )
    print(
        "  ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items() if k.startswith("recall@"))
        + f"  mAP {metrics['mAP']:.3f}"
    )
    trivial = [k for k in metrics if k.startswith("recall@") and int(k[7:]) >= metrics["gallery"] - 1]
    if trivial:  # every other video is among the k nearest: a hit by construction, not by the model
        print(
            f"note: {' and '.join(trivial)} count(s) every other video of this {metrics['gallery']}-video gallery "
            f"as a neighbour: 100% by construction"
        )


def _evaluate(opts: argparse.Namespace) -> int:
    """'evaluate': leave-one-out Recall@K and mAP of a labelled gallery, and its confusion picture if asked."""
    if opts.confusion:  # before any work
        runs.output_file(Path(opts.confusion), "--confusion", "minivb.retrieve", force=opts.force, inputs=[opts.index])
    gallery = _gallery(opts.index)
    if gallery.labels is None:
        raise UsageError(
            f"--index {opts.index} has no labels; index a labelled split with --data-root ROOT --split SPLIT"
        )
    if len(gallery) < 2:
        raise UsageError(f"--index {opts.index} holds {len(gallery)} video(s); leave-one-out needs at least 2")
    ids = gallery.label_ids()
    classes = gallery.classes or list(dict.fromkeys(gallery.labels))
    metrics = retrieval_metrics(gallery.embeddings, ids)
    if not metrics["queries"]:
        raise UsageError(
            f"--index {opts.index}: no label has two videos, so no query has a relevant video; "
            f"index a split with several videos per label"
        )
    if len(set(gallery.labels)) == 1:
        log.warning(
            f"{opts.index}: every video has the label {gallery.labels[0]!r}, so every neighbour is relevant: recall "
            f"and mAP are 1 whatever the model and mean nothing; index a split of several labels"
        )
    confusion = neighbour_confusion(gallery.embeddings, ids, len(classes))  # (C, C)
    if opts.confusion:
        _draw_confusion(Path(opts.confusion), confusion, classes, metrics)
    if opts.json:
        print(
            json.dumps(
                {
                    **metrics,
                    "index": str(opts.index),
                    "checkpoint": gallery.checkpoint,
                    "classes": classes,
                    "neighbour_confusion": confusion.tolist(),
                },
                indent=2,
            )
        )
        return 0
    _print_metrics(opts.index, metrics, len(set(gallery.labels)))
    return 0


def _text(opts: argparse.Namespace) -> int:
    """'text': the videos the sentence most likely narrates, best first."""
    paths, problems = find_videos(opts.videos)
    found = text_search(opts.pretrained, opts.sentence, paths, opts.k)
    if found["unknown"]:
        print(f"words the model never heard (read as [UNK]): {' '.join(found['unknown'])}", file=sys.stderr)
    unread = problems + found["skipped"]
    _report(unread, "search")
    if opts.json:  # the videos that could not be read are in it too, as search --json has them
        errors = [{"path": s.path, "error": s.reason} for s in unread]
        print(json.dumps({k: v for k, v in found.items() if k != "skipped"} | {"errors": errors}, indent=2))
    else:
        print(f"{opts.sentence!r}:")
        for r in found["results"]:
            print(f"  {r['rank']:>3}. {r['probability']:.3f}  {r['path']}")
        if not found["results"]:
            print("  (no video could be searched)")
    return 1 if unread else 0


def run(argv: list[str] | None = None) -> int:
    """The command line's work → exit status (0, or 1 if some video could not be read)."""
    opts = build_parser().parse_args(argv)
    return {"index": _index, "search": _search, "evaluate": _evaluate, "text": _text}[opts.command](opts)


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.retrieve``: 0 on success, 1 if some video could not be read, 2 on a usage error."""
    return run_main(lambda: run(argv), lower="--clips, --crops or --batch-size")


if __name__ == "__main__":
    raise SystemExit(main())
