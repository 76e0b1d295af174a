"""Layers some registered encoders add to their timm model (CTransPath's stem, Virchow2's pooling)."""

from __future__ import annotations

import torch
from torch import nn


class ConvStem(nn.Module):
    """CTransPath's patch embedding: two stride-2 3×3 conv/BN/ReLU blocks and a 1×1 conv to `embed_dim`.

    Maps [B, 3, H, W] to [B, H/4, W/4, embed_dim] (NHWC, as timm's Swin expects). Keyword arguments
    are timm's patch-embedding interface; the layer names match CTransPath's checkpoint
    (`patch_embed.proj.{0,1,3,4,6}`, `patch_embed.norm`).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: type[nn.Module] | None = None,
        output_fmt: str = "NHWC",
        **_: object,
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        if self.patch_size != (4, 4) or output_fmt != "NHWC":
            raise ValueError(f"ConvStem needs patch_size 4 and NHWC output, got {patch_size} and {output_fmt}")
        self.grid_size = (self.img_size[0] // 4, self.img_size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        channels_in, channels_out = in_chans, embed_dim // 8
        for _ in range(2):
            layers += [
                nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(inplace=True),
            ]
            channels_in, channels_out = channels_out, channels_out * 2
        layers.append(nn.Conv2d(channels_in, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] → [B, H/4, W/4, embed_dim]."""
        return self.norm(self.proj(images).permute(0, 2, 3, 1))


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """`value` as an (height, width) pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ClassAndMeanPatchTokens(nn.Module):
    """Virchow2's embedding: [B, T, C] tokens → [B, 2C], the class token then the mean of the patch
    tokens (those after the `num_prefix_tokens` class and register tokens)."""

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, T, C] → [B, 2C]."""
        return torch.cat([tokens[:, 0], tokens[:, self.num_prefix_tokens :].mean(dim=1)], dim=-1)
