"""Built in notebook 02, §2–7. A CNN that turns every frame into region features (seed §3 step 2).

    "Next, we pass the frame sequence through a convolutional neural network (CNN)
     to encode it and extract the video's spatial features. These features are
     passed to the Transformer layers to learn temporal features."
                                                            — seed, §3 step 2

    (B, T, 3, H, W) in [0, 1] (or uint8 0…255)  →  ImageNet-normalise  →  CNN on each frame (T folded
    into the batch)  →  feature map (B·T, D, h, w)  →  average over a grid × grid set
    of tiles  →  region features (B, T, R, D), R = grid².

Region ``r`` is the tile at row ``r // grid``, column ``r % grid`` — the same order as
:func:`minivb.video.split_regions`. When ``h`` and ``w`` are multiples of ``grid``, the
feature-map tile of region ``r`` lies over the pixel tile of region ``r`` (its cells'
receptive fields cover that tile and reach a little into the neighbours); otherwise
adaptive average pooling uses tiles that overlap by up to one cell.

Backbones (:func:`build_encoder`):

* ``"small"`` — :class:`SmallCNN`, four stride-2 conv-BN-ReLU blocks (a 64×64 frame
  becomes a 4×4 map of 128 features); fast on a CPU, for the toy set.
* ``"resnet18"`` / ``"resnet50"`` — torchvision's ResNet trunk up to its last conv stage
  (stride 32: a 224×224 frame becomes a 7×7 map of 512 / 2048 features), optionally with
  ImageNet weights (``ResNet18_Weights.IMAGENET1K_V1`` / ``ResNet50_Weights.IMAGENET1K_V2``).

Channels-last: ``build_encoder(..., channels_last=True)`` stores the conv weights and feeds
the frames in ``torch.channels_last`` memory format (faster convolutions on GPUs with
tensor cores, especially under bf16 autocast); results are the same.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from .plumbing.checks import check_int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODERS = ("small", "resnet18", "resnet50")


# --------------------------------------------------------------------------- backbones


class ConvBNReLU(nn.Sequential):
    """3×3 convolution (no bias: BatchNorm has one) → BatchNorm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SmallCNN(nn.Sequential):
    """A few stride-2 :class:`ConvBNReLU` blocks: ``(N, 3, H, W)`` → ``(N, widths[-1], H/2^k, W/2^k)``.

    With the default widths (16, 32, 64, 128) a 64×64 frame becomes a 4×4 map of 128
    features; each cell sees a 31×31 pixel window (its receptive field).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128)):
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must be a non-empty sequence of positive integers, got ()")
        widths = tuple(check_int(f"widths[{i}]", w) for i, w in enumerate(widths))
        channels = (3,) + widths
        super().__init__(*(ConvBNReLU(channels[i], channels[i + 1], stride=2) for i in range(len(widths))))
        self.out_dim = widths[-1]


_RESNETS = {
    # name: (constructor name, weights enum name, default ImageNet weights, features out)
    "resnet18": ("resnet18", "ResNet18_Weights", "IMAGENET1K_V1", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", "IMAGENET1K_V2", 2048),
}


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of ResNet ``name`` from torchvision's cache, downloading them if missing.

    No network and no cached file → one clear ``RuntimeError`` (which weights, where they
    are looked for, how to fix it).
    """
    import torchvision.models as tvm

    _, enum_name, member, _ = _RESNETS[name]
    weights = getattr(getattr(tvm, enum_name), member)
    cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")  # $TORCH_HOME/hub/checkpoints
    file_name = os.path.basename(urlparse(weights.url).path)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # no network, HTTP error, bad hash, unreadable file
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise RuntimeError(
            f"cannot load ImageNet weights {enum_name}.{member} for {name}: {file_name} is not in "
            f"{cache_dir} and downloading {weights.url} failed ({reason}); pass pretrained=False, "
            f"or copy {file_name} into {cache_dir}"
        ) from e


def resnet_trunk(name: str, pretrained: bool = False) -> nn.Sequential:
    """torchvision's ResNet without ``avgpool`` and ``fc``: ``(N, 3, H, W)`` → ``(N, C, H/32, W/32)``.

    Children keep torchvision's names (``conv1``, ``bn1``, …, ``layer4``), so its state
    dicts load directly. ``pretrained=True`` loads the ImageNet weights (see :func:`build_encoder`).
    """
    import torchvision.models as tvm

    if name not in _RESNETS:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {sorted(_RESNETS)}")
    ctor_name, _, _, out_dim = _RESNETS[name]
    net = getattr(tvm, ctor_name)(weights=None)
    if pretrained:
        net.load_state_dict(_imagenet_state_dict(name))
    trunk = nn.Sequential(OrderedDict((k, m) for k, m in net.named_children() if k not in ("avgpool", "fc")))
    trunk.out_dim = out_dim
    return trunk


# --------------------------------------------------------------------------- encoder


class FrameEncoder(nn.Module):
    """Per-frame CNN + region pooling: video ``(B, T, 3, H, W)`` in [0, 1] → ``(B, T, R, D)``.

    ``backbone`` maps normalised frames ``(N, 3, H, W)`` to a feature map ``(N, out_dim, h, w)``;
    the map is average-pooled onto a ``grid × grid`` set of tiles (``F.adaptive_avg_pool2d``),
    region ``r`` = row ``r // grid``, column ``r % grid``. Inputs are normalised here with the
    ImageNet mean/std (buffers, not saved in the state dict), so callers never normalise.
    """

    def __init__(self, backbone: nn.Module, out_dim: int, grid: int, *, channels_last: bool = False):
        super().__init__()
        grid = check_int("grid", grid)
        self.backbone = backbone
        self.out_dim = int(out_dim)
        self.grid = grid
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    @property
    def num_regions(self) -> int:
        return self.grid * self.grid

    def feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, 3, H, W)`` in [0, 1] → the backbone's last feature map ``(N, D, h, w)``."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be shaped (N, 3, H, W), got {tuple(frames.shape)}")
        x = (frames - self.mean) / self.std  # (N, 3, H, W), ImageNet-normalised
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)  # (N, D, h, w)

    def pool_regions(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, D, h, w)`` → region features ``(N, R, D)``, row by row."""
        h, w = fmap.shape[-2:]
        if h < self.grid or w < self.grid:
            raise ValueError(
                f"feature map {h}x{w} is smaller than the {self.grid}x{self.grid} region grid; "
                f"use larger frames or a smaller grid"
            )
        x = F.adaptive_avg_pool2d(fmap, self.grid)  # (N, D, grid, grid)
        return x.flatten(2).transpose(1, 2)  # (N, R, D); r = row * grid + col

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[2] != 3 or video.shape[1] < 1:
            raise ValueError(f"video must be shaped (B, T, 3, H, W) with T >= 1, got {tuple(video.shape)}")
        if video.dtype == torch.uint8:  # frames as decoded, 0…255 (data loaders ship uint8: 4× fewer bytes)
            video = video.float().div_(255)  # (B, T, 3, H, W) in [0, 1], on the model's device
        elif not video.is_floating_point():
            raise ValueError(f"video must be uint8 (0…255) or floating point in [0, 1], got {video.dtype}")
        b, t = video.shape[:2]
        fmap = self.feature_map(video.flatten(0, 1))  # (B·T, D, h, w): T folded into the batch
        regions = self.pool_regions(fmap)  # (B·T, R, D)
        return regions.reshape(b, t, self.num_regions, self.out_dim)  # (B, T, R, D)

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, grid={self.grid}, channels_last={self.channels_last}"


def build_encoder(name: str, grid: int, pretrained: bool = False, *, channels_last: bool = False) -> FrameEncoder:
    """Make a :class:`FrameEncoder` with backbone ``name`` ∈ {"small", "resnet18", "resnet50"}.

    ``pretrained=True`` (ResNets only) loads torchvision's ImageNet weights
    (``ResNet18_Weights.IMAGENET1K_V1`` / ``ResNet50_Weights.IMAGENET1K_V2``) from
    ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``), downloading
    them there if missing. ``channels_last=True`` runs the CNN in channels-last memory format.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {list(ENCODERS)}")
    if name == "small":
        if pretrained:
            raise ValueError("the 'small' encoder has no pretrained weights; use pretrained=False or a ResNet encoder")
        backbone = SmallCNN()
    else:
        backbone = resnet_trunk(name, pretrained=pretrained)
    return FrameEncoder(backbone, backbone.out_dim, grid, channels_last=channels_last)
