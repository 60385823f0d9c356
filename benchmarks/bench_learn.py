#!/usr/bin/env python
"""Does search + learn raise held-out accuracy? ReST rounds vs an equal-SFT control, plus GRPO.

Starting policy: the shipped default Countdown policy (``load_policy()``), a weakly trained
~133k-parameter Llama. Training problems are *fresh* Countdown problems: none is in the
policy's SFT pool or in the held-out test split, and their gold traces are never used; only
the verifier judges. Held-out accuracy is greedy, on the task's test split, scored with
``model.generate`` (independent of the search engine).

Arms (each from the same starting weights, same seed):

* ``rest``: ``SearchLearnLoop(method="rest")``: per round, greedy pass → best-of-N (or MCTS)
  search on the problems the policy fails → keep verified solutions (2 per problem at most)
  → SFT for ``--sft-steps`` on them plus verified greedy solutions, with a share of earlier
  rounds' data.
* ``control``: the same SFT steps per round, on the verified greedy solutions only (the data
  the policy already produces without search; expert iteration without search).
* ``grpo``: a short GRPO run (verifier reward, group size 8, DAPO-style skipping of uniform
  groups).

Prints one JSON object: accuracy before/after every round of every arm, the compute spent
(tokens generated, SFT steps / optimizer steps, wall time), and the gains.

Usage:
    python benchmarks/bench_learn.py --quick      # ~2 minutes
    python benchmarks/bench_learn.py              # ~10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from o1search.learn import (  # noqa: E402
    GRPOConfig,
    LoopConfig,
    ReSTConfig,
    ReSTTrainer,
    SearchLearnLoop,
    SFTConfig,
    train_sft,
)
from o1search.learn._common import engine_for  # noqa: E402
from o1search.policy import evaluate_policy, load_policy  # noqa: E402
from o1search.tasks import get_task  # noqa: E402

# The shipped default policy's task and SFT pool (see its training_report.json).
BASE_KNOBS = dict(num_count=3, n_train=1600, n_test=200, seed=0, check_prob=0.1,
                  correction_prob=0.05)
EXTRA = ((15, 5000, 1), (20, 10000, 2))  # (max_number, count, seed) of the broadened pool


def _key(p) -> tuple:
    return tuple(sorted(p.metadata["nums"])), p.metadata["target"]


def fresh_training_problems(task, n: int, seed: int, max_number: int = 25) -> list:
    """``n`` Countdown problems (numbers up to ``max_number``) whose (numbers, target) appear
    neither in the default policy's SFT pool nor in the test split. The pool already covers
    nearly every problem with numbers up to 15 (the test distribution), so fresh problems
    come from the broader range up to 25, as in the pool's own broadening."""
    seen = {_key(p) for p in task.problems("train")} | {_key(p) for p in task.problems("test")}
    for pool_max, count, s in EXTRA:
        extra = get_task("countdown", num_count=3, max_number=pool_max, n_train=count,
                         n_test=0, seed=s, check_prob=0.1, correction_prob=0.05)
        seen |= {_key(p) for p in extra.problems("train")}
    pool = get_task("countdown", num_count=3, max_number=max_number, n_train=4000,
                    n_test=0, seed=seed).problems("train")
    out = [p for p in pool if _key(p) not in seen]
    if len(out) < n:
        raise SystemExit(f"only {len(out)} fresh problems; lower --train-problems")
    # The split is not in random order; a seeded sample spreads over all of it.
    return random.Random(seed).sample(out, n)


def greedy_acc(model, tok, task, problems) -> float:
    return evaluate_policy(model, tok, task, problems, max_new_tokens=96).accuracy


def run_rest(args, task, train, held, sft) -> dict:
    model, tok = load_policy()
    rest = ReSTConfig(algorithm=args.algorithm, num_samples=args.samples, only_failed=True,
                      include_greedy=True, max_solutions_per_problem=2,
                      keep_previous=args.keep_previous, sft=sft, seed=args.seed)
    cfg = LoopConfig(method="rest", rounds=args.rounds, rest=rest, seed=args.seed,
                     progress=False, eval_max_new_tokens=96)
    t0 = time.perf_counter()
    loop = SearchLearnLoop(model, tok, task, train, cfg, eval_problems=held)
    hist = loop.run()
    return {"history": hist, "wall_s": round(time.perf_counter() - t0, 1),
            "generated_tokens": int(sum(h.get("generated_tokens", 0) for h in hist)),
            "sft_steps": int(sum(h.get("sft_steps", 0) for h in hist))}


def run_control(args, task, train, held, sft) -> dict:
    """Same SFT steps per round, on verified greedy samples only (no search)."""
    model, tok = load_policy()
    tr = ReSTTrainer(model, tok, task, ReSTConfig(sft=sft, seed=args.seed),
                     engine=engine_for(model, tok))
    t0 = time.perf_counter()
    hist = [{"round": 0, "eval_accuracy": greedy_acc(model, tok, task, held)}]
    buffer: list[tuple[int, str, str]] = []
    tokens = steps = 0
    for r in range(args.rounds):
        tr.engine.flush_cache()
        greedy, gen = tr.greedy_solutions(train)
        tokens += gen
        new = [(task.prompt(p), g) for p, g in zip(train, greedy) if g is not None]
        old = [(p, c) for _, p, c in buffer]
        rng = random.Random(f"rest-mix:{args.seed}:{r}")
        want = round(len(new) * args.keep_previous / (1 - args.keep_previous))
        mix = new + rng.sample(old, min(len(old), want))
        buffer += [(r, p, c) for p, c in new]
        n_steps = 0
        if mix:  # the policy may solve none of them greedily: then there is nothing to learn
            res = train_sft(model, tok, mix, dataclasses.replace(sft, seed=sft.seed + r))
            tr.engine.load_weights(model)
            n_steps = res.steps
        steps += n_steps
        hist.append({"round": r + 1, "greedy_solved": sum(g is not None for g in greedy),
                     "train_examples": len(mix), "sft_steps": n_steps,
                     "generated_tokens": gen,
                     "eval_accuracy": greedy_acc(model, tok, task, held)})
    return {"history": hist, "wall_s": round(time.perf_counter() - t0, 1),
            "generated_tokens": tokens, "sft_steps": steps}


def run_grpo(args, task, train, held) -> dict:
    model, tok = load_policy()
    grpo = GRPOConfig(num_generations=8, loss_type="dapo", epsilon_high=0.28,
                      drop_uniform_groups=True, learning_rate=args.grpo_lr, max_new_tokens=96,
                      seed=args.seed)
    cfg = LoopConfig(method="grpo", rounds=args.grpo_rounds,
                     updates_per_round=args.grpo_updates, batch_problems=16, grpo=grpo,
                     seed=args.seed, progress=False)
    t0 = time.perf_counter()
    hist = SearchLearnLoop(model, tok, task, train, cfg, eval_problems=held).run()
    return {"history": hist, "wall_s": round(time.perf_counter() - t0, 1),
            "generated_tokens": int(sum(h.get("generated_tokens", 0) for h in hist)),
            "optimizer_steps": int(sum(h.get("optimizer_steps", 0) for h in hist))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (~2 minutes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-problems", type=int, default=None)
    ap.add_argument("--eval-problems", type=int, default=None)
    ap.add_argument("--sft-steps", type=int, default=None, help="SFT steps per round")
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=16, help="best-of-N / MCTS simulations")
    ap.add_argument("--algorithm", default="best_of_n", choices=("best_of_n", "mcts", "beam"))
    ap.add_argument("--keep-previous", type=float, default=0.5)
    ap.add_argument("--grpo-rounds", type=int, default=None)
    ap.add_argument("--grpo-updates", type=int, default=None)
    ap.add_argument("--grpo-lr", type=float, default=2e-4)
    ap.add_argument("--arms", default="rest,control,grpo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    q = args.quick
    args.train_problems = args.train_problems or (160 if q else 800)
    args.eval_problems = args.eval_problems or (100 if q else 200)
    args.sft_steps = args.sft_steps or (40 if q else 150)
    args.grpo_rounds = args.grpo_rounds or (1 if q else 2)
    args.grpo_updates = args.grpo_updates or (5 if q else 15)
    if q:
        args.rounds = min(args.rounds, 2)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t_all = time.perf_counter()
    task = get_task("countdown", **BASE_KNOBS)
    held = task.problems("test")[: args.eval_problems]
    train = fresh_training_problems(task, args.train_problems, seed=1000 + args.seed)
    sft = SFTConfig(learning_rate=args.sft_lr, warmup_steps=10, max_steps=args.sft_steps,
                    batch_size=64, max_length=256, min_lr_ratio=0.1, progress=False,
                    seed=args.seed)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    report: dict = {"bench": "learn", "quick": q, "args": vars(args),
                    "base_policy": "o1search/policy/default (shipped)",
                    "train_problems": len(train), "eval_problems": len(held)}
    if "rest" in arms:
        report["rest"] = run_rest(args, task, train, held, sft)
    if "control" in arms:
        report["control"] = run_control(args, task, train, held, sft)
    if "grpo" in arms:
        report["grpo"] = run_grpo(args, task, train, held)
    summary = {}
    for arm in ("rest", "control", "grpo"):
        if arm in report:
            accs = [h["eval_accuracy"] for h in report[arm]["history"] if "eval_accuracy" in h]
            summary[arm] = {"accuracy_by_round": accs,
                            "gain_points": round(100 * (accs[-1] - accs[0]), 1)}
    report["summary"] = summary
    if "rest" in summary and "control" in summary:
        report["rest_minus_control_points"] = round(
            summary["rest"]["gain_points"] - summary["control"]["gain_points"], 1)
    report["target_rest_gain_points"] = 15
    report["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    report["torch_threads"] = torch.get_num_threads()
    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__}
    print(json.dumps(report, default=float))
    return report


if __name__ == "__main__":
    main()
