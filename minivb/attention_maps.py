"""Built in notebook 08, §2.
What the model looks at: the [CLS] token's attention over frames × regions, and attention rollout.

    "A = softmax(QKᵀ/√D)"                                              — seed, §4

The [CLS] token's row of A, ``A[0, 1:]``, says how much each (frame, region) token feeds the
[CLS] state that the output layer reads — in one layer. But every layer mixes tokens again,
so the last layer's [CLS] row is taken over tokens that already hold a mixture of others.
*Attention rollout* (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020)
follows the mixing through all N layers. Each layer's output is ``x + attn(x)`` (the residual
connection), so a token keeps half of itself and takes half from what it attends to::

    Â_l = ½ (mean over heads of A_l) + ½ I          (rows sum to 1)
    rollout = Â_N · Â_{N-1} · … · Â_1                   (L × L, rows sum to 1)

and ``rollout[0, 1:]`` is how much of each input token reaches [CLS]. Both are attention
weights, not causes: a heuristic picture, useful for seeing *where* and *when* a model reads.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def attention_rollout(attns: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Every layer's maps ``[(B, heads, L, L)] × N`` → rollout ``(B, L, L)`` (rows sum to 1).

    ``residual``: the weight of the identity (the residual connection) in each layer's matrix.
    """
    if not attns:
        raise ValueError("attention rollout needs the maps of at least one layer")
    rollout = None
    for attn in attns:  # layer 1 first
        a = attn.float().mean(dim=1)  # (B, L, L): heads averaged
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = (1 - residual) * a + residual * eye  # the residual path: x + attn(x)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # (B, L, L): Â_l · (Â_{l-1} · … · Â_1)
    return rollout


@torch.no_grad()
def cls_maps(model: nn.Module, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Attention maps of a :class:`~minivb.model.VideoBERT` for a batch of clips ``(B, T, 3, H, W)``.

    Returns ``logits`` ``(B, C)``, ``last`` — the last layer's [CLS] attention ``(B, T, R)``
    (heads averaged) — and ``rollout`` — [CLS]'s row of :func:`attention_rollout` over the
    frame tokens ``(B, T, R)``, renormalised to sum to 1 (the [CLS] input token itself left out).
    """
    was_training = model.training
    model.eval()
    logits, attns = model(video, need_weights=True)  # (B, C), [(B, heads, L, L)] × N
    model.train(was_training)
    B, T = video.shape[:2]
    R = model.num_regions
    rollout = attention_rollout(attns)[:, 0, 1:]  # (B, T·R): how much of each token reaches [CLS]
    rollout = rollout / rollout.sum(dim=-1, keepdim=True)
    return {"logits": logits, "last": model.cls_attention(attns[-1]), "rollout": rollout.reshape(B, T, R)}


def plot_attention(
    frames: np.ndarray | torch.Tensor,
    maps: dict[str, np.ndarray | torch.Tensor],
    title: str | None = None,
    alpha: float = 0.55,
):
    """Draw a clip's frames (top row) and each map ``(T, R)`` over them (one row per map) → a matplotlib Figure.

    ``frames``: uint8 ``(T, H, W, 3)`` or ``(T, 3, H, W)``; ``maps``: name → ``(T, grid²)``
    weights. Each map is drawn as a heat map over the frame's regions (nearest neighbour, so
    the regions stay visible), one colour scale per map, its per-frame total in the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
        frames = frames.transpose(0, 2, 3, 1)  # (T, H, W, 3)
    T, H, W = frames.shape[:3]
    fig = Figure(figsize=(1.3 * T, 1.45 * (1 + len(maps))), tight_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(maps), T, squeeze=False)
    for t in range(T):
        axes[0, t].imshow(frames[t])
        axes[0, t].set_title(f"clip frame {t}", fontsize=8)
    for row, (name, m) in enumerate(maps.items(), start=1):
        m = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float64)
        grid = int(round(np.sqrt(m.shape[-1])))
        vmax = float(m.max()) or 1.0
        for t in range(T):
            ax = axes[row, t]
            ax.imshow(frames[t])
            ax.imshow(
                m[t].reshape(grid, grid),
                cmap="inferno",
                alpha=alpha,
                vmin=0,
                vmax=vmax,
                extent=(-0.5, W - 0.5, H - 0.5, -0.5),
                interpolation="nearest",
            )
            ax.set_title(f"{m[t].sum():.0%}", fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
