"""``python -m minivb.bench flops``: forward FLOPs per clip of the k400 preset's model, and of variants that show
what each of its choices (frames, grid, frame size, Transformer size, CNN trunk) costs.

Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on the CPU (batch 1, eval mode, no grad): it counts
matrix products and convolutions, one multiply-add = 2 FLOPs, and nothing for norms, softmax, GELU, pooling or
additions. It does not count PyTorch's fused attention kernel (``F.scaled_dot_product_attention``, which the model
calls), so the attention matmuls are added by formula: QKᵀ and A·V cost 2·L²·d each per layer (L tokens, width d
summed over the heads), 4·L²·d in all. :func:`attention_check` compares the formula with a count of the same
layer run through :func:`minivb.attention.scaled_dot_product_attention` (plain matmuls, which are counted).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..data import registry
from ..engine.options import TrainOptions
from ..model import VideoBERT
from .report import LiveTable, fmt, machine_facts

KEYS = ("encoder", "num_frames", "size", "grid", "dim", "depth", "heads")
# (name, changes to the preset): each variant changes one choice of the preset (112² needs grid 4: a 4×4 map)
VARIANTS = [
    ("preset", {}),
    ("T=8", {"num_frames": 8}),
    ("T=32", {"num_frames": 32}),
    ("grid 4", {"grid": 4}),
    ("112², grid 4", {"size": 112, "grid": 4}),
    ("depth 12, dim 768", {"depth": 12, "dim": 768, "heads": 12}),
    ("resnet50", {"encoder": "resnet50"}),
]


def build_model(s: dict) -> VideoBERT:
    """The preset's model with settings ``s`` (400 classes, random weights, no dropout), in eval mode; what ``s``
    leaves out (the optimisation, the time embedding) is the default data set's."""
    opts = TrainOptions.from_dict(registry.get(None).preset | s).replace(pretrained=False, dropout=0.0)
    return VideoBERT(opts.model_config(num_classes=400)).eval()


def tokens(s: dict) -> int:
    """L = 1 + T·grid²: [CLS] and one token per region of every frame."""
    return 1 + s["num_frames"] * s["grid"] ** 2


def attention_flops(L: int, dim: int, depth: int) -> int:
    """QKᵀ (L×d by d×L) and A·V (L×L by L×d), summed over the heads: 2·L²·d each, per layer."""
    return 4 * L * L * dim * depth


def _count(fn, *args) -> tuple[int, dict]:
    """``fn(*args)`` under FlopCounterMode, without grad → (total FLOPs, counts per module)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops(), {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}


def count_flops(s: dict) -> dict:
    """Parameters and forward FLOPs of one clip ``(1, T, 3, size, size)`` → a result row (FLOPs as integers).

    ``cnn`` is the ``encoder`` submodule's share of the same pass (measured on its own if the counter has no
    entry for it); ``transformer_head`` is the rest (proj, Transformer, head) plus the attention matmuls.
    """
    model = build_model(s)
    x = torch.zeros(1, s["num_frames"], 3, s["size"], s["size"])
    counted, by_module = _count(model, x)
    cnn = by_module.get(f"{type(model).__name__}.encoder")
    if cnn is None:
        cnn = _count(model.encoder, x)[0]
    L = tokens(s)
    attention = attention_flops(L, s["dim"], s["depth"])
    return {
        "settings": dict(s),
        "tokens": L,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": {
            "total": counted + attention,
            "cnn": cnn,
            "transformer_head": counted - cnn + attention,
            "attention": attention,
            "counted": counted,
        },
    }


def attention_check(s: dict) -> dict:
    """One attention layer of width dim on L tokens, counted with the fused kernel and with the formula's plain
    matmuls (``need_weights=True`` → :func:`minivb.attention.scaled_dot_product_attention`); their difference
    is what FlopCounterMode misses, to compare with 4·L²·d."""
    attn = build_model(s).transformer.layers[0].attn
    x = torch.zeros(1, tokens(s), s["dim"])  # (1, L, dim)
    fused = _count(attn, x, None, False)[0]
    plain = _count(attn, x, None, True)[0]
    formula = attention_flops(tokens(s), s["dim"], 1)
    return {
        "tokens": tokens(s),
        "dim": s["dim"],
        "fused": fused,
        "plain": plain,
        "missed": plain - fused,
        "formula": formula,
        "equal": plain - fused == formula,
    }


def _g(flops: int) -> str:
    return fmt(flops / 1e9, 1)


HEADERS = ["variant", "encoder", "T", "size", "grid", "tokens L", "dim × depth (heads)", "params M", "GFLOPs"]
HEADERS += ["CNN GFLOPs", "Transformer + head GFLOPs", "of which attention", "CNN share", "× preset"]


def flops_cells(r: dict, base: int) -> list:
    """The table's row of a variant: its settings, tokens, parameters, GFLOPs, where they go, and its total
    over ``base`` (the preset's)."""
    s, f = r["settings"], r["flops"]
    return [
        r["variant"],
        s["encoder"],
        s["num_frames"],
        f"{s['size']}²",
        s["grid"],
        r["tokens"],
        f"{s['dim']} × {s['depth']} ({s['heads']})",
        fmt(r["params"] / 1e6, 1),
        _g(f["total"]),
        _g(f["cnn"]),
        _g(f["transformer_head"]),
        _g(f["attention"]),
        f"{100 * f['cnn'] / f['total']:.0f}%",
        fmt(f["total"] / base, 2),
    ]


FOOTNOTE = (
    "\nGFLOPs per clip (batch 1, forward); Transformer + head = proj, Transformer and head, "
    "with the attention matmuls (4·L²·d per layer) added by formula."
)


def _times(a: float, b: float) -> str:
    return f"×{a / b:.2f}"


def reading(rows: list[dict]) -> list[str]:
    """What the table says, in sentences whose numbers come from ``rows`` (needs the VARIANTS' rows)."""
    r = {row["variant"]: row for row in rows}
    f = {name: row["flops"] for name, row in r.items()}
    p, T = f["preset"], r["preset"]["settings"]["num_frames"]
    lines = [
        f"preset: {_g(p['total'])} GFLOPs per clip, {100 * p['cnn'] / p['total']:.0f}% of them in the CNN "
        f"({r['preset']['settings']['encoder']} on {T} frames); the attention matmuls are "
        f"{100 * p['attention'] / p['transformer_head']:.0f}% of the Transformer + head's {_g(p['transformer_head'])}."
    ]
    L8, L16, L32 = r["T=8"]["tokens"], r["preset"]["tokens"], r["T=32"]["tokens"]
    lines.append(
        f"frames T=8 → {T} → 32 (L = {L8} → {L16} → {L32}): the CNN grows {_times(p['cnn'], f['T=8']['cnn'])}"
        f" and {_times(f['T=32']['cnn'], p['cnn'])} (linear in T), the attention matmuls "
        f"{_times(p['attention'], f['T=8']['attention'])} and {_times(f['T=32']['attention'], p['attention'])}"
        f" (L² grows {_times(L16**2, L8**2)} and {_times(L32**2, L16**2)}), the total "
        f"{_times(p['total'], f['T=8']['total'])} and {_times(f['T=32']['total'], p['total'])}."
    )
    g4 = f["grid 4"]
    lines.append(
        f"grid 4 instead of {r['preset']['settings']['grid']}: L {L16} → {r['grid 4']['tokens']}, "
        f"Transformer + head {_times(g4['transformer_head'], p['transformer_head'])} (attention "
        f"{_times(g4['attention'], p['attention'])}), CNN {_times(g4['cnn'], p['cnn'])}: total "
        f"{_times(g4['total'], p['total'])}."
    )
    a, b = r["preset"]["settings"], r["112², grid 4"]["settings"]
    s112 = f["112², grid 4"]
    lines.append(
        f"{b['size']}² frames with grid {b['grid']}: {_times(b['size'] ** 2, a['size'] ** 2)} the pixels, CNN "
        f"{_times(s112['cnn'], p['cnn'])}, total {_times(s112['total'], p['total'])}; a region is "
        f"{b['size'] // b['grid']}² pixels, 1/{b['grid'] ** 2} of the frame (preset: {a['size'] // a['grid']}², "
        f"1/{a['grid'] ** 2})."
    )
    deep, r50 = f["depth 12, dim 768"], f["resnet50"]
    lines.append(
        f"depth 12, dim 768: Transformer + head {_times(deep['transformer_head'], p['transformer_head'])}, "
        f"total {_times(deep['total'], p['total'])}, CNN share {100 * deep['cnn'] / deep['total']:.0f}%; "
        f"parameters {fmt(r['depth 12, dim 768']['params'] / 1e6, 1)}M vs {fmt(r['preset']['params'] / 1e6, 1)}M."
    )
    lines.append(
        f"resnet50 trunk: CNN {_times(r50['cnn'], p['cnn'])}, total {_times(r50['total'], p['total'])}, "
        f"CNN share {100 * r50['cnn'] / r50['total']:.0f}%."
    )
    return lines


def _notes(check: dict) -> list[str]:
    verdict = "equal" if check["equal"] else "NOT equal: the attention column is off"
    return [
        "model: minivb.model.VideoBERT(num_classes=400, pretrained=False, dropout=0.0), eval mode, torch.no_grad(); "
        "input zeros (1, T, 3, size, size); parameters include the 400-class head",
        "counted by torch.utils.flop_counter.FlopCounterMode on the CPU: matrix products and convolutions only "
        "(1 multiply-add = 2 FLOPs; norms, softmax, GELU, pooling and additions count nothing); "
        "CNN = the model.encoder submodule's count",
        "attention: FlopCounterMode does not count the fused CPU kernel (F.scaled_dot_product_attention), so QKᵀ "
        "and A·V are added by formula, 2·L²·d each = 4·L²·d FLOPs per layer (d = dim, summed over the heads)",
        f"check on one layer of the preset (L = {check['tokens']}, d = {check['dim']}): "
        f"minivb.attention.scaled_dot_product_attention counts {check['missed']:,} FLOPs more than the fused path, "
        f"the formula gives {check['formula']:,}: {verdict}",
    ]


def run_flops(opts, argv: list[str]) -> dict:
    """The ``flops`` subcommand → its results (also printed, each variant's row as soon as it is counted)."""
    facts, t0 = machine_facts(argv), time.perf_counter()
    base = {k: registry.get(opts.preset).preset[k] for k in KEYS}
    check = attention_check(base)
    rows, notes = [], _notes(check)
    result = {"benchmark": "flops", "machine": facts, "settings": {"preset": opts.preset, **base}, "notes": notes}
    result |= {"attention_check": check, "results": rows}

    def cells(r: dict) -> list[list]:
        return [flops_cells(r, rows[0]["flops"]["total"])]  # × preset: the first row's total

    with LiveTable(result, HEADERS, cells, len(VARIANTS), "variant", left=2) as table:
        for name, changes in VARIANTS:
            table.add({"variant": name, **count_flops(base | changes)})
            table.tick()
    notes.append(f"counted in {time.perf_counter() - t0:.1f} s")
    result["reading"] = reading(rows)
    print(FOOTNOTE, "", f"- {notes[-1]}", *[f"- {line}" for line in result["reading"]], sep="\n")
    return result


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``flops`` subcommand and its options (``parents``: the shared options)."""
    f = sub.add_parser(
        "flops",
        parents=parents,
        help="Forward FLOPs per clip of the k400 preset's model and of variants of it.",
        description="Count the forward FLOPs of one clip through the k400 preset's model and through variants "
        "(fewer or more frames, a coarser grid, smaller frames, a bigger Transformer, a ResNet-50 trunk), split "
        "into the CNN and the Transformer + head.",
    )
    f.add_argument("--preset", choices=("k400",), default="k400", help="trainer preset (default: k400)")
    return f
