"""JPEG decoders for raw slide tiles: nvJPEG on the GPU (torchvision) and libjpeg on the CPU. Each turns
complete JPEG streams into uint8 [3, h, w] RGB tensors on its device, None for a stream it cannot decode.

(The GPU's hardware JPEG engines through nvImageCodec were measured too and lost in this pipeline:
benchmarks/RESULTS.md.)
"""

from __future__ import annotations

from typing import Protocol

import torch

JPEG_DECODERS = ("auto", "nvjpeg", "libjpeg")


class TileDecoder(Protocol):
    """Decodes complete JPEG streams into uint8 [3, h, w] RGB tensors on `device` (None = undecodable)."""

    name: str
    device: torch.device

    def decode(self, streams: list[bytes]) -> list[torch.Tensor | None]: ...


def make_decoder(choice: str, device: torch.device) -> TileDecoder:
    """The decoder `choice` (one of JPEG_DECODERS) on `device`.

    "auto": libjpeg on the CPU, nvJPEG on CUDA. nvJPEG asked for on the CPU raises ValueError.
    """
    if choice not in JPEG_DECODERS:
        raise ValueError(f"unknown JPEG decoder {choice!r}; valid: {', '.join(JPEG_DECODERS)}")
    if choice == "auto":
        choice = "libjpeg" if device.type == "cpu" else "nvjpeg"
    if choice == "nvjpeg" and device.type != "cuda":
        raise ValueError(f"the nvjpeg JPEG decoder needs a CUDA device, got {device}")
    return NvjpegDecoder(device) if choice == "nvjpeg" else LibjpegDecoder()


class LibjpegDecoder:
    """libjpeg through torchvision on the CPU, one call per stream (each releases the GIL, so several
    threads can share one instance)."""

    name = "libjpeg"

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def decode(self, streams: list[bytes]) -> list[torch.Tensor | None]:
        return _decode_each([_as_tensor(stream) for stream in streams], self.device)


class NvjpegDecoder:
    """nvJPEG through torchvision on the CUDA cores, one batched call (one by one after a failed batch,
    so that a single bad stream is found)."""

    name = "nvjpeg"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def decode(self, streams: list[bytes]) -> list[torch.Tensor | None]:
        from torchvision.io import ImageReadMode, decode_jpeg

        tensors = [_as_tensor(stream) for stream in streams]
        if tensors:
            try:
                return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                pass
        return _decode_each(tensors, self.device)


def _decode_each(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """One torchvision decode per JPEG stream tensor on `device`, None for a stream that fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    images: list[torch.Tensor | None] = []
    for tensor in tensors:
        try:
            images.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            images.append(None)
    return images


def _as_tensor(stream: bytes) -> torch.Tensor:
    """A JPEG stream as the uint8 [L] tensor torchvision's decoders take."""
    return torch.frombuffer(bytearray(stream), dtype=torch.uint8)
