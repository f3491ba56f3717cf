"""minivb.encoder: per-frame CNN → region features (B, T, R, D)."""

from __future__ import annotations

import math
import os
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from minivb.encoder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameEncoder,
    SmallCNN,
    build_encoder,
    resnet_trunk,
)
from minivb.video import split_regions


def _video(b=2, t=3, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g)  # (B, T, 3, H, W) in [0, 1]


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial running stats and affine parameters (eval mode uses them)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_small_shapes(grid):
    torch.manual_seed(0)
    enc = build_encoder("small", grid)
    out = enc(_video(2, 3))
    assert enc.out_dim == 128 and enc.grid == grid and enc.num_regions == grid * grid
    assert out.shape == (2, 3, grid * grid, 128)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_small_single_frame_and_feature_map_size():
    enc = build_encoder("small", 4).eval()
    assert enc(_video(1, 1)).shape == (1, 1, 16, 128)
    assert enc.feature_map(torch.rand(5, 3, 64, 64)).shape == (5, 128, 4, 4)  # 64 / 2⁴ = 4
    assert enc.feature_map(torch.rand(1, 3, 96, 128)).shape == (1, 128, 6, 8)


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_shapes_and_trunk(name, dim):
    torch.manual_seed(0)
    enc = build_encoder(name, 2).eval()
    assert enc.out_dim == dim
    assert list(dict(enc.backbone.named_children())) == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    with torch.no_grad():
        assert enc(_video(1, 2)).shape == (1, 2, 4, dim)
        assert enc.feature_map(torch.rand(1, 3, 224, 224)).shape == (1, dim, 7, 7)  # stride 32


def test_resnet_trunk_is_torchvision_resnet_without_head():
    """Same weights: torchvision's resnet18(x) == fc(mean over the trunk's feature map)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    _randomise_bn(net)
    trunk = resnet_trunk("resnet18").eval()
    missing = trunk.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")})
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net.fc(trunk(x).mean(dim=(2, 3))), net(x))
    n_net = sum(p.numel() for p in net.parameters())
    n_fc = sum(p.numel() for p in net.fc.parameters())
    assert sum(p.numel() for p in trunk.parameters()) == n_net - n_fc


# --------------------------------------------------------------------------- numbers


def test_normalisation_uses_imagenet_mean_std():
    torch.manual_seed(0)
    enc = build_encoder("small", 2).eval()
    _randomise_bn(enc)
    frames = torch.rand(4, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    with torch.no_grad():
        torch.testing.assert_close(enc.feature_map(frames), enc.backbone((frames - mean) / std))
    assert "mean" not in enc.state_dict() and "std" not in enc.state_dict()  # constants, not weights


def test_frames_are_encoded_independently():
    """Folding T into the batch: encoding a clip == encoding each frame alone (eval mode)."""
    torch.manual_seed(0)
    enc = build_encoder("small", 2).eval()
    _randomise_bn(enc)
    video = _video(2, 4)
    with torch.no_grad():
        out = enc(video)  # (B, T, R, D)
        for b in range(2):
            for t in range(4):
                torch.testing.assert_close(out[b, t], enc(video[b : b + 1, t : t + 1])[0, 0])


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_region_pooling_equals_tile_means(grid):
    """Region r = the mean of feature-map tile (row r // grid, col r % grid), split_regions' order."""
    torch.manual_seed(0)
    enc = build_encoder("small", grid).eval()
    _randomise_bn(enc)
    video = _video(2, 3, 128, 128)  # → 8×8 feature maps
    with torch.no_grad():
        out = enc(video)  # (B, T, R, D)
        fmap = enc.feature_map(video.flatten(0, 1))  # (B·T, D, 8, 8)
    s = 8 // grid
    by_hand = torch.empty(6, grid * grid, enc.out_dim)
    for n in range(6):
        for r in range(grid * grid):
            row, col = r // grid, r % grid
            by_hand[n, r] = fmap[n, :, row * s : (row + 1) * s, col * s : (col + 1) * s].mean(dim=(1, 2))
    torch.testing.assert_close(out.flatten(0, 1), by_hand)
    tiles = split_regions(fmap.permute(0, 2, 3, 1), grid)  # (B·T, R, s, s, D)
    torch.testing.assert_close(out.flatten(0, 1), tiles.mean(dim=(2, 3)))


def test_region_pooling_uneven_map_uses_overlapping_tiles():
    """A 7×7 map on a 2×2 grid: tiles [floor(i·7/2), ceil((i+1)·7/2)) = rows/cols 0..3 and 3..6."""
    enc = FrameEncoder(nn.Identity(), 3, grid=2)
    fmap = torch.randn(2, 3, 7, 7)
    out = enc.pool_regions(fmap)  # (N, R, D)
    for r in range(4):
        i, j = r // 2, r % 2
        rs, re_ = math.floor(i * 7 / 2), math.ceil((i + 1) * 7 / 2)
        cs, ce = math.floor(j * 7 / 2), math.ceil((j + 1) * 7 / 2)
        torch.testing.assert_close(out[:, r], fmap[:, :, rs:re_, cs:ce].mean(dim=(2, 3)))


def test_regions_match_pixel_regions_of_split_regions():
    """With an identity 'CNN', region r's feature is the mean normalised colour of pixel tile r."""
    enc = FrameEncoder(nn.Identity(), 3, grid=4)
    video = _video(2, 3)
    out = enc(video)  # (B, T, 16, 3)
    mean = torch.tensor(IMAGENET_MEAN)
    std = torch.tensor(IMAGENET_STD)
    pixels = video.permute(0, 1, 3, 4, 2)  # (B, T, H, W, 3)
    tiles = split_regions(pixels, 4)  # (B, T, 16, 16, 16, 3)
    torch.testing.assert_close(out, (tiles.mean(dim=(3, 4)) - mean) / std)


def test_channels_last_gives_same_result():
    torch.manual_seed(0)
    ref = build_encoder("small", 2).eval()
    _randomise_bn(ref)
    cl = build_encoder("small", 2, channels_last=True).eval()
    cl.load_state_dict(ref.state_dict())
    conv = cl.backbone[0][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    video = _video(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(cl(video), ref(video))
        assert cl.feature_map(video[0]).is_contiguous(memory_format=torch.channels_last)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    enc = build_encoder("small", 2)
    enc(_video(2, 2)).square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_deterministic_with_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        enc = build_encoder("small", 2)
        outs.append(enc(_video(1, 2)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# --------------------------------------------------------------------------- pretrained weights (never downloaded)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty $TORCH_HOME and a download that fails like a machine without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    calls = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path, calls


@pytest.mark.parametrize(
    "name,weights,file_name",
    [
        ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth"),
        ("resnet50", "ResNet50_Weights.IMAGENET1K_V2", "resnet50-11ad3fa6.pth"),
    ],
)
def test_pretrained_without_network_raises_clear_error(offline_hub, name, weights, file_name):
    home, calls = offline_hub
    cache = os.path.join(str(home), "hub", "checkpoints")
    with pytest.raises(RuntimeError) as info:
        build_encoder(name, 2, pretrained=True)
    msg = str(info.value)
    assert "\n" not in msg
    assert weights in msg and file_name in msg and cache in msg
    assert "pretrained=False" in msg and "copy" in msg
    assert len(calls) == 1 and calls[0].endswith(file_name)


def test_pretrained_uses_cached_file(offline_hub):
    """Copying the file into $TORCH_HOME/hub/checkpoints is the documented fix: then it loads offline."""
    home, calls = offline_hub
    torch.manual_seed(7)
    net = torchvision.models.resnet18(weights=None)
    cache = home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(net.state_dict(), cache / "resnet18-f37072fd.pth")
    enc = build_encoder("resnet18", 2, pretrained=True)
    assert calls == []
    torch.testing.assert_close(enc.backbone.conv1.weight, net.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(enc.backbone.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var, rtol=0, atol=0)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="vgg16", grid=2), "unknown encoder 'vgg16'"),
        (dict(name="small", grid=0), "grid must be a positive integer"),
        (dict(name="small", grid=True), "grid must be a positive integer"),
        (dict(name="small", grid=2.0), "grid must be a positive integer"),
        (dict(name="small", grid=2, pretrained=True), "no pretrained weights"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_encoder(**kwargs)


def test_bad_inputs():
    enc = build_encoder("small", 4)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        enc(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        enc(torch.rand(1, 2, 1, 64, 64))
    with pytest.raises(ValueError, match="smaller than the 4x4 region grid"):
        enc(torch.rand(1, 2, 3, 32, 32))  # → 2×2 feature map
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(widths=())


def test_the_commands_say_their_own_option_when_weights_are_offline(offline_hub, toy, tmp_path, one_line_error):
    """The library says ``pretrained=False``; the command lines say ``--no-pretrained`` (their option)."""
    from minivb.pretrain import main as pretrain_main
    from minivb.train import main as train_main

    argv = ["--data-root", str(toy), "--out", str(tmp_path / "r")]
    train_argv = [*argv, "--encoder", "resnet18", "--pretrained", "--grid", "2"]
    pretrain_argv = [*argv, "--subset", "k400"]  # (the k400 preset's tokenizer is an ImageNet ResNet-18)
    for main, args in ((train_main, train_argv), (pretrain_main, pretrain_argv)):
        err = one_line_error(main, args, "cannot load ImageNet weights")
        assert "pass --no-pretrained" in err and "pretrained=False" not in err
