"""minivb.model: VideoBERTConfig and VideoBERT (encoder → H₀ → Transformer → head on [CLS])."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from minivb.model import VideoBERT, VideoBERTConfig

SMALL = dict(num_classes=5, num_frames=6, grid=2, dim=32, depth=2, num_heads=4)


def _video(b=2, t=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, size, size, generator=g)  # (B, T, 3, H, W) in [0, 1]


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return VideoBERT(VideoBERTConfig(**{**SMALL, **overrides}))


def _randomise(model: VideoBERT, seed: int = 1) -> VideoBERT:
    """Non-trivial BatchNorm statistics (eval mode uses them), so every part matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


# --------------------------------------------------------------------------- shapes


def test_shapes():
    model = _model().eval()
    video = _video(2, 4)
    logits = model(video)
    assert logits.shape == (2, 5)
    logits2, attns = model(video, need_weights=True)
    torch.testing.assert_close(logits2, logits)
    L = 1 + 4 * 4
    assert len(attns) == 2 and all(a.shape == (2, 4, L, L) for a in attns)
    torch.testing.assert_close(attns[-1].sum(-1), torch.ones(2, 4, L))
    assert model.embed(video).shape == (2, 32)
    assert model.initial_state(video).shape == (2, L, 32)
    cls = model.cls_attention(attns[-1])
    assert cls.shape == (2, 4, 4)
    torch.testing.assert_close(cls.sum(dim=(1, 2)) + attns[-1][:, :, 0, 0].mean(1), torch.ones(2))


def test_logits_are_head_of_cls_state():
    model = _model().eval()
    video = _video()
    with torch.no_grad():
        torch.testing.assert_close(model(video), model.head(model.embed(video)))


@pytest.mark.parametrize("t,grid", [(1, 2), (3, 1), (1, 1), (6, 2)])
def test_one_frame_and_one_region(t, grid):
    model = _model(grid=grid).eval()
    video = _video(2, t)
    logits, attns = model(video, need_weights=True)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert attns[0].shape == (2, 4, 1 + t * grid * grid, 1 + t * grid * grid)


def test_initial_state_by_hand():
    """H₀ = [CLS] ; proj(encoder(video)) + time embedding (per frame) + region embedding (per region)."""
    model = _randomise(_model()).eval()
    with torch.no_grad():
        model.time_embed.normal_()
        model.region_embed.normal_()
        model.cls_token.normal_()
    video = _video(2, 3)
    with torch.no_grad():
        h0 = model.initial_state(video)  # (B, 1 + T·R, dim)
        feats = model.encoder(video)  # (B, T, R, D_enc)
        R = 4
        for b in range(2):
            torch.testing.assert_close(h0[b, 0], model.cls_token[0, 0])
            for t in range(3):
                for r in range(R):
                    want = model.proj(feats[b, t, r]) + model.time_embed[t] + model.region_embed[r]
                    torch.testing.assert_close(h0[b, 1 + t * R + r], want)


def test_forward_by_hand():
    """forward == head(Transformer(H₀)[:, 0])."""
    model = _randomise(_model()).eval()
    video = _video(2, 3)
    with torch.no_grad():
        h, _ = model.transformer(model.initial_state(video))
        torch.testing.assert_close(model(video), model.head(h[:, 0]))
        h2, attns = model.hidden_states(video)
        torch.testing.assert_close(h2, h)
        assert attns is None


# --------------------------------------------------------------------------- time order


def test_without_time_embedding_the_model_is_blind_to_frame_order():
    video = _video(2, 5)
    reverse = video.flip(1)  # the clip played backwards
    blind = _randomise(_model(time_embedding=False)).eval()
    assert blind.time_embed is None
    with torch.no_grad():
        torch.testing.assert_close(blind(reverse), blind(video))
        torch.testing.assert_close(blind(video[:, torch.randperm(5)]), blind(video))  # any shuffle
        torch.testing.assert_close(blind.embed(reverse), blind.embed(video))

    full = _randomise(_model()).eval()
    with torch.no_grad():
        assert (full(reverse) - full(video)).abs().max() > 1e-3


def test_region_embedding_can_be_switched_off():
    model = _model(region_embedding=False).eval()
    assert model.region_embed is None and model.time_embed is not None
    assert model(_video()).shape == (2, 5)
    n_full = sum(p.numel() for p in _model().parameters())
    n_off = sum(p.numel() for p in model.parameters())
    assert n_full - n_off == 4 * 32  # R × dim


# --------------------------------------------------------------------------- training behaviour


def test_every_parameter_gets_a_gradient():
    model = _model(dropout=0.1)
    model.train()
    logits = model(_video(2, 4))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_deterministic_with_seed():
    video = _video()
    a = _model(seed=3).eval()(video)
    b = _model(seed=3).eval()(video)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = _model(seed=4).eval()(video)
    assert not torch.equal(a, c)

    def train_step_logits():
        model = _model(seed=3, dropout=0.2).train()
        torch.manual_seed(5)  # the dropout masks
        return model(video)

    torch.testing.assert_close(train_step_logits(), train_step_logits(), rtol=0, atol=0)


def test_state_dict_round_trip_and_config_dict():
    model = _randomise(_model()).eval()
    cfg = VideoBERTConfig(**model.config.to_dict())
    assert cfg == model.config
    torch.manual_seed(99)
    other = VideoBERT(cfg).eval()
    other.load_state_dict(model.state_dict())
    video = _video()
    with torch.no_grad():
        torch.testing.assert_close(other(video), model(video), rtol=0, atol=0)


def test_channels_last_same_logits():
    model = _randomise(_model()).eval()
    cl = _model(channels_last=True).eval()
    cl.load_state_dict(model.state_dict())
    video = _video()
    with torch.no_grad():
        torch.testing.assert_close(cl(video), model(video))


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50"])
def test_resnet_encoder(encoder):
    model = _model(encoder=encoder, grid=1).eval()
    assert model.proj.in_features == {"resnet18": 512, "resnet50": 2048}[encoder]
    with torch.no_grad():
        assert model(_video(1, 2, size=64)).shape == (1, 5)


# --------------------------------------------------------------------------- bad inputs


def test_too_many_frames():
    model = _model()
    with pytest.raises(ValueError, match="7 frames .* num_frames=6"):
        model(_video(1, 7))


def test_bad_video_shape():
    model = _model()
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(torch.rand(4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(torch.rand(1, 2, 4, 32, 32))


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(dim=30, num_heads=4), r"dim \(30\) must be divisible by num_heads \(4\)"),
        (dict(num_heads=3), r"dim \(32\) must be divisible by num_heads \(3\)"),
        (dict(num_classes=0), "num_classes must be a positive integer"),
        (dict(num_frames=0), "num_frames must be a positive integer"),
        (dict(grid=0), "grid must be a positive integer"),
        (dict(grid=2.0), "grid must be a positive integer"),
        (dict(dim=-8), "dim must be a positive integer"),
        (dict(depth=0), "depth must be a positive integer"),
        (dict(num_heads=True), "num_heads must be a positive integer"),
        (dict(mlp_ratio=0), "mlp_ratio must be a number > 0"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(dropout=-0.1), r"dropout must be in \[0, 1\)"),
        (dict(encoder="vit"), "unknown encoder 'vit'"),
        (dict(pretrained=True), "pretrained=True needs a ResNet encoder"),
        (dict(time_embedding="yes"), "time_embedding must be True or False"),
    ],
)
def test_bad_configs(overrides, match):
    with pytest.raises(ValueError, match=match):
        VideoBERTConfig(**{**SMALL, **overrides})


def test_config_defaults_and_replace():
    cfg = VideoBERTConfig(num_classes=8)
    assert (cfg.num_frames, cfg.grid, cfg.encoder, cfg.pretrained) == (16, 4, "small", False)
    assert cfg.time_embedding and cfg.region_embedding and cfg.num_regions == 16
    with pytest.raises(ValueError, match="divisible"):
        replace(cfg, num_heads=5)  # replace() validates too
    with pytest.raises(ValueError, match="config must be a VideoBERTConfig"):
        VideoBERT(dict(num_classes=8))


def test_uint8_video_means_0_to_255_and_other_dtypes_or_empty_video_are_clear_errors():
    model = VideoBERT(VideoBERTConfig(num_classes=3, num_frames=4, grid=2, dim=16, depth=1, num_heads=2)).eval()
    frames = torch.randint(0, 256, (2, 4, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():  # loaders ship uint8 batches; the model scales them itself, exactly as x / 255
        torch.testing.assert_close(model(frames), model(frames.float() / 255))
    with pytest.raises(ValueError, match="uint8 .* or floating point"):
        model(torch.zeros(1, 2, 3, 64, 64, dtype=torch.int32))
    with pytest.raises(ValueError, match="T >= 1"):
        model(torch.zeros(1, 0, 3, 64, 64))
