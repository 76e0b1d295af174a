"""`memamba doctor`: check an installation, item by item, and say how to fix what is missing.

Each check returns a `Check` with status OK, WARN (optional part missing: the pipeline still runs, e.g. on CPU)
or FAIL (a required part is missing or broken). Heavy libraries are imported inside the checks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_FREE_GB = 20.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table: what was checked, the verdict, what was found and how to fix it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_error(module: str) -> str | None:
    """None when `module` imports, else the error in one line."""
    try:
        importlib.import_module(module)
    except Exception as error:  # a broken install raises more than ImportError (OSError for a missing .so)
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def check_python() -> Check:
    return Check("Python", OK, f"{'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})")


def check_openslide() -> Check:
    error = _import_error("openslide")
    if error:
        return Check("OpenSlide", FAIL, error, "pip install -e '.[slide]' (openslide-python + openslide-bin)")
    import openslide

    return Check("OpenSlide", OK, f"library {openslide.__library_version__}, openslide-python {openslide.__version__}")


def check_torch_timm() -> Check:
    errors = [f"{module}: {error}" for module in ("torch", "timm") if (error := _import_error(module))]
    if errors:
        return Check("torch, timm", FAIL, "; ".join(errors), "pip install -e '.[features,train]'")
    import timm
    import torch

    return Check("torch, timm", OK, f"torch {torch.__version__} (CUDA {torch.version.cuda}), timm {timm.__version__}")


def check_hdf5() -> Check:
    error = _import_error("h5py")
    if error:
        return Check("HDF5", FAIL, error, "pip install -e .")
    import h5py

    locking = os.environ.get("HDF5_USE_FILE_LOCKING", "unset")
    return Check("HDF5", OK, f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, "
                             f"HDF5_USE_FILE_LOCKING={locking} (the workflow sets FALSE)")


def gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def check_gpu() -> Check:
    if not gpu_available():
        return Check("GPU", WARN, "no CUDA device visible to torch: features and training run on the CPU",
                     "for a GPU: install torch built for your CUDA, then set features.device and train.device: cuda")
    import torch

    names = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        names.append(f"cuda:{index} {properties.name}, {free / 2**30:.0f}/{total / 2**30:.0f} GiB free")
    return Check("GPU", OK, "; ".join(names))


def check_mamba_ssm() -> Check:
    version = _version("mamba-ssm")
    gpu = gpu_available()
    fix = "pip install mamba-ssm==2.3.2.post1 --no-build-isolation (builds against your torch and CUDA)"
    if version is None:
        detail = "not installed: the Mamba layers use memamba's pure-PyTorch selective scan"
        return Check("mamba-ssm kernels", WARN, detail, fix if gpu else "only useful on a CUDA GPU")
    error = _import_error("mamba_ssm.ops.selective_scan_interface")
    if error:
        return Check("mamba-ssm kernels", FAIL, f"mamba-ssm {version} does not import: {error}",
                     f"reinstall against this torch: pip uninstall mamba-ssm && {fix}")
    if not gpu:
        return Check("mamba-ssm kernels", WARN, f"mamba-ssm {version} imports, but there is no GPU to run it on")
    try:
        _run_selective_scan_kernel()
    except Exception as error:
        return Check("mamba-ssm kernels", FAIL, f"mamba-ssm {version}: kernel call failed: {error}",
                     f"reinstall against this torch and CUDA: pip uninstall mamba-ssm && {fix}")
    return Check("mamba-ssm kernels", OK, f"mamba-ssm {version}: selective scan kernel agrees with memamba's scan")


def _run_selective_scan_kernel() -> None:
    """A tiny selective scan through mamba-ssm's CUDA kernel, checked against memamba's PyTorch scan."""
    import torch

    from memamba.models.ssm import selective_scan

    generator = torch.Generator().manual_seed(0)
    batch, channels, length, state = 1, 4, 16, 2
    tensors = {
        "u": torch.randn(batch, length, channels, generator=generator),
        "delta": torch.rand(batch, length, channels, generator=generator),
        "A": -torch.rand(channels, state, generator=generator),
        "B": torch.randn(batch, length, state, generator=generator),
        "C": torch.randn(batch, length, state, generator=generator),
        "D_skip": torch.randn(channels, generator=generator),
    }
    cuda = {name: value.cuda() for name, value in tensors.items()}
    kernel = selective_scan(**cuda, backend="mamba_ssm")
    reference = selective_scan(**cuda, backend="torch")
    torch.cuda.synchronize()
    if not torch.allclose(kernel, reference, rtol=1e-3, atol=1e-3):
        raise RuntimeError(f"differs from the PyTorch scan by {float((kernel - reference).abs().max()):.3g}")


def check_keops(timeout_s: float) -> Check:
    from memamba.keops_probe import probe_keops

    device = "cuda" if gpu_available() else "cpu"
    verdict = probe_keops(device, timeout_s=timeout_s)
    if verdict.works:
        return Check("KeOps", OK, f"works on {device} (pykeops {verdict.key.get('pykeops')})")
    return Check("KeOps", WARN, f"not usable on {device}: {verdict.reason}; optimal transport uses the streaming "
                                "Sinkhorn backend instead", "pip install -e '.[train]'; on CUDA, a CUDA toolkit "
                                "matching torch (nvcc) lets KeOps compile its kernels")


def check_snakemake() -> Check:
    version = _version("snakemake")
    if version is None:
        return Check("Snakemake", FAIL, "not installed", "pip install -e '.[workflow]'")
    plugin = _version("snakemake-executor-plugin-slurm")
    if plugin is None:
        return Check("Snakemake", WARN, f"snakemake {version}; no SLURM executor plugin (profiles/slurm needs it)",
                     "pip install -e '.[workflow]'")
    sbatch = shutil.which("sbatch")
    cluster = f"sbatch at {sbatch}" if sbatch else "no sbatch here (fine on a workstation)"
    return Check("Snakemake", OK, f"snakemake {version}, slurm executor plugin {plugin}, {cluster}")


def check_output_dir(output_dir: Path) -> Check:
    """The output folder (or the folder that would hold it) accepts a new file, and has room."""
    target = output_dir.resolve()
    existing = next(folder for folder in (target, *target.parents) if folder.exists())
    name = "output folder"
    if not existing.is_dir():
        return Check(name, FAIL, f"{existing} is a file, not a folder", "choose another --output-dir / output_dir")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".memamba-doctor-"):
            pass
    except OSError as error:
        return Check(name, FAIL, f"cannot write in {existing}: {error.strerror}",
                     "fix the permissions or choose another output_dir")
    free_gb = shutil.disk_usage(existing).free / 1e9
    where = f"{target} exists" if existing == target else f"{target} will be created in {existing}"
    if free_gb < MIN_FREE_GB:
        return Check(name, WARN, f"{where}, writable, only {free_gb:.0f} GB free",
                     "features of a real cohort need tens of GB; free space or choose another output_dir")
    return Check(name, OK, f"{where}, writable, {free_gb:.0f} GB free")


def run_checks(output_dir: Path, keops_timeout_s: float = 600.0) -> list[Check]:
    """Every check, in the order of the table."""
    checks: list[Callable[[], Check]] = [
        check_python, check_openslide, check_torch_timm, check_hdf5, check_gpu, check_mamba_ssm,
        lambda: check_keops(keops_timeout_s), check_snakemake, lambda: check_output_dir(output_dir),
    ]
    return [check() for check in checks]


def format_table(checks: list[Check]) -> str:
    """The checks as an aligned text table (check, status, detail) with the fix on a line below a non-OK item."""
    width = max(len("check"), *(len(check.name) for check in checks))
    lines = [f"{'check':<{width}}  status  detail"]
    for check in checks:
        lines.append(f"{check.name:<{width}}  {check.status:<6}  {check.detail}")
        if check.status != OK and check.fix:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {check.fix}")
    failed = sum(check.status == FAIL for check in checks)
    warned = sum(check.status == WARN for check in checks)
    lines.append(f"{failed} failed, {warned} warnings: " + ("ready" if not failed else "not ready"))
    return "\n".join(lines) + "\n"
