"""The search + learn loop: search → label → train → search, resumable from its checkpoint.

Each round takes its share of the training problems, lets the learner (ReST, GRPO / RLOO,
PPO or step-DPO) search or sample with the current policy through one shared
:class:`~o1search.engine.Engine`, label with the task's verifier, and train; the engine then
gets the new weights (``engine.load_weights`` flushes its KV cache), held-out problems are
scored greedily, the round's metrics go to a JSONL log (and TensorBoard), and the loop state
is checkpointed atomically (:func:`o1search.checkpoint.save_checkpoint`): the model
weights plus ``extra_state["loop"]`` = round index, metrics history, the learner's state
(data buffer, optimizer, value head, reference) and RNG states.

Every random draw is seeded from ``(config.seed, round)``, so ``run()`` for ``k`` rounds,
then :meth:`SearchLearnLoop.resume` and the remaining rounds end with the same weights and
metrics as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import torch

from o1search.checkpoint import load_checkpoint, save_checkpoint
from o1search.learn.dpo import DPOTrainer, step_preference_pairs
from o1search.learn.grpo import GRPOTrainer
from o1search.learn.logging import MetricsLogger
from o1search.learn.loop_config import LoopConfig
from o1search.learn.ppo import PPOTrainer
from o1search.learn.rest import ReSTTrainer
from o1search.learn.rollouts import engine_for

__all__ = ["SearchLearnLoop"]

_STATE_KEY = "loop"


class SearchLearnLoop:
    """Iterate search → label → train, checkpointing after every round.

    Parameters:
        model: the policy (a ``transformers`` causal LM, trained in place).
        tokenizer: its tokenizer.
        task: the task (prompts and the verifier; gold solutions are never used).
        train_problems: problems to search and learn on.
        config: a :class:`LoopConfig`.
        eval_problems: held-out problems scored greedily (optional).
        engine: an Engine to search with (default: one over a copy of ``model``).
        anchor_examples: ``[(prompt, completion), ...]`` that ReST rounds replay at
            ``config.rest.anchor_share`` of their data (e.g. the policy's own SFT data).

    Attributes:
        round: rounds completed.
        history: one metrics dict per completed round (plus ``round = 0`` for the
            evaluation before training when ``eval_before``).

    Raises:
        TypeError: ``config`` is not a LoopConfig.
        ValueError: no training problems.
    """

    def __init__(self, model: Any, tokenizer: Any, task: Any, train_problems: Sequence[Any],
                 config: LoopConfig | None = None, *, eval_problems: Sequence[Any] | None = None,
                 engine: Any = None,
                 anchor_examples: Sequence[tuple[str, str]] | None = None) -> None:
        config = LoopConfig() if config is None else config
        if not isinstance(config, LoopConfig):
            raise TypeError(f"config must be a LoopConfig, got {type(config).__name__}")
        if len(train_problems) == 0:
            raise ValueError("the loop needs training problems")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.config = config
        self.train_problems = list(train_problems)
        ev = list(eval_problems or [])
        self.eval_problems = ev[: config.eval_problems] if config.eval_problems else ev
        self.engine = engine if engine is not None else engine_for(model, tokenizer)
        self.anchor_examples = list(anchor_examples or [])
        self.round = 0
        self.history: list[dict[str, Any]] = []
        self._learner = self._make_learner()

    # -- learners ------------------------------------------------------------------------
    def _make_learner(self) -> Any:
        c = self.config
        if c.method == "rest" or c.method == "dpo":
            # DPO searches with the ReST search settings; the trainer's buffer stays unused.
            return ReSTTrainer(self.model, self.tokenizer, self.task, c.rest, engine=self.engine,
                               anchor_examples=self.anchor_examples)
        if c.method in ("grpo", "rloo"):
            return GRPOTrainer(self.model, self.tokenizer, self.task, c.grpo, engine=self.engine)
        return PPOTrainer(self.model, self.tokenizer, self.task, c.ppo, engine=self.engine)

    def _round_problems(self, r: int) -> list[Any]:
        n, k = len(self.train_problems), self.config.problems_per_round
        if k is None or k >= n:
            return list(self.train_problems)
        start = (r * k) % n
        return [self.train_problems[(start + i) % n] for i in range(k)]

    def _learn(self, problems: list[Any], r: int) -> dict[str, float]:
        c = self.config
        if c.method == "rest":
            return self._learner.round(problems, r)
        if c.method == "dpo":
            return self._dpo_round(problems, r)
        sums: dict[str, float] = {}
        for u in range(c.updates_per_round):
            start = (u * c.batch_problems) % len(problems)
            batch = [problems[(start + i) % len(problems)] for i in range(c.batch_problems)]
            m = self._learner.step(batch)
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        out = {k: v / c.updates_per_round for k, v in sums.items()}
        for k in ("generated_tokens", "optimizer_steps", "seconds"):  # totals, not means
            if k in sums:
                out[k] = sums[k]
        return out

    def _dpo_round(self, problems: list[Any], r: int) -> dict[str, float]:
        c = self.config
        t0 = time.perf_counter()
        self.engine.flush_cache()
        results, stats = self._learner.search(problems, r)
        pairs = []
        for res in results:
            pairs += step_preference_pairs(res.tree, min_margin=c.dpo.min_margin,
                                           min_visits=c.dpo.min_visits, pairs=c.dpo.pairs)
        out = {"pairs": float(len(pairs)), "generated_tokens": float(stats.generated_tokens),
               "search_seconds": time.perf_counter() - t0, "dpo_steps": 0.0, "dpo_loss": 0.0}
        if pairs:
            # Iterative DPO: the reference is the policy at the start of the round.
            trainer = DPOTrainer(self.model, self.tokenizer,
                                 dataclasses.replace(c.dpo, seed=c.dpo.seed + r))
            res = trainer.train(pairs)
            out.update(dpo_steps=float(res.steps), dpo_loss=res.losses[-1],
                       dpo_reward_accuracy=sum(res.reward_accuracy) / len(res.reward_accuracy))
            self.engine.load_weights(self.model)
        return out

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> float | None:
        """Greedy accuracy on the held-out problems (None when there are none)."""
        if not self.eval_problems:
            return None
        from o1search.policy import evaluate_policy

        return evaluate_policy(self.model, self.tokenizer, self.task, self.eval_problems,
                               max_new_tokens=self.config.eval_max_new_tokens).accuracy

    # -- running -------------------------------------------------------------------------
    def run(self, num_rounds: int | None = None) -> list[dict[str, Any]]:
        """Run rounds until ``config.rounds`` are done (or ``num_rounds`` more).

        Returns:
            :attr:`history` (all rounds so far, resumed ones included).
        """
        from tqdm.auto import tqdm

        c = self.config
        end = c.rounds if num_rounds is None else min(c.rounds, self.round + num_rounds)
        logger = MetricsLogger(c.log_path, tensorboard_dir=c.tensorboard_dir,
                               append=self.round > 0 or bool(self.history))
        bar = tqdm(total=c.rounds, initial=self.round, desc=f"loop[{c.method}]",
                   disable=not c.progress)
        try:
            if self.round == 0 and not self.history and c.eval_before and self.eval_problems:
                rec = {"round": 0, "eval_accuracy": self.evaluate()}
                self.history.append(rec)
                logger.log(rec, step=0)
            while self.round < end:
                r = self.round
                t0 = time.perf_counter()
                problems = self._round_problems(r)
                metrics = self._learn(problems, r)
                rec = {"round": r + 1, "method": c.method, "problems": len(problems),
                       **metrics}
                acc = self.evaluate()
                if acc is not None:
                    rec["eval_accuracy"] = acc
                rec["round_seconds"] = time.perf_counter() - t0
                self.round = r + 1
                self.history.append(rec)
                logger.log(rec, step=self.round)
                if c.output_dir is not None:
                    self.save(c.output_dir)
                bar.update(1)
                if c.progress:
                    bar.set_postfix(acc=rec.get("eval_accuracy"))
        finally:
            bar.close()
            logger.close()
        return self.history

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The loop state saved beside the weights."""
        return {
            "round": self.round,
            "method": self.config.method,
            "history": [dict(h) for h in self.history],
            "learner": self._learner.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the model must already hold the saved weights).

        Raises:
            ValueError: the state was written by a loop with another method.
        """
        if state.get("method") != self.config.method:
            raise ValueError(f"the checkpoint is of a {state.get('method')!r} loop, not "
                             f"{self.config.method!r}; resume with the config it was made with")
        self.round = int(state["round"])
        self.history = [dict(h) for h in state["history"]]
        self._learner.load_state_dict(state["learner"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model, tokenizer and loop state atomically to ``path``."""
        save_checkpoint(path, self.model, self.tokenizer,
                        extra_state={_STATE_KEY: self.state_dict()})

    @classmethod
    def resume(cls, path: str | os.PathLike[str], task: Any, train_problems: Sequence[Any],
               config: LoopConfig | None = None, *,
               eval_problems: Sequence[Any] | None = None,
               anchor_examples: Sequence[tuple[str, str]] | None = None) -> SearchLearnLoop:
        """A loop continued from a checkpoint written by :meth:`save` (or by ``run`` with
        ``output_dir``); call :meth:`run` to go on.

        Parameters:
            path: the checkpoint directory.
            task, train_problems, config, eval_problems, anchor_examples: as for the
                constructor (the same ones the checkpoint was made with).

        Raises:
            FileNotFoundError: no checkpoint at ``path``.
            ValueError: the checkpoint holds no loop state, or another method's.
        """
        ck = load_checkpoint(path)
        state = ck.extra_state.get(_STATE_KEY)
        if state is None:
            raise ValueError(f"{os.fspath(path)!r} holds no loop state; it was not written by "
                             "SearchLearnLoop (load its weights with load_checkpoint instead)")
        loop = cls(ck.model, ck.tokenizer, task, train_problems, config,
                   eval_problems=eval_problems, anchor_examples=anchor_examples)
        loop.load_state_dict(state)
        return loop
