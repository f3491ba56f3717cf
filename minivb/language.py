"""Built in notebook 10, §1. Words for the narrations, and one vocabulary for words and visual words.

VideoBERT reads what is said over a video and what is seen in it as one sentence:

    "We combine the linguistic sentence (derived from the video using ASR) with the visual sentence to generate
     data such as: [CLS] orange chicken with [MASK] sauce [>] v01 [MASK] v08 v72 [SEP], where v01 and v72 are
     visual tokens, and [>] is a special token we introduce to combine text and video sentences."
                                                                    — Sun et al. 2019, §3.2

The paper splits the speech into WordPieces with BERT's own 30,000-piece vocabulary. The toy narrations have about a
hundred words (:data:`minivb.data.toy.narration.VOCABULARY`), so a word-level tokenizer built from the training
narrations is enough and needs no download: :class:`WordTokenizer`. :class:`JointVocabulary` puts the special tokens,
the words and the visual words (:mod:`minivb.visual_words`) in one id space, one embedding table::

    ids   0 … 5            6 … 5 + W              6 + W … 5 + W + V
          [PAD] [CLS] [SEP] [>] [MASK] [UNK]   the text words (sorted)   the visual words v0 … v(V-1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import torch

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[>]", "[MASK]", "[UNK]")
PAD, CLS, SEP, TO_VIDEO, MASK, UNK = range(len(SPECIALS))  # their ids


class WordTokenizer:
    """Whitespace words ↔ ids ``0 … W-1`` for a fixed list of words (the order given is the ids' order).

    ``encode`` maps a word it does not know to ``None`` (the joint vocabulary turns it into [UNK]); ``decode`` is its
    inverse: ``decode(encode(text)) == " ".join(text.split())`` for every text made of known words (the text with
    its words one space apart).
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        bad = [w for w in words if not isinstance(w, str) or w.split() != [w]]  # one word: no whitespace in it
        if bad:
            raise ValueError(f"a word is a non-empty string without whitespace, got {bad[0]!r}")
        if len(set(words)) != len(words):
            raise ValueError("the words must be distinct")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, texts: Iterable[str]) -> "WordTokenizer":
        """Every distinct word of ``texts``, sorted: the same tokenizer whatever the order of ``texts``."""
        return cls(sorted({w for text in texts for w in text.split()}))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int | None]:
        return [self.index.get(w) for w in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[i] for i in ids)


@dataclass(frozen=True)
class JointVocabulary:
    """One id space for the special tokens, ``W`` text words and ``V`` visual words (module docstring)."""

    words: tuple[str, ...]  # the text words, in id order
    visual_words: int  # V

    def __post_init__(self):
        if not (isinstance(self.visual_words, int) and self.visual_words >= 0):
            raise ValueError(f"visual_words must be an int ≥ 0, got {self.visual_words!r}")
        object.__setattr__(self, "words", tuple(self.words))
        self.tokenizer  # checks the words

    @cached_property
    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer(self.words)

    @property
    def text_offset(self) -> int:
        return len(SPECIALS)

    @property
    def visual_offset(self) -> int:
        return len(SPECIALS) + len(self.words)

    def __len__(self) -> int:
        return self.visual_offset + self.visual_words

    def encode_text(self, text: str) -> list[int]:
        """A narration → its ids (an unknown word → [UNK])."""
        return [UNK if i is None else self.text_offset + i for i in self.tokenizer.encode(text)]

    def encode_video(self, visual_words: torch.Tensor) -> torch.Tensor:
        """Visual words ``(…, T)`` in ``0 … V-1`` → their ids ``(…, T)``."""
        if visual_words.numel() and not (0 <= int(visual_words.min()) and int(visual_words.max()) < self.visual_words):
            raise ValueError(f"visual words must be in 0 … {self.visual_words - 1}")
        return visual_words + self.visual_offset

    def token(self, i: int) -> str:
        """The readable name of id ``i``: a special token, a word, or ``v<k>`` for visual word k."""
        if not 0 <= i < len(self):
            raise ValueError(f"id {i} is not in the vocabulary (0 … {len(self) - 1})")
        if i < self.text_offset:
            return SPECIALS[i]
        return self.words[i - self.text_offset] if i < self.visual_offset else f"v{i - self.visual_offset}"

    def decode(self, ids: Iterable[int]) -> str:
        """Ids → tokens joined by spaces ([PAD] left out)."""
        return " ".join(self.token(int(i)) for i in ids if int(i) != PAD)
