"""Native core vs the pure-Python references, in one run; prints one JSON object.

1. MCTS bookkeeping (``benchmarks/tree_workload.py``): simulations/second of the native
   SearchTree and of the reference tree.  Targets: >= 1,000,000 sims/s and >= 50x.
2. Prefix-cache replay of the tree-search trace of ``benchmarks/radix_trace.py``, following
   the replay protocol of its docstring, for page sizes 1 and 16: cache calls per second of
   ``o1search.RadixCache`` and of ``o1search.testing.radix_ref.RadixCacheRef`` over the same
   trace (token arrays prepared outside the timed region).  Target >= 30x.  Both replays must
   end with nothing locked and free + evictable == capacity, and give the same checksum of
   match lengths.

Usage:  python benchmarks/bench_core.py [--quick] [--prompts N] [--page-sizes 1,16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import radix_trace  # noqa: E402  (the benchmark's own copy, next to this file)

from o1search import RadixCache  # noqa: E402
from o1search.testing.radix_ref import RadixCacheRef  # noqa: E402


def _set_threads() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def prepare(trace: radix_trace.Trace, page_size: int) -> list:
    """Token array ``[len // page_size * page_size]`` (int32) of every trace node's path."""
    paths: list = []
    for nid, parent in enumerate(trace.parents):
        own = np.asarray(trace.tokens[nid], dtype=np.int32)
        paths.append(own if parent < 0 else np.concatenate((paths[parent], own)))
    # Cut only after all paths exist: a child extends its parent's full path.
    return [p[: len(p) - len(p) % page_size] for p in paths]


def replay(cache: Any, paths: list, ops: list, page_size: int) -> dict:
    """Replays the trace ops on ``cache``; returns calls, checksum and the final stats."""
    locked: dict = {}
    calls = 0
    checksum = 0
    for kind, ids in ops:
        if kind == "extend":
            # Phase A for every node (match, pin the matched prefix, allocate the rest: one
            # `acquire`), then phase B (insert, lock the inserted node, release the pin: one
            # `commit`), as the trace's replay protocol describes.
            pins = [cache.acquire(paths[nid]) for nid in ids]
            for nid, a in zip(ids, pins):
                r = cache.commit(paths[nid], a.pages, a.node)
                if nid in locked:
                    raise RuntimeError(f"trace locks node {nid} twice")
                locked[nid] = r.node
                checksum += a.length
            calls += 2 * len(ids)
        elif kind == "match":
            for nid in ids:
                checksum += cache.match(paths[nid]).length
            calls += len(ids)
        elif kind == "unlock":
            for nid in ids:
                cache.unlock(locked.pop(nid))
            calls += len(ids)
        else:
            raise ValueError(f"unknown trace op {kind!r}")
    s = cache.stats()
    return {"calls": calls, "checksum": checksum, "stats": s, "left_locked": len(locked)}


def bench_radix(trace: radix_trace.Trace, page_size: int) -> dict:
    paths = prepare(trace, page_size)
    num_pages = trace.params.pool_tokens // page_size
    out: dict = {"page_size": page_size, "num_pages": num_pages}
    results = {}
    for name, cls in (("native", RadixCache), ("reference", RadixCacheRef)):
        cache = cls(num_pages, page_size)
        t0 = time.perf_counter()
        res = replay(cache, paths, trace.ops, page_size)
        dt = time.perf_counter() - t0
        cache.check()
        s = res["stats"]
        ok = res["left_locked"] == 0 and s.locked == 0 and s.free + s.evictable == s.capacity
        results[name] = res
        out[name] = {
            "seconds": round(dt, 4),
            "calls": res["calls"],
            "calls_per_s": round(res["calls"] / dt, 1),
            "checksum": res["checksum"],
            "hit_tokens": s.hit_tokens,
            "miss_tokens": s.miss_tokens,
            "end_state_ok": ok,
        }
    out["speedup"] = round(out["native"]["calls_per_s"] / out["reference"]["calls_per_s"], 2)
    out["identical"] = (
        results["native"]["checksum"] == results["reference"]["checksum"]
        and results["native"]["stats"] == results["reference"]["stats"]
    )
    out["target_speedup"] = 30.0
    out["meets_target"] = out["speedup"] >= 30.0 and out["identical"]
    return out


def bench_tree(quick: bool) -> dict:
    try:
        import tree_workload
    except ImportError as exc:
        return {"missing": f"benchmarks/tree_workload.py not importable: {exc}"}
    secs = 0.5 if quick else 2.0
    native = tree_workload.run_native(secs)
    ref = tree_workload.run_reference(secs)
    return {
        "native_sims_per_s": round(native, 1),
        "reference_sims_per_s": round(ref, 1),
        "speedup": round(native / ref, 2),
        "target_sims_per_s": 1_000_000,
        "target_speedup": 50.0,
        "meets_target": native >= 1_000_000 and native / ref >= 50.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small trace, short tree run")
    ap.add_argument("--prompts", type=int, default=None, help="trace prompts (default 64; 8 quick)")
    ap.add_argument("--page-sizes", default="1,16")
    ap.add_argument("--skip-tree", action="store_true")
    a = ap.parse_args()
    _set_threads()
    params = radix_trace.TraceParams()
    if a.prompts is not None:
        params.prompts = a.prompts
    elif a.quick:
        params.prompts = 8
    trace = radix_trace.generate(params)
    report: dict = {
        "benchmark": "bench_core",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "trace": {"fingerprint": radix_trace.fingerprint(trace)[:16], **trace.stats()},
    }
    if not a.skip_tree:
        report["mcts_bookkeeping"] = bench_tree(a.quick)
    report["radix_replay"] = [bench_radix(trace, int(ps)) for ps in a.page_sizes.split(",")]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
