"""Configuration of ReST / expert iteration (:mod:`o1search.learn.rest`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from o1search.learn.sft_config import SFTConfig

__all__ = ["ReSTConfig", "SEARCH_ALGORITHMS"]

SEARCH_ALGORITHMS = ("best_of_n", "mcts", "beam")


def _f(default, help_text: str):  # noqa: ANN001, ANN202 - a dataclass field with help text
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class ReSTConfig:
    """One round of ReST-EM / STaR / expert iteration: search → keep verified (or top-reward)
    solutions → SFT on them (mixed with a share of earlier rounds' data).

    Only the verifier judges: gold traces of the training problems are never used.
    """

    algorithm: str = _f("best_of_n", "search: 'best_of_n', 'mcts' or 'beam'")
    num_samples: int = _f(16, "best-of-N samples / MCTS simulations / beam width x 4")
    search_config: Any = _f(
        None, "a BestOfNConfig / MCTSConfig / BeamConfig to use as is (overrides num_samples, "
        "temperature and max_new_tokens for the search)")
    temperature: float = _f(1.0, "sampling temperature of the search")
    max_new_tokens: int = _f(96, "longest completion in tokens")
    final_prefix: str | None = _f(
        "answer", "a step starting with this states the final answer (ends tree-search paths)")
    only_failed: bool = _f(
        True, "search only the problems the policy gets wrong greedily (their solutions teach "
        "the most); solved ones contribute their greedy solution when include_greedy")
    include_greedy: bool = _f(True, "add verified greedy solutions to the round's data")
    max_solutions_per_problem: int = _f(2, "distinct verified solutions kept per problem")
    min_reward: float = _f(1.0, "a solution is kept when its verifier reward reaches this")
    keep_previous: float = _f(
        0.5, "share of the SFT mix drawn from earlier rounds' data (0: this round only)")
    anchor_share: float = _f(
        0.0, "share of the SFT mix drawn from the trainer's anchor examples (e.g. the data "
        "the policy was first trained on), which keeps it from forgetting what it knew; "
        "keep_previous + anchor_share must stay below 1")
    use_search: bool = _f(
        True, "False: no search, a round keeps only the verified greedy solutions (expert "
        "iteration without search: the control that shows what search adds)")
    max_epochs: float | None = _f(
        None, "cap a round's SFT at this many passes over its mix (a round that finds little "
        "data then trains briefly instead of over-fitting it); None: always sft.max_steps")
    sft: SFTConfig = dataclasses.field(
        default_factory=lambda: SFTConfig(learning_rate=1e-3, warmup_steps=10, max_steps=150,
                                          batch_size=64, max_length=256, progress=False),
        metadata={"help": "SFT run of each round (its seed is offset by the round index)"})
    seed: int = _f(0, "seed of the search and of the data mix")

    def __post_init__(self) -> None:
        if self.algorithm not in SEARCH_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {SEARCH_ALGORITHMS}, got "
                             f"{self.algorithm!r}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.search_config is not None:
            from o1search.search import BeamConfig, BestOfNConfig, MCTSConfig

            want = {"best_of_n": BestOfNConfig, "mcts": MCTSConfig, "beam": BeamConfig}
            if not isinstance(self.search_config, want[self.algorithm]):
                raise TypeError(f"search_config must be a {want[self.algorithm].__name__} for "
                                f"algorithm={self.algorithm!r}, got "
                                f"{type(self.search_config).__name__}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (search samples), got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_solutions_per_problem < 1:
            raise ValueError("max_solutions_per_problem must be >= 1")
        if not 0 <= self.keep_previous < 1:
            raise ValueError(f"keep_previous must be in [0, 1), got {self.keep_previous}")
        if not 0 <= self.anchor_share < 1:
            raise ValueError(f"anchor_share must be in [0, 1), got {self.anchor_share}")
        if self.keep_previous + self.anchor_share >= 1:
            raise ValueError(f"keep_previous + anchor_share = "
                             f"{self.keep_previous + self.anchor_share} leaves no room for the "
                             "round's new data; make their sum < 1")
        if self.max_epochs is not None and not self.max_epochs > 0:
            raise ValueError(f"max_epochs must be > 0 or None, got {self.max_epochs}")
        if not isinstance(self.sft, SFTConfig):
            raise TypeError(f"sft must be an SFTConfig, got {type(self.sft).__name__}")
        if self.sft.max_steps is None:
            raise ValueError("sft.max_steps must be set: a round trains a fixed number of steps "
                             "so rounds and controls spend equal compute")
        if self.max_epochs is not None and self.sft.batch_tokens is not None:
            raise ValueError("max_epochs counts batches of sft.batch_size examples; set "
                             "sft.batch_tokens=None or max_epochs=None")
        if self.sft.output_dir is not None:
            raise ValueError("sft.output_dir must be None: the loop writes the checkpoints")
