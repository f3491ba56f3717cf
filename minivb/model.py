"""Built in notebook 05, §2–6.
VideoBERT: CNN region tokens + time/region embeddings + Transformer + output layer (seed §3 step 5, §4).

    "H = Transformer(X, A, N, H₀), where X is the input sequence (the video frame
     sequence), A is the self-attention matrix, N is the number of layers, and H₀ is
     the initial hidden state."                                       — seed, §4

    "Finally, we pass the output of the Transformer layers to a fully connected layer
     to obtain the final prediction."                            — seed, §3 step 5

    video X (B, T, 3, H, W) ──encoder──▶ (B, T, R, D_enc) ──proj──▶ (B, T, R, dim)
        + time embedding (T, 1, dim) + region embedding (1, R, dim)      [broadcast]
        ──flatten──▶ (B, T·R, dim), token 1 + t·R + r = region r of frame t
        ──prepend [CLS]──▶ H₀ (B, 1 + T·R, dim) ──Transformer (N layers)──▶ H
        ──H[:, 0] ([CLS])──▶ head (fully connected) ──▶ logits (B, num_classes)

Self-attention by itself ignores the order of its tokens: without the time embedding the
model sees a clip as an unordered set of frames (``time_embedding=False`` shows it: its
logits do not change when a clip is played backwards).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .encoder import ENCODERS, build_encoder
from .plumbing.checks import check_int, check_transformer
from .transformer import Transformer

# Initial scale of the learned embeddings (time, region, [CLS]): that of the projected region features they are
# added to (rms ≈ 0.3 at the start of training, toy preset), so "when" and "where" are as visible as "what" from
# the first step. At BERT's 0.02 they must first grow ~15× — AdamW moves a weight by about lr per step, so that
# takes hundreds of steps: the toy preset then reached 73% after 15 epochs, against 98–99% at 0.3 (2-core CPU).
EMBED_STD = 0.3


@dataclass
class VideoBERTConfig:
    """Everything needed to rebuild a :class:`VideoBERT` (stored in checkpoints via ``asdict``).

    num_classes: outputs of the head. num_frames: the most frames a clip may have (size of
    the time embedding). grid: regions per frame = grid². encoder: "small", "resnet18" or
    "resnet50"; pretrained: ImageNet weights for a ResNet encoder. dim, depth (N),
    num_heads, mlp_ratio, dropout: the Transformer. time_embedding / region_embedding:
    add the learned embeddings (switch off to study what they do). channels_last: run the
    CNN in channels-last memory format (faster on GPUs and CPUs; the same results up to float rounding).
    """

    num_classes: int
    num_frames: int = 16
    grid: int = 4
    encoder: str = "small"
    pretrained: bool = False
    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    time_embedding: bool = True
    region_embedding: bool = True
    channels_last: bool = False

    def __post_init__(self):
        for name in ("num_classes", "num_frames", "grid", "dim", "depth", "num_heads"):
            setattr(self, name, check_int(name, getattr(self, name)))  # NumPy integers → int (for asdict / JSON)
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of {list(ENCODERS)}")
        for name in ("pretrained", "time_embedding", "region_embedding", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.pretrained and self.encoder == "small":
            raise ValueError(
                "pretrained=True needs a ResNet encoder ('resnet18' or 'resnet50'); 'small' has no pretrained weights"
            )
        check_transformer(self.dim, self.num_heads, self.mlp_ratio, self.dropout)

    @property
    def num_regions(self) -> int:
        return self.grid * self.grid

    def to_dict(self) -> dict:
        return asdict(self)


class VideoBERT(nn.Module):
    """Video classifier: ``forward(video (B, T, 3, H, W) in [0, 1], or uint8)`` → logits ``(B, num_classes)``.

    Parts: ``encoder`` (:class:`~minivb.encoder.FrameEncoder`), ``proj`` (region features →
    model width), ``time_embed`` ``(num_frames, dim)``, ``region_embed`` ``(R, dim)``,
    ``cls_token`` ``(1, 1, dim)``, ``transformer`` (:class:`~minivb.transformer.Transformer`)
    and ``head`` (the fully connected output layer). ``forward(video, need_weights=True)``
    returns ``(logits, attns)`` with every layer's attention maps ``(B, heads, L, L)``,
    ``L = 1 + T·R``; :meth:`embed` returns the [CLS] state ``(B, dim)`` (for retrieval);
    :meth:`initial_state` gives H₀ and :meth:`hidden_states` gives H, every token's final state.
    """

    def __init__(self, config: VideoBERTConfig):
        super().__init__()
        if not isinstance(config, VideoBERTConfig):
            raise ValueError(f"config must be a VideoBERTConfig, got {type(config).__name__}")
        c = self.config = config
        self.encoder = build_encoder(c.encoder, c.grid, c.pretrained, channels_last=c.channels_last)
        self.proj = nn.Linear(self.encoder.out_dim, c.dim)  # (…, D_enc) → (…, dim)
        if c.time_embedding:
            self.time_embed = nn.Parameter(torch.zeros(c.num_frames, c.dim))  # one vector per frame position t
        else:
            self.register_parameter("time_embed", None)
        if c.region_embedding:
            self.region_embed = nn.Parameter(torch.zeros(c.num_regions, c.dim))  # one vector per region r
        else:
            self.register_parameter("region_embed", None)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = Transformer(c.dim, c.depth, c.num_heads, c.mlp_ratio, c.dropout)
        self.head = nn.Linear(c.dim, c.num_classes)  # the output layer: fully connected
        for p in (self.time_embed, self.region_embed, self.cls_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=EMBED_STD)

    @property
    def num_regions(self) -> int:
        return self.config.num_regions

    def initial_state(self, video: torch.Tensor) -> torch.Tensor:
        """H₀: video ``(B, T, 3, H, W)`` → ``(B, 1 + T·R, dim)``; token ``1 + t·R + r`` is region r of frame t."""
        if video.ndim != 5:
            raise ValueError(
                f"video must be shaped (B, T, 3, H, W) (float in [0, 1] or uint8), got {tuple(video.shape)}"
            )
        B, T = video.shape[:2]
        if T > self.config.num_frames:
            raise ValueError(
                f"clip has {T} frames but the model's time embedding covers at most num_frames="
                f"{self.config.num_frames}; sample fewer frames or build the model with a larger num_frames"
            )
        x = self.proj(self.encoder(video))  # (B, T, R, dim)
        if self.time_embed is not None:
            x = x + self.time_embed[:T, None, :]  # (T, 1, dim): the same for every region of frame t
        if self.region_embed is not None:
            x = x + self.region_embed[None, :, :]  # (1, R, dim): the same for region r of every frame
        x = x.flatten(1, 2)  # (B, T·R, dim)
        cls = self.cls_token.expand(B, -1, -1)  # (B, 1, dim)
        return torch.cat([cls, x], dim=1)  # (B, 1 + T·R, dim)

    def hidden_states(
        self, video: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """H = Transformer(X, A, N, H₀) → ``(H (B, 1 + T·R, dim), attns or None)``."""
        h0 = self.dropout(self.initial_state(video))  # (B, L, dim)
        return self.transformer(h0, need_weights=need_weights)  # (B, L, dim), [(B, heads, L, L)] * N

    def forward(self, video: torch.Tensor, need_weights: bool = False):
        h, attns = self.hidden_states(video, need_weights)
        logits = self.head(h[:, 0])  # [CLS] state (B, dim) → (B, num_classes)
        return (logits, attns) if need_weights else logits

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """The [CLS] state ``(B, dim)``: one vector per clip (for retrieval)."""
        h, _ = self.hidden_states(video)
        return h[:, 0]

    def configure_optimizers(self, lr: float, weight_decay: float, *, fused: bool = False) -> torch.optim.AdamW:
        """AdamW with weight decay on weight matrices and conv kernels only (:func:`adamw`)."""
        return adamw(self, lr, weight_decay, {"time_embed", "region_embed", "cls_token"}, fused=fused)

    def cls_attention(self, attn: torch.Tensor) -> torch.Tensor:
        """One layer's maps ``(B, heads, L, L)`` → [CLS]'s attention to each (frame, region) ``(B, T, R)``, mean over
        heads."""
        R = self.num_regions
        B, _, L, _ = attn.shape
        if (L - 1) % R:
            raise ValueError(f"attention over {L} tokens is not 1 + T·R with R = {R}")
        return attn[:, :, 0, 1:].mean(dim=1).reshape(B, (L - 1) // R, R)  # (B, T, R)


def adamw(
    model: nn.Module, lr: float, weight_decay: float, embeddings: set[str], *, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW over two parameter groups: weight decay on weight matrices and conv kernels only.

    Norms, biases, and the learned embeddings (parameters named in ``embeddings``) are not decayed: pulling them
    toward zero only removes what they encode. Every model of minivb hands out its optimizer through this.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name in embeddings else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), fused=fused)
