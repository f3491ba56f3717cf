"""minivb.caption_metrics against the reference implementations, whose numbers are hard-coded below.

They were computed once, in a scratch venv outside the repo (Python 3.11.7), by

* nltk 3.10.4: ``corpus_bleu([[r.split() for r in refs] ...], [c.split() ...], weights=(1/n,) * n)``, no smoothing;
* sacrebleu 2.6.0: ``BLEU(tokenize="none", force=True, smooth_method="none", max_ngram_order=n)
  .corpus_score(candidates, reference streams padded with None).score / 100``; it agrees with nltk to 1e-15 on every
  case here except where noted;
* pycocoevalcap 1.2: ``Cider().compute_score({i: refs}, {i: [candidate]})[0]`` (CIDEr-D, sigma 6).

Where a precision is 0, nltk returns a tiny number instead of 0 (it puts ``sys.float_info.min`` in the log:
5.1e-78 for "short", n = 4, say) and sacrebleu returns 0.0, as minivb does.
"""

import math

import pytest

from minivb.caption_metrics import bleu, cider

TOL = 1e-12

# nltk's corpus_bleu docstring example (Papineni et al.'s "It is a guide to action ..."), joined into strings.
HYP1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
REF1A = "It is a guide to action that ensures that the military will forever heed Party commands"
REF1B = "It is the guiding principle which guarantees the military forces always being under the command of the Party"
REF1C = "It is the practical guide for the army always to heed the directions of the party"
HYP2 = "he read the book because he was interested in world history"
REF2A = "he was interested in world history because he read the book"

# name: (candidates, references, [BLEU-1, BLEU-2, BLEU-3, BLEU-4]) — nltk 3.10.4 corpus_bleu = sacrebleu 2.6.0 / 100.
BLEU_CASES = {
    "perfect": (
        ["a man is slicing a tomato on a board", "two dogs run in the park"],
        [["a man is slicing a tomato on a board"], ["two dogs run in the park", "the dogs are running"]],
        [1.0, 1.0, 1.0, 1.0],
    ),
    "nltk_docs": (
        [HYP1, HYP2],
        [[REF1A, REF1B, REF1C], [REF2A]],
        [0.9655172413793104, 0.8242803277698696, 0.7069430098960677, 0.5920778868801042],
    ),
    "multi_ref": (
        ["the cat is on the mat", "a woman slices an onion with a knife", "someone plays the guitar on a stage"],
        [
            ["the cat sits on the mat", "there is a cat on the mat"],
            ["a woman is cutting an onion", "a lady slices an onion with a sharp knife", "someone chops onions"],
            [
                "a man plays a guitar on stage",
                "someone is playing the guitar",
                "a musician performs on a stage",
                "a guitarist plays",
            ],
        ],
        [0.9534969548334766, 0.778527003546532, 0.5775396506102156, 0.41829085456189163],
    ),
    # Candidates shorter than their references: brevity penalty exp(1 − 21/13); no 4-gram matches, so BLEU-4 is 0.
    "short": (
        ["the man cooks food in the kitchen", "a girl rides a horse"],
        [
            ["the man is cooking some food in the big kitchen today"],
            ["a young girl rides a brown horse across the field", "a girl is riding a horse"],
        ],
        [0.6043039110170734, 0.5280787666551665, 0.3582012759128603, 0.0],
    ),
    # 6 words between references of 7 and 5: a tie, broken towards the shorter (5), so no brevity penalty ...
    "tie_shorter": (["a b c d e f"], [["a b c d e f g", "a b c d e"]], [1.0, 1.0, 1.0, 1.0]),
    # ... while the 7-word reference alone gives exp(1 − 7/6).
    "longer_ref_only": (["a b c d e f"], [["a b c d e f g"]], [0.846481724890614] * 4),
    # Clipped counts: "the" 7 times, at most twice in one reference → p₁ = 2/7.
    "clipping": (
        ["the the the the the the the"],
        [["the cat is on the mat", "there is a cat on the mat"]],
        [0.2857142857142857, 0.0, 0.0, 0.0],
    ),
    "no_4gram": (
        ["the cat sat on a mat today"],
        [["the cat sat down and a mat was there today"]],
        [0.558376335026619, 0.4264669702552506, 0.287226736394549, 0.0],
    ),
}

# name: (candidates, references, CIDEr-D) — pycocoevalcap 1.2 Cider().compute_score.
CIDER_CASES = {
    # 6 captions, 2–5 references each, repeated words ("runs and runs", "the guitar the guitar") so clipping matters.
    "main": (
        [
            "a man is slicing a tomato",
            "a woman is cutting an onion on a board",
            "a dog runs and runs in the park",
            "the man plays the guitar the guitar",
            "a cat sits on a mat",
            "people are dancing",
        ],
        [
            ["a man slices a tomato", "a man is cutting a tomato", "someone is slicing a red tomato on a board"],
            [
                "a woman cuts an onion",
                "a woman is slicing an onion",
                "a lady chops onion on a cutting board",
                "a woman is cutting vegetables",
                "someone cuts an onion",
            ],
            ["a dog is running in the park", "a dog runs across the grass"],
            ["a man is playing the guitar", "a man plays a guitar", "the guitar is played by a man on the stage"],
            ["a cat is sitting on a mat", "a cat sits on the mat", "the cat is lying on a rug", "a kitten on a mat"],
            ["a group of people dance", "people are dancing at a party", "several people are dancing together"],
        ],
        2.653134610662511,
    ),
    # One- and two-word sentences, where pycocoevalcap's length (the number of bigrams) is 0 or 1.
    "short_sentences": (
        ["dog", "a cat", "the the the man"],
        [["dog", "a dog"], ["cat", "a cat sits"], ["the man", "a man the man", "man"]],
        2.321752061943934,
    ),
    # Every n-gram is in 1 of 2 reference lists: 10 for 4 orders; "a dog runs" has no 4-gram: 10 · ¾.
    "two_identical": (["a man slices a tomato", "a dog runs"], [["a man slices a tomato"], ["a dog runs"]], 8.75),
}


@pytest.mark.parametrize("name", BLEU_CASES)
def test_bleu_matches_nltk_and_sacrebleu(name):
    candidates, references, want = BLEU_CASES[name]
    for n, value in enumerate(want, start=1):
        assert bleu(candidates, references, n) == pytest.approx(value, abs=TOL), f"BLEU-{n}"
    assert bleu(candidates, references) == pytest.approx(want[3], abs=TOL)  # n = 4 by default


def test_bleu_is_exactly_zero_without_a_match():
    assert bleu(*BLEU_CASES["no_4gram"][:2]) == 0.0
    assert bleu(["x y z w"], [["a b c d"]], n=1) == 0.0


def test_bleu_counts_a_candidate_shorter_than_n_as_no_ngrams():
    # sacrebleu 2.6.0: 1.0 (the paper's sum of counts: "two dogs run" adds no 4-grams). nltk 3.10.4 gives
    # 0.9621954581957615 = (6/7)^¼: its modified_precision divides by max(1, count), one unmatched 4-gram.
    candidates = ["a man is slicing a tomato on a board", "two dogs run"]
    references = [["a man is slicing a tomato on a board"], ["two dogs run", "the dogs are running"]]
    assert bleu(candidates, references) == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("name", CIDER_CASES)
def test_cider_matches_pycocoevalcap(name):
    candidates, references, want = CIDER_CASES[name]
    assert cider(candidates, references) == pytest.approx(want, abs=TOL)


def test_cider_of_a_one_caption_corpus_is_zero():
    # pycocoevalcap 1.2: 0.0 — log(1 image) − log(df = 1) weighs every n-gram 0.
    assert cider(["a man slices a tomato"], [["a man slices a tomato"]]) == 0.0


@pytest.mark.parametrize("name", ["nltk_docs", "multi_ref", "short", "tie_shorter"])
def test_bleu_ignores_the_order_of_references_and_of_the_corpus(name):
    candidates, references, _ = BLEU_CASES[name]
    want = bleu(candidates, references)
    assert bleu(candidates, [refs[::-1] for refs in references]) == pytest.approx(want, abs=TOL)
    assert bleu(candidates[::-1], references[::-1]) == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize("name", ["main", "short_sentences"])
def test_cider_ignores_the_order_of_references_and_of_the_corpus(name):
    candidates, references, want = CIDER_CASES[name]
    assert cider(candidates, [refs[::-1] for refs in references]) == pytest.approx(want, abs=TOL)
    assert cider(candidates[::-1], references[::-1]) == pytest.approx(want, abs=TOL)


def test_bleu_brevity_penalty_by_hand():
    # 4 words against 8: every precision 1, BP = exp(1 − 8/4).
    assert bleu(["a b c d"], [["a b c d e f g h"]]) == pytest.approx(math.exp(-1), abs=TOL)


@pytest.mark.parametrize("score", [bleu, cider])
def test_bad_input(score):
    with pytest.raises(ValueError, match="one list of references per candidate, got 2 and 1"):
        score(["a b", "c d"], [["a b"]])
    with pytest.raises(ValueError, match="candidate 1 has no references"):
        score(["a b", "c d"], [["a b"], []])
    with pytest.raises(ValueError, match="at least one candidate"):
        score([], [])
    with pytest.raises(ValueError, match=r"references\[0\] is a string"):
        score(["a b"], ["a b"])
    with pytest.raises(ValueError, match="not a string"):
        score("a b", [["a b"]])


def test_bleu_needs_n_at_least_1():
    with pytest.raises(ValueError, match="need n ≥ 1, got 0"):
        bleu(["a b"], [["a b"]], n=0)
