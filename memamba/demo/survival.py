"""Survival labels of the demo cohort: proportional hazards in the latent risk, independent censoring."""

from __future__ import annotations

import numpy as np

HAZARD_RATIO_PER_SD = 1.3
"""log hazard ratio (beta) per unit of latent risk z."""
WEIBULL_SHAPE = 1.2
MEDIAN_EVENT_MONTHS = 45.0
"""Median event time (months) of a patient with z = 0."""
MEDIAN_CENSORING_MONTHS = 115.0
"""Median of the exponential censoring time (months); tuned so that about 30% of patients are censored."""


def draw_survival(latent_risk: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (survival_months [N] float64, censorship [N] int64) for latent risks z [N].

    Event time T ~ Weibull with hazard h(t) = h0(t) * exp(beta * z); censoring time C ~ exponential,
    independent of z. survival_months = min(T, C) rounded to 0.01 month and at least 0.01;
    censorship = 1 when C < T (censored, MCAT convention), 0 for an observed event.
    """
    z = np.asarray(latent_risk, dtype=np.float64)
    scale = np.log(2.0) / MEDIAN_EVENT_MONTHS**WEIBULL_SHAPE
    event = (-np.log(rng.random(z.size)) / (scale * np.exp(HAZARD_RATIO_PER_SD * z))) ** (1.0 / WEIBULL_SHAPE)
    censoring = rng.exponential(MEDIAN_CENSORING_MONTHS / np.log(2.0), z.size)
    months = np.maximum(np.round(np.minimum(event, censoring), 2), 0.01)
    return months, (censoring < event).astype(np.int64)
