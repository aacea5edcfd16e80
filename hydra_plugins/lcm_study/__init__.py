"""Hydra plugins of the learning-curve-maps project (Hydra finds plugins in the
``hydra_plugins`` namespace package only)."""

# Hydra imports its plugins before it composes a config: the resolver that makes each sweep's folder unique
# (conf/config.yaml, hydra.sweep.dir) must exist by then.
import pipeline.config  # noqa: F401
