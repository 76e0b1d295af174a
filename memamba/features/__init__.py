"""Patch features: encoder registry, patch dataset, extraction loop and the features h5 file."""
