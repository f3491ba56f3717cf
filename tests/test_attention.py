"""minivb.attention against PyTorch's references: F.scaled_dot_product_attention, nn.MultiheadAttention."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minivb.attention import MultiHeadAttention, scaled_dot_product_attention

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _qkv(*shape, dtype=torch.float64, lk=None, dv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    *lead, lq, d = shape
    lk = lq if lk is None else lk
    dv = d if dv is None else dv
    q = torch.randn(*lead, lq, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, lk, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, lk, dv, generator=g, dtype=dtype)
    return q, k, v


def _torch_mha(dim, heads, dtype, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).to(dtype).eval()
    with torch.no_grad():  # non-zero biases, so a mix-up of q/k/v biases would show
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    ours = MultiHeadAttention(dim, heads).to(dtype).eval().load_from_torch(ref)
    return ours, ref


# --------------------------------------------------------------------------- the function


def test_formula_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    v = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    out, attn = scaled_dot_product_attention(q, k, v)
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64) / math.sqrt(2)
    a = scores.exp() / scores.exp().sum(-1, keepdim=True)
    torch.testing.assert_close(attn, a, rtol=0, atol=1e-15)
    torch.testing.assert_close(out, a @ v, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shapes_and_equality_with_torch_sdpa(dtype):
    q, k, v = _qkv(2, 3, 5, 8, lk=7, dv=6, dtype=dtype)
    out, attn = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 5, 6) and attn.shape == (2, 3, 5, 7)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 5, dtype=dtype), **TOL[dtype])
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mask_matches_torch_sdpa_and_masked_keys_get_zero_weight(dtype):
    q, k, v = _qkv(2, 4, 6, 8, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, 6, 6, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    out, attn = scaled_dot_product_attention(q, k, v, mask)
    assert (attn.masked_select(~mask.expand_as(attn)) == 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 6, dtype=dtype), **TOL[dtype])
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL[dtype])


def test_fully_masked_rows_give_zeros_not_nan():
    q, k, v = _qkv(2, 4, 3)
    q.requires_grad_(True)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of item 0 may attend to nothing
    mask[1] = False  # item 1 is all padding
    out, attn = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(attn).all()
    assert (attn[0, 1] == 0).all() and (out[0, 1] == 0).all() and (out[1] == 0).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and (q.grad[1] == 0).all()


def test_function_rejects_bad_inputs():
    q, k, v = _qkv(4, 3)
    with pytest.raises(ValueError, match="bool"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 4))
    with pytest.raises(ValueError, match="last dimension"):
        scaled_dot_product_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match="number of keys"):
        scaled_dot_product_attention(q, k, v[:3])


def test_single_token():
    q, k, v = _qkv(2, 1, 4)
    out, attn = scaled_dot_product_attention(q, k, v)
    assert (attn == 1).all()
    torch.testing.assert_close(out, v)


# --------------------------------------------------------------------------- MultiHeadAttention


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim,heads", [(16, 4), (12, 3), (8, 1)])
def test_equals_nn_multihead_attention(dtype, dim, heads):
    ours, ref = _torch_mha(dim, heads, dtype)
    x = torch.randn(3, 7, dim, generator=torch.Generator().manual_seed(2), dtype=dtype)
    out, attn = ours(x)
    assert out.shape == (3, 7, dim) and attn is None
    want, want_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, want, **TOL[dtype])
    out_w, attn_w = ours(x, need_weights=True)
    assert attn_w.shape == (3, heads, 7, 7)
    torch.testing.assert_close(out_w, want, **TOL[dtype])
    torch.testing.assert_close(attn_w, want_w, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_key_padding_mask_matches_nn_multihead_attention(dtype):
    ours, ref = _torch_mha(16, 4, dtype)
    x = torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(3), dtype=dtype)
    mask = torch.ones(3, 6, dtype=torch.bool)  # True = real token
    mask[1, 4:] = False
    mask[2, 1:] = False
    want, want_w = ref(x, x, x, key_padding_mask=~mask, average_attn_weights=False)
    out, attn = ours(x, mask, need_weights=True)
    torch.testing.assert_close(out, want, **TOL[dtype])
    torch.testing.assert_close(attn, want_w, **TOL[dtype])
    assert (attn[1, :, :, 4:] == 0).all() and (attn[2, :, :, 1:] == 0).all()
    torch.testing.assert_close(ours(x, mask)[0], want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_attention_pattern_mask_matches_nn_multihead_attention(dtype):
    ours, ref = _torch_mha(16, 4, dtype)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4), dtype=dtype)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()  # True = may attend
    want, _ = ref(x, x, x, attn_mask=~causal)
    out, attn = ours(x, causal[None, None], need_weights=True)
    torch.testing.assert_close(out, want, **TOL[dtype])
    torch.testing.assert_close(ours(x, causal[None, None])[0], want, **TOL[dtype])
    assert (attn.triu(1) == 0).all()


def test_fast_path_equals_need_weights_path_and_weights_sum_to_one():
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 6).eval()
    x = torch.randn(2, 9, 24)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    for m in (None, mask):
        fast, none = mha(x, m)
        slow, attn = mha(x, m, need_weights=True)
        assert none is None
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 6, 9), rtol=1e-5, atol=1e-6)


def test_fully_padded_item_gives_zero_output_from_attention_no_nan():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 4, 8, requires_grad=True)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1] = False
    for need_weights in (False, True):
        out, _ = mha(x, mask, need_weights=need_weights)
        assert torch.isfinite(out).all()
        # nothing to attend to: the heads give 0, so the output is out_proj's bias
        torch.testing.assert_close(out[1], mha.out_proj.bias.expand(4, 8))
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 5, 16)
    for need_weights in (False, True):
        mha.zero_grad(set_to_none=True)
        mha(x, need_weights=need_weights)[0].square().sum().backward()
        for name, p in mha.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_only_in_training_and_deterministic_with_seed():
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    mha.eval()
    torch.testing.assert_close(mha(x)[0], mha(x, need_weights=True)[0])  # no dropout in eval
    mha.train()
    torch.manual_seed(1)
    a = mha(x, need_weights=True)
    torch.manual_seed(1)
    b = mha(x, need_weights=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], mha.eval()(x)[0])  # dropout changed the output
    torch.testing.assert_close(a[1].sum(-1), torch.ones(2, 4, 6))  # returned maps are pre-dropout


def test_same_seed_same_module():
    x = torch.randn(1, 4, 8)
    torch.manual_seed(5)
    a = MultiHeadAttention(8, 2)(x)[0]
    torch.manual_seed(5)
    b = MultiHeadAttention(8, 2)(x)[0]
    assert torch.equal(a, b)


def test_submodules_and_bias_flag():
    mha = MultiHeadAttention(12, 3)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        lin = getattr(mha, name)
        assert isinstance(lin, nn.Linear) and lin.weight.shape == (12, 12) and lin.bias is not None
    assert mha.head_dim == 4
    nobias = MultiHeadAttention(12, 3, bias=False)
    assert all(getattr(nobias, n).bias is None for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
    ref = nn.MultiheadAttention(12, 3, bias=False, batch_first=True).eval()
    nobias.eval().load_from_torch(ref)
    x = torch.randn(2, 3, 12)
    torch.testing.assert_close(nobias(x)[0], ref(x, x, x)[0], rtol=1e-5, atol=1e-6)


def test_sequence_of_one_token():
    ours, ref = _torch_mha(8, 2, torch.float64)
    x = torch.randn(3, 1, 8, dtype=torch.float64)
    out, attn = ours(x, need_weights=True)
    assert out.shape == (3, 1, 8) and (attn == 1).all()
    torch.testing.assert_close(out, ref(x, x, x)[0], **TOL[torch.float64])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dim=10, num_heads=3), "divisible"),
        (dict(dim=8, num_heads=0), "num_heads"),
        (dict(dim=8, num_heads=-2), "num_heads"),
        (dict(dim=0, num_heads=1), "dim"),
        (dict(dim=8.0, num_heads=2), "dim"),
        (dict(dim=8, num_heads=2, dropout=1.0), "dropout"),
    ],
)
def test_bad_config_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_bad_inputs_rejected():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, L, 8\)"):
        mha(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="key-padding"):
        mha(torch.randn(2, 4, 8), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        mha(torch.randn(2, 4, 8), torch.ones(2, 4))


def test_a_3d_mask_is_one_pattern_per_clip_even_when_batch_equals_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()  # 2 heads, and a batch of 2
    x = torch.randn(2, 4, 8)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[0, :, 3] = False  # clip 0 may not look at token 3; clip 1 may
    _, attn = mha(x, mask, need_weights=True)
    assert (attn[0, :, :, 3] == 0).all() and (attn[1, :, :, 3] > 0).all()
    fast, _ = mha(x, mask)
    torch.testing.assert_close(fast, mha(x, mask[:, None], need_weights=True)[0])


def test_load_from_torch_refuses_modules_that_compute_something_else():
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention(8, 2).load_from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True))
