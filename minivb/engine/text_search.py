"""Text-to-video search with a joint pretraining run: ``python -m minivb.retrieve text "SENTENCE" --pretrained RUN``.

The run (``python -m minivb.pretrain --language joint``) holds everything: its tokenizer settings (optical flow or
the CNN, the clip's frames, the region grid), its vocabulary of visual words and the joint model with its words.
Every video becomes its visual sentence exactly as the run's validation videos did (the centre clip, the centre
square), and each (sentence, video) pair is scored by the alignment head on ``[CLS]``
(:func:`minivb.joint.alignment_scores`); the best scores come first.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..data.clips import Item
from ..joint import JointBERT, JointBERTConfig, alignment_scores
from ..language import UNK, JointVocabulary
from ..plumbing.checks import UsageError
from ..plumbing.samples import Skipped
from ..visual_words import HierarchicalKMeans
from .checkpoint import read_pretrained
from .pretraining import clip_dataset, load_tokenizer, tokenize_clips


def load_joint(run: str | Path) -> tuple[JointBERT, JointVocabulary, HierarchicalKMeans, nn.Module | None, dict]:
    """A ``--language joint`` run (its folder or ``pretrain.pt``) → (model, joint vocabulary, visual words, the
    tokenizer's CNN or None for optical flow, the run's options)."""
    path = Path(run) / "pretrain.pt" if Path(run).is_dir() else Path(run)
    try:
        ckpt = read_pretrained(path)
    except (ValueError, FileNotFoundError) as e:  # damaged, or not there (a folder without pretrain.pt)
        raise UsageError(str(e)) from None
    if ckpt.get("args", {}).get("language") != "joint":
        raise UsageError(
            f"{path} is not a --language joint run; pretrain one with python -m minivb.pretrain --language joint"
        )
    encoder, vocabulary, opts = load_tokenizer(ckpt)
    model = JointBERT(JointBERTConfig(**ckpt["joint"]["config"]))
    model.load_state_dict(ckpt["joint"]["model"])
    voc = JointVocabulary(tuple(ckpt["joint"]["words"]), vocabulary.vocab_size)
    return model.eval(), voc, vocabulary, encoder, opts


@torch.no_grad()
def visual_sentences(
    paths: list[str], vocabulary: HierarchicalKMeans, encoder: nn.Module | None, opts: dict
) -> tuple[torch.Tensor, list[str], list[Skipped]]:
    """Each video → its visual words, as the run tokenized its own: ``(ids (N, T), the paths read, the skipped)``."""
    skipped: list[Skipped] = []
    data = clip_dataset([Item(p, "video", None) for p in paths], opts, preload=False)  # any length: one clip each
    ids = tokenize_clips(encoder, vocabulary, data, opts, "cpu", skipped=skipped)  # (kept, T)
    gone = {s.path for s in skipped}
    return ids, [p for p in paths if p not in gone], skipped


def text_search(run: str | Path, sentence: str, paths: list[str], k: int) -> dict:
    """The ``k`` videos of ``paths`` whose visual sentence the run's model finds most likely narrated by
    ``sentence`` (lower-cased, punctuation dropped, as the narrations are) → dict(sentence, unknown words, results
    [{rank, path, probability}], skipped)."""
    model, voc, vocabulary, encoder, opts = load_joint(run)
    words = re.findall(r"[\w']+", sentence.lower())  # the narrations' form: lower case, no punctuation
    if not words:
        raise UsageError(f"the sentence {sentence!r} has no words; say what to look for, e.g. 'a ball slides left'")
    said = " ".join(words)
    unknown = [w for w, i in zip(words, voc.encode_text(said)) if i == UNK]
    if len(unknown) == len(words):
        raise UsageError(f"the model knows none of the words of {sentence!r}; it heard: {' '.join(voc.words[:12])} …")
    if len(words) > model.config.text_len:
        raise UsageError(f"the sentence has {len(words)} words; the model reads at most {model.config.text_len}")
    ids, kept, skipped = visual_sentences(paths, vocabulary, encoder, opts)
    scores = alignment_scores(model, voc, [said], ids)[0] if kept else torch.zeros(0)  # (N,)
    order = scores.argsort(descending=True)[:k].tolist()
    results = [dict(rank=r + 1, path=kept[j], probability=float(torch.sigmoid(scores[j]))) for r, j in enumerate(order)]
    return dict(sentence=sentence, unknown=unknown, results=results, skipped=skipped)
