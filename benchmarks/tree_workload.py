"""MCTS bookkeeping workload for the search tree: native tree vs the pure-Python reference.

One *simulation* is one selected leaf carried through the loop
``select(batch)`` → ``add_children_flat`` (``branching`` children of ``tokens_per_step``
tokens each, through the flat API) → children at ``max_depth`` marked terminal →
``backup`` of every new child with its own value (the "PRM scores each new step" pattern).
No model runs: this measures the tree's bookkeeping cost per simulation. A tree is replaced by
a fresh one after ``sims_per_tree`` simulations (a search per problem) or when it runs out of
leaves.

Both implementations run the same Python loop on the same pre-generated random data, so the
comparison is the tree and nothing else; ``agree`` in the JSON reports whether both produced
the same tree (same bytes) on a short identical run.

    python benchmarks/tree_workload.py [--seconds 2] [--ref-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from typing import Any

# OpenBLAS worker threads spin on the shared cores and steal time from the loop; nothing here
# uses BLAS. (Only effective when numpy is not imported yet.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


@dataclass(frozen=True)
class WorkloadConfig:
    batch: int = 16  # leaves per select call
    branching: int = 4  # children per expanded leaf
    tokens_per_step: int = 4
    max_depth: int = 8  # children at this depth are terminal
    sims_per_tree: int = 4096
    prompt_len: int = 64
    c_puct: float = 1.25
    virtual_loss: float = 1.0
    seed: int = 0


class _Data:
    """Pre-generated random inputs, cycled, so the loop spends no time in the RNG."""

    ROWS = 256

    def __init__(self, cfg: WorkloadConfig) -> None:
        rng = np.random.default_rng(cfg.seed)
        m = cfg.batch * cfg.branching
        self.prompt = rng.integers(0, 32000, size=cfg.prompt_len, dtype=np.int32)
        self.tokens = rng.integers(0, 32000, size=(self.ROWS, m * cfg.tokens_per_step), dtype=np.int32)
        self.lengths = np.full(m, cfg.tokens_per_step, dtype=np.int32)
        p = rng.random((self.ROWS, cfg.batch, cfg.branching)) + 0.05
        self.priors = (p / p.sum(axis=2, keepdims=True)).reshape(self.ROWS, m)
        self.values = rng.random((self.ROWS, m)) * 2.0 - 1.0
        self.rewards = (rng.random((self.ROWS, m)) < 0.3).astype(np.float64)
        # Row views made once: slicing a fresh view per batch costs as much as a tree call.
        self.token_rows = list(self.tokens)
        self.prior_rows = list(self.priors)
        self.value_rows = list(self.values)


def _run(tree_cls: Any, cfg: WorkloadConfig, sims: int | None, seconds: float | None) -> dict[str, Any]:
    d = _Data(cfg)
    B, K, L = cfg.batch, cfg.branching, cfg.tokens_per_step
    lengths, tokens, priors, values, rewards = d.lengths, d.tokens, d.priors, d.values, d.rewards
    row = 0
    done = 0
    trees = 0
    terminals = 0
    deadline = None if seconds is None else time.perf_counter() + seconds
    target = sims if sims is not None else 1 << 62
    t0 = time.perf_counter()
    last_tree = None
    while done < target:
        tree = tree_cls(d.prompt)
        trees += 1
        in_tree = 0
        while in_tree < cfg.sims_per_tree and done < target:
            leaves = tree.select(B, c_puct=cfg.c_puct, virtual_loss=cfg.virtual_loss)
            k = len(leaves)
            if k == 0:
                break
            m = k * K
            if k == B:  # the common case: whole pre-made rows
                ids = tree.add_children_flat(
                    leaves.repeat(K), d.token_rows[row], lengths, d.prior_rows[row]
                )
            else:
                ids = tree.add_children_flat(
                    leaves.repeat(K), tokens[row, : m * L], lengths[:m], priors[row, :m]
                )
            # New children at max_depth are terminal (one vectorized depth query; `.size` is
            # far cheaper than NumPy's any() on a 64-element mask).
            term = ids[tree.depth(ids) >= cfg.max_depth]
            if term.size:
                tree.set_terminal(term, rewards[row, : term.size])
                terminals += term.size
            tree.backup(ids, d.value_rows[row] if k == B else values[row, :m])
            row = row + 1 if row + 1 < _Data.ROWS else 0
            in_tree += k
            done += k
            if deadline is not None and (done & 1023) < k and time.perf_counter() > deadline:
                target = done
        last_tree = tree
    elapsed = time.perf_counter() - t0
    return {
        "sims": done,
        "seconds": elapsed,
        "sims_per_s": done / elapsed if elapsed > 0 else float("inf"),
        "trees": trees,
        "terminal_nodes": terminals,
        "last_tree_nodes": len(last_tree) if last_tree is not None else 0,
        "last_tree": last_tree,
    }


def run_native(
    seconds: float | None = 1.0, *, sims: int | None = None, cfg: WorkloadConfig | None = None
) -> float:
    """Simulations per second of the native tree.

    Parameters
    ----------
    seconds : float or None
        Wall-clock budget (ignored when ``sims`` is given).
    sims : int, optional
        Run exactly this many simulations (rounded up to whole batches) instead.
    cfg : WorkloadConfig, optional

    Returns
    -------
    float: simulations per second.
    """
    from o1search import SearchTree

    return _run(SearchTree, cfg or WorkloadConfig(), sims, None if sims else seconds)["sims_per_s"]


def run_reference(
    seconds: float | None = 1.0, *, sims: int | None = None, cfg: WorkloadConfig | None = None
) -> float:
    """Simulations per second of the pure-Python reference tree (same loop, same data)."""
    from o1search.testing.tree_ref import SearchTree as RefTree

    return _run(RefTree, cfg or WorkloadConfig(), sims, None if sims else seconds)["sims_per_s"]


def compare(
    seconds: float = 2.0, ref_seconds: float = 2.0, cfg: WorkloadConfig | None = None, rounds: int = 5
) -> dict[str, Any]:
    """Both measurements plus an agreement check; the dict printed by ``main``.

    The machine is shared, so native and reference runs are interleaved in ``rounds`` slices
    (each gets ``seconds / rounds``) and both the best and the median slice are reported; the
    headline ``speedup`` is best over best, ``speedup_median`` median over median.
    """
    import statistics

    from o1search import SearchTree
    from o1search.testing.tree_ref import SearchTree as RefTree

    cfg = cfg or WorkloadConfig()
    a = _run(SearchTree, cfg, 2000, None)
    b = _run(RefTree, cfg, 2000, None)
    agree = a["last_tree"].to_bytes() == b["last_tree"].to_bytes()
    _run(SearchTree, cfg, 5000, None)  # warm-up (also fills the tree-buffer pool)
    strip = lambda r: {k: v for k, v in r.items() if k != "last_tree"}  # noqa: E731
    nat, ref = [], []
    for _ in range(rounds):
        nat.append(strip(_run(SearchTree, cfg, None, seconds / rounds)))
        ref.append(strip(_run(RefTree, cfg, None, ref_seconds / rounds)))

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        rates = [r["sims_per_s"] for r in runs]
        return {
            "sims_per_s_best": max(rates),
            "sims_per_s_median": statistics.median(rates),
            "sims_per_s_all": rates,
            "sims": sum(r["sims"] for r in runs),
            "terminal_fraction_of_children": sum(r["terminal_nodes"] for r in runs)
            / max(1, cfg.branching * sum(r["sims"] for r in runs)),
        }

    n, r = summary(nat), summary(ref)
    return {
        "benchmark": "tree_workload",
        "config": cfg.__dict__,
        "native": n,
        "reference": r,
        "speedup": n["sims_per_s_best"] / r["sims_per_s_best"],
        "speedup_median": n["sims_per_s_median"] / r["sims_per_s_median"],
        "agree": agree,
        "targets": {"native_sims_per_s": 1_000_000, "speedup": 50},
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--ref-seconds", type=float, default=2.0)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    print(json.dumps(compare(args.seconds, args.ref_seconds), indent=2))


if __name__ == "__main__":
    main()
