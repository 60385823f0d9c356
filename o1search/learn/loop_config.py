"""Configuration of the search + learn loop (:mod:`o1search.learn.loop`)."""

from __future__ import annotations

import dataclasses

from o1search.learn.dpo_config import DPOConfig
from o1search.learn.grpo_config import GRPOConfig
from o1search.learn.ppo_config import PPOConfig
from o1search.learn.rest_config import ReSTConfig

__all__ = ["LoopConfig", "LEARN_METHODS"]

LEARN_METHODS = ("rest", "grpo", "rloo", "ppo", "dpo")


def _f(default, help_text: str):  # noqa: ANN001, ANN202 - a dataclass field with help text
    return dataclasses.field(default=default, metadata={"help": help_text})


def _factory(cls, help_text: str):  # noqa: ANN001, ANN202
    return dataclasses.field(default_factory=cls, metadata={"help": help_text})


@dataclasses.dataclass
class LoopConfig:
    """Rounds of search → label → train, checkpointed after every round.

    ``method`` picks the learner: ``"rest"`` (search, keep verified solutions, SFT),
    ``"grpo"`` / ``"rloo"`` (group sampling and policy gradients; ``"rloo"`` is GRPO with the
    leave-one-out advantage), ``"ppo"`` (value head, GAE, KL), or ``"dpo"`` (MCTS trees →
    sibling step preference pairs → DPO against the policy at the start of the round).
    """

    method: str = _f("rest", f"learner: one of {LEARN_METHODS}")
    rounds: int = _f(3, "rounds to run in total (a resumed loop continues to this count)")
    problems_per_round: int | None = _f(
        None, "training problems per round, taken in turn; None: all of them every round")
    updates_per_round: int = _f(4, "grpo/ppo: sampled batches (policy updates) per round")
    batch_problems: int = _f(16, "grpo/ppo: problems per sampled batch")
    rest: ReSTConfig = _factory(ReSTConfig, "the ReST round (search, filter, SFT)")
    grpo: GRPOConfig = _factory(GRPOConfig, "GRPO / RLOO settings")
    ppo: PPOConfig = _factory(PPOConfig, "PPO settings")
    dpo: DPOConfig = _factory(DPOConfig, "step-DPO settings (trees come from rest's MCTS "
                                         "search settings)")
    eval_problems: int | None = _f(
        None, "held-out problems scored greedily after every round (None: all given)")
    eval_max_new_tokens: int = _f(96, "generation limit of the held-out evaluation")
    eval_before: bool = _f(True, "also score the held-out problems before the first round")
    output_dir: str | None = _f(None, "checkpoint directory (rewritten atomically each round)")
    log_path: str | None = _f(None, "JSON Lines metrics file (appended to on resume)")
    tensorboard_dir: str | None = _f(None, "TensorBoard directory (when tensorboard is installed)")
    seed: int = _f(0, "seed of everything the loop draws")
    progress: bool = _f(True, "show a tqdm bar over rounds")

    def __post_init__(self) -> None:
        if self.method not in LEARN_METHODS:
            raise ValueError(f"method must be one of {LEARN_METHODS}, got {self.method!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.problems_per_round is not None and self.problems_per_round < 1:
            raise ValueError(f"problems_per_round must be >= 1 or None, got "
                             f"{self.problems_per_round}")
        if self.updates_per_round < 1 or self.batch_problems < 1:
            raise ValueError("updates_per_round and batch_problems must be >= 1")
        for name, cls in (("rest", ReSTConfig), ("grpo", GRPOConfig), ("ppo", PPOConfig),
                          ("dpo", DPOConfig)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}")
        if self.method == "rloo" and self.grpo.advantage != "rloo":
            raise ValueError("method='rloo' needs grpo.advantage='rloo' (set it, or use "
                             "method='grpo')")
        if self.method == "dpo" and self.rest.algorithm == "best_of_n":
            raise ValueError("step-DPO needs a step tree: set rest.algorithm='mcts' or 'beam'")
        if self.eval_problems is not None and self.eval_problems < 1:
            raise ValueError(f"eval_problems must be >= 1 or None, got {self.eval_problems}")
        if self.eval_max_new_tokens < 1:
            raise ValueError("eval_max_new_tokens must be >= 1")
