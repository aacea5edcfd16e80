"""The dense-sample study (Hanson, Yadav & Hanson 2024): the ``dense_sample`` runner, its glyph data
(data.py), its network (network.py) and its learning-curve fits (fits.py)."""

from .runner import DenseSampleRunner

__all__ = ["DenseSampleRunner"]
