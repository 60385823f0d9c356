"""Moved to :mod:`o1search.experiments` (``compare``, ``presets``, ``plots``); this module
keeps ``from o1search.evaluate import ...`` working."""

import warnings

from o1search.experiments.compare import (
    GreedyResult,
    MethodResult,
    MethodSpec,
    compare_methods,
    greedy_accuracy,
    make_evaluator,
    prepare_problems,
    run_method,
)
from o1search.experiments.plots import plot_accuracy_vs_tokens, rows_to_curves
from o1search.experiments.presets import METHODS, method_config

__all__ = ["METHODS", "GreedyResult", "MethodResult", "MethodSpec", "compare_methods",
           "greedy_accuracy", "make_evaluator", "method_config", "plot_accuracy_vs_tokens",
           "prepare_problems", "rows_to_curves", "run_method"]

warnings.warn("o1search.evaluate moved to o1search.experiments; import from there", DeprecationWarning,
              stacklevel=2)
