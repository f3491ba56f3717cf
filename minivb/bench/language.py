"""``python -m minivb.bench language``: the VideoBERT paper's experiments on the toy set, each number measured here.

Pretraining runs (``python -m minivb.pretrain``, all on the same optical-flow visual words, no label anywhere), made
in ``--runs`` or reused from there when finished with the same options:

- ``prior``: ``--language prior``, the narrations alone (the language prior);
- ``video``: ``--language none --tokenizer flow``, the visual words alone (video cloze only; without the mirror
  images a visual-only run adds, so that it sees the joint run's clips and words);
- ``joint-P``: ``--language joint --limit N``, the joint model on P% of the training videos (``--fractions``);
- ``joint-100-strideS``: ``--language joint --max-stride S``, the paper's random pace of the visual sentence.

Table 1, zero-shot (the paper's Tables 1 and 2), from each run's summary.json: verb (motion) top-1 / top-5 and noun
top-1 with the fixed templates, text-to-video recall@10 and the share of the first ten with the narration's motion,
and the captions' BLEU-4, CIDEr-D and how often they name the motion (with the nearest-video baseline's).

Table 2, transfer: ``--labels`` labelled training videos per class (drawn per seed), a classifier fine-tuned on
the visual words — a WordBERT plus a linear layer on ``[CLS]``, started from the joint model's video half
(:func:`minivb.joint.video_half`), from the video-only run, or from scratch — for every seed of ``--seeds``: its
validation top-1, and the mean and standard deviation over the seeds.

Last, the ceiling: a classifier trained from scratch on every training video's words *with its label*, on the flow
words and on notebook 09's single-frame CNN words (a ``--language none --tokenizer cnn`` run, ``video-cnn``): the
most any pretraining on those words could give.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import registry
from ..engine.checkpoint import read_pretrained
from ..engine.pretraining import (
    check_options,
    clip_dataset,
    load_tokenizer,
    pretrain,
    pretrain_once,
    pretrain_options,
    tokenize_clips,
)
from ..joint import JointBERT, JointBERTConfig, video_half
from ..language import JointVocabulary
from ..plumbing.checks import UsageError
from ..plumbing.cli import positive_int
from ..pretraining import WordBERT, WordBERTConfig
from ..visual_words import HierarchicalKMeans
from .report import LiveTable, fmt, machine_facts

FINETUNE_LR = 1e-3  # the transfer classifier: full-batch AdamW, 60 steps
CEILING_STEPS = 300  # the classifier trained on every label


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``language`` subcommand and its options (``parents``: the shared options)."""
    o = sub.add_parser(
        "language",
        parents=parents,
        help="The VideoBERT paper's experiments on the toy set: zero-shot, data size, search, captions, transfer.",
        description="Pretrain the language prior, the video-only model and the joint model on fractions of the toy "
        "set's training videos (python -m minivb.pretrain, reusing finished runs in --runs), then print zero-shot "
        "verb and noun accuracy, text-to-video search, caption scores, and the 5-label transfer over seeds.",
    )
    o.add_argument("--data-root", default="data/toy", help="the toy set (made if missing; default: data/toy)")
    o.add_argument("--runs", default="runs/bench-language", help="where the pretraining runs go and are reused")
    o.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.1, 0.25, 0.5, 1.0],
        help="shares of the training videos the joint model sees (default: 0.1 0.25 0.5 1)",
    )
    o.add_argument("--seeds", type=positive_int, default=5, help="transfer: seeds 0 … N−1 (default: 5)")
    o.add_argument("--labels", type=positive_int, default=5, help="transfer: labelled videos per class (default: 5)")
    o.add_argument(
        "--max-stride",
        type=positive_int,
        default=3,
        help="one more joint run, on every training video, with the visual sentence at a random pace (every s-th "
        "word, s from 1 to MAX_STRIDE; 1: no such run; default: 3)",
    )
    o.add_argument("--epochs", type=positive_int, help="pretraining epochs of every run (default: the preset's)")
    return o


def _runs(opts) -> dict[str, dict]:
    """Run name → ``python -m minivb.pretrain`` options."""
    n = len(registry.get("toy").load(opts.data_root)[0]) if Path(opts.data_root).is_dir() else None
    base = dict(data_root=opts.data_root, seed=opts.seed) | ({"epochs": opts.epochs} if opts.epochs else {})
    video = base | dict(language="none", tokenizer="flow", flips=False)  # the joint run's clips and words, no text
    cnn = base | dict(language="none", tokenizer="cnn", flips=False)  # notebook 09's single-frame words
    runs = {"prior": base | dict(language="prior"), "video": video, "video-cnn": cnn}
    for share in sorted(set(opts.fractions)):
        limit = None if share == 1 or n is None else max(1, round(share * n))
        runs[f"joint-{round(100 * share)}"] = base | dict(language="joint") | ({"limit": limit} if limit else {})
    if opts.max_stride > 1:  # the paper's random pace of the visual sentence, on every training video
        runs[f"joint-100-stride{opts.max_stride}"] = base | dict(language="joint", max_stride=opts.max_stride)
    return runs


def _pretrained(out: Path, given: dict) -> dict:
    """The summary of the finished run in ``out`` made with ``given`` (reused, resumed, or trained now)."""
    if (out / "words.pt").is_file() and not (out / "pretrain.pt").is_file():
        return pretrain({"resume": str(out)}, log=None)
    try:
        return pretrain_once(given | {"out": str(out)}, log=None)
    except UsageError as e:  # said in pretrain's words (--out): say which of the bench's options it is about
        raise UsageError(
            f"--runs {out.parent}: {out.name} cannot be reused or made ({e}); delete {out}, or choose another --runs"
        ) from None


def _words(
    run: Path, train_items: list, val_items: list
) -> tuple[torch.Tensor, torch.Tensor, HierarchicalKMeans, dict]:
    """The run's visual words of the training and the validation items ``(N, T)``, its vocabulary, its checkpoint."""
    ckpt = read_pretrained(run / "pretrain.pt")
    encoder, vocabulary, opts = load_tokenizer(ckpt)
    ids = [
        tokenize_clips(encoder, vocabulary, clip_dataset(items, opts), opts, "cpu")
        for items in (train_items, val_items)
    ]
    return ids[0], ids[1], vocabulary, ckpt


def finetune(
    start: WordBERT, ids: torch.Tensor, labels: torch.Tensor, val_ids, val_labels, seed: int, steps: int = 60
) -> float:
    """``start`` + a linear layer on ``[CLS]``, every weight trained (full batch, ``steps`` AdamW steps) on ``ids``
    ``(N, T)`` → validation top-1."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(start.config.dim, int(labels.max()) + 1)
    params = [*start.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=FINETUNE_LR, weight_decay=0.05)
    start.train()
    for _ in range(steps):
        loss = F.cross_entropy(head(start.cls_state(ids)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    start.eval()
    with torch.no_grad():
        return float((head(start.cls_state(val_ids)).argmax(1) == val_labels).float().mean())


def _labelled(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """``per_class`` random indices of each class (by ``seed``), sorted."""
    g = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    return torch.cat([p[torch.randperm(len(p), generator=g)[:per_class]] for p in picks]).sort().values


def _zero_shot_cells(row: dict) -> list[list[str]]:
    s = row["summary"]
    verb, noun = s["zero_shot_verb"], s["zero_shot_noun"]
    t2v, caps = s.get("text_to_video"), s.get("captions")

    def pct(x):
        return "—" if x is None else fmt(100 * x, 1)

    cells = [row["run"], str(row["train_videos"]), pct(verb["top1"]), pct(verb["top5"]), pct(noun["top1"])]
    cells += [pct(t2v and t2v["recall@10"]), pct(t2v and t2v["same_motion@10"])]
    model = caps and caps["model"]
    cells += [pct(model and model["bleu4"]), fmt(model and model["cider"]), pct(model and model["says_the_motion"])]
    return [cells]


ZERO_SHOT = ["run", "train videos", "verb top-1 %", "verb top-5 %", "noun top-1 %", "t2v R@10 %", "same motion@10 %"]
ZERO_SHOT += ["BLEU-4 %", "CIDEr-D", "caption names the motion %"]


def _check(opts) -> None:
    """The options, before any work."""
    if any(not 0 < share <= 1 for share in opts.fractions):
        raise UsageError(f"--fractions must be in (0, 1], got {' '.join(map(str, opts.fractions))}")
    if 1 not in opts.fractions:  # the transfer compares the joint and the video-only runs on the same words
        raise UsageError("--fractions must include 1: the transfer starts from the joint run on every training video")


def run_language(opts, argv: list[str]) -> dict:
    """The ``language`` subcommand → its results (also printed: the two tables)."""
    _check(opts)
    registry.get("toy").prepare(opts.data_root)
    facts, t0 = machine_facts(argv), time.perf_counter()
    runs = _runs(opts)
    for given in runs.values():  # each run's options, checked as pretrain checks them, before any run starts
        check_options(pretrain_options(given)[1], torch.device("cpu"))
    out = Path(opts.runs)
    result = {"benchmark": "language", "machine": facts, "settings": {"runs": str(out), "data_root": opts.data_root}}
    result["notes"] = [
        "zero-shot: no label in pretraining; verb = the toy set's 8 motions (chance 12.5%), noun = the object's name",
        "video: the visual words alone, no text, so no zero-shot or captions (—)",
    ]
    summaries = {}
    with LiveTable(result, ZERO_SHOT, _zero_shot_cells, len(runs), "run") as table:
        for name, given in runs.items():
            summaries[name] = _pretrained(out / name, given)
            if not name.startswith("video"):
                table.add(dict(run=name, train_videos=summaries[name]["train_sequences"], summary=summaries[name]))
            table.tick()
    result["transfer"] = _transfer(opts, out / "joint-100", out / "video")
    for name, accs in result["transfer"]["accuracy"].items():
        mean, sd = result["transfer"]["mean"][name], result["transfer"]["std"][name]
        print(
            f"transfer ({opts.labels} labels per class) from {name}: {fmt(100 * mean, 1)} ± {fmt(100 * sd, 1)}% "
            f"(seeds: {', '.join(fmt(100 * a, 1) for a in accs)})"
        )
    result["ceiling"] = {kind: _ceiling(opts, out / run) for kind, run in (("cnn", "video-cnn"), ("flow", "video"))}
    print(
        "with every training label, a classifier on the words alone reaches "
        + ", ".join(f"{fmt(100 * a, 1)}% on {kind} words" for kind, a in result["ceiling"].items())
        + " (the most any pretraining on these words could give)"
    )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _ceiling(opts, run: Path) -> float:
    """Validation top-1 of a classifier trained from scratch on every training video's words (and label)."""
    train_items, val_items, _ = registry.get("toy").load(opts.data_root)
    classes = sorted({it.label for it in train_items})
    ids, val_ids, _, ckpt = _words(run, train_items, val_items)
    labels = torch.tensor([classes.index(it.label) for it in train_items])
    val_labels = torch.tensor([classes.index(it.label) for it in val_items])
    model = WordBERT(WordBERTConfig(**ckpt["config"]))
    return finetune(model, ids, labels, val_ids, val_labels, seed=0, steps=CEILING_STEPS)


def _transfer(opts, joint_run: Path, video_run: Path) -> dict:
    """Table 2: fine-tune from the joint run's video half, the video-only run, or scratch, per seed."""
    train_items, val_items, _ = registry.get("toy").load(opts.data_root)
    classes = sorted({it.label for it in train_items})
    labels = torch.tensor([classes.index(it.label) for it in train_items])
    val_labels = torch.tensor([classes.index(it.label) for it in val_items])
    ids, val_ids, vocabulary, ckpt = _words(joint_run, train_items, val_items)
    video_ckpt = read_pretrained(video_run / "pretrain.pt")
    theirs = HierarchicalKMeans.from_state_dict(video_ckpt["vocabulary"])
    if not all(torch.equal(a, b) for a, b in zip(theirs.centroids, vocabulary.centroids)):
        raise UsageError(f"{video_run} and {joint_run} have different visual words; pretrain both on the same data")
    joint = JointBERT(JointBERTConfig(**ckpt["joint"]["config"]))
    joint.load_state_dict(ckpt["joint"]["model"])
    voc = JointVocabulary(tuple(ckpt["joint"]["words"]), vocabulary.vocab_size)
    config = WordBERTConfig(**video_ckpt["config"])

    def start(name: str) -> WordBERT:
        if name == "joint":
            return video_half(joint, voc)
        model = WordBERT(config)
        if name == "video":
            model.load_state_dict(video_ckpt["model"])
        return model

    accuracy = {name: [] for name in ("joint", "video", "scratch")}
    for seed in range(opts.seeds):
        keep = _labelled(labels, opts.labels, seed)
        for name in accuracy:
            accuracy[name].append(finetune(start(name), ids[keep], labels[keep], val_ids, val_labels, seed))
    mean = {k: sum(v) / len(v) for k, v in accuracy.items()}
    std = {k: float(torch.tensor(v).std()) if len(v) > 1 else 0.0 for k, v in accuracy.items()}
    return dict(labels_per_class=opts.labels, seeds=opts.seeds, accuracy=accuracy, mean=mean, std=std)
