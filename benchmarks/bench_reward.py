"""Does a PRM trained on Monte-Carlo step labels pick better answers than chance? Prints JSON.

Pipeline, on the built-in Countdown task with the shipped default policy (``load_policy()``):

1. PRM-training problems: sample ``N`` solutions each with the policy (Engine, temperature 1).
2. Label every step of every solution with :func:`o1search.reward.mc_step_labels` (``k``
   rollouts per step prefix, verified by the task; all rollouts in one ``Engine.expand``).
3. Train a :class:`~o1search.reward.ProcessRewardModel` initialised from the policy on the
   soft labels (:func:`~o1search.reward.train_prm`).
4. Held-out problems: sample ``N`` solutions each; report top-1 accuracy of the solution the
   PRM ranks first (each aggregation), of a random pick (its exact expectation: the mean
   fraction of correct samples), of majority vote over the stated answers, and the oracle
   (any sample correct).

The policy memorised much of its train split, so labels there would not reflect how it
does on new problems: PRM-training problems are fresh ones from the same generator (another
seed) with every problem of the policy's splits removed, and the held-out problems are the
policy's test split (never trained on by either model).
Everything is seeded; torch runs one thread.

Usage:
    python benchmarks/bench_reward.py            # default run (a few minutes on 2 cores)
    python benchmarks/bench_reward.py --quick    # smoke run (well under a minute)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from o1search.engine import Engine, SamplingParams  # noqa: E402
from o1search.policy import default_policy_path, encode_prompt, load_policy  # noqa: E402
from o1search.reward import (  # noqa: E402
    AGGREGATIONS,
    PRMTrainConfig,
    ProcessRewardModel,
    aggregate_step_values,
    mc_step_labels,
    sample_traces,
    train_prm,
)
from o1search.search.adapters import EngineGenerator, make_decoder  # noqa: E402
from o1search.protocols import SearchProblem, derive_seed  # noqa: E402
from o1search.tasks import CountdownTask  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--policy", type=Path, default=None, help="policy checkpoint (default: "
                    "the shipped one)")
    ap.add_argument("--train-problems", type=int, default=400)
    ap.add_argument("--eval-problems", type=int, default=200)
    ap.add_argument("--samples", type=int, default=8, help="N solutions per problem")
    ap.add_argument("--rollouts", type=int, default=4, help="k rollouts per step prefix")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--epochs", type=float, default=4.0, help="PRM training epochs")
    ap.add_argument("--lr", type=float, default=1e-3, help="PRM learning rate")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--aggregation", default="min", choices=AGGREGATIONS,
                    help="the PRM's headline aggregation (all are reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.train_problems, args.eval_problems = 96, 48
        args.samples, args.rollouts, args.epochs = 8, 2, 3.0
    return args


def task_knobs(policy_dir: Path) -> dict:
    """Knobs of the Countdown task the policy was trained on (from its training report)."""
    report = policy_dir / "training_report.json"
    knobs = {"num_count": 3, "n_train": 1600, "n_test": 200, "seed": 0, "check_prob": 0.1,
             "correction_prob": 0.05}
    if report.is_file():
        knobs.update(json.loads(report.read_text())["task"]["knobs"])
    return knobs


def task_of_policy(policy_dir: Path) -> CountdownTask:
    """The Countdown task the policy was trained on."""
    return CountdownTask(**task_knobs(policy_dir))


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    policy_dir = args.policy or default_policy_path()
    policy, tok = load_policy(args.policy)
    task = task_of_policy(policy_dir)
    test = task.problems("test")
    if args.eval_problems > len(test):
        raise SystemExit(f"asked for {args.eval_problems} held-out problems but the test "
                         f"split has {len(test)}")
    # Fresh PRM-training problems from the same generator (another seed), minus every
    # problem of the policy's splits: unseen by the policy and disjoint from the held-out set.
    seen = {(tuple(sorted(p.metadata["nums"])), p.metadata["target"])
            for p in task.problems("train") + test}
    pool = CountdownTask(**{**task_knobs(policy_dir), "seed": 1000 + args.seed,
                            "n_train": args.train_problems + len(seen), "n_test": 0})
    fresh = [p for p in pool.problems("train")
             if (tuple(sorted(p.metadata["nums"])), p.metadata["target"]) not in seen]
    fresh = fresh[:args.train_problems]

    engine = Engine(policy, tok, num_pages=8192, page_size=16, max_batch_tokens=4096)
    gen = EngineGenerator(engine, tok, step_delimiter="\n")
    decode = make_decoder(tok)

    def problems(ps):
        return [SearchProblem(tuple(encode_prompt(tok, task.prompt(p))), p,
                              derive_seed(args.seed, p.id)) for p in ps]

    train_sp = problems(fresh)
    eval_sp = problems(test[:args.eval_problems])
    sampling = SamplingParams(temperature=args.temperature)
    timings = {}

    # 1-2. Sample solutions and label their steps by Monte-Carlo rollouts.
    t0 = time.perf_counter()
    train_traces = sample_traces(gen, train_sp, args.samples, sampling=sampling,
                                 max_new_tokens=args.max_new_tokens, seed=args.seed,
                                 verifier=task, decoder=decode)
    timings["sample_train_s"] = time.perf_counter() - t0
    flat = [t for ts in train_traces for t in ts]
    t0 = time.perf_counter()
    exp_before = copy.copy(engine.stats)
    labels = mc_step_labels(gen, task, flat, args.rollouts, step_delimiter="\n",
                            tokenizer=tok, eos_token_ids=engine.eos_token_ids,
                            sampling=sampling, max_new_tokens=args.max_new_tokens,
                            seed=args.seed, decoder=decode)
    timings["mc_labels_s"] = time.perf_counter() - t0
    label_engine = {k: getattr(engine.stats, k) - getattr(exp_before, k)
                    for k in ("requests", "samples", "prefilled_tokens", "reused_tokens",
                              "generated_tokens")}
    examples = [lab.to_example(soft=True) for lab in labels if lab.step_ends]
    soft = np.concatenate([lab.soft for lab in labels if lab.step_ends])

    # 3. Train the PRM (initialised from the policy).
    prm = ProcessRewardModel(copy.deepcopy(policy), tok, step_delimiter="\n",
                             aggregation=args.aggregation)
    t0 = time.perf_counter()
    res = train_prm(prm, examples, PRMTrainConfig(learning_rate=args.lr,
                                                  batch_size=args.batch_size,
                                                  num_epochs=args.epochs, seed=args.seed))
    timings["train_prm_s"] = time.perf_counter() - t0

    # 4. Held-out problems: N samples each, pick one.
    t0 = time.perf_counter()
    # A fresh engine for the held-out samples: they must not depend on what the labelling
    # phase left in the cache (sampling is keyed, so a fresh engine gives the same tokens
    # unless the engine has a cache bug; see eval_consistency below).
    eval_engine = Engine(policy, tok, num_pages=8192, page_size=16, max_batch_tokens=4096)
    eval_gen = EngineGenerator(eval_engine, tok, step_delimiter="\n")
    eval_traces = sample_traces(eval_gen, eval_sp, args.samples, sampling=sampling,
                                max_new_tokens=args.max_new_tokens, seed=args.seed + 1,
                                verifier=task, decoder=decode)
    timings["sample_eval_s"] = time.perf_counter() - t0
    # The same held-out sampling on the engine that ran the labelling workload: keyed
    # sampling must give identical completions.
    reused_engine_traces = sample_traces(gen, eval_sp, args.samples, sampling=sampling,
                                         max_new_tokens=args.max_new_tokens,
                                         seed=args.seed + 1)
    eval_consistency = {
        "completions_differing_on_warm_engine": sum(
            a.completion != b.completion for ta, tb in zip(eval_traces, reused_engine_traces)
            for a, b in zip(ta, tb)),
        "completions": sum(len(ts) for ts in eval_traces),
    }
    flat_eval = [t for ts in eval_traces for t in ts]
    t0 = time.perf_counter()
    step_values = prm.score_steps([t.problem.prompt for t in flat_eval],
                                  [t.completion for t in flat_eval])
    timings["prm_score_s"] = time.perf_counter() - t0

    correct = np.array([[t.reward >= 0.5 for t in ts] for ts in eval_traces])
    n_probs = len(eval_traces)
    acc = {"random": float(correct.mean()), "oracle": float(correct.any(1).mean())}
    # Majority vote over stated answers (ties: the answer seen first); the pick is the
    # first sample stating it. Countdown answers are mostly the target itself, so votes
    # rarely discriminate: reported for completeness.
    maj = []
    for ts, ok in zip(eval_traces, correct):
        answers = [task.extract_answer(decode(t.completion)) for t in ts]
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            maj.append(False)
            continue
        best = max(votes.values())
        top = next(a for a in answers if a is not None and votes[a] == best)
        maj.append(bool(ok[answers.index(top)]))
    acc["majority_vote"] = float(np.mean(maj))
    per_agg = {}
    i = 0
    scores = {how: np.zeros(correct.shape) for how in AGGREGATIONS}
    for b in range(n_probs):
        for j in range(args.samples):
            for how in AGGREGATIONS:
                scores[how][b, j] = aggregate_step_values(step_values[i], how)
            i += 1
    for how in AGGREGATIONS:
        pick = scores[how].argmax(1)
        per_agg[how] = float(correct[np.arange(n_probs), pick].mean())
    acc["prm"] = per_agg[args.aggregation]
    mixed = (correct.any(1) & ~correct.all(1))
    # Ranking quality over all held-out samples: P(score(correct) > score(wrong)).
    s, y = scores[args.aggregation].ravel(), correct.ravel()
    auc = None
    if y.any() and (~y).any():
        pos, neg = s[y], s[~y]
        auc = float(((pos[:, None] > neg[None, :]).mean()
                     + 0.5 * (pos[:, None] == neg[None, :]).mean()))

    out = {
        "benchmark": "reward_prm_selection",
        "quick": args.quick,
        "policy": str(policy_dir),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train": {
            "problems": len(train_sp),
            "traces": len(flat),
            "trace_accuracy": float(np.mean([t.reward >= 0.5 for t in flat])),
            "labelled_steps": int(soft.size),
            "mean_soft_label": float(soft.mean()) if soft.size else None,
            "frac_steps_positive": float((soft > 0).mean()) if soft.size else None,
            "rollout_engine": label_engine,
            "prm_steps": res.steps,
            "prm_loss_first": float(np.mean(res.losses[:5])),
            "prm_loss_last": float(np.mean(res.losses[-5:])),
        },
        "eval": {
            "problems": n_probs,
            "samples_per_problem": args.samples,
            "top1_accuracy": acc,
            "prm_top1_by_aggregation": per_agg,
            "prm_minus_random": acc["prm"] - acc["random"],
            "prm_beats_random": acc["prm"] > acc["random"],
            "problems_with_mixed_outcomes": int(mixed.sum()),
            "prm_correct_on_mixed": int(correct[np.arange(n_probs),
                                                scores[args.aggregation].argmax(1)][mixed]
                                        .sum()),
            "random_expected_on_mixed": float(correct[mixed].mean(1).sum()),
            "prm_auc": auc,
        },
        "eval_consistency": eval_consistency,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - t_start, 2),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
