"""Cohort stage: patients and slides, cross-validation splits, per-fold preprocessing and patient bags."""
