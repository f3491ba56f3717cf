"""The language side of ``python -m minivb.pretrain --language prior|joint``: narrations in, the paper's tests out.

:mod:`minivb.engine.pretraining` runs the command (options, the run's folder, the tokenizer and the vocabulary, the
epochs, resume); this module supplies what the joint model adds. Where the narrations come from
(:func:`narrations_of`, the toy set's ``narrations.csv``), the model and its training pairs (:func:`build`, from
:mod:`minivb.language` and :mod:`minivb.joint`, built in notebook 10), an epoch's log line (:func:`epoch_row`), and,
when training ends, the measurements of the paper's §4 on the validation videos (:func:`assess`):

* zero-shot classification: which motion phrase (the toy set's "verbs", :data:`MOTION_PHRASES`) the model finds
  most likely in the fixed template ``"here the [MASK] [MASK] ⟨phrase as masks⟩"``, and which noun at the second
  mask of ``"here the [MASK] [MASK] [MASK] [MASK]"`` — top-1 and top-5, no label used in pretraining;
* text-to-video search: each validation narration ranks every validation video by ``align_head(H[CLS])``
  (recall@1/5/10 of its own video, and the share of the first ten that show the same motion);
* captions: :func:`~minivb.joint.caption` for every validation video, BLEU-4 and CIDEr-D against its narration
  and how often it names the video's motion, beside a baseline that reads the video's words only (the narration
  of the training video with the most visual words in common, position by position).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from ..caption_metrics import bleu, cider
from ..data.toy import read_index, scene_at
from ..data.toy.narration import (
    MOTION_PHRASES,
    NOUNS,
    config_of,
    facts,
    read_narrations,
    third_person,
    write_narrations,
)
from ..joint import (
    JointBERT,
    JointBERTConfig,
    JointExamples,
    JointLoss,
    alignment_scores,
    caption,
    evaluate_joint,
    masked_log_probs,
    phrase_scores,
)
from ..language import UNK, JointVocabulary, WordTokenizer
from ..plumbing.checks import UsageError

LANGUAGES = ("none", "prior", "joint")  # --language: visual words only; narrations only; both in one sequence
VERB_TEMPLATE = "here the [MASK] [MASK]"  # + one [MASK] per word of the phrase scored
NOUN_TEMPLATE = "here the [MASK] [MASK] [MASK] [MASK]"  # the noun at the second mask
RECALL_AT = (1, 5, 10)


def narrations_of(root: str | Path, items: list) -> list[str]:
    """The narration of every item (a video of the toy set under ``root``), in the items' order; written beside
    the index first if missing (:func:`~minivb.data.toy.narration.write_narrations`)."""
    root = Path(root)
    try:
        write_narrations(root)
    except ValueError as e:
        raise UsageError(f"--language needs narrations: {e}") from None
    said = {}
    for split in ("train", "val"):
        for row, text in zip(read_index(root, split), read_narrations(root, split)):
            said[str(root / row["path"])] = text
    missing = [it.path for it in items if it.path not in said]
    if missing:
        raise UsageError(f"{missing[0]} has no narration in {root / 'narrations.csv'}; make the toy set again")
    return [said[it.path] for it in items]


def build(
    visual_words: int, train_texts: list, val_texts: list, train_ids, val_ids, opts: dict
) -> tuple[JointVocabulary, JointBERT, JointExamples, JointExamples, JointLoss]:
    """The joint vocabulary (the training narrations' words + the visual words), the model (text slots: the
    longest narration) and the training and validation pairs (no videos for ``--language prior``)."""
    vocabulary = JointVocabulary(WordTokenizer.build(train_texts).words, visual_words)
    text_len = max(len(t.split()) for t in [*train_texts, *val_texts])
    config = JointBERTConfig(len(vocabulary), text_len, train_ids.shape[1], opts["dim"], opts["depth"], opts["heads"])
    torch.manual_seed(opts["seed"])
    model = JointBERT(config)
    prior = opts["language"] == "prior"

    def pairs(texts, ids, train: bool) -> JointExamples:
        encoded, videos = [vocabulary.encode_text(t) for t in texts], None if prior else ids
        stride = opts["max_stride"] if train else 1  # the paper's subsampling of the visual sentence, in training
        return JointExamples(encoded, videos, vocabulary, config, seed=opts["seed"], train=train, max_stride=stride)

    return vocabulary, model, pairs(train_texts, train_ids, True), pairs(val_texts, val_ids, False), JointLoss(config)


def epoch_row(model: JointBERT, val_loader, device, train_loss: float, epoch: int, epochs: int, log) -> dict:
    """An epoch's history row (training loss, validation loss, the three objectives' accuracies) and its log line."""
    val = evaluate_joint(model, val_loader, device)
    row = dict(epoch=epoch + 1, train_loss=train_loss, val_loss=val["loss"]) | {
        k: v for k, v in val.items() if k != "loss"
    }
    shown = [f"{name} {100 * row[key]:5.1f}%" for name, key in _ACCURACIES if row[key] is not None]
    log(f"epoch {epoch + 1:>3}/{epochs}  loss {train_loss:.4f}  val loss {val['loss']:.4f}  " + "  ".join(shown))
    return row


_ACCURACIES = (("text cloze", "text_top1"), ("video cloze", "video_top1"), ("alignment", "align_accuracy"))


@torch.no_grad()
def assess(
    model: JointBERT,
    vocabulary: JointVocabulary,
    opts: dict,
    train_texts: list,
    train_ids: torch.Tensor,
    val_items: list,
    val_texts: list,
    val_ids: torch.Tensor,
) -> dict:
    """The paper's §4 on the validation videos (module docstring) → dict for summary.json."""
    classes = sorted({it.label for it in val_items})
    labels = torch.tensor([classes.index(it.label) for it in val_items])  # (N,)
    videos = None if opts["language"] == "prior" else val_ids  # the prior hears the template alone
    out = _zero_shot(model, vocabulary, videos, labels, classes, _nouns_of(Path(opts["data_root"]), val_items))
    if videos is None:
        return out
    return out | _search_and_captions(model, vocabulary, train_texts, train_ids, val_items, val_texts, val_ids, classes)


def _nouns_of(root: Path, val_items: list) -> list[str]:
    """What each validation video's object is (:data:`NOUNS`' keys), from its scene."""
    config = config_of(root)
    index = {str(root / row["path"]): i for i, row in enumerate(read_index(root, "val"))}
    return [facts(scene_at(config, "val", index[it.path])).noun for it in val_items]


def _zero_shot(model, vocabulary, videos, labels: torch.Tensor, classes: list[str], truth: list[str]) -> dict:
    """Zero-shot verb (each class's best phrase in :data:`VERB_TEMPLATE`) and noun (the second mask of
    :data:`NOUN_TEMPLATE`, each object's best name): top-1 and top-5."""
    n = len(labels)

    def heard(text: str) -> bool:  # every word of it was in the training narrations (none read as [UNK])
        return UNK not in vocabulary.encode_text(text)

    phrases = [(c, third_person(p)) for c in classes for p in MOTION_PHRASES.get(c, ()) if heard(third_person(p))]
    scores = phrase_scores(model, vocabulary, VERB_TEMPLATE, [p for _, p in phrases], videos).expand(n, -1)
    of = [[i for i, (c, _) in enumerate(phrases) if c == k] for k in classes]  # each class's phrases
    per_class = _best_of(scores, of)  # (N, classes)
    nouns = sorted(set(truth))
    logp = masked_log_probs(model, vocabulary, NOUN_TEMPLATE, videos)[:, 1].expand(n, -1)  # (N, vocab)
    named = [[vocabulary.encode_text(w)[0] for w in NOUNS[k] if heard(w)] for k in nouns]  # each noun's words
    per_noun = _best_of(logp, named)  # (N, nouns)
    truth_ids = torch.tensor([nouns.index(t) for t in truth])
    return dict(
        zero_shot_verb=_topk(per_class, labels),
        verb_classes=len(classes),
        zero_shot_noun=_topk(per_noun, truth_ids),
        noun_classes=len(nouns),
        unheard=[k for k, ids in zip(classes, of) if not ids] + [k for k, ids in zip(nouns, named) if not ids],
    )


def _best_of(scores: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """``scores`` ``(N, K)`` → each group's best column ``(N, groups)``; a group with no column (its words never
    heard in training, so it cannot be asked about) scores −∞: never chosen, and listed as ``unheard``."""
    empty = torch.full((len(scores),), -torch.inf)
    return torch.stack([scores[:, ids].max(1).values if ids else empty for ids in groups], 1)


def _search_and_captions(model, vocabulary, train_texts, train_ids, val_items, val_texts, val_ids, classes) -> dict:
    """Text-to-video search and captions on the validation videos (the module docstring says how)."""
    out, n = {}, len(val_items)
    labels = torch.tensor([classes.index(it.label) for it in val_items])  # (N,)
    # text-to-video search: each narration ranks every video
    s = alignment_scores(model, vocabulary, val_texts, val_ids)  # (N texts, N videos)
    rank = (s >= s.diag()[:, None]).sum(1) - 1  # (N,) other videos scored at least as high as the narration's own
    out["text_to_video"] = {f"recall@{k}": float((rank < k).float().mean()) for k in RECALL_AT}
    top = s.topk(min(10, n), 1).indices  # (N, 10) each narration's first ten videos
    out["text_to_video"]["same_motion@10"] = float((labels[top] == labels[:, None]).float().mean())

    # captions, and the baseline that reads only the visual words
    length = Counter(len(t.split()) for t in train_texts).most_common(1)[0][0]
    said = caption(model, vocabulary, val_ids, length)
    nearest = (val_ids[:, None, :] == train_ids[None, :, :]).sum(-1).argmax(1)  # (N,) most words in common
    baseline = [train_texts[j] for j in nearest.tolist()]
    refs = [[t] for t in val_texts]
    out["captions"] = dict(
        length=length,
        model=_caption_scores(said, refs, labels, classes),
        nearest_video=_caption_scores(baseline, refs, labels, classes),
        examples=[
            dict(video=Path(it.path).name, said=c, narration=t) for it, c, t in zip(val_items[:4], said, val_texts)
        ],
    )
    return out


def _caption_scores(said: list[str], refs: list[list[str]], labels: torch.Tensor, classes: list[str]) -> dict:
    """BLEU-4 and CIDEr-D against the narrations, and how often the caption says one of the video's own motion
    phrases (the words a colour-blind, shape-blind motion vocabulary can get right)."""
    phrases = [[third_person(p) for p in MOTION_PHRASES.get(c, ())] for c in classes]
    motion = [any(f" {p} " in f" {text} " for p in phrases[y]) for text, y in zip(said, labels.tolist())]
    return dict(bleu4=bleu(said, refs), cider=cider(said, refs), says_the_motion=sum(motion) / max(len(said), 1))


def _topk(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 and top-5 accuracy of ``scores (N, K)``; a class scored −∞ (never heard, :func:`_best_of`) is never
    counted as named, not even when fewer than five classes could be."""
    top = scores.topk(min(5, scores.shape[1]), 1).indices  # (N, k)
    named = (top == labels[:, None]) & scores.gather(1, top).isfinite()  # (N, k)
    return dict(top1=float(named[:, 0].float().mean()), top5=float(named.any(1).float().mean()))
