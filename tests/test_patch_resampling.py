"""Crop and antialiased resize as matrix products: the weights are interpolate's, and so are the patches."""

from __future__ import annotations

import pytest
import torch

from memamba.features.patch_resampling import MosaicResampler, resize_weights

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 products on tensor cores need CUDA")


def interpolated(mosaic: torch.Tensor, offset_x: list[int], offset_y: list[int], size: int, out: int) -> torch.Tensor:
    """float64 [B, 3, out, out]: each patch's `size`-px window of `mosaic` [B, 3, H, W] through interpolate."""
    windows = torch.stack(
        [image[:, y : y + size, x : x + size] for image, x, y in zip(mosaic, offset_x, offset_y, strict=True)]
    )
    return torch.nn.functional.interpolate(
        windows.double(), size=(out, out), mode="bilinear", antialias=True, align_corners=False
    )


def test_resize_weights_resize_like_interpolate_and_sum_to_one() -> None:
    image = torch.rand(3, 300, 300, dtype=torch.float64)
    weights = resize_weights(300, 112)
    expected = interpolated(image[None], [0], [0], 300, 112)[0]
    assert weights.shape == (112, 300)
    assert torch.allclose(weights @ image @ weights.T, expected, atol=1e-9)
    assert torch.allclose(weights.sum(dim=1), torch.ones(112, dtype=torch.float64))


def random_mosaic(device: torch.device) -> tuple[torch.Tensor, list[int], list[int]]:
    """uint8 [3, 3, 600, 700] mosaic of noise and smooth gradients, and windows' offsets (x, y) for 512 px."""
    generator = torch.Generator().manual_seed(7)
    noise = torch.randint(0, 256, (3, 3, 600, 700), generator=generator)
    ramp = torch.linspace(0, 255, 700).expand(3, 3, 600, 700)
    mosaic = torch.where(torch.arange(600)[:, None] < 300, noise, ramp.round().long()).to(torch.uint8)
    return mosaic.to(device), [0, 188, 57], [88, 0, 31]


def resampled(mosaic: torch.Tensor, offset_x: list[int], offset_y: list[int], dtype: torch.dtype) -> torch.Tensor:
    device = mosaic.device
    resampler = MosaicResampler(512, 224, device, dtype)
    as_rows = mosaic.permute(0, 2, 1, 3).to(dtype).contiguous()  # [B, H, 3, W]
    offsets = [torch.tensor(offset, device=device) for offset in (offset_x, offset_y)]
    return resampler(as_rows, *offsets).cpu()


def test_mosaic_resampler_crops_each_window_and_resizes_it_like_interpolate() -> None:
    mosaic, offset_x, offset_y = random_mosaic(torch.device("cpu"))
    patches = resampled(mosaic, offset_x, offset_y, torch.float32)
    expected = interpolated(mosaic, offset_x, offset_y, 512, 224).round().clamp(0, 255)
    assert patches.shape == (3, 3, 224, 224) and patches.dtype == torch.uint8 and patches.is_contiguous()
    assert (patches.int() - expected.int()).abs().max() <= 1
    assert (patches.int() != expected.int()).float().mean() < 0.02  # ties (x.5 exactly) round either way


@needs_cuda
def test_float16_products_on_the_gpu_stay_within_one_level_of_interpolate() -> None:
    mosaic, offset_x, offset_y = random_mosaic(torch.device("cuda"))
    patches = resampled(mosaic, offset_x, offset_y, torch.float16)
    expected = interpolated(mosaic.cpu(), offset_x, offset_y, 512, 224).round().clamp(0, 255)
    assert (patches.int() - expected.int()).abs().max() <= 1
    assert (patches.int() != expected.int()).float().mean() < 0.1
