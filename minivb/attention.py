"""Built in notebooks 03, §1–5, and 04, §1–2. Self-attention and multi-head attention (seed §3 steps 3–4, §4).

    "The self-attention mechanism in the Transformer layers lets the model learn the
     relations between frames. It learns representations by computing the relations
     between different elements of the input sequence. It does not depend on particular
     embeddings or fully connected layers: it learns representations through the
     self-attention matrix."                                     — seed, §3 step 3

    "Multi-head attention lets the model learn different kinds of relations. It splits
     the input representation into several heads and applies self-attention to each
     head. Finally the heads' representations are concatenated to form the final
     representation."                                            — seed, §3 step 4

Masks are boolean with **True = may attend**, the same convention as the boolean
``attn_mask`` of :func:`torch.nn.functional.scaled_dot_product_attention` (and the
opposite of ``nn.MultiheadAttention``'s ``key_padding_mask``, where True = ignore).
A query whose keys are all masked gets all-zero weights and a zero output, never NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .plumbing.checks import check_int


def _check_mask(mask: torch.Tensor) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}")


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written from the seed's formula → ``(out, attn)``.

        "A = softmax(QKᵀ/√D), where Q and K are the query and key matrices and D is
         the dimension."                                              — seed, §4

    Then ``out = A V``. Shapes: q ``(..., Lq, D)``, k ``(..., Lk, D)``, v ``(..., Lk, Dv)``
    → out ``(..., Lq, Dv)``, attn ``(..., Lq, Lk)`` (each row sums to 1 over the keys,
    or is all zeros where every key is masked).

    ``mask``: bool, broadcastable to ``(..., Lq, Lk)``, True = may attend.
    ``dropout_p``: drop attention weights with this probability before ``A V`` (pass 0
    outside training); the returned ``attn`` is the map *before* dropout.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension D, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys, got {k.shape[-2]} and {v.shape[-2]}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Lq, Lk) = QKᵀ/√D
    if mask is not None:
        _check_mask(mask)
        # The most negative finite number (not -inf): a row with every key masked becomes a
        # uniform softmax instead of 0/0 = NaN, and is then zeroed below.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    attn = scores.softmax(dim=-1)  # (..., Lq, Lk) = A
    if mask is not None:
        attn = attn.masked_fill(~mask, 0.0)  # masked keys: exactly 0; fully masked rows: all 0
    weights = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
    return weights @ v, attn  # (..., Lq, Dv), (..., Lq, Lk)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention.

        "H^multihead = Concat(head₁, …, head_H)·W^H, where H is the number of heads and
         W^H is the head weight matrix."                              — seed, §4

    ``q_proj``, ``k_proj``, ``v_proj`` map ``x`` to queries, keys and values (dim → dim);
    each is split into ``num_heads`` heads of ``head_dim = dim // num_heads``; every head
    runs ``A = softmax(QKᵀ/√head_dim)`` on its own slice; the heads are concatenated
    back to dim and ``out_proj`` is W^H.

    ``forward(x, mask=None, need_weights=False) -> (out, attn)``: x ``(B, L, dim)``;
    mask bool, True = may attend: ``(B, L)`` key padding (True = real token), ``(B, L, L)``
    one pattern per clip (shared by the heads), or a 4-D mask broadcastable to
    ``(B, heads, L, L)`` (a 2-D mask is always read as key padding: pass an ``(L, L)``
    pattern as ``pattern[None, None]``). ``attn`` is the
    per-head maps ``(B, heads, L, L)`` when ``need_weights`` else None.
    Without ``need_weights`` it calls PyTorch's fused ``F.scaled_dot_product_attention``
    (flash / memory-efficient kernels on GPUs); with it, our own function above.
    Dropout (training only) applies to the attention weights.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        dim, num_heads = check_int("dim", dim), check_int("num_heads", num_heads)
        if dim % num_heads:
            raise ValueError(
                f"dim ({dim}) must be divisible by num_heads ({num_heads}) so every head gets dim // num_heads channels"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = float(dropout)
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)  # W^H

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, dropout={self.dropout}"

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, L, _ = t.shape
        return t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, L, head_dim)

    def _head_mask(self, mask: torch.Tensor, B: int, L: int) -> torch.Tensor:
        _check_mask(mask)
        if mask.ndim == 2:
            if tuple(mask.shape) != (B, L):
                raise ValueError(
                    f"a 2-D mask is a key-padding mask and must be (B, L) = ({B}, {L}), got {tuple(mask.shape)}; "
                    "pass an (L, L) attention pattern as mask[None, None]"
                )
            return mask[:, None, None, :]  # (B, 1, 1, L): every query, every head sees the same keys
        if mask.ndim == 3:
            return mask[:, None]  # (B, L, L) → (B, 1, L, L): the same pattern for every head
        return mask  # broadcastable to (B, heads, L, L)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be shaped (B, L, {self.dim}), got {tuple(x.shape)}")
        B, L, _ = x.shape
        q = self._split_heads(self.q_proj(x))  # (B, heads, L, head_dim)
        k = self._split_heads(self.k_proj(x))  # (B, heads, L, head_dim)
        v = self._split_heads(self.v_proj(x))  # (B, heads, L, head_dim)
        p = self.dropout if self.training else 0.0
        if mask is not None:
            mask = self._head_mask(mask, B, L)
        if need_weights:
            out, attn = scaled_dot_product_attention(q, k, v, mask, dropout_p=p)  # (B, heads, L, head_dim)
        else:
            live = None
            if mask is not None:
                # Rows with no key to attend to: let them attend everywhere inside the fused
                # kernel (some GPU kernels return NaN for them), then zero their output.
                live = mask.any(dim=-1, keepdim=True)  # (..., L or 1, 1)
                mask = mask | ~live
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, heads, L, head_dim)
            if live is not None:
                out = out.masked_fill(~live, 0.0)
            attn = None
        out = out.transpose(1, 2).reshape(B, L, self.dim)  # Concat(head₁, …, head_H): (B, L, dim)
        return self.out_proj(out), attn  # ·W^H: (B, L, dim)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of an ``nn.MultiheadAttention(dim, num_heads, batch_first=True)``.

        PyTorch stacks W_q, W_k, W_v in one ``in_proj_weight`` ``(3·dim, dim)``; we split it.
        """
        if mha.embed_dim != self.dim or mha.num_heads != self.num_heads or not mha._qkv_same_embed_dim:
            raise ValueError(
                f"need an nn.MultiheadAttention with embed_dim={self.dim}, num_heads={self.num_heads} "
                f"and no kdim/vdim, got embed_dim={mha.embed_dim}, num_heads={mha.num_heads}"
            )
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("need an nn.MultiheadAttention without add_bias_kv and add_zero_attn (ours has neither)")
        if (mha.in_proj_bias is None) != (self.q_proj.bias is None):
            raise ValueError("bias mismatch: both modules must have biases, or neither")
        for proj, w in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_weight.chunk(3)):
            proj.weight.copy_(w)
        if mha.in_proj_bias is not None:
            for proj, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self
