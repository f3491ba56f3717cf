"""minivb.engine.calibration against independent references: the temperature against a brute-force grid of the NLL
(NumPy), the ECE against a computation by hand, the AUROC against an O(n²) count of pairs, the threshold's
acceptance on held-out scores of the same distribution, and the edge cases (all right, one class, ties, NaN)."""

import json
import math

import numpy as np
import pytest
import torch

from minivb.engine.calibration import (
    EMBEDDING_SCORES,
    SHRINKAGE,
    T_RANGE,
    EmbeddingFit,
    auroc,
    calibrated_probs,
    expected_calibration_error,
    fit_embeddings,
    fit_mahalanobis,
    fit_temperature,
    knn_scores,
    mahalanobis_scores,
    nll,
    ood_scores,
    plot_reliability,
    reliability,
    threshold_for,
    video_scores,
)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_nll(z: np.ndarray, y: np.ndarray, T: float) -> float:
    """−1/N Σ log (1/V Σ_v softmax(z_v / T))_y, for z (N, C) or (N, V, C)."""
    p = np.exp(np_log_softmax(z / T))
    if p.ndim == 3:
        p = p.mean(axis=1)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def synthetic(n: int = 3000, classes: int = 6, T_true: float = 2.0, views: int | None = None, seed: int = 0):
    """Logits of a model that is over-confident by ``T_true``: labels drawn from softmax(z / T_true)."""
    rng = np.random.default_rng(seed)
    shape = (n, classes) if views is None else (n, views, classes)
    z = rng.normal(0, 3, shape)
    p = np.exp(np_log_softmax(z / T_true))
    p = p if views is None else p.mean(axis=1)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return z, y


# --------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("views", [None, 3])
def test_temperature_matches_a_brute_force_grid(views):
    z, y = synthetic(n=800, views=views)
    T = fit_temperature(torch.tensor(z), torch.tensor(y))
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 4001))  # steps of 0.15%
    losses = [np_nll(z, y, t) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert abs(math.log(T / best)) < 0.002
    assert np_nll(z, y, T) <= min(losses) + 1e-9  # never worse than the grid
    assert nll(z, y, T) == pytest.approx(np_nll(z, y, T), rel=1e-12)
    assert fit_temperature(z, y) == T  # deterministic, and NumPy input is taken as it is


def test_temperature_finds_the_overconfidence_it_was_made_with():
    z, y = synthetic(n=4000, T_true=2.0, seed=1)
    assert 1.8 < fit_temperature(z, y) < 2.2  # labels drawn at T = 2: a 4000-video NLL fit lands near it
    z, y = synthetic(n=4000, T_true=0.5, seed=2)
    assert 0.45 < fit_temperature(z, y) < 0.55


def test_temperature_edge_cases():
    z = torch.tensor([[5.0, 0.0, 0.0], [0.0, 4.0, 1.0]])  # both right: the NLL falls all the way to T → 0
    assert fit_temperature(z, [0, 1]) == pytest.approx(T_RANGE[0], rel=1e-5)
    assert fit_temperature(torch.randn(5, 1), [0] * 5) == 1.0  # one class: nothing to calibrate
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_temperature(torch.tensor([[1.0, math.nan]]), [0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_temperature(torch.tensor([[1.0, math.inf]]), [0])
    with pytest.raises(ValueError, match="labels must lie in 0 … 1"):
        fit_temperature(torch.zeros(2, 2), [0, 2])
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(torch.zeros(2, 2), [0.0, 1.0])
    with pytest.raises(ValueError, match="dimensions"):
        fit_temperature(torch.zeros(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="empty"):
        fit_temperature(torch.zeros(0, 3), [])


def test_calibrated_probs_average_the_views_softmaxes():
    z = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [4.0, 0.0]]])  # (N=2, V=2, C=2)

    def sigma(x):  # softmax([x, 0])[0]
        return 1 / (1 + math.exp(-x))

    first = (sigma(2 / 2) + sigma(1 / 2)) / 2  # T = 2 halves every margin
    second = (0.5 + sigma(4 / 2)) / 2
    expected = [first, 1 - first, second, 1 - second]
    assert calibrated_probs(z, 2.0).flatten().tolist() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        calibrated_probs(z, 0.0)


# --------------------------------------------------------------------------- ECE


def test_ece_by_hand():
    # bins of 0.2: (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]
    probs = [[0.9, 0.1], [0.7, 0.3], [0.35, 0.65], [0.55, 0.45]]
    labels = [0, 1, 1, 0]  # right (.9), wrong (.7), right (.65), right (.55)
    # (.8, 1]: acc 1, conf .9; (.6, .8]: acc 1/2, conf .675; (.4, .6]: acc 1, conf .55
    by_hand = 1 / 4 * 0.1 + 2 / 4 * 0.175 + 1 / 4 * 0.45
    assert expected_calibration_error(probs, labels, bins=5) == pytest.approx(by_hand, abs=1e-12)
    rel = reliability(probs, labels, bins=5)
    assert rel.counts.tolist() == [0, 0, 1, 2, 1]
    assert rel.accuracy.tolist()[2:] == [1.0, 0.5, 1.0] and all(math.isnan(a) for a in rel.accuracy.tolist()[:2])
    assert rel.confidence.tolist()[2:] == pytest.approx([0.55, 0.675, 0.9])
    assert (rel.accuracy_all, rel.confidence_all) == pytest.approx((0.75, 0.675 / 2 + 0.9 / 4 + 0.55 / 4))
    # the default 15 bins of 1/15: .9 → bin 13, .7 → bin 10, .65 → bin 9, .55 → bin 8, each alone
    by_hand15 = (0.1 + 0.7 + 0.35 + 0.45) / 4  # |1 − .9|, |0 − .7|, |1 − .65|, |1 − .55|
    assert expected_calibration_error(probs, labels) == pytest.approx(by_hand15, abs=1e-12)
    assert reliability(probs, labels).counts.nonzero().flatten().tolist() == [8, 9, 10, 13]


def test_ece_bins_are_closed_on_the_right():
    rel = reliability([[0.5, 0.5], [0.25, 0.75]], [0, 0], bins=2)  # .5 goes into (0, .5], .75 into (.5, 1]
    assert rel.counts.tolist() == [1, 1]
    assert rel.ece == pytest.approx(0.5 * 0.5 + 0.5 * 0.75)  # first: right at .5; second: wrong at .75


def test_ece_edge_cases():
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0  # all right, all sure
    assert expected_calibration_error([[0.8, 0.2], [0.2, 0.8]], [0, 1]) == pytest.approx(0.2)  # all right at .8
    assert expected_calibration_error([[1.0]] * 3, [0, 0, 0]) == 0  # one class
    tie = expected_calibration_error([[0.5, 0.5]], [1])  # a tie is predicted as the lower index: wrong at .5
    assert tie == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        expected_calibration_error([[math.nan, 1.0]], [0])
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([[0.9, 0.9]], [0])
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error([[1.0, 0.0]], [0], bins=0)


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model():
    z, y = synthetic(n=3000, T_true=2.0, seed=3)
    T = fit_temperature(z, y)
    before, after = (expected_calibration_error(calibrated_probs(z, t), y) for t in (1.0, T))
    assert after < before / 3


def test_reliability_plot_and_json(tmp_path):
    z, y = synthetic(n=200, seed=4)
    rel = reliability(calibrated_probs(z), y, bins=15)
    data = json.loads(json.dumps(rel.to_dict(), allow_nan=False))  # strict JSON: empty bins are null
    assert len(data["edges"]) == 16 and sum(data["counts"]) == 200 and data["ece"] == rel.ece
    ax = plot_reliability(rel)
    ax.figure.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- OOD scores


def test_ood_scores_match_their_formulas():
    z = np.random.default_rng(5).normal(0, 2, (50, 7))
    for T in (1.0, 0.5, 3.0):
        s = ood_scores(torch.tensor(z), T)
        assert set(s) == {"msp", "max_logit", "energy"}
        assert s["msp"].numpy() == pytest.approx(np.exp(np_log_softmax(z / T)).max(axis=1), rel=1e-12)
        assert s["max_logit"].numpy() == pytest.approx(z.max(axis=1), rel=1e-12)
        m = (z / T).max(axis=1, keepdims=True)
        energy = T * (m[:, 0] + np.log(np.exp(z / T - m).sum(axis=1)))
        assert s["energy"].numpy() == pytest.approx(energy, rel=1e-12)
    assert ood_scores(torch.tensor(z), 1e-3)["energy"].numpy() == pytest.approx(z.max(axis=1), abs=0.01)  # T → 0
    views = torch.tensor(z).view(10, 5, 7)  # (N, V, C)
    for name, v in video_scores(views, 2.0).items():
        assert v.tolist() == pytest.approx(ood_scores(views, 2.0)[name].mean(dim=1).tolist(), rel=1e-12)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ood_scores(torch.tensor([[0.0, math.nan]]))


# --------------------------------------------------------------------------- embedding-space scores


def np_mahalanobis(x: np.ndarray, y: np.ndarray, queries: np.ndarray, lam: float):
    """NumPy's class means, shrunk shared covariance's inverse and −min_c squared distance of ``queries``."""
    classes = np.unique(y)
    means = np.array([x[y == c].mean(axis=0) for c in classes])  # (C, D)
    centred = x - means[np.searchsorted(classes, y)]
    cov = sum(np.outer(r, r) for r in centred) / len(x)  # (D, D), one sample at a time
    D = x.shape[1]
    scale = np.trace(cov) / D or 1.0
    precision = np.linalg.inv((1 - lam) * cov + lam * scale * np.eye(D))
    d2 = [[(q - m) @ precision @ (q - m) for m in means] for q in queries]  # (Q, C)
    return means, precision, -np.min(d2, axis=1)


def test_mahalanobis_matches_numpy():
    rng = np.random.default_rng(11)
    x, y = rng.normal(0, 1, (30, 4)) * [1, 3, 0.5, 2], rng.integers(0, 3, 30)  # (N, D), (N,)
    queries = rng.normal(0, 2, (7, 4))
    for lam in (SHRINKAGE, 0.5, 1.0):
        means, precision = fit_mahalanobis(torch.tensor(x), torch.tensor(y), lam)
        np_means, np_precision, np_scores = np_mahalanobis(x, y, queries, lam)
        assert means.numpy() == pytest.approx(np_means, rel=1e-12)
        assert precision.numpy() == pytest.approx(np_precision, rel=1e-9)
        assert mahalanobis_scores(torch.tensor(queries), means, precision).numpy() == pytest.approx(np_scores, rel=1e-9)
    assert mahalanobis_scores(means, means, precision).tolist() == pytest.approx([0, 0, 0], abs=1e-12)  # at a mean
    two = torch.tensor(x[:3], dtype=torch.float64)
    assert torch.allclose(
        mahalanobis_scores(torch.stack([two, two]), means, precision)[1], mahalanobis_scores(two, means, precision)
    )  # (…, D)


def brute_force_knn(queries: np.ndarray, bank: np.ndarray, k: int) -> list[float]:
    out = []
    for q in queries:
        sims = [float(q @ b / (np.linalg.norm(q) * np.linalg.norm(b))) for b in bank]
        out.append(sum(sorted(sims, reverse=True)[:k]) / k)
    return out


def test_knn_matches_a_brute_force_loop():
    rng = np.random.default_rng(12)
    bank, queries = rng.normal(0, 1, (25, 6)), rng.normal(0, 1, (9, 6)) * rng.uniform(0.1, 10, (9, 1))
    for k in (1, 3, 25):
        got = knn_scores(torch.tensor(queries), torch.tensor(bank), k).tolist()
        assert got == pytest.approx(brute_force_knn(queries, bank, k), rel=1e-12)
    assert knn_scores(torch.tensor(bank[:4] * 3), torch.tensor(bank)).tolist() == pytest.approx([1.0] * 4)  # scale-free
    with pytest.raises(ValueError, match="k must be"):
        knn_scores(torch.tensor(queries), torch.tensor(bank), 26)
    with pytest.raises(ValueError, match="dimensions"):
        knn_scores(torch.tensor(queries), torch.tensor(bank[:, :5]))


def test_embedding_scores_average_the_views():
    rng = np.random.default_rng(13)
    train, labels = torch.tensor(rng.normal(0, 1, (10, 3, 5))), torch.tensor(rng.integers(0, 4, 10))  # (N, V, D)
    fit = fit_embeddings(train, labels)
    flat = fit_embeddings(train.flatten(0, 1), labels.repeat_interleave(3))  # every view a sample of its class
    assert torch.allclose(fit.means, flat.means) and torch.allclose(fit.precision, flat.precision)
    assert fit.bank.shape == (30, 5)
    x = torch.tensor(rng.normal(0, 1, (6, 2, 5)))  # (N, V, D)
    s = fit.scores(x, k=2)
    assert tuple(s) == EMBEDDING_SCORES and all(v.shape == (6,) for v in s.values())
    assert torch.allclose(s["mahalanobis"], mahalanobis_scores(x, fit.means, fit.precision).mean(dim=1))
    assert torch.allclose(s["knn"], knn_scores(x, fit.bank, 2).mean(dim=1))


def test_embedding_edge_cases():
    rng = np.random.default_rng(14)
    one = torch.tensor(rng.normal(0, 1, (5, 3)))  # one class
    means, precision = fit_mahalanobis(one, torch.zeros(5, dtype=torch.long))
    assert means.shape == (1, 3) and torch.allclose(means[0], one.mean(dim=0))
    assert mahalanobis_scores(one, means, precision).shape == (5,)
    few = torch.tensor(rng.normal(0, 1, (4, 10)))  # fewer samples than dimensions: Σ̂ has rank ≤ 2
    means, precision = fit_mahalanobis(few, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(precision).all() and torch.linalg.eigvalsh(precision).min() > 0
    assert torch.isfinite(mahalanobis_scores(torch.tensor(rng.normal(0, 9, (3, 10))), means, precision)).all()
    means, precision = fit_mahalanobis(few, torch.arange(4))  # one sample per class: Σ̂ = 0 → Σ_λ = λ · I
    assert torch.allclose(precision, torch.eye(10, dtype=torch.float64) / SHRINKAGE)
    assert mahalanobis_scores(few[:1] + 1, means, precision).item() == pytest.approx(-10 / SHRINKAGE)
    with pytest.raises(ValueError, match="shrinkage"):
        fit_mahalanobis(few, torch.arange(4), shrinkage=0)
    with pytest.raises(ValueError, match="class indices"):
        fit_mahalanobis(few, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="must lie in"):
        fit_mahalanobis(few, torch.tensor([0, -1, 0, 1]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_embeddings(torch.tensor([[0.0, math.nan]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="disagree"):
        mahalanobis_scores(torch.zeros(2, 9), means, precision)
    assert isinstance(fit_embeddings(few, torch.arange(4)), EmbeddingFit)


# --------------------------------------------------------------------------- AUROC


def pairwise_auroc(a, b) -> float:
    """O(N·M): the share of pairs (in, out) where in scores higher, ties counted half."""
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b) / (len(a) * len(b))


def test_auroc_by_hand_and_against_pairs():
    assert auroc([3.0, 2.0], [1.0, 2.0]) == 0.875  # pairs: 3>1, 3>2, 2>1, 2=2 → 3.5 of 4
    assert auroc([5, 6, 7], [1, 2]) == 1.0 and auroc([1, 2], [5, 6, 7]) == 0.0
    assert auroc([4.0] * 3, [4.0] * 5) == 0.5  # all tied
    rng = np.random.default_rng(6)
    for n, m in ((37, 23), (1, 9), (50, 1)):
        a, b = rng.integers(0, 10, n).astype(float), rng.integers(2, 12, m).astype(float)  # many ties
        assert auroc(a, b) == pytest.approx(pairwise_auroc(a, b), abs=1e-12)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    assert auroc(a, b) == pytest.approx(pairwise_auroc(a, b), abs=1e-12)
    with pytest.raises(ValueError, match="out_scores holds 1 NaN"):
        auroc([1.0], [math.nan])
    with pytest.raises(ValueError, match="empty"):
        auroc([], [1.0])


# --------------------------------------------------------------------------- threshold


def test_threshold_accepts_the_share_asked_for():
    s = torch.arange(100.0)
    assert threshold_for(s) == 5.0 and int((s >= 5.0).sum()) == 95  # exactly 95 of 100 distinct scores
    s = torch.randperm(192, generator=torch.Generator().manual_seed(0)).double()
    t = threshold_for(s, 0.95)
    assert int((s >= t).sum()) == 183  # ⌈0.95 · 192⌉ = 183
    assert threshold_for(torch.full((10,), 3.0)) == 3.0  # all tied: all accepted
    assert threshold_for(s, 1.0) == s.min().item()
    with pytest.raises(ValueError, match="acceptance"):
        threshold_for(s, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        threshold_for([1.0, math.nan])


def test_threshold_holds_on_held_out_in_distribution_data():
    z, _ = synthetic(n=1000, seed=8)
    held_out, _ = synthetic(n=20000, seed=9)  # more videos of the same distribution
    for name in ("msp", "max_logit", "energy"):
        t = threshold_for(ood_scores(z, 1.5)[name], 0.95)
        accepted = (ood_scores(held_out, 1.5)[name] >= t).double().mean().item()
        assert 0.93 < accepted < 0.97, (name, accepted)  # a 1000-video threshold: within ±2% of 95%
