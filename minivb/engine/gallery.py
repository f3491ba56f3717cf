"""Retrieval's machinery: videos → [CLS] embeddings (:func:`embed_videos`), kept as a :class:`Gallery` on disk.

The search and its metrics are the lesson (:mod:`minivb.retrieval`, built in notebook 07); this module embeds many
videos in batches with a trained model (or raw pixels, the baseline) and saves them for
``python -m minivb.retrieve``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..plumbing.samples import Skipped
from .checkpoint import GALLERY_FORMAT as FORMAT
from .checkpoint import Preprocessing, load_file, save_checkpoint
from .inference import in_chunks, map_videos, video_views

PIXEL_GRID = 8  # the pixel baseline: each mean frame pooled to 8×8 → 3·8·8 = 192 numbers
UNIT_TOLERANCE = 1e-3  # how far from 1 a gallery row's norm may be (float rounding)


# --------------------------------------------------------------------------- embeddings


def view_embedding(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Views ``(B, V, T, 3, H, W)`` (or one view ``(B, T, 3, H, W)``) → unit [CLS] embeddings ``(B, dim)``, mean over
    views."""
    if views.ndim == 5:
        views = views[:, None]  # (B, 1, T, 3, H, W)
    B, V = views.shape[:2]
    h = in_chunks(model.embed, views.flatten(0, 1)).float()  # (B·V, dim)
    return F.normalize(h.view(B, V, -1).mean(1), dim=1)  # (B, dim), ‖row‖ = 1


def pixel_embedding(views: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: views ``(B, V, T, 3, H, W)`` uint8 → ``(B, 3·8·8)`` unit vectors.

    The mean frame (over views and time), average-pooled to 8×8, flattened, L2-normalised.
    Averaging over time forgets the frame order: a video and its reversal get the same vector.
    """
    if views.ndim == 5:
        views = views[:, None]
    frames = views.float().div(255).mean(dim=(1, 2))  # (B, 3, H, W)
    pooled = F.adaptive_avg_pool2d(frames, PIXEL_GRID)  # (B, 3, 8, 8)
    return F.normalize(pooled.flatten(1), dim=1)  # (B, 192)


@dataclass(eq=False)  # a tensor field: compare galleries field by field
class Gallery:
    """Embedded videos: ``embeddings (N, D)`` (unit rows), their ``paths``, ``labels`` (names, or None when
    unknown), ``classes`` (the label names in index order, or None), ``checkpoint`` (the model that made
    the embeddings, or None for :func:`pixel_embedding`), ``preprocessing`` (:class:`Preprocessing` as a dict) and
    ``fingerprint`` (:func:`~minivb.engine.checkpoint.weights_fingerprint` of that model: queries must be embedded by
    the
    same weights; None for pixels, and for galleries made before it was stored)."""

    embeddings: torch.Tensor
    paths: list[str]
    labels: list[str] | None = None
    classes: list[str] | None = None
    checkpoint: str | None = None
    preprocessing: dict = field(default_factory=dict)
    fingerprint: str | None = None

    def __post_init__(self):
        if self.embeddings.ndim != 2 or len(self.paths) != len(self.embeddings):
            raise ValueError(
                f"embeddings must be (N, D) with one row per path, got {tuple(self.embeddings.shape)} for "
                f"{len(self.paths)} paths"
            )
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise ValueError(f"{len(self.labels)} labels for {len(self.paths)} paths")
        if not torch.isfinite(self.embeddings).all():  # a NaN row would be ranked as if it meant something
            bad = int((~torch.isfinite(self.embeddings)).any(dim=1).sum())
            raise ValueError(f"{bad} of {len(self.paths)} embeddings are not finite (NaN or inf)")
        if self.labels is not None and self.classes is not None:
            unknown = sorted(set(self.labels) - set(self.classes))
            if unknown:
                raise ValueError(f"labels outside the class list: {', '.join(map(repr, unknown[:5]))}")
        off = int(((self.embeddings.double().norm(dim=1) - 1).abs() > UNIT_TOLERANCE).sum())
        if off:  # a zero row is as near to every query as any other: recall and mAP of nothing
            raise ValueError(f"{off} of {len(self.paths)} embeddings are not unit vectors (norm 1 ± {UNIT_TOLERANCE})")

    def __len__(self) -> int:
        return len(self.paths)

    def label_ids(self) -> torch.Tensor:
        """Labels → class indices ``(N,)`` (``classes`` order, or first appearance if there is no class list)."""
        if self.labels is None:
            raise ValueError("the gallery has no labels; index a labelled split (--data-root, --split)")
        names = self.classes or list(dict.fromkeys(self.labels))
        index = {c: i for i, c in enumerate(names)}
        return torch.tensor([index[y] for y in self.labels], dtype=torch.long)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically; plain tensors, strings and lists only (``torch.load(weights_only=True)`` reads it)."""
        return save_checkpoint(
            path,
            {
                "format": FORMAT,
                "version": 1,
                "command": "minivb.retrieve",  # who wrote it (retrieve index --force replaces only its own)
                **dataclasses.asdict(self),
                "embeddings": self.embeddings.float().contiguous(),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Gallery":
        """The gallery at ``path``: a missing file → ``FileNotFoundError``, anything else → one-line ``ValueError``."""
        obj = load_file(path, "minivb gallery", "make one with python -m minivb.retrieve index")
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            what = (
                "a training checkpoint, not a gallery"
                if isinstance(obj, dict) and "model" in obj
                else "not a minivb gallery"
            )
            raise ValueError(f"{path} is {what}; make one with python -m minivb.retrieve index")
        try:
            return cls(**{f.name: obj[f.name] for f in dataclasses.fields(cls) if f.name in obj})
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"{path} is a damaged minivb gallery ({' '.join(str(e).split())[:200]})") from None


@torch.no_grad()
def embed_videos(
    model: nn.Module | None,
    paths: Sequence[str | os.PathLike],
    prep: Preprocessing,
    *,
    labels: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str | None = None,
    progress: str | None = None,
    decode: str = "auto",
) -> tuple[Gallery, list[Skipped]]:
    """Embed every video → ``(gallery of the videos that could be decoded, skipped files)``.

    ``model``: a VideoBERT (:func:`view_embedding`), or ``None`` for the raw-pixel baseline
    (:func:`pixel_embedding`). ``labels``: one per path (kept for the decoded ones). The
    gallery's ``checkpoint`` is left None: the caller knows where the model came from. ``decode``: where frame
    stores' JPEGs are decoded (:func:`~minivb.engine.inference.map_videos`).
    """
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} paths")
    if model is None:
        fn, dim, device = pixel_embedding, 3 * PIXEL_GRID**2, torch.device(device or "cpu")
    else:
        device = torch.device(device) if device is not None else next(model.parameters()).device
        model.eval()
        fn, dim = (lambda views: view_embedding(model, views)), model.config.dim
    rows, skipped = map_videos(
        fn,
        video_views(paths, prep),
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
        decode=decode,
    )
    kept = [i for i, r in enumerate(rows) if r is not None]
    embeddings = torch.stack([rows[i] for i in kept]) if kept else torch.zeros(0, dim)  # (N, D)
    return Gallery(
        embeddings,
        [str(paths[i]) for i in kept],
        None if labels is None else [str(labels[i]) for i in kept],
        None if classes is None else list(classes),
        None,
        dataclasses.asdict(prep),
    ), skipped
