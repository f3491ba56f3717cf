"""Used by notebook 08's exercises: a segment's scatter under a Gaussian kernel (08.1), and a prediction: what does
the order-blind model's summary of the long video find (08.2)?"""

from __future__ import annotations

import torch

from .judging import Answer, Exercise, Mistake, Prediction, between, is_number, number_hint

# --------------------------------------------------------------------------- 08.1 a segment's scatter, Gaussian kernel


def _scatter_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(n, d, generator=g, dtype=torch.float64), s) for n, d, s in [(5, 3, 1.5), (12, 8, 2.5), (4, 2, 0.7)]
    ]


def _kernel(E, sigma, *, power=2, two=True, sign=-1, sigma_power=2):
    d = torch.cdist(E, E) ** power  # (n, n)
    return torch.exp(sign * d / ((2 if two else 1) * sigma**sigma_power))


def _scatter(K, *, norm=None, per=1):
    n = K.shape[0]
    return (K.trace() - K.sum() / (n if norm is None else norm)) / per


def _scatter_reference(E, sigma):
    return _scatter(_kernel(E, sigma)).item()  # Σ_w K_ww − (1/n) Σ_vw K_vw, K_vw = exp(−‖e_v − e_w‖² / 2σ²)


def _scatter_compare(got, want: float, args: tuple) -> str | None:
    E, sigma = args
    how = (
        "build K_vw = exp(−‖e_v − e_w‖² / (2σ²)) for every pair, then the scatter from it exactly as from the Gram "
        "matrix: Σ_w K_ww − (1/n) Σ_vw K_vw"
    )
    return number_hint(got, want, f"gaussian_scatter({len(E)} rows, σ = {sigma})", how)


SCATTER_MISTAKES = (
    Mistake(
        "that is the scatter under the dot product (the Gram matrix E Eᵀ): here the kernel is Gaussian, "
        "K_vw = exp(−‖e_v − e_w‖² / (2σ²))",
        lambda E, s: _scatter(E @ E.T).item(),
    ),
    Mistake(
        "the distance is not squared: the Gaussian kernel is exp(−‖e_v − e_w‖² / (2σ²))",
        lambda E, s: _scatter(_kernel(E, s, power=1)).item(),
    ),
    Mistake(
        "the 2 is missing: the Gaussian kernel divides the squared distance by 2σ²",
        lambda E, s: _scatter(_kernel(E, s, two=False)).item(),
    ),
    Mistake(
        "σ is not squared: the Gaussian kernel divides the squared distance by 2σ²",
        lambda E, s: _scatter(_kernel(E, s, sigma_power=1)).item(),
    ),
    Mistake(
        "the exponent's sign: a Gaussian kernel falls with distance, exp(−‖e_v − e_w‖² / (2σ²)) ≤ 1",
        lambda E, s: _scatter(_kernel(E, s, sign=1)).item(),
    ),
    Mistake(
        "the 1/n is missing: ‖x_w − mean‖² expands into K_ww − (2/n) Σ_v K_wv + (1/n²) Σ_uv K_uv; sum over w",
        lambda E, s: _scatter(_kernel(E, s), norm=1).item(),
    ),
    Mistake(
        "divided by n² instead of n: summed over the n rows w, the (1/n²) Σ_uv K_uv term counts n times",
        lambda E, s: _scatter(_kernel(E, s), norm=len(E) ** 2).item(),
    ),
    Mistake(
        "that is the mean squared distance to the mean: the scatter is the sum over the rows, Σ_w ‖φ(e_w) − mean‖²",
        lambda E, s: _scatter(_kernel(E, s), per=len(E)).item(),
    ),
    Mistake(
        "the last term of the expansion was counted once: ‖φ(e_w) − mean‖² = K_ww − (2/n) Σ_v K_wv + (1/n²) Σ_uv K_uv "
        "holds for each w, so summed over the n rows the (1/n²) Σ_uv K_uv term counts n times",
        lambda E, s: (lambda K: (K.trace() - 2 * K.sum() / len(E) + K.sum() / len(E) ** 2).item())(_kernel(E, s)),
    ),
)

GAUSSIAN_SCATTER = Exercise(
    "08.1",
    "gaussian_scatter(E, sigma) → a number",
    _scatter_cases,
    _scatter_reference,
    _scatter_compare,
    SCATTER_MISTAKES,
)

# --------------------------------------------------------------------------- 08.2 the order-blind model's summary

ORDER_BLIND_SUMMARY = Prediction(
    "08.2",
    "a whole number of segments from 0 to 5",
    is_number,
    (
        Answer(
            lambda x: x == 5,
            "KTS only has to tell *neighbouring* segments apart, and no two neighbours in the long video are twins "
            "(growing and shrinking are, but they come first and last); the order-blind model still sees what moves "
            "and how — a shape growing, sliding, opening — and misses only the direction, so it finds all five. "
            "Where twins are neighbours, it merges them",
            5,
            right=True,
        ),
        Answer(
            between(3, 4.99),
            "a segment is lost only where two neighbouring segments look alike to the model, and to the order-blind "
            "model only twins do: are any two neighbouring segments of the long video twins?",
            4,
        ),
        Answer(
            between(0, 2.99),
            "the order-blind model is not lost: it still sees what moves and how — a shape growing, sliding, opening — "
            "and misses only the direction; KTS needs only neighbouring segments to differ",
            1,
        ),
        Answer(lambda x: True, "a summary of 5 keyframes finds a whole number of the 5 segments, from 0 to 5", 7),
    ),
)

EXERCISES = (GAUSSIAN_SCATTER, ORDER_BLIND_SUMMARY)
