"""Entropic OT backends, transport plans, barycentric projection and MMD."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from memamba.keops_probe import probe_keops
from memamba.ot import (
    barycentric_projection,
    cost_matrix,
    epsilon_schedule,
    mmd,
    normalize_rows,
    sinkhorn_potentials,
    transport_plan,
)


def clouds(n: int = 40, m: int = 6, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random point clouds x [n, dim], y [m, dim] with different means."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randn(m, dim, generator=generator) + 0.5


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("reach", [None, 1.0])
@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_streaming_and_tensorized_backends_give_same_potentials_and_plan(reach: float | None, cost: str) -> None:
    x, y = clouds()
    args = {"blur": 0.3, "reach": reach, "cost": cost}
    f_stream, g_stream = sinkhorn_potentials(x, y, backend="streaming", tile_elements=50, **args)
    f_dense, g_dense = sinkhorn_potentials(x, y, backend="tensorized", **args)
    assert relative_error(f_stream, f_dense) < 1e-4
    assert relative_error(g_stream, g_dense) < 1e-4
    plan_stream = transport_plan(f_stream, g_stream, x, y, blur=0.3, cost=cost)
    plan_dense = transport_plan(f_dense, g_dense, x, y, blur=0.3, cost=cost)
    assert relative_error(plan_stream, plan_dense) < 1e-4


@pytest.mark.parametrize("reach", [None, 1.0])
def test_streaming_gives_the_same_potentials_with_one_tile_as_with_many(reach: float | None) -> None:
    x, y = clouds()
    one_tile = sinkhorn_potentials(x, y, blur=0.3, reach=reach, tolerance=1e-3)
    many_tiles = sinkhorn_potentials(x, y, blur=0.3, reach=reach, tolerance=1e-3, tile_elements=50)
    assert relative_error(one_tile[0], many_tiles[0]) < 1e-4
    assert relative_error(one_tile[1], many_tiles[1]) < 1e-4


def test_streaming_and_tensorized_backends_give_same_gradients() -> None:
    x, y = clouds()
    grads = []
    for backend in ("streaming", "tensorized"):
        points = x.clone().requires_grad_()
        f, g = sinkhorn_potentials(points, y, blur=0.3, backend=backend)
        barycentric_projection(transport_plan(f, g, points, y, blur=0.3), points).square().sum().backward()
        grads.append(points.grad)
    assert torch.isfinite(grads[0]).all()
    assert relative_error(grads[0], grads[1]) < 1e-3


def keops_verdict() -> str:
    """Why KeOps cannot run here ("" when it can), from memamba.keops_probe."""
    if importlib.util.find_spec("pykeops") is None:
        return "pykeops is not installed"
    verdict = probe_keops("cpu")
    return "" if verdict.works else verdict.reason


@pytest.mark.parametrize("reach", [None, 1.0])
def test_geomloss_online_backend_gives_the_streaming_potentials_and_plan(reach: float | None) -> None:
    if reason := keops_verdict():
        pytest.skip(f"KeOps does not work here: {reason}")
    x, y = clouds()
    f_online, g_online = sinkhorn_potentials(x, y, blur=0.3, reach=reach, backend="geomloss_online")
    f_stream, g_stream = sinkhorn_potentials(x, y, blur=0.3, reach=reach)
    assert relative_error(f_online, f_stream) < 1e-4
    assert relative_error(g_online, g_stream) < 1e-4
    plan_online = transport_plan(f_online, g_online, x, y, blur=0.3)
    assert relative_error(plan_online, transport_plan(f_stream, g_stream, x, y, blur=0.3)) < 1e-4


def test_balanced_plan_has_uniform_marginals_at_tolerance() -> None:
    x, y = clouds(n=60, m=6, dim=4)
    f, g = sinkhorn_potentials(x, y, blur=0.3, tolerance=1e-4)
    plan = transport_plan(f, g, x, y, blur=0.3)
    torch.testing.assert_close(plan.sum(dim=1), torch.full((60,), 1 / 60), rtol=1e-3, atol=0)
    torch.testing.assert_close(plan.sum(dim=0), torch.full((6,), 1 / 6), rtol=1e-3, atol=0)


def test_tolerance_is_refused_by_geomloss_backends() -> None:
    x, y = clouds()
    with pytest.raises(ValueError, match="streaming"):
        sinkhorn_potentials(x, y, backend="tensorized", tolerance=1e-3)


def test_unbalanced_plan_may_drop_mass_of_far_points() -> None:
    x, y = clouds(n=30, m=6, dim=2)
    x[0] += 50.0
    f, g = sinkhorn_potentials(x, y, blur=0.3, reach=1.0)
    plan = transport_plan(f, g, x, y, blur=0.3)
    assert plan.sum(dim=1)[0] < 1e-3 / 30


def test_barycentric_projection_of_cloud_onto_itself_is_identity_at_small_blur() -> None:
    y = torch.randn(20, 2, generator=torch.Generator().manual_seed(1)) * 3
    f, g = sinkhorn_potentials(y, y, blur=0.01)
    projected = barycentric_projection(transport_plan(f, g, y, y, blur=0.01), y)
    torch.testing.assert_close(projected, y, rtol=0, atol=1e-3)


def test_streaming_handles_a_bag_of_twenty_thousand_points() -> None:
    x, y = clouds(n=20000, m=6, dim=16)
    f, g = sinkhorn_potentials(x, y, blur=0.1, cost="cosine", tolerance=1e-3, tile_elements=2**14)
    plan = transport_plan(f, g, x, y, blur=0.1, cost="cosine")
    assert f.shape == (20000,) and g.shape == (6,)
    torch.testing.assert_close(plan.sum(dim=0), torch.full((6,), 1 / 6), rtol=1e-2, atol=0)


def test_single_point_is_transported_whole_to_every_target() -> None:
    x, y = clouds(n=1, m=6)
    f, g = sinkhorn_potentials(x, y, blur=0.1)
    plan = transport_plan(f, g, x, y, blur=0.1)
    torch.testing.assert_close(plan, torch.full((1, 6), 1 / 6), rtol=1e-4, atol=0)
    torch.testing.assert_close(barycentric_projection(plan, x), x.expand(6, -1))


def test_tensorized_backend_keeps_no_grad_mode() -> None:
    x, y = clouds()
    with torch.no_grad():
        sinkhorn_potentials(x, y, blur=0.3, backend="tensorized")
        assert not torch.is_grad_enabled()


def test_cosine_cost_is_one_minus_cosine_similarity() -> None:
    x, y = clouds()
    expected = 1 - F.cosine_similarity(x[:, None], y[None], dim=-1)
    torch.testing.assert_close(cost_matrix(x, y, "cosine"), expected, rtol=0, atol=1e-5)


def test_epsilon_schedule_runs_from_diameter_to_blur() -> None:
    schedule = epsilon_schedule(diameter=4.0, blur=0.1, scaling=0.5)
    assert schedule[0] == 16.0 and schedule[-1] == pytest.approx(0.01)
    assert schedule == sorted(schedule, reverse=True)


def test_unknown_backend_and_cost_are_rejected() -> None:
    x, y = clouds()
    with pytest.raises(ValueError, match="streaming"):
        sinkhorn_potentials(x, y, backend="multiscale")
    with pytest.raises(ValueError, match="cosine"):
        sinkhorn_potentials(x, y, cost="manhattan")


def test_mmd_of_a_cloud_with_itself_is_zero() -> None:
    x, _ = clouds()
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_mmd_grows_with_mean_shift() -> None:
    x, _ = clouds(n=100, dim=2)
    values = [float(mmd(x, x + shift)) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[0] > 0


def test_unbiased_mmd_is_near_zero_for_two_samples_of_one_distribution() -> None:
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(400, 2, generator=generator), torch.randn(400, 2, generator=generator)
    assert abs(float(mmd(x, y, unbiased=True))) < 0.2 * float(mmd(x, y))


def test_unbiased_mmd_needs_two_points_per_cloud() -> None:
    x, y = clouds(n=1)
    with pytest.raises(ValueError, match="at least 2"):
        mmd(x, y, unbiased=True)


def test_normalize_rows_gives_the_values_and_gradients_of_f_normalize() -> None:
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[1], x[2] = 0.0, x[2] * 1e-14
    weights = torch.randn_like(x)
    expected_points, points = x.clone().requires_grad_(), x.clone().requires_grad_()
    (F.normalize(expected_points, dim=-1) * weights).sum().backward()
    (normalize_rows(points) * weights).sum().backward()
    torch.testing.assert_close(normalize_rows(x), F.normalize(x, dim=-1), rtol=0, atol=0)
    torch.testing.assert_close(points.grad, expected_points.grad)


def test_streaming_potentials_follow_geomloss_gradient_convention() -> None:
    # The last update of f is differentiable in x only, that of g in y only (C(x, y.detach()), …).
    x, y = clouds()
    x.requires_grad_()
    f, _ = sinkhorn_potentials(x, y.requires_grad_(), blur=0.3)
    f.sum().backward()
    assert x.grad.abs().sum() > 0 and y.grad is None
