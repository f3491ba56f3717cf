"""Is this video one of my classes? The calibration a checkpoint carries, and the two tests behind "none of these".

``python -m minivb.train`` ends by fitting a :class:`Confidence` record on the views ``predict`` uses
(:func:`fit_confidence`), stored in ``last.pt`` and ``best.pt`` under ``"confidence"``. It holds:

- the temperature ``T`` (:func:`~minivb.engine.calibration.fit_temperature`, fitted on the validation set): the
  probabilities a command prints are ``p = 1/V · Σ_v softmax(z_v / T)``, whose confidence means what it says;
- two tests a video must pass to be answered with a class, each a question the model can answer about itself::

    looks like my training videos?   distance(f) = min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c)   ≤ its threshold
    sure which of my classes?        confidence(z) = max_c p_c(z; T)              ≥ its threshold

  ``f`` = [the mean of the CNN's region features ; the [CLS] state] of a view (what the Transformer is given and
  what the output layer reads), ``μ_c`` and the shared covariance ``Σ`` from the training videos
  (:func:`~minivb.engine.calibration.fit_mahalanobis`); a video's scores are its views' means. The distance
  catches what looks unlike any training video (real footage for the toy model, noise); the confidence catches a
  familiar look with an unfamiliar motion (the toy set's unseen rotation). Measured side by side with the other
  candidates by ``python -m minivb.bench ood`` (docs/applications.md).
- the two scores of every validation video, so that the thresholds can be set for any acceptance
  (:meth:`Confidence.thresholds`): the distance keeps ``1 − (1 − a)/2`` of the validation videos, and the
  confidence threshold is then chosen so that a share ``a`` pass both (``a`` = 0.95 by default).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from . import calibration as cal

ACCEPTANCE = 0.95  # the share of validation videos a checkpoint's thresholds accept, unless the user asks otherwise
MARGIN = 1e-6  # thresholds widened by this share: a video scored again (another batch) passes as it did in the fit
FIT_VIDEOS = 2000  # at most this many videos of each split go into the fit (evenly spaced): k400 stays minutes


# --------------------------------------------------------------------------- what the model says about a view


@contextmanager
def _captured(module: nn.Module):
    """The output of ``module``'s forward while the block runs, in a list (a forward hook, removed afterwards)."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _args, out: seen.append(out))
    try:
        yield seen
    finally:
        handle.remove()


def features_and_logits(model, clips: torch.Tensor) -> torch.Tensor:
    """Clips ``(B, T, 3, H, W)`` → ``(B, F + C)``, float32: each clip's feature ``f`` (``F`` = the encoder's width +
    ``dim``) and its logits side by side, in one pass through the model."""
    with _captured(model.encoder) as seen:
        h, _ = model.hidden_states(clips)  # (B, L, dim)
    regions = seen[0].float().mean(dim=(1, 2))  # (B, T, R, D_enc) → (B, D_enc): the mean region feature
    cls = h[:, 0]  # (B, dim)
    return torch.cat([regions, cls.float(), model.head(cls).float()], dim=1)  # (B, F + C)


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Judgement:
    """What :meth:`Confidence.judge` says of N videos: calibrated ``probs (N, C)``, the two scores ``distance``
    and ``confidence (N,)``, the thresholds used (``None``: rejection off), and ``accepted (N,)`` bool."""

    probs: torch.Tensor
    distance: torch.Tensor
    confidence: torch.Tensor
    thresholds: tuple[float, float] | None
    accepted: torch.Tensor

    def reason(self, i: int) -> str:
        """Why video ``i`` was rejected, in words ("" if it was not)."""
        if self.thresholds is None or self.accepted[i]:
            return ""
        d, c = self.thresholds
        why = []
        if self.distance[i] > d:
            why.append(f"unlike the training videos: distance {self.distance[i]:.0f} > {d:.0f}")
        if self.confidence[i] < c:
            why.append(f"unsure: confidence {100 * self.confidence[i]:.2f}% < {100 * c:.2f}%")
        return "; ".join(why)


@dataclass(frozen=True)
class Confidence:
    """A checkpoint's ``"confidence"`` record (the module's docstring): ``temperature``, the class ``means (C, F)``
    and ``precision (F, F)`` of the feature, the ``val_scores (N, 2)`` (distance, confidence) of the validation
    videos, and what it was fitted on, in words."""

    temperature: float
    means: torch.Tensor
    precision: torch.Tensor
    val_scores: torch.Tensor
    fitted_on: str

    def __post_init__(self):
        cal._temperature(self.temperature)
        F = self.precision.shape[-1] if self.precision.ndim == 2 else None
        if self.means.ndim != 2 or self.precision.shape != (F, F) or self.means.shape[1] != F:
            raise ValueError(f"means {tuple(self.means.shape)} and precision {tuple(self.precision.shape)} disagree")
        if self.val_scores.ndim != 2 or self.val_scores.shape[1] != 2 or len(self.val_scores) == 0:
            raise ValueError(f"val_scores must be shaped (N, 2), got {tuple(self.val_scores.shape)}")
        for name in ("means", "precision", "val_scores"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} holds NaN or infinite values")

    def to_dict(self) -> dict:
        return {
            "temperature": self.temperature,
            "means": self.means.float(),
            "precision": self.precision.float(),
            "val_scores": self.val_scores.float(),
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "Confidence | None":
        """The checkpoint's record, or ``None`` for one written before it (uncalibrated: T = 1, nothing rejected).
        A damaged record → ``ValueError`` naming what is wrong."""
        record = ckpt.get("confidence")
        if record is None:
            return None
        if not isinstance(record, dict):
            raise ValueError(f"the confidence record is a {type(record).__name__}, not a dict")
        keys = {"temperature", "means", "precision", "val_scores", "fitted_on"}
        if set(record) != keys:
            odd = sorted(set(record) ^ keys)
            raise ValueError(f"the confidence record has {'an unknown' if odd[0] in record else 'no'} key {odd[0]!r}")
        tensors = {k: record[k] for k in ("means", "precision", "val_scores")}
        if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
            raise ValueError("the confidence record's means, precision and val_scores must be tensors")
        return cls(record["temperature"], **{k: t.double() for k, t in tensors.items()}, fitted_on=record["fitted_on"])

    def thresholds(self, acceptance: float = ACCEPTANCE) -> tuple[float, float]:
        """``(distance threshold, confidence threshold)`` that a share ``acceptance`` of the validation videos pass:
        the distance keeps ``1 − (1 − a)/2`` of them, the confidence then the share ``a`` of all (each widened by
        :data:`MARGIN`, which only rounding can tell)."""
        if not (isinstance(acceptance, (int, float)) and 0 < acceptance <= 1):
            raise ValueError(f"acceptance must be in (0, 1], got {acceptance!r}")
        distance, confidence = self.val_scores.unbind(dim=1)  # (N,), (N,)
        d = -cal.threshold_for(-distance, 1 - (1 - acceptance) / 2)  # the largest distance kept
        close = confidence[distance <= d]  # (M,) the videos the distance test keeps
        need = max(1, math.ceil(round(acceptance * len(distance), 9)))  # as threshold_for counts
        c = close.sort(descending=True).values[min(need, len(close)) - 1].item()
        return d * (1 + MARGIN), c * (1 - MARGIN)

    def judge(self, features_logits: torch.Tensor, acceptance: float | None = ACCEPTANCE) -> Judgement:
        """Every view's ``(N, V, F + C)`` (:func:`views_features_and_logits`) → a :class:`Judgement`;
        ``acceptance=None``: nothing rejected."""
        F = self.precision.shape[0]
        f, z = features_logits[..., :F], features_logits[..., F:]  # (N, V, F), (N, V, C)
        distance = -cal.mahalanobis_scores(f, self.means, self.precision).mean(dim=1)  # (N,)
        confidence = cal.ood_scores(z, self.temperature)["msp"].mean(dim=1)  # (N,)
        probs = cal.calibrated_probs(z, self.temperature)  # (N, C)
        if acceptance is None:
            return Judgement(probs, distance, confidence, None, torch.ones(len(z), dtype=torch.bool))
        d, c = self.thresholds(acceptance)
        return Judgement(probs, distance, confidence, (d, c), (distance <= d) & (confidence >= c))


def uncalibrated(features_logits: torch.Tensor, num_features: int) -> Judgement:
    """The :class:`Judgement` of a checkpoint without a record: the plain softmax average, no distance (NaN),
    nothing rejected."""
    z = features_logits[..., num_features:]  # (N, V, C)
    probs = cal.calibrated_probs(z, 1.0)
    ones = torch.ones(len(z), dtype=torch.bool)
    return Judgement(probs, torch.full((len(z),), math.nan), probs.amax(dim=1), None, ones)


def fit_confidence(train: tuple, val: tuple, num_features: int, fitted_on: str) -> Confidence:
    """``train`` and ``val``: ``(every view's features and logits (N, V, F + C), labels (N,))`` → the record:
    ``μ_c``, ``Σ⁻¹`` from the training views, ``T`` and the validation scores from the validation views."""
    (f_train, y_train), (f_val, y_val) = train, val
    fit = cal.fit_embeddings(f_train[..., :num_features], y_train)  # every view a sample of its video's class
    T = cal.fit_temperature(f_val[..., num_features:], y_val)
    record = Confidence(T, fit.means, fit.precision, torch.zeros(1, 2, dtype=torch.float64), fitted_on)
    j = record.judge(f_val, acceptance=None)
    scores = torch.stack([j.distance, j.confidence], dim=1)  # (N, 2)
    return Confidence(T, fit.means, fit.precision, scores, fitted_on)


# --------------------------------------------------------------------------- fitted at the end of training


def spread(n: int, most: int = FIT_VIDEOS) -> list[int]:
    """At most ``most`` of the indices ``0 … n−1``, evenly spaced (all of them when ``n ≤ most``)."""
    return list(range(n)) if n <= most else torch.linspace(0, n - 1, most).round().long().unique().tolist()
