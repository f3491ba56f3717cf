"""``python -m minivb.bench ood``: how well each out-of-distribution score tells a toy model's 8 classes from
videos it never saw, and what temperature scaling does to its calibration.

In-distribution: the checkpoint's validation set (where the temperature ``T`` and every score's threshold are
fitted, as the trainer would) and a held-out toy set of the same 8 classes drawn with another seed (where they
are tested). Out of distribution, made offline in a temporary folder, as many videos per kind as the held-out set
has per class pair:

- ``rotation``: the toy generator's ``--rotation`` pair (``rotating_clockwise`` / ``rotating_counterclockwise``, a
  clock hand), classes the 8-class model never saw;
- ``static``: one frame of a toy scene repeated (every toy object without its motion);
- ``noise``: uniform random pixels, every frame its own.

Every video is seen as the checkpoint's views (toy: 3 clips); a video's score is the mean of its views' scores
(:func:`minivb.engine.calibration.video_scores`). The logit scores (msp, max_logit, energy) read each view's logits;
the embedding-space scores (mahalanobis, knn) read its ``[CLS]`` embedding and the embeddings of the checkpoint's
*training* videos (:func:`minivb.engine.calibration.fit_embeddings`). Each row is a score: its AUROC against the
held-out in-distribution videos per kind (1 = perfectly separated, 0.5 = chance), its threshold (the score that
keeps ``--acceptance`` of the validation videos), the share of held-out in-distribution videos it accepts and the
share of each kind it rejects. After the table: ``T`` and the ECE / NLL before and after it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from ..data import toy
from ..engine import calibration as cal
from ..engine.checkpoint import read_checkpoint
from ..engine.confidence import fit_confidence
from ..engine.evaluation import dataset_from_checkpoint
from ..engine.inference import find_videos, load_model, map_videos, video_views, views_features_and_logits
from ..plumbing import runs
from ..plumbing.checks import UsageError
from ..plumbing.cli import add_checkpoint_option, nonnegative_int, positive_int, views_device
from ..plumbing.device import DEVICES
from ..plumbing.samples import report_skipped
from .report import LiveTable, fmt, machine_facts

KINDS = ("rotation", "static", "noise")  # made here; "real" follows when --real names videos
# The rows: (score, its temperature) — the fitted T, and T = 1, where the score depends on T (max_logit does not).
ROWS = (("msp", "fitted"), ("max_logit", None), ("energy", "fitted"), ("msp", 1.0), ("energy", 1.0))
# The embedding-space rows after them: (score, k): k nearest training embeddings for knn (mahalanobis has no k).
# The embedding-space rows after them: (score, feature, k): of the [CLS] state, of the mean region feature the CNN
# gives the Transformer ("regions"), or of both side by side (the checkpoint's distance test); k for knn.
EMBEDDING_ROWS = (
    ("mahalanobis", "cls", None),
    ("knn", "cls", 1),
    ("knn", "cls", 10),
    ("mahalanobis", "regions", None),
    ("mahalanobis", "regions+cls", None),
)
RULE = "two tests"  # the last row: the checkpoint's record (minivb.engine.confidence), fitted as training fits it


def headers(kinds) -> list[str]:
    """The table's columns for the out-of-distribution ``kinds``."""
    return ["score", "T", *[f"AUROC {k}" for k in kinds], "threshold", "accepted held-out"] + [
        f"rejected {k}" for k in kinds
    ]


# --------------------------------------------------------------------------- the videos


def _toy_settings(root: Path) -> toy.ToyConfig:
    """The settings of the toy set at ``root`` (its ``meta.json``), or the defaults where it has none."""
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return toy.ToyConfig()
    return toy.ToyConfig(**{f.name: meta[f.name] for f in fields(toy.ToyConfig) if f.name in meta})


def make_videos(folder: Path, like: toy.ToyConfig, per_class: int, seed: int) -> dict[str, list]:
    """The held-out and out-of-distribution videos under ``folder``, ``frames × size²`` as ``like``'s →
    ``{"held_out": [(path, label)], "rotation" | "static" | "noise": [path]}``.

    Held-out and rotation: a toy set with ``--rotation`` of ``per_class`` validation videos per class, seed
    ``seed``; static and noise: ``8 · per_class`` videos each, from generators seeded ``[seed, 7 | 8, i]``.
    """
    cfg = toy.ToyConfig(
        seed,
        train_per_class=1,
        val_per_class=per_class,
        frames=like.frames,
        size=like.size,
        fps=like.fps,
        rotation=True,
    )
    root = toy.generate(folder / "toy", cfg)
    rows = toy.read_index(root, "val")
    videos = {"held_out": [(str(root / r["path"]), r["label"]) for r in rows if r["label"] in toy.CLASSES]}
    videos["rotation"] = [str(root / r["path"]) for r in rows if r["label"] in toy.ROTATION]
    n, T, S = len(videos["held_out"]), cfg.frames, cfg.size
    for kind in ("static", "noise"):
        (folder / kind).mkdir()
        videos[kind] = []
        for i in range(n):
            rng = np.random.default_rng([seed, 7 if kind == "static" else 8, i])
            if kind == "static":  # the middle frame of a toy scene of class i % 8, T times
                clip = toy.render_clip(toy.CLASSES[i % len(toy.CLASSES)], rng, T, S)  # (T, S, S, 3)
                video = np.repeat(clip[T // 2][None], T, axis=0)
            else:
                video = rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8)
            path = folder / kind / f"{kind}_{i:04d}.mp4"
            toy.write_video(path, video, cfg.fps)
            videos[kind].append(str(path))
    return videos


def _outputs(model, paths: list[str], prep, opts, device) -> tuple[torch.Tensor, list[int]]:
    """Every view's embedding and logits of the videos at ``paths`` → ``(outputs (N, V, D + C), the indices of the
    videos read)`` (:func:`~minivb.engine.inference.views_features_and_logits`); a file that cannot be decoded is
    reported and left out."""
    outputs, skipped = map_videos(
        lambda views: views_features_and_logits(model, views),  # (B, V, T, 3, H, W) → (B, V, F + C)
        video_views(paths, prep),
        batch_size=opts.batch_size,
        workers=opts.workers,
        device=device,
    )
    report_skipped(skipped)
    kept = [i for i, out in enumerate(outputs) if out is not None]
    if not kept:
        raise RuntimeError(f"none of the {len(paths)} videos could be decoded (first: {paths[0]})")
    return torch.stack([outputs[i] for i in kept]), kept


# --------------------------------------------------------------------------- the numbers


def calibration_numbers(val: torch.Tensor, val_y: torch.Tensor, held: torch.Tensor, held_y: torch.Tensor) -> dict:
    """T fitted on the validation logits ``(N, V, C)``; the ECE (15 bins) and NLL before and after it, on the
    validation set (where T was fitted) and on the held-out set."""
    T = cal.fit_temperature(val, val_y)
    out = {"temperature": T, "fitted_on": {"videos": len(val), "views": val.shape[1]}}
    for name, z, y in (("val", val, val_y), ("held_out", held, held_y)):
        out[name] = {
            "ece": {
                w: cal.expected_calibration_error(cal.calibrated_probs(z, t), y)
                for w, t in (("before", 1), ("after", T))
            },
            "nll": {"before": cal.nll(z, y, 1.0), "after": cal.nll(z, y, T)},
            "accuracy": (cal.calibrated_probs(z).argmax(dim=1) == y).double().mean().item(),
        }
    return out


def score_row(score: str, T: float | None, logits: dict[str, torch.Tensor], acceptance: float) -> dict:
    """One row: ``score`` at temperature ``T`` (``None``: a score that does not depend on it) on every set of
    ``logits`` (``val``, ``held_out`` and the :data:`KINDS`, each ``(N, V, C)``) → AUROC per kind, the threshold
    fitted on ``val``, the shares accepted and rejected."""
    s = {name: cal.video_scores(z, T or 1.0)[score] for name, z in logits.items() if name != "train"}  # {set: (N,)}
    return _row(score, s, acceptance) | {"temperature": T}


def embedding_row(
    score: str, k: int | None, fit: cal.EmbeddingFit, features: dict[str, torch.Tensor], acceptance: float
) -> dict:
    """One row of an embedding-space ``score`` of :data:`~minivb.engine.calibration.EMBEDDING_SCORES` (``k``: the
    neighbours of ``knn``), ``fit`` on the training embeddings, on every set of ``features`` (``val``,
    ``held_out`` and the :data:`KINDS`, each ``(N, V, D)``) → as :func:`score_row`, with no temperature."""
    s = {name: fit.scores(f, k or 1)[score] for name, f in features.items() if name != "train"}  # {set: (N,)}
    return _row(score, s, acceptance) | {"temperature": None, "k": k}


def _row(score: str, s: dict[str, torch.Tensor], acceptance: float) -> dict:
    """A row's numbers from the scores ``{set: (N,)}`` of every set: AUROC per kind against ``held_out``, the
    threshold that keeps ``acceptance`` of ``val``, the shares accepted and rejected."""
    t = cal.threshold_for(s["val"], acceptance)
    kinds = [k for k in s if k not in ("val", "held_out")]
    return {
        "score": score,
        "auroc": {k: cal.auroc(s["held_out"], s[k]) for k in kinds},
        "threshold": t,
        "accepted": {
            "val": (s["val"] >= t).double().mean().item(),
            "held_out": (s["held_out"] >= t).double().mean().item(),
        },
        "rejected": {k: (s[k] < t).double().mean().item() for k in kinds},
    }


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _cells(r: dict) -> list[list]:
    """The table row of a score."""
    T = "—" if r["temperature"] is None else "1" if r["temperature"] == 1 else fmt(r["temperature"], 2)
    auroc = ["—" if v is None else fmt(v, 3) for v in r["auroc"].values()]
    return [
        [
            r["score"]
            + (f" ({r['feature']})" if r.get("feature", "cls") != "cls" else "")
            + (f" (k={r['k']})" if r.get("k") else ""),
            T,
            *auroc,
            "—" if r["threshold"] is None else fmt(r["threshold"], 3),
            _pct(r["accepted"]["held_out"]),
            *[_pct(v) for v in r["rejected"].values()],
        ]
    ]


def _footer(c: dict) -> list[str]:
    """What the calibration numbers say, as the lines printed after the table."""
    fit = c["fitted_on"]
    lines = [f"temperature T = {c['temperature']:.3f}, fitted by NLL on {fit['videos']} validation videos"]
    lines[0] += f" × {fit['views']} views"
    for name, what in (("val", "validation (where T was fitted)"), ("held_out", "held-out in-distribution")):
        e, n = c[name]["ece"], c[name]["nll"]
        lines.append(
            f"{what}: top-1 {100 * c[name]['accuracy']:.1f}%, ECE (15 bins) {100 * e['before']:.2f}% → "
            f"{100 * e['after']:.2f}%, NLL {n['before']:.4f} → {n['after']:.4f}"
        )
    return lines


# --------------------------------------------------------------------------- the subcommand


def _inputs(opts) -> tuple:
    """The checkpoint's model, preprocessing, validation and training sets, and the settings of its toy set; a
    checkpoint that is not an 8-class toy model, or whose data cannot be found → :class:`UsageError`."""
    model, classes, prep = load_model(opts.checkpoint)
    if classes != list(toy.CLASSES):
        raise UsageError(
            f"bench ood measures a model of the toy set's {len(toy.CLASSES)} classes (its out-of-distribution videos "
            f"are toy videos such a model never saw); {opts.checkpoint} has {len(classes)} classes "
            f"({', '.join(classes[:3])}{' …' if len(classes) > 3 else ''})"
        )
    ckpt = read_checkpoint(runs.checkpoint_path(opts.checkpoint, "--checkpoint"))
    try:
        val = dataset_from_checkpoint(ckpt, opts.data_root)
        train = dataset_from_checkpoint(ckpt, opts.data_root, split="train")  # (evaluation views, no augmentation)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    root = Path(opts.data_root or ckpt["args"]["data_root"])
    return model, prep, val, train, _toy_settings(root)


def run_ood(opts, argv: list[str]) -> dict:
    """The ``ood`` subcommand → its results (also printed: the table, then the calibration numbers)."""
    model, prep, val, train, like = _inputs(opts)
    device = views_device(opts, prep)
    model.to(device).eval()
    facts, t0 = machine_facts(argv, device), time.perf_counter()
    seed = like.seed + 1 + opts.seed  # never the seed of the toy set the model was trained and validated on
    if opts.real:  # files and folders → video files; what is not there is reported
        opts.real, missing = find_videos(opts.real)
        report_skipped(missing)
        if not opts.real:
            raise UsageError("--real names no video")
    kinds = (*KINDS, "real") if opts.real else KINDS
    settings = {"checkpoint": str(opts.checkpoint), "per_class": opts.per_class, "acceptance": opts.acceptance}
    result = {"benchmark": "ood", "machine": facts, "settings": settings | {"seed": seed}}
    result["notes"] = _notes(opts, model, prep, val, train, seed)
    with tempfile.TemporaryDirectory(prefix="minivb-ood-") as tmp:
        videos = make_videos(Path(tmp), like, opts.per_class, seed) | ({"real": opts.real} if opts.real else {})
        with LiveTable(result, headers(kinds), _cells, 3 + len(kinds), "set", left=2) as table:
            out, labels = _measure(model, {"train": train, "val": val}, videos, kinds, prep, opts, device, table)
            De, D = model.encoder.out_dim, model.config.dim
            logits = {name: o[..., De + D :] for name, o in out.items()}  # {set: (N, V, C)}
            c = calibration_numbers(logits["val"], labels["val"], logits["held_out"], labels["held_out"])
            for score, which in ROWS:
                table.add(score_row(score, c["temperature"] if which == "fitted" else which, logits, opts.acceptance))
            where = {"cls": slice(De, De + D), "regions": slice(0, De), "regions+cls": slice(0, De + D)}
            for score, feature, k in EMBEDDING_ROWS:
                features = {name: o[..., where[feature]] for name, o in out.items()}  # {set: (N, V, F)}
                fit = cal.fit_embeddings(features["train"], labels["train"])  # class means, precision, bank
                table.add(embedding_row(score, k, fit, features, opts.acceptance) | {"feature": feature})
            table.add(rule_row(out, labels, De + D, opts.acceptance))
    result["calibration"] = c
    footer = [*_footer(c), f"measured in {time.perf_counter() - t0:.1f} s"]
    print("", *[f"- {line}" for line in footer], sep="\n")
    return result


def rule_row(out: dict[str, torch.Tensor], labels: dict, width: int, acceptance: float) -> dict:
    """The last row: the checkpoint's two tests (:func:`~minivb.engine.confidence.fit_confidence` on the training
    and validation sets' features and logits ``out``, ``width`` = F), set for ``acceptance`` of the validation
    videos; a rule of two thresholds has no single score, so no AUROC."""
    record = fit_confidence((out["train"], labels["train"]), (out["val"], labels["val"]), width, "bench ood")
    passed = {name: record.judge(o, acceptance).accepted.double().mean().item() for name, o in out.items()}
    kinds = [k for k in out if k not in ("train", "val", "held_out")]
    return {
        "score": RULE,
        "temperature": record.temperature,
        "auroc": {k: None for k in kinds},
        "threshold": None,
        "thresholds": dict(zip(("distance", "confidence"), record.thresholds(acceptance))),
        "accepted": {"val": passed["val"], "held_out": passed["held_out"]},
        "rejected": {k: 1 - passed[k] for k in kinds},
    }


def _notes(opts, model, prep, val, train, seed: int) -> list[str]:
    """What the table measures, in words (printed above it)."""
    crops = f"{prep.crops} crop{'s' * (prep.crops > 1)}"
    return [
        f"checkpoint: {opts.checkpoint} ({prep.clips} clips × {crops} per video, {prep.num_frames} frames of "
        f"{prep.size}²); a video's score is the mean of its views' scores",
        f"in distribution: the {len(val.items)} validation videos (T and thresholds fitted there; acceptance "
        f"{opts.acceptance:g}) and {opts.per_class} × 8 held-out toy videos (seed {seed}; AUROC and acceptance)",
        f"out of distribution: rotation = {opts.per_class} × 2 toy --rotation videos; static = {opts.per_class} × 8 "
        "toy scenes, the middle frame repeated; noise = as many videos of uniform random pixels"
        + (f"; real = the {len(opts.real)} videos of --real" if opts.real else ""),
        f"embedding scores: each view's [CLS] state (dim {model.config.dim}), mean region feature (regions, dim "
        f"{model.encoder.out_dim}) or both; mahalanobis (shrinkage {cal.SHRINKAGE:g}) and knn fitted on the "
        f"{len(train.items)} training videos × {prep.clips * prep.crops} views",
        f"{RULE}: the checkpoint's record (minivb.engine.confidence): distance of regions+cls ≤ its threshold and "
        "msp at T ≥ its threshold, fitted together for the acceptance",
    ]


def _measure(model, splits: dict, videos: dict, kinds, prep, opts, device, table) -> tuple[dict, dict]:
    """Every set's features and logits ``{set: (N, V, F + C)}`` and the labels of the labelled sets ``{set: (N,)}``:
    the checkpoint's ``splits`` (``train``, ``val``: data sets), ``held_out`` and the ``kinds`` of ``videos``."""
    paths, names = zip(*videos["held_out"])
    sets = {name: ([it.path for it in data.items], data.labels) for name, data in splits.items()}
    sets["held_out"] = (list(paths), [toy.CLASSES.index(n) for n in names])
    sets |= {kind: (videos[kind], None) for kind in kinds}
    out, labels = {}, {}
    for name, (files, y) in sets.items():
        out[name], kept = _outputs(model, files, prep, opts, device)  # (N, V, F + C)
        if y is not None:
            labels[name] = torch.tensor(y)[kept]  # (N,)
        table.tick()
    return out, labels


def acceptance(text: str) -> float:
    """``--acceptance``: a share in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``ood`` subcommand and its options (``parents``: the shared options)."""
    o = sub.add_parser(
        "ood",
        parents=parents,
        help="How well each out-of-distribution score tells a toy model's classes from videos it never saw.",
        description="Fit a temperature and a threshold per out-of-distribution score (maximum softmax probability, "
        "max-logit, energy; Mahalanobis distance and k-nearest-neighbour cosine similarity of the [CLS] state and of "
        "the mean region feature, fitted on the training set) on a toy checkpoint's validation set, then measure each "
        "score's AUROC and rejection rate on videos the model never saw (the toy --rotation pair, static videos, "
        "noise, made in a temporary folder, and --real videos), the checkpoint's own two tests in the last row, and "
        "the expected calibration error before and after the temperature.",
    )
    add_checkpoint_option(o)
    o.add_argument("--data-root", help="the folder of the checkpoint's toy set (default: the one it was trained on)")
    o.add_argument(
        "--real",
        nargs="+",
        metavar="VIDEO",
        help="real videos (or folders of them) to add as one more kind, e.g. a few clips of your own",
    )
    o.add_argument(
        "--per-class",
        type=positive_int,
        default=24,
        help="held-out videos per class, and per class of the rotation pair (default: 24: 192 held-out, 48 "
        "rotation, 192 static, 192 noise)",
    )
    o.add_argument(
        "--acceptance",
        type=acceptance,
        default=0.95,
        help="share of the validation videos each threshold keeps (default: 0.95)",
    )
    o.add_argument("--batch-size", type=positive_int, default=4, help="videos per batch (default: 4)")
    o.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader worker processes (default: 0)")
    o.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto = cuda if available, else cpu (default: auto)"
    )
    return o
