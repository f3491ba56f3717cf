"""minivb.transformer against nn.TransformerEncoderLayer / nn.TransformerEncoder with copied weights."""

import pytest
import torch
from torch import nn

from minivb.attention import MultiHeadAttention
from minivb.transformer import Transformer, TransformerLayer

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=2e-5)}


def _torch_layer(dim, heads, hidden):
    return nn.TransformerEncoderLayer(
        dim, heads, hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )


def _randomise_(module, seed=0):
    """Non-trivial LayerNorm affine parameters and biases, so a mix-up would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p + 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _pair(dim=16, depth=2, heads=4, mlp_ratio=4.0, dtype=torch.float64):
    torch.manual_seed(0)
    ref = nn.TransformerEncoder(
        _torch_layer(dim, heads, round(dim * mlp_ratio)), depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False
    )
    ref = _randomise_(ref).to(dtype).eval()
    ours = Transformer(dim, depth, heads, mlp_ratio).to(dtype).eval().load_from_torch(ref)
    return ours, ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_equals_nn_transformer_encoder_layer(dtype):
    torch.manual_seed(0)
    ref = _randomise_(_torch_layer(16, 4, 48)).to(dtype).eval()
    ours = TransformerLayer(16, 4, mlp_ratio=3.0).to(dtype).eval().load_from_torch(ref)
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    for m in (None, mask):
        want = ref(x, src_key_padding_mask=None if m is None else ~m)
        out, attn = ours(x, m)
        assert out.shape == (3, 7, 16) and attn is None
        torch.testing.assert_close(out, want, **TOL[dtype])
        out_w, attn_w = ours(x, m, need_weights=True)
        assert attn_w.shape == (3, 4, 7, 7)
        torch.testing.assert_close(out_w, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_transformer_equals_nn_transformer_encoder(dtype):
    ours, ref = _pair(dtype=dtype)
    x = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(2), dtype=dtype)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    for m in (None, mask):
        want = ref(x, src_key_padding_mask=None if m is None else ~m)
        h, attns = ours(x, m)
        assert attns is None
        torch.testing.assert_close(h, want, **TOL[dtype])
        h_w, attns = ours(x, m, need_weights=True)
        torch.testing.assert_close(h_w, want, **TOL[dtype])


def test_structure_names_and_shapes():
    t = Transformer(24, depth=3, num_heads=6, mlp_ratio=2.0)
    assert len(t.layers) == 3 and isinstance(t.norm, nn.LayerNorm)
    layer = t.layers[0]
    assert isinstance(layer.attn, MultiHeadAttention) and layer.attn.num_heads == 6
    assert isinstance(layer.norm1, nn.LayerNorm) and isinstance(layer.norm2, nn.LayerNorm)
    assert [type(m) for m in layer.mlp] == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    assert layer.mlp[0].weight.shape == (48, 24) and layer.mlp[3].weight.shape == (24, 48)
    x = torch.randn(2, 5, 24)
    h, attns = t(x, need_weights=True)
    assert h.shape == (2, 5, 24)
    assert len(attns) == 3 and all(a.shape == (2, 6, 5, 5) for a in attns)
    for a in attns:
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 6, 5))


def test_pre_norm_residual_identity():
    """Zeroed branch outputs make each layer the identity: the residual path is x → x."""
    t = Transformer(8, depth=2, num_heads=2)
    with torch.no_grad():
        for layer in t.layers:
            layer.attn.out_proj.weight.zero_(), layer.attn.out_proj.bias.zero_()
            layer.mlp[3].weight.zero_(), layer.mlp[3].bias.zero_()
    x = torch.randn(2, 4, 8)
    h, _ = t(x)
    torch.testing.assert_close(h, t.norm(x))


def test_masks_and_padding():
    torch.manual_seed(0)
    t = Transformer(16, depth=2, num_heads=4).eval()
    x = torch.randn(3, 6, 16)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2] = False  # an all-padding item: no NaN anywhere
    h, attns = t(x, mask, need_weights=True)
    assert torch.isfinite(h).all()
    for a in attns:
        assert (a[1, :, :, 3:] == 0).all() and (a[2] == 0).all()
    torch.testing.assert_close(t(x, mask)[0], h, rtol=1e-5, atol=1e-5)
    # padded keys do not influence the real tokens
    x2 = x.clone()
    x2[1, 3:] = torch.randn(3, 16)
    torch.testing.assert_close(t(x2, mask)[0][1, :3], h[1, :3])


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    t = Transformer(16, depth=2, num_heads=4)
    x = torch.randn(2, 5, 16)
    for need_weights in (False, True):
        t.zero_grad(set_to_none=True)
        t(x, need_weights=need_weights)[0].square().sum().backward()
        for name, p in t.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_deterministic_with_seed_and_dropout_only_in_training():
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    a = Transformer(16, 2, 4, dropout=0.2)
    torch.manual_seed(3)
    b = Transformer(16, 2, 4, dropout=0.2)
    torch.manual_seed(4)
    ya = a(x)[0]
    torch.manual_seed(4)
    yb = b(x)[0]
    assert torch.equal(ya, yb)
    a.eval()
    assert torch.equal(a(x)[0], a(x)[0])
    assert not torch.allclose(ya, a(x)[0])


def test_single_token_sequence():
    ours, ref = _pair(dtype=torch.float64)
    x = torch.randn(2, 1, 16, dtype=torch.float64)
    h, attns = ours(x, need_weights=True)
    assert h.shape == (2, 1, 16) and all((a == 1).all() for a in attns)
    torch.testing.assert_close(h, ref(x), **TOL[torch.float64])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dim=10, depth=1, num_heads=4), "divisible"),
        (dict(dim=8, depth=1, num_heads=0), "num_heads"),
        (dict(dim=0, depth=1, num_heads=1), "dim"),
        (dict(dim=8, depth=0, num_heads=2), "depth"),
        (dict(dim=8, depth=1, num_heads=2, mlp_ratio=0), "mlp_ratio"),
        (dict(dim=8, depth=1, num_heads=2, dropout=-0.1), "dropout"),
    ],
)
def test_bad_config_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Transformer(**kwargs)


def test_load_from_torch_rejects_mismatch():
    layer = TransformerLayer(16, 4)
    post_norm = nn.TransformerEncoderLayer(16, 4, 64, dropout=0.0, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match="norm_first"):
        layer.load_from_torch(post_norm)
    with pytest.raises(ValueError, match="MLP size"):
        layer.load_from_torch(_torch_layer(16, 4, 32))


def test_load_from_torch_refuses_a_relu_layer():
    relu = nn.TransformerEncoderLayer(8, 2, 32, dropout=0.0, batch_first=True, norm_first=True)  # activation="relu"
    with pytest.raises(ValueError, match="gelu"):
        TransformerLayer(8, 2).load_from_torch(relu)
