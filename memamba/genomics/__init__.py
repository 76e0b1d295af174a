"""Genomics stage: read genomic tables and gene groups, validate labels, write the cohort folder."""
