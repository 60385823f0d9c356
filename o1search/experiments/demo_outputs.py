"""What ``o1search demo`` writes once its stages have run: the comparison table, the plots,
the tree viewer of one search, and ``report.json``."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from o1search.experiments.task_setup import task_knobs

__all__ = ["build_report", "format_table", "write_figures"]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table (method, budget, accuracy, tokens, time).

    Parameters:
        rows: dicts with ``method``, ``budget``, ``accuracy``, ``mean_generated_tokens``,
            ``seconds``, ``problems``.

    Returns:
        The table, one line per row, with a header.
    """
    lines = [f"{'method':<11}{'budget':>8}{'accuracy':>10}{'tokens/problem':>16}"
             f"{'seconds':>9}{'problems':>10}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        b = "-" if r["budget"] is None else str(r["budget"])
        lines.append(f"{r['method']:<11}{b:>8}{r['accuracy']:>10.3f}"
                     f"{r['mean_generated_tokens']:>16.1f}{r['seconds']:>9.1f}"
                     f"{r['problems']:>10}")
    return "\n".join(lines)


def write_figures(work: Path, rows: Sequence[dict[str, Any]], tree_row: dict[str, Any] | None,
                  eval_problems: Sequence[Any], prm_losses: Sequence[float],
                  rest: Any, decode: Callable[[Sequence[int]], str]) -> dict[str, Path]:
    """``accuracy_vs_tokens.png``, ``learning_curves.png`` and (when ``tree_row`` is given)
    ``tree.html`` of its largest tree, written into ``work``. Returns their paths by name
    (``plot``, ``learning_plot``, ``tree_html``)."""
    from o1search.experiments.search_run import false_step_of
    from o1search.viz import write_tree_html
    from o1search.viz.plots import plot_accuracy_vs_tokens, plot_loss_and_rounds

    curves: dict[str, list[tuple[float, float]]] = {}
    budgets: dict[str, list[Any]] = {}
    baselines: dict[str, float] = {}
    for r in rows:
        if r["method"] == "greedy":
            baselines[f"greedy {r['accuracy']:.2f}"] = r["accuracy"]
            curves["greedy"] = [(max(r["mean_generated_tokens"], 1.0), r["accuracy"])]
        else:
            curves.setdefault(r["method"], []).append((max(r["mean_generated_tokens"], 1.0),
                                                       r["accuracy"]))
            budgets.setdefault(r["method"], []).append(r.get("budget"))
    files: dict[str, Path] = {}
    files["plot"] = plot_accuracy_vs_tokens(
        curves, work / "accuracy_vs_tokens.png", baselines=baselines, budgets=budgets,
        title=f"Countdown, {len(eval_problems)} held-out problems, PRM-guided search")
    files["learning_plot"] = plot_loss_and_rounds(
        prm_losses, {"greedy accuracy": [(0, rest.accuracy_before), (1, rest.accuracy_after)]},
        work / "learning_curves.png", title="PRM training (left); greedy accuracy before and "
        "after the ReST round (right)", loss_label="PRM training loss")
    if tree_row is not None:
        # The biggest tree shows the most search; len(tree) is its node count.
        k = max(range(len(tree_row["results"])), key=lambda i: len(tree_row["results"][i].tree))
        res = tree_row["results"][k]
        prob = eval_problems[k]
        files["tree_html"] = write_tree_html(
            work / "tree.html", res.tree, decode=decode, chosen=res.node,
            title=f"o1search {tree_row['method']} tree — {prob.id}",
            meta={"problem": prob.question, "reference answer": prob.answer,
                  "search answer": res.answer, "correct": tree_row["correct"][k],
                  "verifier says": tree_row["reasons"][k] or "-",
                  "method": tree_row["method"], "token budget": tree_row["budget"],
                  "generated tokens": res.compute.generated_tokens},
            mark=None if tree_row["correct"][k] else false_step_of(tree_row["reasons"][k]))
    return files


def build_report(config: Any, policy: Any, prm_data: Any, prm_res: Any, prm_path: Path,
                 public_rows: list[dict[str, Any]], rest: Any, files: dict[str, Path],
                 timings: dict[str, float], total_s: float,
                 final: Callable[[Any], Path]) -> dict[str, Any]:
    """The JSON report of a demo run (``report.json``); ``final`` maps a path written under
    the work folder to where it lies once the run is in place."""
    import numpy as np
    import torch

    flat, soft = prm_data.traces, prm_data.soft
    model = policy.model
    return {
        "demo": "o1search",
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(config).items()},
        "policy": {"source": policy.source, "path": str(final(policy.path)),
                   "parameters": sum(p.numel() for p in model.parameters())},
        "task": {"name": "countdown", "knobs": task_knobs(policy.path)},
        "prm": {"problems": len(prm_data.problems), "solutions": len(flat),
                "solution_accuracy": float(np.mean([t.reward >= 0.5 for t in flat])),
                "labelled_steps": int(soft.size),
                "mean_soft_label": float(soft.mean()) if soft.size else None,
                "train_steps": prm_res.steps,
                "loss_first": float(np.mean(prm_res.losses[:5])),
                "loss_last": float(np.mean(prm_res.losses[-5:])),
                "path": str(final(prm_path))},
        "comparison": public_rows,
        "rest": {"problems": len(rest.train_problems), "eval_problems": len(rest.eval_problems),
                 "greedy_accuracy_before": rest.accuracy_before,
                 "greedy_accuracy_after": rest.accuracy_after,
                 "metrics": {k: round(float(v), 4) for k, v in rest.metrics.items()}},
        "files": {k: str(final(v)) for k, v in files.items()},
        "timings_s": timings,
        "total_s": total_s,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg")
                    else None, "torch_threads": torch.get_num_threads()},
    }
