"""Used by notebook 02's exercises: the receptive field of any stack (02.1), pooling onto the region grid when the
map does not divide into equal tiles (02.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .judging import Exercise, Forbidden, Mistake, as_tensor, kind, tensor_hint

# --------------------------------------------------------------------------- 02.1 the receptive field of any stack


def _field_cases() -> list[tuple]:
    return [([(3, 1)],), ([(3, 2)] * 4,), ([(7, 2), (3, 2), (3, 1), (3, 1)],), ([(5, 1), (3, 3), (3, 1)],)]


def _field_reference(layers: list[tuple[int, int]]) -> int:
    rf, jump = 1, 1  # the field of one cell, and how far apart neighbouring cells are, in input pixels
    for kernel, stride in layers:
        rf, jump = rf + (kernel - 1) * jump, jump * stride
    return rf


def whole_number_hint(got, want: int, what: str, how: str) -> str | None:
    """None if ``got`` is one number equal to the whole number ``want`` (an int, a float, a one-element tensor or
    array); else the type it has, or ``what`` gave … and ``how`` a right answer works. Used by 02.1 and 05.2."""
    value = None if isinstance(got, (str, list, tuple, dict, set)) else as_tensor(got)
    if value is None or value.ndim != 0:
        return f"your function returned {kind(got)}, expected an int"
    value = value.item()
    if value == want:
        return None
    return f"{what} gave {int(value) if float(value).is_integer() else value}: {how}"


def _field_compare(got, want: int, args: tuple) -> str | None:
    how = (
        "each layer widens the field by (kernel − 1) times the distance between its input cells in pixels, and each "
        "stride multiplies that distance"
    )
    return whole_number_hint(got, want, f"receptive_field({args[0]})", how)


def _with(layers, widen):
    """The field when each layer adds ``widen(kernel, stride, distance between its input cells)`` pixels."""
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf, jump = rf + widen(kernel, stride, jump), jump * stride
    return rf


def _own_stride(layers):
    rf, jump = 1, 1
    for kernel, stride in layers:
        jump *= stride
        rf += (kernel - 1) * jump
    return rf


FIELD_MISTAKES = (
    Mistake(
        "adding the kernel sizes counts the centre pixel of every layer again: a 1-pixel cell sees 1 pixel, and "
        "each layer adds kernel − 1 input cells to it",
        lambda layers: sum(k for k, _ in layers),
    ),
    Mistake(
        "the strides are missing: after a stride-2 layer, neighbouring cells are 2 pixels apart, so the next "
        "layer's kernel − 1 extra cells reach twice as many pixels",
        lambda layers: 1 + sum(k - 1 for k, _ in layers),
    ),
    Mistake(
        "a layer's own stride does not widen its own field: it spaces out the cells the *next* layer reads, so "
        "multiply the distance between cells after the layer has used it",
        _own_stride,
    ),
    Mistake(
        "fields do not multiply: each layer adds (kernel − 1) times the distance between its input cells",
        lambda layers: math.prod(k for k, _ in layers),
    ),
    Mistake(
        "that is the distance between neighbouring output cells (the product of the strides), not how many pixels "
        "one cell sees",
        lambda layers: math.prod(s for _, s in layers),
    ),
    Mistake(
        "one short: before any layer a cell is one pixel, which sees 1 pixel — start from 1",
        lambda layers: _field_reference(layers) - 1,
    ),
    Mistake(
        "each layer's own stride is not the distance between its input cells: that distance is the product of the "
        "strides of all the layers *below* it (1 for the first layer)",
        lambda layers: _with(layers, lambda kernel, stride, jump: (kernel - 1) * stride),
    ),
    Mistake(
        "a layer adds kernel − 1 cells to the field, not kernel: its centre cell is the one already counted",
        lambda layers: _with(layers, lambda kernel, stride, jump: kernel * jump),
    ),
    Mistake(
        "the layers are read from the output down: they are given from the input up, and the strides of the layers "
        "below a layer set its distance between cells",
        lambda layers: _field_reference(layers[::-1]),
    ),
)

RECEPTIVE_FIELD = Exercise(
    "02.1",
    "receptive_field([(kernel, stride), …]) → int (pixels)",
    _field_cases,
    _field_reference,
    _field_compare,
    FIELD_MISTAKES,
)

# --------------------------------------------------------------------------- 02.2 pool onto the grid, by hand


def _pool_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    shapes = [((4, 7, 7), 2), ((3, 7, 5), 3), ((5, 4, 4), 2), ((2, 6, 6), 4), ((6, 5, 8), 2), ((2, 3, 3), 1)]
    return [(torch.randn(*shape, generator=g), grid) for shape, grid in shapes]


def _pool_reference(fmap: torch.Tensor, grid: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(fmap, grid).flatten(1).T  # (grid², C): region r = row r // grid, col r % grid


def _pool_compare(got, want: torch.Tensor, args: tuple) -> str | None:
    fmap, grid = args
    hint = tensor_hint(got, want, f"pool_to_grid(a {tuple(fmap.shape)} map, {grid})")
    if hint:
        return hint + (
            " (one row per region, numbered row by row, one column per channel; tile i of an axis of n cells "
            "spans ⌊i·n/grid⌋ … ⌈(i+1)·n/grid⌉ − 1)"
        )
    return None


def _spans(n: int, grid: int, end=math.ceil, start=math.floor) -> list[tuple[int, int]]:
    return [(start(i * n / grid), end((i + 1) * n / grid)) for i in range(grid)]


def _tiles(fmap, rows, cols, reduce=lambda t: t.mean(dim=(1, 2)), by_column=False) -> torch.Tensor:
    """(C, H, W) → (regions, C): ``reduce`` of each tile, regions row by row (or column by column)."""
    pairs = [(r, c) for c in cols for r in rows] if by_column else [(r, c) for r in rows for c in cols]
    return torch.stack([reduce(fmap[:, a:b, c:d]) for (a, b), (c, d) in pairs])


def _adaptive(fmap, grid, **kw):
    return _tiles(fmap, _spans(fmap.shape[1], grid), _spans(fmap.shape[2], grid), **kw)


def _equal_tiles(fmap, grid):
    s, t = fmap.shape[1] // grid, fmap.shape[2] // grid
    return _tiles(fmap, [(i * s, i * s + s) for i in range(grid)], [(j * t, j * t + t) for j in range(grid)])


POOL_MISTAKES = (
    Mistake(
        "tiles of H // grid cells leave the last rows or columns out when the map does not divide: every cell must "
        "fall in a tile, so a tile's end is rounded up, ⌈(i + 1)·n / grid⌉",
        _equal_tiles,
    ),
    Mistake(
        "each tile's end is rounded down: adaptive pooling rounds the start down and the end up, so neighbouring "
        "tiles share a row or a column when the map does not divide into equal tiles",
        lambda fmap, grid: _tiles(
            fmap, _spans(fmap.shape[1], grid, math.floor), _spans(fmap.shape[2], grid, math.floor)
        ),
    ),
    Mistake(
        "transposed: one row per region and one column per channel, (grid², C)",
        lambda fmap, grid: _adaptive(fmap, grid).T,
    ),
    Mistake(
        "the regions go column by column: number them row by row, region r at tile row r // grid, column r % grid",
        lambda fmap, grid: _adaptive(fmap, grid, by_column=True),
    ),
    Mistake(
        "that is each tile's largest value: the region's feature is the mean of its tile",
        lambda fmap, grid: _adaptive(fmap, grid, reduce=lambda t: t.amax(dim=(1, 2))),
    ),
    Mistake(
        "that is each tile's sum: the region's feature is the mean of its tile",
        lambda fmap, grid: _adaptive(fmap, grid, reduce=lambda t: t.sum(dim=(1, 2))),
    ),
    Mistake(
        "the columns are cut like the rows: a map is H high and W wide, and the tiles across divide W",
        lambda fmap, grid: _tiles(fmap, _spans(fmap.shape[1], grid), _spans(fmap.shape[1], grid)),
    ),
    Mistake(
        "grid is the number of tiles per side, not their size: the map is cut into grid × grid tiles",
        lambda fmap, grid: F.avg_pool2d(fmap[None], grid)[0].flatten(1).T,
    ),
    Mistake(
        "each tile's start is rounded up: adaptive pooling rounds the start *down*, ⌊i·n / grid⌋, and the end up, so "
        "neighbouring tiles share a row or a column when the map does not divide into equal tiles",
        lambda fmap, grid: _tiles(
            fmap, _spans(fmap.shape[1], grid, start=math.ceil), _spans(fmap.shape[2], grid, start=math.ceil)
        ),
    ),
    Mistake(
        "the tile borders are rounded to the nearest cell, so the tiles never overlap: the start is rounded down, "
        "⌊i·n / grid⌋, and the end up, ⌈(i + 1)·n / grid⌉",
        lambda fmap, grid: _tiles(
            fmap, _spans(fmap.shape[1], grid, round, round), _spans(fmap.shape[2], grid, round, round)
        ),
    ),
    Mistake(
        "one kernel and one stride for every tile (avg_pool2d) cannot make adaptive tiles: their starts ⌊i·n / grid⌋ "
        "are not evenly spaced and their sizes differ — compute each tile's start and end on its own",
        lambda fmap, grid: (
            F.avg_pool2d(
                fmap[None],
                [n - (grid - 1) * (n // grid) for n in fmap.shape[1:]],
                [n // grid for n in fmap.shape[1:]],
            )[0]
            .flatten(1)
            .T
        ),
    ),
    Mistake(
        "the regions are still a grid × grid grid: put them in one axis, row by row → (grid², C)",
        lambda fmap, grid: _adaptive(fmap, grid).reshape(grid, grid, -1),
    ),
)

POOL_TO_GRID = Exercise(
    "02.2",
    "pool_to_grid(feature_map (C, H, W), grid) → (grid², C)",
    _pool_cases,
    _pool_reference,
    _pool_compare,
    POOL_MISTAKES,
    forbidden=(
        Forbidden(F, "adaptive_avg_pool2d", "F.adaptive_avg_pool2d (or nn.AdaptiveAvgPool2d)"),
        Forbidden(F, "adaptive_avg_pool1d", "F.adaptive_avg_pool1d"),
        Forbidden(torch, "adaptive_avg_pool1d", "torch.adaptive_avg_pool1d"),
        Forbidden(torch._C._nn, "adaptive_avg_pool2d", "adaptive_avg_pool2d (under any name)"),  # what F's calls
    ),
    write="the tiles and their means",
)

EXERCISES = (RECEPTIVE_FIELD, POOL_TO_GRID)
