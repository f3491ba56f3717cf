"""Built in notebook 05, §5. The Transformer: N pre-norm layers of attention + MLP (seed §3 step 3, §4).

    "H = Transformer(X, A, N, H₀), where X is the input sequence (the video frame
     sequence), A is the self-attention matrix, N is the number of layers, and H₀ is
     the initial hidden state."                                       — seed, §4

    "These features are passed to the Transformer layers to learn temporal
     features."                                                  — seed, §3 step 2

Here H₀ is the token sequence ``x`` (built by :mod:`minivb.model` from X), every layer
computes its own self-attention matrix A with :class:`~minivb.attention.MultiHeadAttention`,
and ``depth`` is N.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadAttention
from .plumbing.checks import check_int


class TransformerLayer(nn.Module):
    """One pre-norm Transformer layer::

        x = x + attn(norm1(x))      # tokens exchange information (A = softmax(QKᵀ/√D))
        x = x + mlp(norm2(x))       # each token is transformed on its own

    with ``mlp = Linear(dim, hidden) → GELU → Dropout → Linear(hidden, dim)``,
    ``hidden = round(dim · mlp_ratio)``.

    Why pre-norm (LayerNorm *before* each sub-block, as in GPT-2 and ViT) rather than the
    original post-norm (``x = norm(x + f(x))``): the residual path ``x → x + …`` stays an
    identity from the first layer to the last, so gradients reach the early layers
    undiminished and deeper stacks train stably at ordinary learning rates, without the
    learning-rate warm-up tricks post-norm needs. The price: the residual stream is never
    normalised inside the stack, so a stack of pre-norm layers needs one final LayerNorm
    at its end (:class:`Transformer` has it, as ``norm``).

    Same computation as ``nn.TransformerEncoderLayer(dim, num_heads, hidden, dropout,
    activation="gelu", batch_first=True, norm_first=True)``; see :meth:`load_from_torch`.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout)  # validates dim, heads, dropout
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)  # on the attention branch's output
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.dropout2 = nn.Dropout(dropout)  # on the MLP branch's output

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x ``(B, L, dim)``, mask as in :class:`MultiHeadAttention` → ``(x, attn (B, heads, L, L) or None)``."""
        a, attn = self.attn(self.norm1(x), mask, need_weights)  # (B, L, dim)
        x = x + self.dropout1(a)
        x = x + self.dropout2(self.mlp(self.norm2(x)))  # (B, L, dim)
        return x, attn

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> "TransformerLayer":
        """Copy the weights of a matching ``nn.TransformerEncoderLayer`` (norm_first=True, GELU)."""
        if not layer.norm_first:
            raise ValueError("need an nn.TransformerEncoderLayer with norm_first=True (pre-norm), like ours")
        if getattr(layer, "activation_relu_or_gelu", 2) != 2:
            raise ValueError('need an nn.TransformerEncoderLayer with activation="gelu", like ours')
        if (layer.norm1.eps, layer.norm2.eps) != (self.norm1.eps, self.norm2.eps):
            raise ValueError(f"LayerNorm eps mismatch: theirs {layer.norm1.eps}, ours {self.norm1.eps}")
        if layer.linear1.weight.shape != self.mlp[0].weight.shape:
            raise ValueError(
                f"MLP size mismatch: theirs {tuple(layer.linear1.weight.shape)}, ours {tuple(self.mlp[0].weight.shape)}"
            )
        self.attn.load_from_torch(layer.self_attn)
        for ours, theirs in (
            (self.norm1, layer.norm1),
            (self.norm2, layer.norm2),
            (self.mlp[0], layer.linear1),
            (self.mlp[3], layer.linear2),
        ):
            ours.load_state_dict(theirs.state_dict())
        return self


class Transformer(nn.Module):
    """``H = Transformer(X, A, N, H₀)``: ``depth`` (= N) pre-norm layers, then a final LayerNorm.

    ``forward(x, mask=None, need_weights=False) -> (h, attns)``: x = H₀ ``(B, L, dim)``
    → h ``(B, L, dim)``; ``attns`` is a list of every layer's maps ``(B, heads, L, L)``
    when ``need_weights`` else None. ``mask`` as in :class:`MultiHeadAttention`.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        depth = check_int("depth", depth)
        self.layers = nn.ModuleList(TransformerLayer(dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)  # pre-norm leaves the residual stream unnormalised: normalise once here

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        attns: list[torch.Tensor] | None = [] if need_weights else None
        for layer in self.layers:
            x, attn = layer(x, mask, need_weights)  # (B, L, dim)
            if attns is not None:
                attns.append(attn)  # (B, heads, L, L)
        return self.norm(x), attns

    @torch.no_grad()
    def load_from_torch(self, encoder: nn.TransformerEncoder) -> "Transformer":
        """Copy the weights of an ``nn.TransformerEncoder`` of matching layers with a final ``norm``."""
        if len(encoder.layers) != len(self.layers) or encoder.norm is None:
            raise ValueError(
                f"need an nn.TransformerEncoder with {len(self.layers)} layers and a final norm, "
                f"got {len(encoder.layers)} layers and norm={encoder.norm}"
            )
        for ours, theirs in zip(self.layers, encoder.layers):
            ours.load_from_torch(theirs)
        self.norm.load_state_dict(encoder.norm.state_dict())
        return self
