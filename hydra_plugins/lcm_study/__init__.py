"""Hydra plugins of the learning-curve-maps project (Hydra finds plugins in the
``hydra_plugins`` namespace package only)."""
