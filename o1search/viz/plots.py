"""Plots with matplotlib (Agg backend: no display needed): accuracy against generated tokens
per search method, and learning curves.

matplotlib is imported inside the functions, so importing :mod:`o1search.viz` stays cheap
and never touches a display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_accuracy_vs_tokens", "plot_learning_curves"]


def _pyplot() -> Any:
    import matplotlib

    # Agg before pyplot: a headless machine (CI, a server) has no display to open.
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _xy(name: str, points: Any) -> tuple[list[float], list[float]]:
    """``points`` as (xs, ys). A *tuple* of two sequences is ``(xs, ys)``; anything else is a
    sequence of ``(x, y)`` pairs (the tuple/list distinction keeps two 2-point forms apart).
    All values must be finite numbers."""
    try:
        if isinstance(points, tuple) and len(points) == 2 and all(
                hasattr(v, "__len__") for v in points):
            xs, ys = points
            if len(xs) != len(ys):
                raise ValueError
            pts = [(float(x), float(y)) for x, y in zip(xs, ys)]
        else:
            pts = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        raise ValueError(f"series {name!r} must be (x, y) pairs or a tuple (xs, ys) of "
                         "equal-length number sequences") from None
    if not pts:
        raise ValueError(f"series {name!r} is empty")
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in pts):
        raise ValueError(f"series {name!r} has a non-finite value")
    return [p[0] for p in pts], [p[1] for p in pts]


def _save(fig: Any, plt: Any, path: str | os.PathLike[str]) -> Path:
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(p, format="png", dpi=120)
    finally:
        plt.close(fig)
    return p


def plot_accuracy_vs_tokens(
    curves: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    title: str = "accuracy vs generated tokens",
    baselines: Mapping[str, float] | None = None,
    log_x: bool = True,
) -> Path:
    """One line per method: accuracy against generated tokens per problem.

    Parameters:
        curves: ``{method: [(tokens, accuracy), ...]}`` (or ``{method: (tokens_list,
            accuracy_list)}``, a tuple); points are sorted by tokens. A single-point method (e.g.
            greedy) is drawn as a marker.
        path: the PNG file to write (parents created).
        title: figure title.
        baselines: ``{label: accuracy}`` drawn as horizontal dashed lines (e.g. greedy).
        log_x: logarithmic token axis (budgets usually double).

    Returns:
        The path written.

    Raises:
        ValueError: no curves, an empty series, non-numeric or non-finite values.
    """
    if not curves:
        raise ValueError("no curves to plot")
    data = {str(k): _xy(str(k), v) for k, v in curves.items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (xs, ys) in data.items():
        order = sorted(range(len(xs)), key=xs.__getitem__)
        ax.plot([xs[i] for i in order], [ys[i] for i in order], marker="o", label=name)
    for label, acc in (baselines or {}).items():
        ax.axhline(float(acc), linestyle="--", linewidth=1, color="gray")
        ax.annotate(str(label), (0.01, float(acc)), xycoords=("axes fraction", "data"),
                    fontsize=8, color="gray", va="bottom")
    if log_x and all(x > 0 for xs, _ in data.values() for x in xs):
        ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_learning_curves(
    series: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    title: str = "learning curves",
    xlabel: str = "step",
    ylabel: str = "value",
    secondary: Mapping[str, Any] | None = None,
    secondary_label: str = "",
) -> Path:
    """Learning curves: one line per series (e.g. SFT loss per step, greedy accuracy per
    search+learn round).

    Parameters:
        series: ``{name: [y0, y1, ...]}`` (x = 0, 1, ...), or ``{name: [(x, y), ...]}``, or
            ``{name: (xs, ys)}`` (a tuple).
        path: the PNG file to write.
        title, xlabel, ylabel: labels.
        secondary: more series drawn against a right-hand axis (e.g. accuracy next to a
            loss), same formats.
        secondary_label: label of that axis.

    Returns:
        The path written.

    Raises:
        ValueError: no series, an empty series, non-numeric or non-finite values.
    """
    if not series:
        raise ValueError("no series to plot")

    def norm(name: str, v: Any) -> tuple[list[float], list[float]]:
        # A flat list of numbers is y values at x = 0, 1, ...
        if (not isinstance(v, tuple) and hasattr(v, "__iter__") and len(v) > 0
                and all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in v)):
            return _xy(name, list(enumerate(v)))
        return _xy(name, v)

    left = {str(k): norm(str(k), v) for k, v in series.items()}
    right = {str(k): norm(str(k), v) for k, v in (secondary or {}).items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (xs, ys) in left.items():
        ax.plot(xs, ys, label=name, marker="o" if len(xs) <= 12 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        for i, (name, (xs, ys)) in enumerate(right.items()):
            ax2.plot(xs, ys, label=name, linestyle="--", marker="s", color=f"C{len(left) + i}")
        ax2.set_ylabel(secondary_label)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8)
    ax.set_title(title)
    return _save(fig, plt, path)
