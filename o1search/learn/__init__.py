"""Learning: supervised policy initialization (SFT) and atomic, resumable checkpoints.

Trainers that turn searched data into a better policy (ReST, PPO, GRPO, step-DPO) join here.
"""

from __future__ import annotations

from o1search.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from o1search.learn.sft import (
    EncodedExample,
    SFTResult,
    SFTTrainer,
    completion_token_losses,
    encode_example,
    train_sft,
)
from o1search.learn.sft_config import SFTConfig

__all__ = [
    "Checkpoint",
    "EncodedExample",
    "SFTConfig",
    "SFTResult",
    "SFTTrainer",
    "completion_token_losses",
    "encode_example",
    "load_checkpoint",
    "save_checkpoint",
    "train_sft",
]

# Search + learn: ReST / expert iteration, GRPO / RLOO, PPO, step-level DPO, the loop.
from o1search.learn.dpo import (  # noqa: E402
    DPOResult,
    DPOTrainer,
    StepPair,
    dpo_loss,
    step_preference_pairs,
)
from o1search.learn.dpo_config import DPOConfig  # noqa: E402
from o1search.learn.grpo import (  # noqa: E402
    GRPOTrainer,
    clipped_policy_loss,
    group_advantages,
    k3_kl,
    rloo_advantages,
)
from o1search.learn.grpo_config import GRPOConfig  # noqa: E402
from o1search.learn.logging import MetricsLogger  # noqa: E402
from o1search.learn.loop import SearchLearnLoop  # noqa: E402
from o1search.learn.loop_config import LoopConfig  # noqa: E402
from o1search.learn.ppo import (  # noqa: E402
    PPOTrainer,
    ValueHead,
    compute_gae,
    token_rewards,
    value_loss,
)
from o1search.learn.ppo_config import PPOConfig  # noqa: E402
from o1search.learn.rest import ReSTTrainer, collect_solutions, mix_round_data  # noqa: E402
from o1search.learn.rest_config import ReSTConfig  # noqa: E402

__all__ += [
    "DPOConfig",
    "DPOResult",
    "DPOTrainer",
    "GRPOConfig",
    "GRPOTrainer",
    "LoopConfig",
    "MetricsLogger",
    "PPOConfig",
    "PPOTrainer",
    "ReSTConfig",
    "ReSTTrainer",
    "SearchLearnLoop",
    "StepPair",
    "ValueHead",
    "clipped_policy_loss",
    "collect_solutions",
    "mix_round_data",
    "compute_gae",
    "dpo_loss",
    "group_advantages",
    "k3_kl",
    "rloo_advantages",
    "step_preference_pairs",
    "token_rewards",
    "value_loss",
]
