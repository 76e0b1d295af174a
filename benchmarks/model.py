"""Benchmark: forward + backward time and peak memory of ME-Mamba and the co-attention baselines against bag size.

Two tables: (1) one patient bag of N patches (feature_dim-d features, six genomic groups) through ME-Mamba
with the mamba-ssm kernel and with the PyTorch scan, the MCAT-style and the MOTCat-style baselines;
(2) full-bag OT alone (potentials -> plan -> barycentric projection, forward + backward) for N patches
against M genomic tokens with every OT backend. ME-Mamba's PyTorch-scan row is the baseline measured in
the same run; ratios are against it. On CUDA the models run under bfloat16 autocast and the peak is
torch.cuda.max_memory_allocated; a configuration that runs out of memory is reported as OOM. The KeOps
backend runs only where memamba.keops_probe (a child process) says KeOps works. Needs only torch (plus
mamba-ssm, geomloss, pykeops where available). Usage:

    PYTHONPATH=. python benchmarks/model.py [--device cuda] [--sizes 1000 10000 50000 100000] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from memamba.keops_probe import probe_keops
from memamba.models.registry import build_model
from memamba.models.ssm import mamba_ssm_available
from memamba.ot import auto_ot_backend, barycentric_projection, sinkhorn_potentials, transport_plan

MCAT_BLCA_GROUP_SIZES = (94, 334, 521, 468, 1496, 479)
MODELS = {
    "ME-Mamba, mamba-ssm scan": ("memamba", {"scan_backend": "mamba_ssm"}),
    "ME-Mamba, PyTorch scan": ("memamba", {"scan_backend": "torch"}),
    "MCAT-style": ("mcat", {}),
    "MOTCat-style (full-bag OT)": ("motcat", {}),
}
BASELINE = "ME-Mamba, PyTorch scan"


def measure(step: Callable[[], None], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Median seconds of step() after one warm-up, and its peak GPU memory in GiB (None on CPU)."""
    times = []
    for index in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            if index == 1:
                torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return sorted(times[1:])[len(times[1:]) // 2], peak


def guarded(run: Callable[[], tuple[float, float | None]], device: torch.device) -> tuple[str, str, float | None]:
    """(seconds, GiB, seconds as a number) of run(), or OOM / the error, freeing GPU memory either way."""
    try:
        seconds, peak = run()
        return f"{seconds:.4f}", "n/a" if peak is None else f"{peak:.2f}", seconds
    except torch.OutOfMemoryError:
        return "OOM", "OOM", None
    except Exception as error:  # one failing configuration must not end the run
        if "out of memory" in str(error).lower():
            return "OOM", "OOM", None
        return f"error: {str(error).splitlines()[0][:80]}", "-", None
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def model_step(name: str, params: dict, n: int, args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    """One forward + backward of a fresh model on a random bag of n patches (bfloat16 autocast on CUDA)."""
    torch.manual_seed(0)
    model = build_model(name, feature_dim=args.feature_dim, group_sizes=MCAT_BLCA_GROUP_SIZES, **params)
    model = model.to(device).train()
    features = torch.randn(n, args.feature_dim, device=device)
    side = int(n**0.5) + 1
    cells = torch.randperm(side * side)[:n]
    coords = (torch.stack((cells % side, cells // side), dim=1) * 256).to(device)
    genomics = [torch.randn(size, device=device) for size in MCAT_BLCA_GROUP_SIZES]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            output = model(features, coords, genomics)
        (output.logits.float().sum() + output.aux_loss).backward()

    return step


def model_table(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Markdown rows of the model table."""
    rows = [
        "| model | N | fwd+bwd (s) | peak (GiB) | time / PyTorch-scan ME-Mamba |",
        "|---|---|---|---|---|",
    ]
    for n in args.sizes:
        results = {}
        for label, (name, extra) in MODELS.items():
            if extra.get("scan_backend") == "mamba_ssm" and not (device.type == "cuda" and mamba_ssm_available()):
                results[label] = ("n/a (needs CUDA and mamba-ssm)", "-", None)
                continue
            params = {"d_model": args.d_model, **extra}

            def run(name: str = name, params: dict = params, n: int = n) -> tuple[float, float | None]:
                return measure(model_step(name, params, n, args, device), device, args.repeats)

            results[label] = guarded(run, device)
        baseline = results[BASELINE][2]
        for label, (seconds, peak, value) in results.items():
            ratio = f"{value / baseline:.2f}" if value is not None and baseline else "-"
            rows.append(f"| {label} | {n:,} | {seconds} | {peak} | {ratio} |")
            print(rows[-1], flush=True)
    return rows


def ot_step(
    backend: str, tolerance: float | None, n: int, m: int, dim: int, device: torch.device
) -> Callable[[], None]:
    """Potentials -> plan -> barycentric projection, forward + backward (as in the synergistic expert)."""
    generator = torch.Generator().manual_seed(0)
    pathology = torch.randn(n, dim, generator=generator).to(device).requires_grad_()
    genomic = torch.randn(m, dim, generator=generator).to(device).requires_grad_()
    ot_args = {"blur": 0.1, "cost": "cosine", "scaling": 0.9}

    def step() -> None:
        f, g = sinkhorn_potentials(pathology, genomic, backend=backend, tolerance=tolerance, **ot_args)
        plan = transport_plan(f, g, pathology, genomic, blur=0.1, cost="cosine")
        barycentric_projection(plan, pathology).square().sum().backward()

    return step


def ot_table(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Markdown rows of the OT table (KeOps only where the probe says it works)."""
    verdict = probe_keops(device.type, timeout_s=args.keops_timeout)
    print(f"# KeOps on {device.type}: {'works' if verdict.works else 'broken'} ({verdict.reason})", flush=True)
    rows = ["| OT backend | N | M | fwd+bwd (s) | peak (GiB) |", "|---|---|---|---|---|"]
    for m in args.ot_tokens:
        configurations = [
            ("streaming (ε-scaling only)", "streaming", None),
            ("streaming + tolerance 1e-3 (model default)", "streaming", 1e-3),
            ("GeomLoss tensorized", "tensorized", None),
            ("GeomLoss online (KeOps)", "geomloss_online", None),
            (f"auto (picks {auto_ot_backend(args.ot_n, m, device.type)})", "auto", None),
        ]
        for label, backend, tolerance in configurations:
            needs = {"tensorized": "geomloss", "geomloss_online": "geomloss"}.get(backend)
            if needs and importlib.util.find_spec(needs) is None:
                rows.append(f"| {label} | {args.ot_n:,} | {m} | n/a ({needs} not installed) | - |")
            elif backend == "geomloss_online" and not verdict.works:
                rows.append(f"| {label} | {args.ot_n:,} | {m} | skipped: KeOps broken ({verdict.reason}) | - |")
            else:

                def run(
                    backend: str = backend, tolerance: float | None = tolerance, m: int = m
                ) -> tuple[float, float | None]:
                    step = ot_step(backend, tolerance, args.ot_n, m, args.d_model, device)
                    return measure(step, device, args.repeats)

                seconds, peak, _ = guarded(run, device)
                rows.append(f"| {label} | {args.ot_n:,} | {m} | {seconds} | {peak} |")
            print(rows[-1], flush=True)
    return rows


def header(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Date, machine, GPU, versions and the command line."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    versions = [f"torch {torch.__version__}"]
    for package in ("mamba_ssm", "geomloss", "pykeops"):
        if importlib.util.find_spec(package) is not None:
            versions.append(f"{package} {importlib.metadata.version(package.replace('_', '-'))}")
    precision = "bfloat16 autocast" if device.type == "cuda" else "float32"
    return [
        f"{datetime.date.today()}, {platform.node()}: {device.type} ({name}), {', '.join(versions)}, {precision}, "
        f"d_model {args.d_model}, {args.feature_dim}-d features, groups {list(MCAT_BLCA_GROUP_SIZES)}, "
        f"median of {args.repeats} after one warm-up. Command: `{' '.join(sys.argv)}`",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000, 100000])
    parser.add_argument("--feature-dim", type=int, default=1024)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ot-n", type=int, default=100_000, help="patches in the OT-alone table")
    parser.add_argument("--ot-tokens", type=int, nargs="+", default=[6, 331], help="genomic tokens M")
    parser.add_argument("--keops-timeout", type=float, default=300.0, help="seconds for the KeOps probe")
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    lines = header(args, device)
    print("\n".join(lines), flush=True)
    lines += [*model_table(args, device), "", *ot_table(args, device)]
    if args.out:
        with open(args.out, "w") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
