"""Moved to :mod:`o1search.experiments` (``demo``, ``search_run``, ``train_run``,
``presets``); this module keeps ``from o1search.demo import ...`` working."""

import warnings

from o1search.experiments.demo import DemoConfig, DemoResult, run_demo
from o1search.experiments.demo_outputs import format_table
from o1search.experiments.options import MAX_TOKEN_BUDGET
from o1search.experiments.presets import ALGORITHMS, make_algorithm
from o1search.experiments.search_run import SearchRunConfig, run_search
from o1search.experiments.train_run import TRAIN_ALGORITHMS, TrainRunConfig, run_train

__all__ = ["ALGORITHMS", "DemoConfig", "DemoResult", "MAX_TOKEN_BUDGET", "SearchRunConfig",
           "TRAIN_ALGORITHMS", "TrainRunConfig", "format_table", "make_algorithm", "run_demo",
           "run_search", "run_train"]

warnings.warn("o1search.demo moved to o1search.experiments; import from there", DeprecationWarning,
              stacklevel=2)
