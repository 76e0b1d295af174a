"""Benchmark: memamba's chunked parallel selective scan against the sequential recurrence it replaces.

Both run in the same process on the same inputs (forward + backward of one bag, fp32), and the ratio is
reported; on CUDA with mamba-ssm installed the CUDA kernel is timed too. Usage:

    python benchmarks/ssm_scan.py [--device cpu|cuda] [--lengths 256 1024 4096] [--d-inner 128] [--d-state 16]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from memamba.models.ssm import mamba_ssm_available, selective_scan, selective_scan_reference


def make_inputs(length: int, d_inner: int, d_state: int, device: str) -> list[torch.Tensor]:
    """Random Mamba-like scan inputs for one bag (batch 1), with gradients."""
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(1, length, d_inner, generator=generator)
    delta = torch.nn.functional.softplus(torch.randn(1, length, d_inner, generator=generator) - 3)
    A = -torch.exp(torch.randn(d_inner, d_state, generator=generator))
    B = torch.randn(1, length, d_state, generator=generator)
    C = torch.randn(1, length, d_state, generator=generator)
    D = torch.randn(d_inner, generator=generator)
    return [tensor.to(device).requires_grad_() for tensor in (u, delta, A, B, C, D)]


def seconds_per_call(scan: Callable[..., torch.Tensor], inputs: list[torch.Tensor], repeats: int) -> float:
    """Median wall time of forward + backward, in seconds."""
    device = inputs[0].device
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        scan(*inputs).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--d-inner", type=int, default=128)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# device: {args.device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| L | sequential (s) | chunked torch (s) | speed-up | mamba-ssm (s) |")
    print("|---|---|---|---|---|")
    for length in args.lengths:
        inputs = make_inputs(length, args.d_inner, args.d_state, args.device)
        sequential = seconds_per_call(selective_scan_reference, inputs, args.repeats)
        chunked = seconds_per_call(lambda *x: selective_scan(*x, backend="torch"), inputs, args.repeats)
        kernel = "n/a"
        if args.device.startswith("cuda") and mamba_ssm_available():
            kernel = f"{seconds_per_call(lambda *x: selective_scan(*x, backend='mamba_ssm'), inputs, args.repeats):.4f}"
        print(f"| {length} | {sequential:.4f} | {chunked:.4f} | {sequential / chunked:.1f}x | {kernel} |")


if __name__ == "__main__":
    main()
