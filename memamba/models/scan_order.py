"""Spatial orders of patches for the conventional Mamba scan: row-major or along a Hilbert curve."""

from __future__ import annotations

import torch

ORDER_MODES = ("row_major", "hilbert")


def spatial_order(coords: torch.Tensor, mode: str = "row_major") -> torch.Tensor:
    """Permutation [N] (int64) that visits the patches at coords [N, 2] ((x, y), any units) in order.

    row_major: by y, then x (reading order). hilbert: by the index of each patch on a Hilbert curve
    through the grid of the distinct x and distinct y values (dense ranks, so the patch size need not
    be known and empty rows/columns are skipped). Ties (equal coords) keep their input order.
    """
    if mode not in ORDER_MODES:
        raise ValueError(f"unknown scan order {mode!r}; valid: {', '.join(ORDER_MODES)}")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape [N, 2], got {tuple(coords.shape)}")
    if len(coords) == 0:
        return torch.zeros(0, dtype=torch.long, device=coords.device)
    if mode == "row_major":
        # Stable sorts by x, then by y: no data-dependent shapes, so no read-back from the device.
        by_x = torch.sort(coords[:, 0], stable=True).indices
        return by_x[torch.sort(coords[by_x, 1], stable=True).indices]
    key = hilbert_index(_dense_ranks(coords[:, 0]), _dense_ranks(coords[:, 1]))
    return torch.sort(key, stable=True).indices


def hilbert_index(column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Distance [N] along the Hilbert curve of the cells (column [N], row [N]) of a 2^k x 2^k grid.

    Vectorised over cells (the loop runs over the k bits). Consecutive cells of the curve are
    4-neighbours on the grid.
    """
    x, y = column.long(), row.long()
    if len(x) == 0:
        return x.clone()
    side = 1 << int(torch.maximum(x.max(), y.max())).bit_length()
    index = torch.zeros_like(x)
    s = side // 2
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        index += s * s * ((3 * rx.long()) ^ ry.long())
        flip = ~ry & rx
        x = torch.where(flip, side - 1 - x, x)
        y = torch.where(flip, side - 1 - y, y)
        swap = ~ry
        x, y = torch.where(swap, y, x), torch.where(swap, x, y)
        s //= 2
    return index


def _dense_ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank [N] of each value among the distinct values (0 = smallest)."""
    return torch.unique(values, return_inverse=True)[1]
