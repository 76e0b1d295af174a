"""CNN encoders rewritten as fused convolutions (BatchNorm folded) and replayed as CUDA graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_features import CMU, TISSUE_COORDS, write_coords
from torch import nn

from memamba.features import captured_encoder
from memamba.features.captured_encoder import CapturedEncoder, cuda_encoder
from memamba.features.fused_cnn import conv_bias_add_relu, conv_bias_relu, fused_graph
from memamba.features.registry import build_encoder, get_encoder_spec

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuDNN's fused kernels, CUDA graphs)")


def resnet_with_statistics() -> nn.Module:
    """resnet50_trunc (random weights) with BatchNorm statistics and affine terms away from identity, so
    that folding them is tested."""
    model, _ = build_encoder(get_encoder_spec("resnet50_trunc"), None, allow_random_weights=True)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


def calls(graph: torch.fx.GraphModule) -> dict[str, int]:
    """How many times the graph calls each function or layer type."""
    counts: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_function":
            name = node.target.__name__
        elif node.op == "call_module":
            name = type(graph.get_submodule(node.target)).__name__
        else:
            continue
        counts[name] = counts.get(name, 0) + 1
    return counts


class ResidualBlock(nn.Module):
    """conv-BN-ReLU, then conv-BN plus the input, then ReLU; and a conv whose output is added to itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.conv3, self.relu3 = nn.Conv2d(4, 4, 1), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + x)
        z = self.conv3(y)
        return self.relu3(z + z)


def test_resnet50_trunc_becomes_fused_convolutions_with_the_same_features_and_is_left_unchanged() -> None:
    model = resnet_with_statistics()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    graph = fused_graph(model, torch.float32)
    counts = calls(graph)
    # 43 convolutions: 27 followed by a ReLU, 13 ending a bottleneck (residual, ReLU), 3 shortcut projections
    assert (counts["conv_bias_relu"], counts["conv_bias_add_relu"], counts["conv2d"]) == (27, 13, 3)
    assert "BatchNorm2d" not in counts and "ReLU" not in counts and "Conv2d" not in counts
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = model(images), graph(images)
    assert got.shape == expected.shape == (3, 1024)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


def test_only_a_conv_whose_single_user_is_a_relu_or_a_residual_addition_is_fused() -> None:
    model = ResidualBlock().eval()
    for norm in (model.bn1, model.bn2):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    graph = fused_graph(model, torch.float32)
    counts = calls(graph)
    assert counts == {"conv_bias_relu": 1, "conv_bias_add_relu": 1, "conv2d": 1, "add": 1, "ReLU": 1}
    images = torch.randn(2, 4, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(graph(images), model(images), rtol=1e-5, atol=1e-5)


def test_models_it_cannot_fuse_are_not_rewritten() -> None:
    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.relu = nn.Conv2d(3, 3, 1), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv(x)) if x.sum() > 0 else x  # data-dependent: FX cannot trace it

    assert fused_graph(Branching().eval(), torch.float32) is None
    assert fused_graph(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sigmoid()).eval(), torch.float32) is None
    assert fused_graph(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()).train(), torch.float32) is None


def test_the_fused_calls_compute_what_they_replace_on_the_cpu() -> None:
    generator = torch.Generator().manual_seed(2)
    x, residual = torch.randn(2, 4, 6, 6, generator=generator), torch.randn(2, 5, 6, 6, generator=generator)
    weight, bias = torch.randn(5, 4, 3, 3, generator=generator), torch.randn(5, generator=generator)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    plain = torch.conv2d(x, weight, bias, *geometry)
    torch.testing.assert_close(conv_bias_relu(x, weight, bias, *geometry), plain.relu())
    torch.testing.assert_close(conv_bias_add_relu(x, weight, residual, bias, *geometry), (plain + residual).relu())


def test_on_the_cpu_a_job_runs_the_encoder_as_built() -> None:
    model = resnet_with_statistics()
    assert cuda_encoder(model, get_encoder_spec("resnet50_trunc"), torch.device("cpu"), 8) is model


@needs_cuda
@pytest.mark.parametrize("count", [16, 5])
def test_a_captured_encoder_replays_the_fused_graph_and_matches_the_model(count: int) -> None:
    device = torch.device("cuda")
    spec = get_encoder_spec("resnet50_trunc")
    encoder = cuda_encoder(resnet_with_statistics(), spec, device, 16)
    assert isinstance(encoder, CapturedEncoder)
    generator = torch.Generator(device=device).manual_seed(3)
    images = torch.randn((count, 3, 224, 224), device=device, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    model = resnet_with_statistics().to(device, memory_format=torch.channels_last)
    with torch.inference_mode():
        replayed = encoder(images).float().clone()
        with torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            eager = encoder.graph(images).float()
            expected = model(images).float()
    assert replayed.shape == (count, 1024)
    torch.testing.assert_close(replayed, eager, rtol=2e-2, atol=2e-2)  # a smaller batch may take other kernels
    if count == 16:
        assert torch.equal(replayed, eager)
    assert float((replayed - expected).norm() / expected.norm()) < 2e-2


@needs_cuda
def test_a_model_without_batch_norm_runs_as_built_on_cuda() -> None:
    spec = get_encoder_spec("resnet50_trunc")
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sigmoid(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    assert cuda_encoder(model, spec, torch.device("cuda"), 4) is model


@needs_cuda
def test_where_cudnns_fused_kernels_fail_the_model_runs_as_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object) -> float:
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")

    monkeypatch.setattr(captured_encoder, "_relative_error", failing)
    model = resnet_with_statistics()
    assert cuda_encoder(model, get_encoder_spec("resnet50_trunc"), torch.device("cuda"), 4) is model


@needs_cuda
def test_a_cuda_job_with_the_fused_encoder_gives_the_features_of_the_model_as_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memamba.features.extract import extract_features
    from memamba.features.features_h5 import read_features
    coords = write_coords(tmp_path / "coords.h5", TISSUE_COORDS)
    runs = {}
    for fused in (True, False):
        monkeypatch.setattr(captured_encoder, "FUSED_CNN", fused)
        out = tmp_path / f"fused_{fused}.h5"
        extract_features(CMU, coords, out, allow_random_weights=True, device="cuda", batch_size=4)
        runs[fused] = read_features(out)[0]
    assert runs[True].shape == runs[False].shape == (len(TISSUE_COORDS), 1024)
    assert np.corrcoef(runs[True].ravel(), runs[False].ravel())[0, 1] > 0.999


@needs_cuda
def test_a_cuda_job_builds_its_encoder_first_so_a_bad_weights_file_fails_it_writing_nothing(tmp_path: Path) -> None:
    from memamba.errors import InputError
    from memamba.features.extract import SlideJob, extract_slides

    coords = write_coords(tmp_path / "coords.h5", TISSUE_COORDS)
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"not a safetensors file")
    jobs = [SlideJob(CMU, coords, tmp_path / f"slide{index}.h5") for index in range(2)]
    with pytest.raises(InputError, match=r"broken\.safetensors"):
        extract_slides(jobs, weights=weights, device="cuda", batch_size=4)
    assert not any(job.output.exists() for job in jobs)
