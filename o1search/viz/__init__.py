"""Viewing search and learning: a self-contained HTML search-tree viewer and matplotlib plots
(accuracy against generated tokens per method, learning curves)."""

from __future__ import annotations

from o1search.viz.plots import plot_accuracy_vs_tokens, plot_learning_curves
from o1search.viz.tree_html import chosen_path, render_tree_html, write_tree_html

__all__ = [
    "chosen_path",
    "plot_accuracy_vs_tokens",
    "plot_learning_curves",
    "render_tree_html",
    "write_tree_html",
]
