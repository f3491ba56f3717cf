"""Built in notebook 10, §3–5. VideoBERT's joint model: narration and visual words in one BERT.

    "[CLS] orange chicken with [MASK] sauce [>] v01 [MASK] v08 v72 [SEP] ... The model is trained with the
     linguistic-visual alignment task, where we use the final hidden state of the [CLS] token to predict whether
     the linguistic sentence is temporally aligned with the visual sentence."          — Sun et al. 2019, §3.2

One sequence, laid out in fixed slots (``text_len`` for the words, ``video_len`` for the visual words)::

    position  0      1 … text_len         1 + text_len   2 + text_len … 1 + text_len + video_len   last
    token     [CLS]  the narration, [PAD]  [>]            the visual words (or [PAD] with no video)  [SEP]
    segment   0      0                    0              1                                          1

    H₀ = E_token(id) + E_position(i) + E_segment(s)          (:meth:`JointBERT.initial_state`, BERT's input)
    H  = Transformer(H₀) with [PAD] keys masked out           (:class:`~minivb.transformer.Transformer`)

and three objectives on H (:class:`JointLoss`): text cloze and video cloze (BERT's masking,
:func:`~minivb.pretraining.mask_tokens`, on each modality's own words) and the alignment of ``[CLS]``: half of the
training pairs get another video's narration, and ``align_head(H[CLS])`` learns which. With no video (``[PAD]`` in
its slots) the same model is a BERT over the narrations alone: the *language prior* baseline.

What the model knows is read with masks (§5): :func:`phrase_scores` asks how likely each candidate phrase is in a
fixed template ("here the [MASK] [MASK] ⟨phrase⟩", the paper's zero-shot "now let me show you how to [MASK] the
[MASK]"), :func:`alignment_scores` scores every (narration, video) pair for text-to-video search, and
:func:`caption` fills a row of masks one word at a time, the surest first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .language import CLS, MASK, PAD, SEP, TO_VIDEO, UNK, JointVocabulary
from .model import EMBED_STD, adamw
from .plumbing.checks import check_int, check_transformer
from .plumbing.samples import sample_seed
from .pretraining import IGNORE_INDEX, WordBERT, WordBERTConfig, mask_tokens
from .transformer import Transformer

_PAIR_STREAM = 13  # domain tag for sample_seed (minivb.pretraining uses 11, minivb.visual_words 12)
MISALIGNED = 0.5  # the share of training pairs whose narration belongs to another video


# --------------------------------------------------------------------------- the sequence


@dataclass
class JointBERTConfig:
    """Everything needed to rebuild a :class:`JointBERT`. vocab_size: ``len(JointVocabulary)``."""

    vocab_size: int
    text_len: int = 16
    video_len: int = 8
    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "text_len", "video_len", "dim", "depth", "num_heads"):
            setattr(self, name, check_int(name, getattr(self, name)))
        check_transformer(self.dim, self.num_heads, self.mlp_ratio, self.dropout)

    @property
    def seq_len(self) -> int:
        return self.text_len + self.video_len + 3  # [CLS] text [>] video [SEP]

    @property
    def separator(self) -> int:
        """The position of ``[>]``."""
        return 1 + self.text_len

    def text_positions(self) -> slice:
        return slice(1, self.separator)

    def video_positions(self) -> slice:
        return slice(self.separator + 1, self.separator + 1 + self.video_len)

    def segments(self) -> torch.Tensor:
        """``(seq_len,)``: 0 for ``[CLS]``, the text and ``[>]``; 1 for the video and ``[SEP]``."""
        return (torch.arange(self.seq_len) > self.separator).long()

    def to_dict(self) -> dict:
        return asdict(self)


def pack(text_ids: Sequence[int], video_ids: torch.Tensor | None, config: JointBERTConfig) -> torch.Tensor:
    """``[CLS] text [>] video [SEP]`` in the fixed slots → ids ``(seq_len,)`` long. ``text_ids`` and ``video_ids``
    (at most ``video_len``; the slots left are [PAD]) are ids of the joint vocabulary; ``video_ids=None``: no
    video ([PAD] in its slots)."""
    if len(text_ids) > config.text_len:
        raise ValueError(f"the narration has {len(text_ids)} words; the model's text slots hold {config.text_len}")
    ids = torch.full((config.seq_len,), PAD, dtype=torch.long)
    ids[0], ids[config.separator], ids[-1] = CLS, TO_VIDEO, SEP
    ids[1 : 1 + len(text_ids)] = torch.as_tensor(list(text_ids), dtype=torch.long)
    if video_ids is not None:
        if video_ids.ndim != 1 or len(video_ids) > config.video_len:
            raise ValueError(f"the video must be ≤ {config.video_len} visual words, got shape {tuple(video_ids.shape)}")
        start = config.separator + 1
        ids[start : start + len(video_ids)] = video_ids
    return ids


# --------------------------------------------------------------------------- the model


class JointBERT(nn.Module):
    """A BERT over ``[CLS] text [>] video [SEP]``: ``forward(ids (B, L))`` → ``(token logits (B, L, vocab),
    alignment logit (B,))``.

    ``token_embed`` (one row per id of the joint vocabulary), ``pos_embed`` ``(L, dim)``, ``segment_embed``
    ``(2, dim)``, all trunc-normal with ``EMBED_STD`` as in :class:`~minivb.model.VideoBERT`; minivb's
    ``transformer``; ``token_head`` (dim → vocab) for both clozes; ``align_head`` (dim → 1) on ``[CLS]``.
    """

    def __init__(self, config: JointBERTConfig):
        super().__init__()
        if not isinstance(config, JointBERTConfig):
            raise ValueError(f"config must be a JointBERTConfig, got {type(config).__name__}")
        c = self.config = config
        self.token_embed = nn.Embedding(c.vocab_size, c.dim)
        self.pos_embed = nn.Parameter(torch.zeros(c.seq_len, c.dim))
        self.segment_embed = nn.Embedding(2, c.dim)
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = Transformer(c.dim, c.depth, c.num_heads, c.mlp_ratio, c.dropout)
        self.token_head = nn.Linear(c.dim, c.vocab_size)
        self.align_head = nn.Linear(c.dim, 1)
        self.register_buffer("segments", c.segments(), persistent=False)  # (L,)
        for p in (self.token_embed.weight, self.pos_embed, self.segment_embed.weight):
            nn.init.trunc_normal_(p, std=EMBED_STD)

    def initial_state(self, ids: torch.Tensor) -> torch.Tensor:
        """H₀ = E_token + E_position + E_segment: ids ``(B, L)`` → ``(B, L, dim)``."""
        if ids.ndim != 2 or ids.shape[1] != self.config.seq_len:
            raise ValueError(f"ids must be shaped (B, {self.config.seq_len}), got {tuple(ids.shape)}")
        return self.token_embed(ids) + self.pos_embed + self.segment_embed(self.segments)  # (B, L, dim)

    def hidden_states(
        self, ids: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """H ``(B, L, dim)`` (``[PAD]`` keys masked out) and, if ``need_weights``, every layer's attention."""
        return self.transformer(self.dropout(self.initial_state(ids)), ids != PAD, need_weights)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.hidden_states(ids)  # (B, L, dim)
        return self.token_head(h), self.align_head(h[:, 0]).squeeze(-1)  # (B, L, vocab), (B,)

    def configure_optimizers(self, lr: float, weight_decay: float, *, fused: bool = False) -> torch.optim.AdamW:
        """AdamW as :meth:`VideoBERT.configure_optimizers`: no weight decay on embeddings, norms and biases."""
        embeddings = {"token_embed.weight", "pos_embed", "segment_embed.weight"}
        return adamw(self, lr, weight_decay, embeddings, fused=fused)


@torch.no_grad()
def video_half(model: JointBERT, vocabulary: JointVocabulary) -> WordBERT:
    """The joint model's video side as a :class:`~minivb.pretraining.WordBERT` (``[CLS]`` then the visual words,
    no text): ``word_embed`` = a visual word's (and [MASK]'s) token row + segment 1, ``time_embed`` = the video
    slots' positions, ``cls_token`` = ``[CLS]``'s H₀ row; the same Transformer. A classifier on visual words starts
    from it as from a visual-only pretraining run (``python -m minivb.bench language``'s transfer)."""
    c, V = model.config, vocabulary.visual_words
    words = WordBERT(WordBERTConfig(V, c.video_len, c.dim, c.depth, c.num_heads, c.mlp_ratio, c.dropout))
    rows = torch.cat([torch.arange(vocabulary.visual_offset, len(vocabulary)), torch.tensor([MASK])])  # (V + 1,)
    seg = model.segment_embed.weight  # (2, dim)
    words.word_embed.weight.copy_(model.token_embed.weight[rows] + seg[1])
    words.time_embed.copy_(model.pos_embed[c.video_positions()])
    words.cls_token.copy_((model.token_embed.weight[CLS] + model.pos_embed[0] + seg[0]).view(1, 1, -1))
    words.transformer.load_state_dict(model.transformer.state_dict())
    return words.to(model.pos_embed.device)


# --------------------------------------------------------------------------- training pairs


def mask_span(ids: torch.Tensor, low: int, high: int, *, generator: torch.Generator, p: float = 0.15):
    """BERT's masking (:func:`~minivb.pretraining.mask_tokens`) of one modality: ids ``(n,)`` in ``low … high-1``
    → ``(inputs (n,), targets (n,))``; a random replacement is a word of the same modality. Nothing to mask
    (``n = 0``): both empty."""
    if len(ids) == 0:
        return ids.clone(), ids.clone()
    inputs, targets = mask_tokens((ids - low)[None], high - low, generator=generator, p=p)  # local ids 0 … high-low-1
    inputs = torch.where(inputs == high - low, MASK, inputs + low)[0]  # local [MASK] → the joint [MASK]
    targets = torch.where(targets == IGNORE_INDEX, IGNORE_INDEX, targets + low)[0]
    return inputs, targets


class JointExamples(Dataset):
    """Narrations and visual sentences → ``(inputs (L,), targets (L,))`` for :class:`JointLoss`.

    ``texts``: each clip's narration as joint ids; ``videos`` ``(N, video_len)``: its visual words (``0 … V-1``),
    or ``None`` for the language prior. Sample ``i`` of an epoch (``dataset[(epoch, i)]``, or ``dataset[i]`` with
    :meth:`set_epoch`): with probability ``misaligned`` (videos only) the narration of another clip, uniformly;
    otherwise its own. Both modalities are masked either way (or the masks alone would give the pairs away), but
    only an aligned pair's masked words are targets (a misaligned narration does not describe the video, so neither
    cloze could be answered from the other side). ``targets[0]`` (the ``[CLS]`` slot) is the alignment label: 1
    aligned, 0 not, :data:`IGNORE_INDEX` without video.

    The paper's trick against pace: "we randomly pick a subsampling rate of 1 to 5 steps for the video tokens" —
    with ``max_stride`` > 1, a training pair's visual sentence is every ``s``-th word, ``s`` uniform in
    ``1 … max_stride``, from a random offset below ``s`` (the slots left are [PAD]). Every draw comes from
    ``sample_seed(13, seed, epoch, i)``; ``train=False`` always uses epoch 0's draws and the whole sentence.
    """

    def __init__(
        self,
        texts: Sequence[Sequence[int]],
        videos: torch.Tensor | None,
        vocabulary: JointVocabulary,
        config: JointBERTConfig,
        *,
        seed: int = 0,
        train: bool = True,
        misaligned: float = MISALIGNED,
        max_stride: int = 1,
    ):
        if videos is not None and (videos.ndim != 2 or len(videos) != len(texts)):
            raise ValueError(f"videos must be shaped ({len(texts)}, video_len), got {tuple(videos.shape)}")
        if not 0 <= misaligned < 1:
            raise ValueError(f"misaligned must be in [0, 1), got {misaligned!r}")
        self.texts = [torch.as_tensor(list(t), dtype=torch.long) for t in texts]
        self.videos = None if videos is None else vocabulary.encode_video(videos.long().cpu())
        self.vocabulary, self.config, self.seed, self.train = vocabulary, config, int(seed), bool(train)
        self.misaligned, self.epoch = float(misaligned), 0
        self.max_stride = check_int("max_stride", max_stride)
        if videos is not None and self.max_stride > videos.shape[1]:  # an offset past the end: no video at all
            raise ValueError(
                f"max_stride must be at most the visual sentence's {videos.shape[1]} words, got {max_stride}"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = (int(i[0]), int(i[1])) if isinstance(i, tuple) else (self.epoch, int(i))
        g = torch.Generator().manual_seed(sample_seed(_PAIR_STREAM, self.seed, epoch if self.train else 0, i))
        c, voc, N = self.config, self.vocabulary, len(self.texts)
        text, video = self.texts[i], None if self.videos is None else self.videos[i]
        if video is not None and self.train and self.max_stride > 1:  # the visual sentence at another pace
            stride = 1 + int(torch.randint(self.max_stride, (1,), generator=g))
            video = video[int(torch.randint(stride, (1,), generator=g)) :: stride]
        aligned = video is None or N < 2 or float(torch.rand(1, generator=g)) >= self.misaligned
        if not aligned:  # another clip's narration: j ≠ i, uniformly
            j = int(torch.randint(N - 1, (1,), generator=g))
            text = self.texts[j + (j >= i)]
        inputs, targets = pack(text, video, c), torch.full((c.seq_len,), IGNORE_INDEX, dtype=torch.long)
        t_in, t_tgt = mask_span(text, voc.text_offset, voc.visual_offset, generator=g)
        inputs[1 : 1 + len(text)] = t_in
        if video is not None:
            v_in, v_tgt = mask_span(video, voc.visual_offset, len(voc), generator=g)
            inputs[c.separator + 1 : c.separator + 1 + len(video)] = v_in
        if aligned:  # (a misaligned pair is masked too, or the masks alone would tell the pairs apart)
            targets[1 : 1 + len(text)] = torch.where(text != UNK, t_tgt, IGNORE_INDEX)  # (an unknown word: no target)
            if video is not None:
                targets[c.separator + 1 : c.separator + 1 + len(video)] = v_tgt
        if video is not None:
            targets[0] = int(aligned)
        return inputs, targets


# --------------------------------------------------------------------------- the three objectives


def joint_losses(outputs: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor, config: JointBERTConfig) -> dict:
    """The three objectives → dict(text, video, align)::

        text  = −mean log p(word | context)          over the masked text positions
        video = −mean log p(visual word | context)   over the masked video positions
        align = −mean [y log σ(s) + (1 − y) log(1 − σ(s))],  s = align_head(H[CLS]),  over pairs with a video

    Each is a mean over its own items, 0 (not NaN) where there are none. :class:`JointLoss` adds them.
    """
    logits, align = outputs  # (B, L, vocab), (B,)

    def cloze(part: slice) -> torch.Tensor:
        t = targets[:, part]  # (B, n)
        total = F.cross_entropy(logits[:, part].flatten(0, 1), t.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (t != IGNORE_INDEX).sum().clamp(min=1)

    y, has = targets[:, 0].float(), targets[:, 0] != IGNORE_INDEX  # (B,) alignment labels
    bce = F.binary_cross_entropy_with_logits(align[has], y[has], reduction="sum") / has.sum().clamp(min=1)
    return dict(text=cloze(config.text_positions()), video=cloze(config.video_positions()), align=bce)


class JointLoss(nn.Module):
    """``text + video + align`` (:func:`joint_losses`): ``(outputs, targets (B, L))`` → scalar."""

    def __init__(self, config: JointBERTConfig):
        super().__init__()
        self.config = config

    def forward(self, outputs: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return sum(joint_losses(outputs, targets, self.config).values())


@torch.no_grad()
def evaluate_joint(model: JointBERT, loader, device: torch.device | str = "cpu") -> dict:
    """Over a loader of ``(inputs, targets, _)`` batches → dict(loss, text_top1, video_top1, align_accuracy): the
    loss is :func:`joint_losses`' three means taken over the whole set (not a mean of batches' means, which would
    depend on the batch size), each accuracy over its own items (``None`` where there are none)."""
    was_training = model.training
    model.eval()
    # for each objective: right answers ("text"), items scored ("text_n"), summed loss ("text_loss")
    sums = {f"{name}{what}": 0.0 for name in ("text", "video", "align") for what in ("", "_n", "_loss")}
    c = model.config
    for inputs, targets, _ in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        logits, align = (x.float() for x in model(inputs))
        losses = joint_losses((logits, align), targets, c)  # each a mean over this batch's items of its kind
        for name, part in (("text", c.text_positions()), ("video", c.video_positions())):
            t, chosen = targets[:, part], targets[:, part] != IGNORE_INDEX
            sums[name] += int((logits[:, part].argmax(-1)[chosen] == t[chosen]).sum())
            sums[f"{name}_n"] += int(chosen.sum())
            sums[f"{name}_loss"] += float(losses[name]) * int(chosen.sum())
        has = targets[:, 0] != IGNORE_INDEX
        sums["align"] += int(((align[has] > 0).long() == targets[has, 0]).sum())
        sums["align_n"] += int(has.sum())
        sums["align_loss"] += float(losses["align"]) * int(has.sum())
    model.train(was_training)

    def share(name: str, what: str = ""):
        return sums[name + what] / sums[f"{name}_n"] if sums[f"{name}_n"] else None

    loss = sum(share(name, "_loss") or 0.0 for name in ("text", "video", "align"))  # 0 for a kind with no items
    return dict(loss=loss, text_top1=share("text"), video_top1=share("video"), align_accuracy=share("align"))


# --------------------------------------------------------------------------- asking the model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _rows(text_ids: Sequence[int], videos: torch.Tensor | None, vocabulary, config, n: int) -> torch.Tensor:
    """``n`` sequences of the same text, one per video (or ``n = 1`` and no video) → ids ``(n, L)``."""
    if videos is None:
        return pack(text_ids, None, config)[None].expand(n, -1)
    if not len(videos):
        return torch.zeros(0, config.seq_len, dtype=torch.long)
    return torch.stack([pack(text_ids, v, config) for v in vocabulary.encode_video(videos.long().cpu())])


@torch.no_grad()
def masked_log_probs(
    model: JointBERT, vocabulary: JointVocabulary, text: str, videos: torch.Tensor | None, batch: int = 512
) -> torch.Tensor:
    """``log p(token | text, video)`` at each ``[MASK]`` of ``text`` (say ``"here the [MASK] [MASK]"``), for every
    video ``(N, video_len)`` (visual words) or, ``videos=None``, for the text alone → ``(N or 1, masks, vocab)``."""
    model.eval()
    text_ids = [MASK if w == "[MASK]" else vocabulary.encode_text(w)[0] for w in text.split()]
    where = [1 + k for k, i in enumerate(text_ids) if i == MASK]  # positions of the masks
    n = 1 if videos is None else len(videos)
    ids = _rows(text_ids, videos, vocabulary, model.config, n)  # (N, L)
    out = [
        model(ids[s : s + batch].to(_device(model)))[0][:, where].float().log_softmax(-1) for s in range(0, n, batch)
    ]
    return torch.cat(out).cpu() if out else torch.zeros(0, len(where), len(vocabulary))


@torch.no_grad()
def phrase_scores(
    model: JointBERT, vocabulary: JointVocabulary, prefix: str, phrases: Sequence[str], videos: torch.Tensor | None
) -> torch.Tensor:
    """How likely each phrase is after ``prefix``, for every video → ``(N or 1, len(phrases))``.

    For a phrase of ``k`` words the text is ``prefix`` followed by ``k`` masks, all masked at once; the score is
    the mean of ``log p(wordᵢ)`` at the i-th mask (a mean, so that long and short phrases compare)."""
    if any(not p.split() for p in phrases):
        raise ValueError(f"every phrase needs a word; got {[p for p in phrases if not p.split()][0]!r}")
    scores = torch.zeros(1 if videos is None else len(videos), len(phrases))
    for k in sorted({len(p.split()) for p in phrases}):
        logp = masked_log_probs(model, vocabulary, prefix + " [MASK]" * k, videos)[:, -k:]  # (N, k, vocab)
        for j, phrase in enumerate(phrases):
            ids = vocabulary.encode_text(phrase)
            if len(ids) == k:
                scores[:, j] = logp[:, torch.arange(k), torch.tensor(ids)].mean(1)
    return scores


@torch.no_grad()
def alignment_scores(
    model: JointBERT, vocabulary: JointVocabulary, texts: Sequence[str], videos: torch.Tensor, batch: int = 1024
) -> torch.Tensor:
    """``align_head(H[CLS])`` for every (narration, video) pair → ``(len(texts), N)`` logits (higher: more likely
    the narration of that video). Text-to-video search ranks a row; video-to-text a column."""
    model.eval()
    c = model.config
    video_ids = vocabulary.encode_video(videos.long().cpu())  # (N, T)
    pairs = [(t, v) for t in range(len(texts)) for v in range(len(videos))]
    text_ids = [vocabulary.encode_text(t) for t in texts]
    out = []
    for s in range(0, len(pairs), batch):
        ids = torch.stack([pack(text_ids[t], video_ids[v], c) for t, v in pairs[s : s + batch]])
        out.append(model(ids.to(_device(model)))[1].float().cpu())
    return torch.cat(out).view(len(texts), len(videos)) if out else torch.zeros(len(texts), len(videos))


@torch.no_grad()
def caption(model: JointBERT, vocabulary: JointVocabulary, videos: torch.Tensor, length: int) -> list[str]:
    """A caption of ``length`` words for every video ``(N, video_len)``, by filling masks (mask-predict): start from
    ``length`` masks; at each step predict every remaining mask and keep the surest one (text words only)."""
    model.eval()
    length = check_int("length", length)
    c, words = model.config, slice(vocabulary.text_offset, vocabulary.visual_offset)
    ids = _rows([MASK] * length, videos, vocabulary, c, len(videos)).clone().to(_device(model))  # (N, L)
    rows = torch.arange(len(ids), device=ids.device)
    for _ in range(length):
        logp = model(ids)[0][:, 1 : 1 + length, words].float().log_softmax(-1)  # (N, length, W)
        best, word = logp.max(-1)  # (N, length)
        best = best.masked_fill(ids[:, 1 : 1 + length] != MASK, -torch.inf)  # only masks still open
        pos = best.argmax(1)  # (N,) the surest open mask
        ids[rows, 1 + pos] = word[rows, pos] + vocabulary.text_offset
    return [vocabulary.decode(row[1 : 1 + length].tolist()) for row in ids.cpu()]
