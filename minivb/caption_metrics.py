"""Built in notebook 10, §5.
Caption scores, as in VideoBERT's captioning table: how close generated captions are to human ones. BLEU counts
the candidate's n-grams found in its references (a precision, penalised when candidates are shorter than the
references); CIDEr-D compares tf-idf weighted n-gram vectors, so n-grams that every caption shares ("a", "the man")
count little and rare, informative ones count a lot. Both split strings on whitespace: lowercase and strip punctuation
first if needed. tests/test_caption_metrics.py checks them against the reference implementations (nltk's
``corpus_bleu``, sacrebleu, pycocoevalcap's ``Cider``).
"""

from __future__ import annotations

import math
from collections import Counter

CIDER_N = 4  # CIDEr-D averages n = 1…4
CIDER_SIGMA = 6.0  # the width of its Gaussian length penalty


def _ngrams(words: list[str], n: int) -> Counter:
    """The n-grams of one tokenised sentence (tuples of n words) and how often each occurs."""
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _check(candidates: list[str], references: list[list[str]]) -> None:
    if isinstance(candidates, str) or isinstance(references, str):
        raise ValueError("need a list of candidate strings and a list of reference lists, not a string")
    if len(candidates) != len(references):
        raise ValueError(f"need one list of references per candidate, got {len(candidates)} and {len(references)}")
    if not candidates:
        raise ValueError("need at least one candidate")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(f"references[{i}] is a string: give each candidate a list of reference strings")
        if len(refs) == 0:
            raise ValueError(f"candidate {i} has no references")


def bleu(candidates: list[str], references: list[list[str]], n: int = 4) -> float:
    """Corpus-level BLEU-n (Papineni et al. 2002) of whitespace-tokenised ``candidates`` against ``references``.

        pₖ = Σ_c Σ_g min(count_c(g), maxᵣ count_r(g)) / Σ_c Σ_g count_c(g)     (g: the k-grams of candidate c)
        BP = 1 if c > r else exp(1 − r / c)     (c, r: summed candidate / closest-reference lengths)
        BLEU = BP · exp(Σₖ wₖ log pₖ),  wₖ = 1/n,  k = 1…n

    The counts are summed over the corpus before dividing (not a mean of sentence scores); the closest reference
    length breaks ties towards the shorter one. No smoothing: 0.0 if some pₖ is 0. The same number as sacrebleu's
    ``BLEU(tokenize="none", smooth_method="none")`` ÷ 100, and as nltk's ``corpus_bleu`` when every candidate has at
    least n words (nltk counts a shorter one as holding one unmatched n-gram).
    """
    if n < 1:
        raise ValueError(f"need n ≥ 1, got {n}")
    _check(candidates, references)
    matches, totals = [0] * n, [0] * n
    c = r = 0
    for cand, refs in zip(candidates, references):
        words = cand.split()
        ref_words = [ref.split() for ref in refs]
        for k in range(1, n + 1):
            counts = _ngrams(words, k)
            most = Counter()  # each k-gram's highest count in any one reference
            for ref in ref_words:
                most |= _ngrams(ref, k)
            matches[k - 1] += sum(min(count, most[g]) for g, count in counts.items())
            totals[k - 1] += sum(counts.values())
        c += len(words)
        r += min((len(ref) for ref in ref_words), key=lambda length: (abs(length - len(words)), length))
    if 0 in matches:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(math.fsum(math.log(m / t) for m, t in zip(matches, totals)) / n)


def cider(candidates: list[str], references: list[list[str]]) -> float:
    """CIDEr-D (Vedantam et al. 2015) of whitespace-tokenised ``candidates``, as the coco-caption code computes it.

        gₙ(s) = tf-idf vector of the n-grams of s:  count_s(g) · (log N − log max(1, df(g)))
        df(g) = how many of the N candidates' reference lists hold g;   ĝ = min(gₙ(c), gₙ(r)) (clipping)
        CIDEr-Dₙ(c, R) = 1/|R| Σ_r exp(−(ℓ_c − ℓ_r)² / 2σ²) · ĝ · gₙ(r) / (‖gₙ(c)‖ ‖gₙ(r)‖),  σ = 6
        CIDEr-D(c, R) = 10 · ¼ Σₙ CIDEr-Dₙ(c, R),  n = 1…4;   corpus score = mean over candidates

    A norm of 0 leaves its dot product undivided (then ĝ · gₙ(r) is 0 too). ℓ is the length as pycocoevalcap's
    ``cider_scorer.py`` counts it, which is the number of bigrams, max(words − 1, 0), and is kept here to give its
    numbers. The idf comes from this corpus: an n-gram in every reference list weighs 0, so a one-caption corpus
    scores 0.
    """
    _check(candidates, references)

    def grams(sentence: str) -> tuple[list[Counter], int]:
        words = sentence.split()
        return [_ngrams(words, n) for n in range(1, CIDER_N + 1)], max(len(words) - 1, 0)

    cands = [grams(cand) for cand in candidates]
    refs = [[grams(ref) for ref in refs] for refs in references]
    df = Counter()  # df(g): in how many reference lists g occurs (once per list, however often)
    for ref_list in refs:
        df.update({g for ref, _ in ref_list for counts in ref for g in counts})
    log_n = math.log(len(candidates))

    def tfidf(counts: Counter) -> tuple[dict, float]:
        vec = {g: count * (log_n - math.log(max(1, df[g]))) for g, count in counts.items()}
        return vec, math.sqrt(sum(v * v for v in vec.values()))

    scores = []
    for (cand, cand_len), ref_list in zip(cands, refs):
        cand_vecs = [tfidf(counts) for counts in cand]  # one (vector, norm) per n
        total = 0.0
        for ref, ref_len in ref_list:
            penalty = math.exp(-((cand_len - ref_len) ** 2) / (2 * CIDER_SIGMA**2))
            for (c_vec, c_norm), ref_counts in zip(cand_vecs, ref):
                r_vec, r_norm = tfidf(ref_counts)
                dot = sum(min(v, r_vec.get(g, 0.0)) * r_vec.get(g, 0.0) for g, v in c_vec.items())
                if c_norm != 0 and r_norm != 0:
                    dot /= c_norm * r_norm
                total += dot * penalty
        scores.append(10.0 * total / CIDER_N / len(ref_list))
    return sum(scores) / len(scores)
