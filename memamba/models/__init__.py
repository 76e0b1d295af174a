"""Survival models (ME-Mamba and baselines), built by name with memamba.models.registry.build_model.

Nothing here imports torch: the registry imports a model's module only when the model is built.
"""
