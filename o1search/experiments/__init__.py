"""Experiments: pipelines built on every layer below (policy, engine, search, reward, tasks,
learn), one module per stage of work. The CLI and the benchmarks import from here.

* :mod:`~o1search.experiments.presets` — search methods sized for a token budget
  (``make_algorithm`` for the demo and ``o1search search``, ``method_config`` for the
  equal-compute comparisons);
* :mod:`~o1search.experiments.compare` — equal-compute comparison of methods
  (``greedy_accuracy``, ``run_method``, ``compare_methods``, ``make_evaluator``), and
  :mod:`~o1search.experiments.plots` for its curves;
* :mod:`~o1search.experiments.task_setup` — the task a run works on;
* :mod:`~o1search.experiments.search_run` — ``o1search search``;
* :mod:`~o1search.experiments.train_run` — ``o1search train``;
* :mod:`~o1search.experiments.demo` — ``o1search demo``, whose stages are
  :mod:`~o1search.experiments.demo_stages` and whose files
  :mod:`~o1search.experiments.demo_outputs` writes.
"""

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
from o1search.experiments.demo import DemoConfig, DemoResult, run_demo
from o1search.experiments.demo_outputs import format_table
from o1search.experiments.options import MAX_TOKEN_BUDGET
from o1search.experiments.plots import plot_accuracy_vs_tokens, rows_to_curves
from o1search.experiments.presets import (
    ALGORITHMS,
    METHODS,
    make_algorithm,
    method_config,
)
from o1search.experiments.search_run import SearchRunConfig, run_search
from o1search.experiments.train_run import TRAIN_ALGORITHMS, TrainRunConfig, run_train

__all__ = [
    "ALGORITHMS",
    "DemoConfig",
    "DemoResult",
    "GreedyResult",
    "MAX_TOKEN_BUDGET",
    "METHODS",
    "MethodResult",
    "MethodSpec",
    "SearchRunConfig",
    "TRAIN_ALGORITHMS",
    "TrainRunConfig",
    "compare_methods",
    "format_table",
    "greedy_accuracy",
    "make_algorithm",
    "make_evaluator",
    "method_config",
    "plot_accuracy_vs_tokens",
    "prepare_problems",
    "rows_to_curves",
    "run_demo",
    "run_method",
    "run_search",
    "run_train",
]
