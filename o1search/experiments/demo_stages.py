"""The stages of ``o1search demo``, one function each, in the order :func:`run_demo` runs them:

1. :func:`demo_policy` — the shipped policy, a given checkpoint, or one trained from scratch
   (:func:`retrain_policy`);
2. :func:`label_prm_data` — solutions of fresh problems, steps labelled by Monte-Carlo
   roll-outs (Math-Shepherd style);
3. :func:`train_demo_prm` — the PRM, initialised from the policy;
4. :func:`compare_search` — every method at every budget, PRM-guided, on held-out problems;
5. :func:`rest_round` — one search + learn round (ReST) with greedy accuracy before and after.

:mod:`o1search.experiments.demo_outputs` writes what they produced.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from o1search.experiments.search_run import search_method
from o1search.experiments.task_setup import DEFAULT_KNOBS, fresh_problems, task_knobs

__all__ = ["DemoPolicy", "PRMData", "RestOutcome", "compare_search", "demo_policy",
           "label_prm_data", "rest_round", "retrain_policy", "train_demo_prm"]


@dataclasses.dataclass
class DemoPolicy:
    """Stage 1: the policy, its tokenizer and task, where it came from."""

    model: Any
    tokenizer: Any
    path: Path
    source: str  # "shipped", "checkpoint" or "retrained"
    task: Any


def retrain_policy(task: Any, config: Any, out: Path, bar: Any) -> tuple[Any, Any, Path]:
    """Train the default policy from scratch on the task's demonstrations (SFT)."""
    from o1search.learn import SFTConfig, save_checkpoint, train_sft
    from o1search.policy import PolicyConfig, build_default_policy

    pcfg = PolicyConfig(seed=config.seed)
    model, tok = build_default_policy(task, pcfg)
    # Training split plus fresh problems with larger numbers: the 3-number 1..10 space is
    # small enough to memorize; broader problems teach the same skills (test split excluded).
    test = task.problems("test")
    broad = fresh_problems(task, 4000, 10_000 + config.seed, test + task.problems("train"))
    rng = random.Random(f"demo-demos:{config.seed}")
    pool = task.problems("train") + broad
    examples = [(task.prompt(p), task.demonstration(p, rng)) for p in pool]
    sft = SFTConfig(learning_rate=1e-2, warmup_steps=min(100, config.policy_steps // 10),
                    batch_size=64, max_steps=config.policy_steps,
                    max_length=pcfg.max_position_embeddings, seed=config.seed,
                    progress=config.progress)
    bar.set_postfix_str("SFT of a fresh policy")
    res = train_sft(model, tok, examples, sft)
    path = out / "policy"
    report = {"task": {"name": "countdown", "knobs": task_knobs(None)},
              "steps": res.steps, "final_loss": res.losses[-1] if res.losses else None,
              "train_seconds": res.seconds, "examples": len(examples)}
    save_checkpoint(path, model, tok,
                    extra_files={"training_report.json": json.dumps(report, indent=2) + "\n"})
    return model.eval(), tok, path


def demo_policy(config: Any, work: Path, bar: Any) -> DemoPolicy:
    """Stage 1: load (or retrain into ``work/policy``) the policy and check it writes
    Countdown.

    Raises:
        FileNotFoundError: ``config.policy`` does not exist.
        ValueError: a policy whose vocabulary cannot write Countdown.
    """
    from o1search.policy import default_policy_path, load_policy
    from o1search.tasks import CountdownTask

    if config.retrain_policy:
        task = CountdownTask(**DEFAULT_KNOBS)
        policy, tok, policy_dir = retrain_policy(task, config, work, bar)
        source = "retrained"
    else:
        if config.policy is not None and not Path(config.policy).expanduser().exists():
            raise FileNotFoundError(f"no policy checkpoint at {config.policy!r}")
        policy, tok = load_policy(config.policy)
        policy_dir = Path(config.policy).expanduser() if config.policy else default_policy_path()
        source = "checkpoint" if config.policy else "shipped"
        task = CountdownTask(**task_knobs(policy_dir))
    missing = sorted(set(task.alphabet()) - set(tok.get_vocab()))
    if missing:
        raise ValueError(f"the policy at {policy_dir} cannot write Countdown ({missing} are not "
                         "in its vocabulary); use the shipped policy or --retrain-policy")
    return DemoPolicy(policy, tok, policy_dir, source, task)


@dataclasses.dataclass
class PRMData:
    """Stage 2: the PRM's training data.

    Attributes:
        problems: the fresh problems whose solutions were sampled.
        traces: every sampled solution (``reward`` is the task's verdict).
        examples: soft-labelled step examples for :func:`o1search.reward.train_prm`.
        soft: all soft step labels, concatenated.
    """

    problems: list[Any]
    traces: list[Any]
    examples: list[Any]
    soft: Any


def label_prm_data(config: Any, task: Any, gen: Any, engine: Any, tok: Any,
                   seen: Sequence[Any],
                   as_search_problems: Callable[[Sequence[Any], int], list[Any]]) -> PRMData:
    """Stage 2: sample solutions of fresh problems (none in ``seen``), label each step by
    roll-outs from its prefix, verified by the task."""
    import numpy as np
    import torch

    from o1search.engine import SamplingParams
    from o1search.reward import mc_step_labels, sample_traces
    from o1search.search import make_decoder

    decode = make_decoder(tok)
    sampling = SamplingParams(temperature=1.0)
    prm_probs = fresh_problems(task, config.prm_problems, 1000 + config.seed, seen)
    with torch.no_grad():
        traces = sample_traces(gen, as_search_problems(prm_probs, config.seed),
                               config.prm_samples, sampling=sampling,
                               max_new_tokens=config.max_new_tokens, seed=config.seed,
                               verifier=task, decoder=decode)
        flat = [t for ts in traces for t in ts]
        labels = mc_step_labels(gen, task, flat, config.prm_rollouts, step_delimiter="\n",
                                tokenizer=tok, eos_token_ids=engine.eos_token_ids,
                                sampling=sampling, max_new_tokens=config.max_new_tokens,
                                seed=config.seed, decoder=decode)
    examples = [lab.to_example(soft=True) for lab in labels if lab.step_ends]
    soft = np.concatenate([lab.soft for lab in labels if lab.step_ends]) if examples \
        else np.zeros(0)
    return PRMData(prm_probs, flat, examples, soft)


def train_demo_prm(config: Any, policy: Any, tok: Any, data: PRMData,
                   work: Path) -> tuple[Any, Any, Path]:
    """Stage 3: a PRM initialised from (a copy of) the policy, trained on ``data`` and saved
    to ``work/prm``. Returns ``(prm, train result, path)``.

    Raises:
        ValueError: no training data.
    """
    from o1search.reward import PRMTrainConfig, ProcessRewardModel, train_prm

    prm = ProcessRewardModel(copy.deepcopy(policy), tok, step_delimiter="\n", aggregation="min")
    if not data.examples:
        raise ValueError("no PRM training data was produced (every sampled solution was "
                         "empty); raise prm_problems or prm_samples")
    res = train_prm(prm, data.examples, PRMTrainConfig(learning_rate=1e-3, batch_size=32,
                                                       num_epochs=config.prm_epochs,
                                                       seed=config.seed))
    return prm, res, prm.save(work / "prm")


def compare_search(config: Any, problems: Sequence[Any], task: Any, engine: Any, tok: Any,
                   prm: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Stage 4: every method of ``config.methods`` at every budget (greedy once), guided by
    ``prm``. Returns the rows and the row whose trees go into the viewer (the largest budget
    of ``config.tree_method``; None when that method was not run)."""
    import torch

    rows: list[dict[str, Any]] = []
    tree_row: dict[str, Any] | None = None
    with torch.no_grad():
        for name in config.methods:
            for budget in ([None] if name == "greedy" else config.budgets):
                row = search_method(name, budget, problems, task, engine, tok, prm,
                                    seed=config.seed, max_new_tokens=config.max_new_tokens,
                                    progress=config.progress, has_prm=True,
                                    temperature=config.temperature)
                rows.append(row)
                if name == config.tree_method:
                    tree_row = row  # the largest budget's tree ends up in the viewer
    return rows, tree_row


@dataclasses.dataclass
class RestOutcome:
    """Stage 5: one ReST round and greedy accuracy around it."""

    train_problems: list[Any]
    eval_problems: list[Any]
    accuracy_before: float
    accuracy_after: float
    metrics: dict[str, Any]


def rest_round(config: Any, policy: Any, tok: Any, task: Any, test: Sequence[Any],
               seen: Sequence[Any], work: Path) -> RestOutcome:
    """Stage 5: one ReST round (best-of-N search on fresh problems, verified solutions, SFT)
    on a copy of the policy, saved to ``work/policy_after_rest``."""
    import torch

    from o1search.learn import SFTConfig, save_checkpoint
    from o1search.learn.rest import ReSTTrainer
    from o1search.learn.rest_config import ReSTConfig

    learner = copy.deepcopy(policy)
    rest_cfg = ReSTConfig(
        algorithm="best_of_n", num_samples=config.rest_samples,
        max_new_tokens=config.max_new_tokens, seed=config.seed,
        sft=SFTConfig(learning_rate=config.rest_lr,
                      warmup_steps=min(10, config.rest_sft_steps // 3),
                      max_steps=config.rest_sft_steps, batch_size=64, max_length=256,
                      seed=config.seed, progress=config.progress))
    trainer = ReSTTrainer(learner, tok, task, rest_cfg)
    rest_eval = list(test[: config.rest_eval_problems])
    rest_train = fresh_problems(task, config.rest_problems, 2000 + config.seed, seen)
    with torch.no_grad():
        before, _ = trainer.greedy_solutions(rest_eval)
    metrics = trainer.round(rest_train, 0)
    with torch.no_grad():
        after, _ = trainer.greedy_solutions(rest_eval)
    acc_before = sum(x is not None for x in before) / len(rest_eval)
    acc_after = sum(x is not None for x in after) / len(rest_eval)
    save_checkpoint(work / "policy_after_rest", learner, tok)
    return RestOutcome(rest_train, rest_eval, acc_before, acc_after, metrics)
