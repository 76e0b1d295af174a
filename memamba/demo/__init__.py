"""Synthetic planted-signal demo cohort: a cheap plan, Aperio slides and an MCAT genomics table."""
