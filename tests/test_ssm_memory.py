"""Memory of the PyTorch selective scan under autograd: bounded by one chunk, not by the whole sequence."""

from __future__ import annotations

import subprocess
import sys

SCAN_20K = """
import resource, torch
torch.set_num_threads(1)
from memamba.models.ssm import selective_scan
length, channels, state = 20_000, 32, 16
u = torch.randn(1, length, channels, requires_grad=True)
delta = torch.nn.functional.softplus(torch.randn(1, length, channels) - 3).requires_grad_()
A = (-torch.rand(channels, state) - 0.5).requires_grad_()
B = torch.randn(1, length, state, requires_grad=True)
C = torch.randn(1, length, state, requires_grad=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
selective_scan(u, delta, A, B, C, backend="torch").sum().backward()
assert all(torch.isfinite(t.grad).all() for t in (u, delta, A, B, C))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_torch_scan_forward_backward_of_twenty_thousand_steps_stays_within_250_megabytes() -> None:
    # Keeping every chunk's prefix-scan levels for backward would take about 20 tensors of
    # 20,000 x 32 x 16 floats (0.8 GB); one chunk at a time needs a few MB.
    child = subprocess.run([sys.executable, "-c", SCAN_20K], capture_output=True, text=True, check=True)
    growth_mb = float(child.stdout.strip().splitlines()[-1])
    assert growth_mb < 250, f"resident memory grew by {growth_mb:.0f} MB"
