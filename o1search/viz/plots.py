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

__all__ = [
    "accuracy_vs_tokens_figure",
    "loss_and_rounds_figure",
    "plot_accuracy_vs_tokens",
    "plot_learning_curves",
    "plot_loss_and_rounds",
    "smooth",
]


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


def accuracy_vs_tokens_figure(
    curves: Mapping[str, Any],
    *,
    title: str = "accuracy vs generated tokens",
    baselines: Mapping[str, float] | None = None,
    log_x: bool = True,
    budgets: Mapping[str, Any] | None = None,
) -> Any:
    """The figure :func:`plot_accuracy_vs_tokens` saves (a ``matplotlib.figure.Figure``; the
    caller closes it). Parameters as there."""
    if not curves:
        raise ValueError("no curves to plot")
    data = {str(k): _xy(str(k), v) for k, v in curves.items()}
    plt = _pyplot()
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (xs, ys) in data.items():
        order = sorted(range(len(xs)), key=xs.__getitem__)
        ax.plot([xs[i] for i in order], [ys[i] for i in order], marker="o", label=name)
        nominal = list((budgets or {}).get(name) or [])
        for x, y, b in zip(xs, ys, nominal):
            if b:  # the nominal budget beside the spent tokens of each point
                ax.annotate(f"B={b:g}", (x, y), textcoords="offset points", xytext=(3, 4),
                            fontsize=6, color="dimgray")
    for label, acc in (baselines or {}).items():
        ax.axhline(float(acc), linestyle="--", linewidth=1, color="gray")
        ax.annotate(str(label), (0.01, float(acc)), xycoords=("axes fraction", "data"),
                    fontsize=8, color="gray", va="bottom")
    if log_x and all(x > 0 for xs, _ in data.values() for x in xs):
        ax.set_xscale("log")
        # Plain numbers (30, 60, 120), not 3x10^1: 1-2-5 steps, no minor labels.
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("generated tokens per problem (spent)")
    ax.set_ylabel("accuracy")
    # A y-range that shows the differences, not always 0..1.
    ys_all = [y for _, ys in data.values() for y in ys] + [float(a) for a in
                                                           (baselines or {}).values()]
    lo, hi = min(ys_all), max(ys_all)
    pad = max(0.03, 0.1 * (hi - lo))
    ax.set_ylim(max(-0.02, lo - pad), min(1.02, hi + pad))
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_accuracy_vs_tokens(
    curves: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    title: str = "accuracy vs generated tokens",
    baselines: Mapping[str, float] | None = None,
    log_x: bool = True,
    budgets: Mapping[str, Any] | None = None,
) -> Path:
    """One line per method: accuracy against generated tokens per problem.

    Parameters:
        curves: ``{method: [(tokens, accuracy), ...]}`` (or ``{method: (tokens_list,
            accuracy_list)}``, a tuple); points are sorted by tokens. A single-point method (e.g.
            greedy) is drawn as a marker.
        path: the PNG file to write (parents created).
        title: figure title.
        baselines: ``{label: accuracy}`` drawn as horizontal dashed lines (e.g. greedy).
        log_x: logarithmic token axis (budgets usually double), labelled with plain numbers.
        budgets: ``{method: [nominal budget per point]}`` in the order of ``curves``'
            points, written beside each point (``B=64``) so spent and nominal tokens are
            both visible.

    Returns:
        The path written.

    Raises:
        ValueError: no curves, an empty series, non-numeric or non-finite values.
    """
    fig = accuracy_vs_tokens_figure(curves, title=title, baselines=baselines, log_x=log_x,
                                    budgets=budgets)
    return _save(fig, _pyplot(), path)


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


def smooth(values: Any, window: int | None = None) -> list[float]:
    """A centred moving average of ``values`` (window: about a tenth of the series, odd,
    at least 1); the ends average what they have."""
    v = [float(x) for x in values]
    if not v:
        return []
    w = window if window is not None else max(1, len(v) // 10)
    half = max(0, int(w) // 2)
    return [sum(v[max(0, i - half):i + half + 1]) / len(v[max(0, i - half):i + half + 1])
            for i in range(len(v))]


def loss_and_rounds_figure(losses: Any, rounds: Mapping[str, Any], *,
                           title: str = "training", loss_label: str = "training loss",
                           round_label: str = "greedy accuracy") -> Any:
    """Two panels: a loss per optimizer step (raw, faint, and smoothed) and a metric per
    round (e.g. greedy accuracy before and after each ReST round), each on its own x-axis.
    The caller closes the figure."""
    ys = [float(x) for x in losses]
    if not ys or not all(math.isfinite(y) for y in ys):
        raise ValueError("losses must be a non-empty sequence of finite numbers")
    pts = {str(k): _xy(str(k), v) for k, v in rounds.items()}
    if not pts:
        raise ValueError("no per-round series to plot")
    plt = _pyplot()
    from matplotlib import ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(range(len(ys)), ys, color="C0", alpha=0.3, linewidth=0.8, label="raw")
    ax1.plot(range(len(ys)), smooth(ys), color="C0", linewidth=2, label="smoothed")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel(loss_label)
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    ax1.set_title(loss_label)
    for i, (name, (xs, vs)) in enumerate(pts.items()):
        ax2.plot(xs, vs, marker="o", color=f"C{i + 1}", label=name)
        for x, y in zip(xs, vs):
            ax2.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(4, 4),
                         fontsize=8)
    ax2.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax2.set_xlabel("round (0: before training)")
    ax2.set_ylabel(round_label)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title(round_label)
    fig.suptitle(title)
    return fig


def plot_loss_and_rounds(losses: Any, rounds: Mapping[str, Any],
                         path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save :func:`loss_and_rounds_figure` as a PNG (parents created); returns the path.

    Raises:
        ValueError: no losses, non-finite values, no per-round series.
    """
    return _save(loss_and_rounds_figure(losses, rounds, **kwargs), _pyplot(), path)
