"""Kaplan–Meier curves of the out-of-fold risk groups, with an at-risk table and the log-rank p-value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memamba.io import atomic_output

GROUP_COLOURS = {"low": "#1f77b4", "intermediate": "#ff7f0e", "high": "#d62728"}


def plot_risk_groups(
    months: np.ndarray,
    censorship: np.ndarray,
    groups: np.ndarray,
    out_paths: Sequence[Path],
    *,
    title: str,
    p_value: float | None,
) -> None:
    """Draw one KM step curve per group (months on x) above a table of patients at risk; save to each path.

    The format of each file follows its suffix (.png, .svg).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from sksurv.nonparametric import kaplan_meier_estimator

    event = np.asarray(censorship) == 0
    names = [name for name in GROUP_COLOURS if name in set(groups)]
    figure, (curve_axis, table_axis) = plt.subplots(
        2, 1, figsize=(6.4, 5.2), gridspec_kw={"height_ratios": [4, 1]}, sharex=True
    )
    horizon = float(np.max(months)) if len(months) else 1.0
    for name in names:
        member = groups == name
        times, survival = kaplan_meier_estimator(event[member], months[member])
        colour = GROUP_COLOURS[name]
        curve_axis.step(np.r_[0.0, times], np.r_[1.0, survival], where="post", color=colour,
                        label=f"{name} risk (n={int(member.sum())})")
        censored_months = months[member & ~event]
        at_censoring = np.r_[1.0, survival][np.searchsorted(times, censored_months, side="right")]
        curve_axis.plot(censored_months, at_censoring, "+", color=colour, markersize=7)
    p_text = "log-rank p = n/a" if p_value is None else f"log-rank p = {p_value:.3g}"
    curve_axis.set_title(f"{title}\n{p_text}", fontsize=10)
    curve_axis.set_ylabel("survival probability")
    curve_axis.set_ylim(0.0, 1.05)
    curve_axis.set_xlim(-0.02 * horizon, 1.04 * horizon)
    curve_axis.legend(loc="best", frameon=False)

    ticks = [tick for tick in MaxNLocator(nbins=6).tick_values(0.0, horizon) if 0.0 <= tick <= horizon]
    table_axis.set_xticks(ticks)
    table_axis.set_ylim(-0.5, len(names) - 0.5)
    table_axis.set_yticks(range(len(names)), [f"{name} risk" for name in names])
    table_axis.tick_params(axis="y", length=0, pad=14)
    table_axis.set_xlabel("months")
    table_axis.set_title("number at risk", fontsize=9, loc="left")
    for row, name in enumerate(names):
        member_months = months[groups == name]
        for tick in ticks:
            table_axis.text(tick, row, str(int((member_months >= tick).sum())), ha="center", va="center",
                            fontsize=8, color=GROUP_COLOURS[name])
    for side in ("top", "right", "left"):
        table_axis.spines[side].set_visible(False)
    figure.tight_layout()
    try:
        for path in out_paths:
            with atomic_output(path) as temporary:
                figure.savefig(temporary, format=Path(path).suffix.lstrip("."), dpi=120)
    finally:
        plt.close(figure)
