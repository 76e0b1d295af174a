"""Crop and antialiased bilinear resize of a batch of patches as two batched matrix products (GPU).

The antialiased bilinear resize of a `size`-px patch P to S px is W P Wᵀ per channel, with W [S, size] the
resize's band matrix of weights. Shifting W by each patch's offset into its mosaic of tiles crops in the
same products. On CUDA they run on tensor cores in float16, which holds uint8 pixels exactly, and
accumulate in float32. `interpolate` with `antialias=True` costs about 8 µs of GPU time a 512-px patch
(H200), more than the rest of the tiles reader's GPU work together (benchmarks/RESULTS.md, tenth pass).
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=8)
def resize_weights(size: int, output_size: int) -> torch.Tensor:
    """float64 [output_size, size]: the weight of each input px in each output px of `interpolate`'s
    antialiased bilinear resize (align_corners=False), read off by resizing the identity along one axis."""
    identity = torch.eye(size, dtype=torch.float64).reshape(1, 1, size, size)
    resized = torch.nn.functional.interpolate(
        identity, size=(output_size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized[0, 0]


class MosaicResampler:
    """Patches [B, 3, S, S] uint8 cropped from mosaics of tiles and resized.

    A mosaic is [B, H, 3, W] of `dtype` (rows, channels, columns: the layout both products read without a
    copy); patch b is its `size`-px window at (`offset_x[b]`, `offset_y[b]`), resized to `output_size` S.
    `dtype`: float16 on CUDA (the default there), float32 elsewhere.
    """

    def __init__(self, size: int, output_size: int, device: torch.device, dtype: torch.dtype | None = None) -> None:
        self.size, self.output_size = int(size), int(output_size)
        self.dtype = dtype or (torch.float16 if torch.device(device).type == "cuda" else torch.float32)
        weights = resize_weights(self.size, self.output_size)
        outside = torch.zeros(1, self.output_size, dtype=torch.float64)
        # [size + 1, S]: row x gives input px x's weights in every output px; the last row, all zero, serves
        # mosaic px outside the window
        self.columns = torch.cat([weights.T, outside]).to(device, self.dtype)

    def bands(self, offsets: torch.Tensor, span: int) -> torch.Tensor:
        """[B, span, S] of `dtype`: for each patch, the weights of mosaic px 0..span−1 along one axis, for a
        window starting at `offsets` (int64 [B] on the device)."""
        positions = torch.arange(span, device=offsets.device)[None, :] - offsets[:, None]
        outside = (positions < 0) | (positions >= self.size)
        return self.columns[positions.masked_fill_(outside, self.size)]

    def __call__(self, mosaic: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, S, S] from `mosaic` [B, H, 3, W] (`dtype`) and window offsets int64 [B] (device)."""
        batch, height, channels, width = mosaic.shape
        size = self.output_size
        rows = self.bands(offset_y, height).transpose(1, 2)  # [B, S, H]
        resized_rows = torch.bmm(rows, mosaic.view(batch, height, channels * width))  # [B, S, 3 W]
        columns = self.bands(offset_x, width)  # [B, W, S]
        resized = _float32_product(resized_rows.view(batch, size * channels, width), columns)
        resized = resized.view(batch, size, channels, size)
        patches = torch.empty((batch, channels, size, size), dtype=torch.uint8, device=mosaic.device)
        return patches.copy_(resized.permute(0, 2, 1, 3).round_().clamp_(0, 255))


def _float32_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """float32 batched product of `left` [B, M, K] and `right` [B, K, N], accumulated in float32."""
    if left.dtype == torch.float32:
        return torch.bmm(left, right)
    return torch.bmm(left, right, out_dtype=torch.float32)
