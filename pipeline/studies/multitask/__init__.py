"""The multitasking network and its pseudo-kernel (Pyle, Musslick, Cohen & Patel 2023): the
``multitask`` runner, its environment (data.py) and its network (network.py)."""

from .runner import MultitaskRunner

__all__ = ["MultitaskRunner"]
