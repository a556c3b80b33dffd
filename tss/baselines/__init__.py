"""Baselines the paper compares against that are not deep networks: Lee et al. (2020), see
:mod:`tss.baselines.lee`."""

from tss.baselines import lee

__all__ = ["lee"]
