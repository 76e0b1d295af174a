"""Feature extraction on a real H&E slide: shapes, provenance, determinism, weights and failure modes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from memamba.errors import InputError
from memamba.features.dataset import SlidePatchDataset
from memamba.features.encoding import encode_patches
from memamba.features.extract import extract_features, read_patch_grid
from memamba.features.features_h5 import export_pt, read_features
from memamba.features.registry import build_encoder, get_encoder_spec

SLIDES = Path(__file__).parent / "data" / "slides"
CMU = SLIDES / "cmu-1-small-region.svs"
UNREADABLE = SLIDES / "unreadable.svs"
TISSUE_COORDS = np.array(
    [[1020, 1200], [1200, 1800], [900, 2400], [1380, 900], [1680, 2500], [1100, 600]], dtype=np.int64
)


def write_coords(
    path: Path,
    coords: np.ndarray,
    *,
    patch_size_level0: int = 256,
    target_patch_size: int | None = None,
    status: str = "ok",
) -> Path:
    """A coords h5 in the tiling stage's schema (patches at level 0), written with plain h5py."""
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("coords", data=np.asarray(coords, dtype=np.int64).reshape(-1, 2))
        dataset.attrs.update(
            patch_size_level0=patch_size_level0,
            patch_size=patch_size_level0,
            patch_level=0,
            target_patch_size=target_patch_size or patch_size_level0,
            target_mpp=0.5,
            status=status,
        )
    return path


@pytest.fixture(scope="module")
def cmu_coords(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coords(tmp_path_factory.mktemp("coords") / "cmu.h5", TISSUE_COORDS)


@pytest.fixture(scope="module")
def random_run(cmu_coords: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features") / "cmu.h5"
    extract_features(CMU, cmu_coords, out, allow_random_weights=True, batch_size=4)
    return out


def test_resnet50_trunc_writes_float16_1024d_finite_features_and_copies_coords(random_run: Path) -> None:
    with h5py.File(random_run, "r") as handle:
        assert handle["features"].dtype == np.float16
        assert handle["features"].shape == (len(TISSUE_COORDS), 1024)
    features, coords, _ = read_features(random_run)
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(coords, TISSUE_COORDS)


def test_features_file_records_provenance(random_run: Path) -> None:
    _, _, attrs = read_features(random_run)
    assert attrs["encoder"] == "resnet50_trunc"
    assert attrs["weights_sha256"] == "random"
    assert (attrs["mpp"], attrs["patch_size"], attrs["status"]) == (0.5, 256, "ok")
    assert attrs["memamba_version"] and attrs["seconds"] > 0


def test_random_weight_runs_give_identical_features(random_run: Path, cmu_coords: Path, tmp_path: Path) -> None:
    extract_features(CMU, cmu_coords, tmp_path / "again.h5", allow_random_weights=True, batch_size=4)
    np.testing.assert_array_equal(read_features(random_run)[0], read_features(tmp_path / "again.h5")[0])


def test_different_patches_give_different_features(random_run: Path) -> None:
    features, _, _ = read_features(random_run)
    distinct_rows = np.unique(features, axis=0)
    assert len(distinct_rows) == len(TISSUE_COORDS)
    assert features.std(axis=0).max() > 0


def test_no_weights_without_permission_raises_and_writes_nothing(cmu_coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    with pytest.raises(InputError, match=r"--weights PATH.*--allow-random-weights"):
        extract_features(CMU, cmu_coords, out)
    assert list(tmp_path.iterdir()) == []


def test_safetensors_weights_load_and_their_sha256_is_recorded(
    random_run: Path, cmu_coords: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    model, _ = build_encoder(get_encoder_spec("resnet50_trunc"), None, allow_random_weights=True)
    weights = tmp_path / "resnet50_trunc.safetensors"
    save_file(model.state_dict(), weights)
    out = tmp_path / "features.h5"
    extract_features(CMU, cmu_coords, out, weights=weights, batch_size=4)
    features, _, attrs = read_features(out)
    assert attrs["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    np.testing.assert_array_equal(features, read_features(random_run)[0])


def test_full_resnet50_checkpoint_with_module_prefix_loads_into_the_truncated_encoder(
    random_run: Path, cmu_coords: Path, tmp_path: Path
) -> None:
    import timm

    torch.manual_seed(1)
    full = timm.create_model("resnet50", pretrained=False)
    weights = tmp_path / "resnet50_full.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in full.state_dict().items()}}, weights)
    out = tmp_path / "features.h5"
    extract_features(CMU, cmu_coords, out, weights=weights, batch_size=4)
    assert not np.array_equal(read_features(out)[0], read_features(random_run)[0])


def test_weights_of_another_architecture_raise_naming_the_file(cmu_coords: Path, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "resnet18.safetensors"
    save_file(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), weights)
    with pytest.raises(InputError, match=r"resnet18\.safetensors.*missing"):
        extract_features(CMU, cmu_coords, tmp_path / "features.h5", weights=weights)
    assert not (tmp_path / "features.h5").exists()


def test_no_tissue_coords_give_empty_features_carrying_the_status(tmp_path: Path) -> None:
    coords = write_coords(tmp_path / "coords.h5", np.zeros((0, 2)), status="no_tissue")
    result = extract_features(CMU, coords, tmp_path / "features.h5", allow_random_weights=True)
    features, coords_read, attrs = read_features(tmp_path / "features.h5")
    assert features.shape == (0, 1024) and coords_read.shape == (0, 2)
    assert attrs["status"] == result.status == "no_tissue"


def test_unreadable_slide_completes_with_blank_patches_counted(tmp_path: Path) -> None:
    coords = write_coords(tmp_path / "coords.h5", [[0, 0], [0, 8], [8, 0]], patch_size_level0=16)
    result = extract_features(UNREADABLE, coords, tmp_path / "features.h5", allow_random_weights=True)
    features, _, attrs = read_features(tmp_path / "features.h5")
    assert result.blank_patches == attrs["blank_patches"] == 3
    assert features.shape == (3, 1024) and np.isfinite(features).all()


def test_unknown_encoder_raises_listing_known_names() -> None:
    with pytest.raises(InputError, match=r"resnet50_trunc.*uni_vit_large"):
        get_encoder_spec("resnet51")


def test_coords_file_without_patch_size_level0_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("coords", data=TISSUE_COORDS).attrs.update(patch_size=256, status="ok")
    with pytest.raises(InputError, match=r"old\.h5.*patch_size_level0"):
        extract_features(CMU, path, tmp_path / "features.h5", allow_random_weights=True)


def test_patch_size_is_read_at_the_target_mpp_not_at_the_patch_level(tmp_path: Path) -> None:
    coords = write_coords(tmp_path / "coords.h5", TISSUE_COORDS, patch_size_level0=512, target_patch_size=256)
    grid = read_patch_grid(coords)
    assert (grid.patch_size_level0, grid.patch_size, grid.target_mpp) == (512, 256, 0.5)


def test_dataset_returns_uint8_chw_at_encoder_input_size() -> None:
    image, blank = SlidePatchDataset(CMU, TISSUE_COORDS, 256, 256, 224)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 224, 224)
    assert not blank


def test_dataset_reads_from_the_pyramid_level_matching_the_downsample(tmp_path: Path) -> None:
    slide = tmp_path / "two_levels.tif"
    red, blue = np.zeros((512, 512, 3), np.uint8), np.zeros((256, 256, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    with tifffile.TiffWriter(slide) as writer:
        writer.write(red, tile=(256, 256), photometric="rgb", compression="deflate")
        writer.write(blue, tile=(256, 256), photometric="rgb", compression="deflate", subfiletype=1)
    at_half, _ = SlidePatchDataset(slide, [[0, 0]], 512, 256, 224)[0]
    at_full, _ = SlidePatchDataset(slide, [[0, 0]], 512, 512, 224)[0]
    assert at_half[:, 100, 100].tolist() == [0, 0, 200]
    assert at_full[:, 100, 100].tolist() == [200, 0, 0]


def test_dataloader_workers_give_the_same_features_as_the_main_process(
    random_run: Path, cmu_coords: Path, tmp_path: Path
) -> None:
    out = tmp_path / "features.h5"
    extract_features(CMU, cmu_coords, out, allow_random_weights=True, batch_size=4, num_workers=1)
    np.testing.assert_array_equal(read_features(out)[0], read_features(random_run)[0])


def test_workers_read_small_pieces_joined_into_whole_batches_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from memamba.features import batches

    pieces, join = [], batches._joined

    def recording_join(parts, batch_size):
        return join((pieces.append(len(part[0])) or part for part in parts), batch_size)

    monkeypatch.setattr(batches, "_joined", recording_join)
    dataset = SlidePatchDataset(CMU, np.concatenate([TISSUE_COORDS] * 3), 256, 256, 224)
    read = list(batches.openslide_batches(dataset, torch.device("cpu"), batch_size=5, num_workers=2))
    assert pieces == [3] * 6  # 18 patches: 4 pieces per worker at most 3 patches each
    assert [len(images) for images, _ in read] == [5, 5, 5, 3]
    expected = torch.stack([dataset[index][0] for index in range(len(dataset))])
    assert torch.equal(torch.cat([images for images, _ in read]), expected)
    assert not torch.cat([blank for _, blank in read]).any()


def test_piece_size_gives_each_worker_four_pieces_within_one_batch() -> None:
    from memamba.features.batches import piece_size

    assert piece_size(6084, 256, 16) == 96
    assert piece_size(256, 256, 2) == 32
    assert piece_size(100_000, 256, 16) == 256
    assert piece_size(3, 256, 16) == 1
    assert piece_size(6084, 256, 0) == 256


def test_export_pt_writes_float32_tensor_of_the_features(random_run: Path, tmp_path: Path) -> None:
    export_pt(random_run, tmp_path / "cmu.pt")
    tensor = torch.load(tmp_path / "cmu.pt")
    assert tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), read_features(random_run)[0])


def test_vit_large_spec_builds_a_1024d_encoder_of_303m_parameters() -> None:
    spec = get_encoder_spec("uni_vit_large")
    with torch.device("meta"):
        model = spec.builder(spec)
        output = model(torch.zeros(2, 3, spec.input_size, spec.input_size))
    assert output.shape == (2, spec.output_dim)
    assert sum(parameter.numel() for parameter in model.parameters()) == pytest.approx(303e6, rel=0.01)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="ViT-L/16 (303M parameters) takes minutes for a slide on the shared CPU cores; runs where CUDA is",
)
def test_uni_vit_large_extracts_finite_1024d_features_on_cuda(cmu_coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    extract_features(CMU, cmu_coords, out, encoder="uni_vit_large", allow_random_weights=True, device="cuda")
    features, _, _ = read_features(out)
    assert features.shape == (len(TISSUE_COORDS), 1024) and np.isfinite(features).all()


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_encoding_on_cuda_shortens_the_gil_switch_interval_and_restores_it(device: str) -> None:
    import sys

    from memamba.features.encoding import GIL_SWITCH_INTERVAL

    spec = get_encoder_spec("resnet50_trunc")
    model, _ = build_encoder(spec, None, allow_random_weights=True)
    seen = []

    def batches():
        seen.append(sys.getswitchinterval())
        yield torch.zeros((2, 3, 224, 224), dtype=torch.uint8), torch.zeros(2, dtype=torch.bool)

    before = sys.getswitchinterval()
    encode_patches(model, spec, batches(), 2, torch.device(device))
    assert seen == [GIL_SWITCH_INTERVAL if device == "cuda" else before]
    assert sys.getswitchinterval() == before


def test_the_encoding_log_says_how_much_of_the_time_went_waiting_for_the_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import re
    import time

    spec = get_encoder_spec("resnet50_trunc")
    model, _ = build_encoder(spec, None, allow_random_weights=True)

    def slow_reader():
        for _ in range(2):
            time.sleep(0.5)  # a reader slower than the encoder: most of the time goes waiting for it
            yield torch.zeros((2, 3, 224, 224), dtype=torch.uint8), torch.zeros(2, dtype=torch.bool)

    with caplog.at_level(logging.INFO, logger="memamba.features.encoding"):
        encode_patches(model, spec, slow_reader(), 4, torch.device("cpu"), label="slow")
    waiting = re.search(r"slow: 4 patches .* (\d+) % of it waiting for the reader", caplog.text)
    assert waiting is not None, caplog.text
    assert int(waiting.group(1)) >= 50

    caplog.clear()
    ready = [(torch.zeros((2, 3, 224, 224), dtype=torch.uint8), torch.zeros(2, dtype=torch.bool))] * 2
    with caplog.at_level(logging.INFO, logger="memamba.features.encoding"):
        encode_patches(model, spec, iter(ready), 4, torch.device("cpu"), label="ready")
    waiting = re.search(r"ready: 4 patches .* (\d+) % of it waiting for the reader", caplog.text)
    assert waiting is not None and int(waiting.group(1)) <= 5  # batches already read: the encoder is the limit


@pytest.mark.parametrize("compiled", [False, True])
def test_an_encoder_replaying_cuda_graphs_keeps_a_longer_gil_switch_interval_on_cuda(compiled: bool) -> None:
    import sys

    from memamba.features.encoding import GIL_SWITCH_INTERVAL, GIL_SWITCH_INTERVAL_GRAPHED, _gil_switch_interval

    before = sys.getswitchinterval()
    with _gil_switch_interval(torch.device("cuda"), compiled):  # sets the interval only: no CUDA call
        assert sys.getswitchinterval() == (GIL_SWITCH_INTERVAL_GRAPHED if compiled else GIL_SWITCH_INTERVAL)
    assert GIL_SWITCH_INTERVAL_GRAPHED > GIL_SWITCH_INTERVAL and sys.getswitchinterval() == before


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_a_compiled_encoder_runs_as_cuda_graphs_on_cuda_only(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from memamba.features.encoding import COMPILE_MODE_CUDA

    spec = get_encoder_spec("resnet50_trunc")
    model, _ = build_encoder(spec, None, allow_random_weights=True)
    modes, steps = [], []

    def compile_recording(module: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
        modes.append(mode)
        return module  # what matters here is what encode_patches asks for, not the compilation

    monkeypatch.setattr(torch, "compile", compile_recording)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(True))
    batches = [(torch.zeros((2, 3, 224, 224), dtype=torch.uint8), torch.zeros(2, dtype=torch.bool))] * 3
    encode_patches(model, spec, iter(batches), 6, torch.device(device), compile_model=True)
    graphed = device == "cuda"
    assert modes == [COMPILE_MODE_CUDA if graphed else None]
    assert len(steps) == (3 if graphed else 0)  # a new step for the graphs before each batch's replay
    assert COMPILE_MODE_CUDA == "reduce-overhead"


class _StreamRecording(torch.nn.Module):
    """An encoder that notes the CUDA stream each of its batches runs on."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.streams = inner, []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.streams.append(torch.cuda.current_stream())
        return self.inner(images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_an_eager_encoder_runs_on_a_stream_of_its_own_with_the_same_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from memamba.features import encoding

    spec = get_encoder_spec("resnet50_trunc")
    model, _ = build_encoder(spec, None, allow_random_weights=True)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 224, 224), dtype=torch.uint8, generator=generator)
    batches = [(images[start : start + 2], torch.zeros(2, dtype=torch.bool)) for start in (0, 2, 4)]
    device, default = torch.device("cuda"), torch.cuda.default_stream()
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: module)  # only where it runs matters here
    runs = {}
    for compiled, own_stream in ((False, True), (True, True), (False, False)):
        monkeypatch.setattr(encoding, "OWN_STREAM_EAGER", own_stream)
        recording = _StreamRecording(model)
        features, _ = encode_patches(recording, spec, iter(batches), 6, device, compile_model=compiled)
        runs[compiled, own_stream] = features, recording.streams
    eager_streams, compiled_streams = runs[False, True][1], runs[True, True][1]
    assert len(eager_streams) == 3 and all(stream != default for stream in eager_streams)
    assert len(compiled_streams) == 3 and all(stream == default for stream in compiled_streams)
    assert all(stream == default for stream in runs[False, False][1])
    np.testing.assert_array_equal(runs[False, True][0], runs[False, False][0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reader_lanes_never_get_the_stream_compiled_cuda_graphs_record_on() -> None:
    from torch._inductor import cudagraph_trees

    from memamba.features.batches import lane_stream
    from memamba.features.encoding import COMPILE_MODE_CUDA

    device = torch.device("cuda", torch.cuda.current_device())
    forward = torch.compile(torch.nn.Linear(8, 8).to(device), mode=COMPILE_MODE_CUDA)
    inputs = torch.randn(4, 8, device=device)
    with torch.inference_mode():
        for _ in range(3):  # a warm-up run, then a recording: the graphs' stream exists from here on
            torch.compiler.cudagraph_mark_step_begin()
            forward(inputs)
    recording = cudagraph_trees.get_manager(device.index, create_if_none_exists=False).stream
    draws = 4 * 32  # four turns of torch's stream pool (32 streams a priority)
    assert recording.cuda_stream not in {lane_stream(device).cuda_stream for _ in range(draws)}
    # the hazard: at the default priority the pool hands the recording stream out again
    assert recording.cuda_stream in {torch.cuda.Stream(device).cuda_stream for _ in range(draws)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_waiting_for_a_stream_returns_once_its_queued_work_is_done() -> None:
    from memamba.features.cuda_waits import gpu_event, wait_for_stream

    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(200_000_000)  # GPU clock cycles: about a tenth of a second
        queued = gpu_event()
        queued.record(stream)
    assert not queued.query()
    wait_for_stream(stream)
    assert queued.query()


def test_manifest_records_each_slides_patches_reader_and_timing(random_run: Path, tmp_path: Path) -> None:
    import csv

    from memamba.features.manifest import write_features_manifest

    write_features_manifest([random_run], tmp_path / "manifest.csv")
    with (tmp_path / "manifest.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert (row["slide"], row["status"], row["n_patches"], row["blank_patches"]) == ("cmu", "ok", "6", "0")
    assert row["reader"] == "openslide" and row["device"] == "cpu"
    assert float(row["seconds"]) > 0 and float(row["patches_per_second"]) > 0
