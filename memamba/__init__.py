"""memamba: ME-Mamba multimodal (WSI + genomics) survival analysis, end to end."""

__version__ = "0.1.0"
