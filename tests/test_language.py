"""The word tokenizer and the joint vocabulary (minivb.language, notebook 10 §1)."""

import pytest
import torch

from minivb.language import CLS, MASK, PAD, SEP, SPECIALS, TO_VIDEO, UNK, JointVocabulary, WordTokenizer

TEXTS = ["the red ball slides to the right", "um a big box grows", "watch the ball fall down quickly"]


def test_tokenizer_is_sorted_and_independent_of_the_order_of_the_texts():
    tok = WordTokenizer.build(TEXTS)
    assert tok.words == sorted({w for t in TEXTS for w in t.split()})
    assert WordTokenizer.build(reversed(TEXTS)).words == tok.words
    assert len(tok) == len(set(" ".join(TEXTS).split()))


def test_tokenizer_round_trip_and_unknown_words():
    tok = WordTokenizer.build(TEXTS)
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(isinstance(i, int) for i in ids) and tok.decode(ids) == text
    assert tok.encode("the purple ball") == [tok.index["the"], None, tok.index["ball"]]


@pytest.mark.parametrize(
    "words, match",
    [(["a", "a"], "distinct"), (["a b"], "without whitespace"), (["a\tb"], "without whitespace"), ([""], "non-empty")],
)
def test_tokenizer_refuses_bad_words(words, match):
    with pytest.raises(ValueError, match=match):
        WordTokenizer(words)


def test_joint_vocabulary_layout():
    words = WordTokenizer.build(TEXTS).words
    voc = JointVocabulary(words, 64)
    W = len(words)
    assert len(voc) == len(SPECIALS) + W + 64 and (PAD, CLS, SEP, TO_VIDEO, MASK, UNK) == tuple(range(6))
    assert voc.text_offset == 6 and voc.visual_offset == 6 + W
    assert [voc.token(i) for i in range(6)] == list(SPECIALS)
    assert voc.token(6) == words[0] and voc.token(6 + W) == "v0" and voc.token(len(voc) - 1) == "v63"
    assert voc.encode_text("the ball") == [6 + words.index("the"), 6 + words.index("ball")]
    assert voc.encode_text("the purple ball")[1] == UNK
    assert voc.encode_video(torch.tensor([[0, 63]])).tolist() == [[6 + W, 6 + W + 63]]
    ids = [CLS, *voc.encode_text("the ball"), PAD, TO_VIDEO, *voc.encode_video(torch.tensor([5])).tolist(), SEP]
    assert voc.decode(ids) == "[CLS] the ball [>] v5 [SEP]"  # [PAD] left out


def test_joint_vocabulary_refuses_what_is_not_in_it():
    voc = JointVocabulary(("a", "b"), 4)
    with pytest.raises(ValueError, match="visual words must be in 0 … 3"):
        voc.encode_video(torch.tensor([4]))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        voc.token(len(voc))
    with pytest.raises(ValueError, match="visual_words"):
        JointVocabulary(("a",), -1)
