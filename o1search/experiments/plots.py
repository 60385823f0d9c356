"""Plots of method comparisons: the rows of
:func:`o1search.experiments.compare.compare_methods` as accuracy-vs-tokens curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_accuracy_vs_tokens", "rows_to_curves"]


def rows_to_curves(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Rows of :func:`compare_methods` as ``{method: [(mean generated tokens, accuracy)]}``.

    Raises
    ------
    ValueError
        A row without ``method``, ``generated_tokens`` or ``accuracy``.
    """
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if not all(k in r for k in ("method", "generated_tokens", "accuracy")):
            raise ValueError("rows need 'method', 'generated_tokens' and 'accuracy'")
        curves.setdefault(str(r["method"]), []).append(
            (float(r["generated_tokens"]), float(r["accuracy"])))
    return curves


def plot_accuracy_vs_tokens(rows: Sequence[dict[str, Any]], path: str | Path, *,
                            title: str = "accuracy vs generated tokens") -> Path:
    """Accuracy against mean generated tokens per problem, one line per method (PNG, log-x).

    Draws with :func:`o1search.viz.plot_accuracy_vs_tokens` (matplotlib, Agg backend).

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`compare_methods`.
    path : str or Path
        Output PNG file (parent directories created).
    title : str

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        No rows, or rows without the needed keys / with non-finite values.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to plot")
    from o1search.viz.plots import plot_accuracy_vs_tokens as draw

    budgets: dict[str, list[Any]] = {}
    for r in rows:
        budgets.setdefault(str(r["method"]), []).append(r.get("budget"))
    return draw(rows_to_curves(rows), path, title=title, budgets=budgets)
