"""The encoder a CUDA job runs: a CNN rewritten as cuDNN's fused kernels (memamba.features.fused_cnn) and
captured as one CUDA graph, replayed for each batch; any other encoder as it is."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from memamba.features.fused_cnn import MATCH_TOLERANCE, fused_graph
from memamba.features.registry import EncoderSpec

logger = logging.getLogger(__name__)

FUSED_CNN = True
"""On CUDA, run CNN encoders (without torch.compile) as `fused_graph` replayed from a CUDA graph. resnet50_trunc
on an H200: model only 27.3k img/s against 15.0k as built (torch.compile: 21.6k); see CapturedEncoder for the
end to end (benchmarks/RESULTS.md, fourteenth pass)."""


def cuda_encoder(model: nn.Module, spec: EncoderSpec, device: torch.device, batch_size: int) -> nn.Module:
    """`model` as a CUDA job should run it, for batches of up to `batch_size`: a `CapturedEncoder` of its
    `fused_graph` where that exists, runs and matches the model's features (FUSED_CNN), else `model` itself.
    Call it before any thread decodes on the GPU: capturing forbids device-wide synchronisation meanwhile."""
    if device.type != "cuda" or not FUSED_CNN or spec.precision not in ("bfloat16", "float16", "float32"):
        return model
    dtype = getattr(torch, spec.precision)
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    graph = fused_graph(model, dtype)
    if graph is None:
        return model
    try:
        error = _relative_error(model, graph, spec, device, dtype, memory_format)
    except RuntimeError as failure:  # a cuDNN without these fused kernels for this precision or card
        logger.warning("%s: cuDNN's fused kernels failed (%s): running the model as built", spec.name, failure)
        return model
    if not error <= MATCH_TOLERANCE[dtype]:
        logger.warning("%s: the fused rewrite is off by %.3g (relative): running the model as built", spec.name, error)
        return model
    logger.info("%s: cuDNN fused kernels, one CUDA graph a batch (%.1e from the model)", spec.name, error)
    return CapturedEncoder(graph, (batch_size, 3, spec.input_size, spec.input_size), device, dtype, memory_format)


class CapturedEncoder(nn.Module):
    """`graph` captured as a CUDA graph for float batches of `shape` [B, 3, S, S] (`memory_format`) on
    `device`, run under autocast to `dtype`. A batch of up to B patches is copied into the captured input
    and the graph replayed on the current stream: the output [count, D] is a view of the captured output,
    valid until the next call. Other shapes run `graph` as it is."""

    def __init__(
        self,
        graph: nn.Module,
        shape: tuple[int, int, int, int],
        device: torch.device,
        dtype: torch.dtype,
        memory_format: torch.memory_format,
    ) -> None:
        super().__init__()
        self.__dict__["graph"] = graph  # not a submodule: Module.to must not move what the CUDA graph reads
        self.dtype = dtype
        self.static_input = torch.zeros(shape, device=device).contiguous(memory_format=memory_format)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        self.cuda_graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), _autocast(self.dtype), torch.cuda.stream(stream):
            for _ in range(2):  # cuDNN chooses its algorithms and allocates its workspace outside the capture
                graph(self.static_input)
            with torch.cuda.graph(self.cuda_graph, stream=stream, capture_error_mode="thread_local"):
                self.static_output = graph(self.static_input)
        torch.cuda.current_stream(device).wait_stream(stream)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Features [count, D] of `batch` [count, 3, S, S]."""
        count = len(batch)
        if count > len(self.static_input) or batch.shape[1:] != self.static_input.shape[1:]:
            with _autocast(self.dtype):
                return self.graph(batch)
        self.static_input[:count].copy_(batch)
        self.cuda_graph.replay()
        return self.static_output[:count]


def _relative_error(
    model: nn.Module,
    graph: nn.Module,
    spec: EncoderSpec,
    device: torch.device,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
) -> float:
    """L2 relative error of `graph`'s features against `model`'s (autocast to `dtype`) on a seeded random batch."""
    generator = torch.Generator(device=device).manual_seed(0)
    size = spec.input_size
    batch = torch.randn((8, 3, size, size), device=device, generator=generator).contiguous(memory_format=memory_format)
    with torch.inference_mode(), _autocast(dtype):
        expected, got = model(batch).float(), graph(batch).float()
    return float((got - expected).norm() / expected.norm().clamp_min(1e-12))


def replays_cuda_graphs(model: nn.Module, compiled: bool, device: torch.device) -> bool:
    """Whether `model` runs on `device` as a CUDA graph replayed a batch: through torch.compile on CUDA
    (`compiled`; memamba.features.encoding.COMPILE_MODE_CUDA), or as a CapturedEncoder."""
    return device.type == "cuda" and (compiled or isinstance(model, CapturedEncoder))


def _autocast(dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast on CUDA to `dtype`; nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype, cache_enabled=False)
