"""Benchmark: forward + backward time and peak memory of ME-Mamba and the co-attention baselines against bag size.

Two tables: (1) one patient bag of N patches (feature_dim-d features, six genomic groups) through ME-Mamba
with the mamba-ssm kernel and with the PyTorch scan, the MCAT-style baseline and the MOTCat-style one, with
full-bag OT and as MOTCat's trainer runs it (micro-batches of 256 patches); (2) full-bag OT alone
(potentials -> plan -> barycentric projection, forward + backward) for N patches against M genomic tokens
with every OT backend. Every row's time is divided by the times of both ME-Mamba rows measured in the
same run, so a MOTCat row's ratio to the mamba-ssm row is ME-Mamba's speed-up over it. On CUDA the models
run under bfloat16 autocast and the peak is torch.cuda.max_memory_allocated; a configuration that runs out
of memory is reported as OOM. The KeOps backend runs only where memamba.keops_probe (a child process)
says KeOps works. Needs only torch (plus mamba-ssm, geomloss, pykeops where available). Usage:

    PYTHONPATH=. python benchmarks/model.py [--device cuda] [--sizes 1000 10000 50000 100000] [--out FILE]

With --count-ops it prints instead the aten ops that one ME-Mamba forward + backward dispatches on the
CPU (PyTorch scan, each selective scan counted as one op each way, as mamba-ssm's kernel), per part: a
proxy for the GPU's kernel launches, which bound its step time at small and large N alike.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from memamba.keops_probe import probe_keops
from memamba.models import mamba as mamba_module
from memamba.models.registry import build_model
from memamba.models.ssm import mamba_ssm_available
from memamba.ot import auto_ot_backend, barycentric_projection, sinkhorn_potentials, transport_plan

MCAT_BLCA_GROUP_SIZES = (94, 334, 521, 468, 1496, 479)
MODELS = {
    "ME-Mamba, mamba-ssm scan": ("memamba", {"scan_backend": "mamba_ssm"}),
    "ME-Mamba, PyTorch scan": ("memamba", {"scan_backend": "torch"}),
    "MCAT-style": ("mcat", {}),
    "MOTCat-style (full-bag OT)": ("motcat", {}),
    "MOTCat-style, micro-batches of 256 (as MOTCat's trainer)": ("motcat", {"micro_batch": 256}),
}
BASELINES = ("ME-Mamba, PyTorch scan", "ME-Mamba, mamba-ssm scan")
"""Each row's time is also given as a ratio to these rows' times of the same run (when measured)."""
WHOLE_MODEL = "whole ME-Mamba step (with loss)"
Bag = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]


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


def model_and_bag(
    name: str, params: dict, n: int, args: argparse.Namespace, device: torch.device
) -> tuple[torch.nn.Module, Bag]:
    """A fresh model (training mode) and a random bag of n patches: features, grid coords, genomic groups."""
    torch.manual_seed(0)
    model = build_model(name, feature_dim=args.feature_dim, group_sizes=MCAT_BLCA_GROUP_SIZES, **params)
    features = torch.randn(n, args.feature_dim, device=device)
    side = int(n**0.5) + 1
    cells = torch.randperm(side * side)[:n]
    coords = (torch.stack((cells % side, cells // side), dim=1) * 256).to(device)
    genomics = [torch.randn(size, device=device) for size in MCAT_BLCA_GROUP_SIZES]
    return model.to(device).train(), (features, coords, genomics)


def training_step(model: torch.nn.Module, bag: Bag) -> Callable[[], None]:
    """One forward + backward of model on bag (bfloat16 autocast on CUDA)."""
    device = bag[0].device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            output = model(*bag)
        (output.logits.float().sum() + output.aux_loss).backward()

    return step


def model_step(name: str, params: dict, n: int, args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    """One forward + backward of a fresh model on a random bag of n patches (bfloat16 autocast on CUDA)."""
    return training_step(*model_and_bag(name, params, n, args, device))


def model_table(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Markdown rows of the model table."""
    rows = [
        "| model | N | fwd+bwd (s) | peak (GiB) | " + " | ".join(f"time / {label}" for label in BASELINES) + " |",
        "|---|---|---|---|" + "---|" * len(BASELINES),
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
        for label, (seconds, peak, value) in results.items():
            ratios = [_ratio(value, results[baseline][2]) for baseline in BASELINES]
            rows.append(f"| {label} | {n:,} | {seconds} | {peak} | {' | '.join(ratios)} |")
            print(rows[-1], flush=True)
    return rows


def _ratio(seconds: float | None, baseline: float | None) -> str:
    """seconds / baseline with two decimals, or "-" when either was not measured."""
    return f"{seconds / baseline:.2f}" if seconds is not None and baseline else "-"


SYNC_OPS = frozenset({"_local_scalar_dense", "nonzero", "_unique2", "unique_dim", "masked_select"})
"""aten ops that wait for the device (a scalar read, or an output whose shape depends on the data)."""


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched below autograd (our CPU proxy for GPU kernel launches).

    counts: "ops" (all), "kernels" (all but views, which launch nothing on a GPU), "syncs" (SYNC_OPS);
    names: ops by name. Nothing is counted while paused() is active.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.names: Counter[str] = Counter()
        self._paused = 0

    def __torch_dispatch__(
        self, func: torch._ops.OpOverload, types: tuple, args: tuple = (), kwargs: dict | None = None
    ) -> object:
        if not self._paused:
            self.record(func.overloadpacket.__name__, view=func.is_view)
        return func(*args, **(kwargs or {}))

    def record(self, name: str, *, view: bool = False) -> None:
        """Count one op."""
        self.counts.update(ops=1, kernels=int(not view), syncs=int(name in SYNC_OPS))
        self.names[name] += 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop counting inside the block."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1


@contextmanager
def scan_as_one_op(counter: OpCounter) -> Iterator[None]:
    """Make MambaLayer's selective scan one op forward and one backward, as mamba-ssm's kernel is.

    The PyTorch scan runs unchanged, uncounted, inside an opaque autograd node (recomputed in backward).
    """
    scan = mamba_module.selective_scan

    class OpaqueScan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(*inputs)
            with counter.paused():
                output = scan(*inputs, backend="torch")
            counter.record("selective_scan")
            return output

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
            with counter.paused(), torch.enable_grad():
                inputs = [tensor.detach().requires_grad_() for tensor in ctx.saved_tensors]
                grads = torch.autograd.grad(scan(*inputs, backend="torch"), inputs, grad)
            counter.record("selective_scan_backward")
            return grads

    def opaque(*inputs: torch.Tensor, backend: str = "torch") -> torch.Tensor:
        return OpaqueScan.apply(*inputs)

    with mock.patch.object(mamba_module, "selective_scan", opaque):
        yield


def backward_of(function: Callable[..., object], *inputs: torch.Tensor) -> Callable[[], None]:
    """A step running function(*inputs) and backward from the sum of its outputs (tensors or a tuple)."""

    def step() -> None:
        outputs = function(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        sum(output.sum() for output in outputs).backward()

    return step


def component_steps(n: int, args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    """Forward + backward steps of ME-Mamba (PyTorch scan, training mode) on CPU: whole model and each part.

    Each part gets as input leaf tensors holding what the previous parts gave (requiring grad where the
    model's would), and backward starts from the sum of its outputs.
    """
    params = {"d_model": args.d_model, "scan_backend": "torch"}
    model, (features, coords, genomics) = model_and_bag("memamba", params, n, args, torch.device("cpu"))
    with torch.no_grad():
        pathology, genomic = model.pathology(features, coords), model.genomics(genomics)
        aligned = model.synergy(pathology, genomic)[0]
    tokens = torch.stack((aligned, genomic), dim=1).flatten(0, 1)
    leaves = [tensor.detach().requires_grad_() for tensor in (pathology, genomic, tokens)]

    def backbone(tokens: torch.Tensor) -> torch.Tensor:
        for block in model.backbone:
            tokens = block(tokens)
        return tokens

    return {
        "pathology expert": backward_of(model.pathology, features, coords),
        "genomics expert": backward_of(model.genomics, genomics),
        "synergistic expert (OT + MMD)": backward_of(model.synergy, leaves[0], leaves[1]),
        f"backbone ({len(tokens)} tokens)": backward_of(backbone, leaves[2]),
        WHOLE_MODEL: training_step(model, (features, coords, genomics)),
    }


def count_ops(step: Callable[[], None], *, opaque_scan: bool = True) -> OpCounter:
    """Ops of step() (after one uncounted warm-up call); opaque_scan: each selective scan counts as one op."""
    step()
    counter = OpCounter()
    with counter, scan_as_one_op(counter) if opaque_scan else nullcontext():
        step()
    return counter


def op_count_table(args: argparse.Namespace) -> list[str]:
    """Markdown rows: aten ops per ME-Mamba forward + backward, per part, at each bag size (CPU)."""
    rows = [
        "| part | N | aten ops | non-view ops | host syncs |",
        "|---|---|---|---|---|",
    ]
    for n in args.sizes:
        steps = component_steps(n, args)
        counted = {label: count_ops(step) for label, step in steps.items()}
        counted["whole model, PyTorch scan's ops counted"] = count_ops(steps[WHOLE_MODEL], opaque_scan=False)
        for label, counter in counted.items():
            ops, kernels, syncs = (counter.counts[key] for key in ("ops", "kernels", "syncs"))
            rows.append(f"| {label} | {n:,} | {ops} | {kernels} | {syncs} |")
            print(rows[-1], flush=True)
        if args.top_ops:
            print(counted[WHOLE_MODEL].names.most_common(args.top_ops), flush=True)
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
            (f"auto (picks {auto_ot_backend(args.ot_n, m, device)})", "auto", None),
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
    parser.add_argument(
        "--count-ops",
        action="store_true",
        help="only count the aten ops of one ME-Mamba forward + backward per part (CPU, PyTorch scan)",
    )
    parser.add_argument("--top-ops", type=int, default=0, help="with --count-ops: print the most frequent ops")
    args = parser.parse_args()
    device = torch.device(args.device)
    lines = header(args, device)
    print("\n".join(lines), flush=True)
    if args.count_ops:
        lines += op_count_table(args)
    else:
        lines += [*model_table(args, device), "", *ot_table(args, device)]
    if args.out:
        with open(args.out, "w") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
