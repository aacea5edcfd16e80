"""Critical learning periods in deep linear networks (Kleinman, Achille & Soatto 2024): the
``critical_pathways`` and ``critical_matrix_completion`` runners and their networks."""

from .runners import CriticalMatrixCompletionRunner, CriticalPathwaysRunner

__all__ = ["CriticalMatrixCompletionRunner", "CriticalPathwaysRunner"]
