"""Process reward model: a transformer backbone with a scalar head scoring every step.

:class:`ProcessRewardModel` reads the backbone's final hidden state at the last token of each
step (see :mod:`o1search.reward.evaluators`) and maps it through a linear head and a sigmoid
to a step value in ``[0, 1]``. All steps of a path come out of one forward pass.

Inference runs on a PRM-side :class:`o1search.engine.Engine` holding the backbone when the
backbone is a Llama-family model the engine's paged runner supports: ``Engine.score(...,
hidden_states=True, positions=...)`` asks only for the steps not scored before, and the
engine's radix cache gives back the KV of the prefix, so a path that grows by one step during
a search has only its new tokens encoded. Step values already computed are remembered by
their exact token prefix (a causal model's value at a position depends on nothing after it).
Any other backbone, and training, use a plain batched forward of the ``transformers`` model.

Checkpoints are directories in ``transformers`` format: the backbone's ``save_pretrained``
files, the tokenizer's, ``reward_head.safetensors`` (the head) and ``reward_config.json``
(kind, step delimiter, aggregation), written atomically through
:func:`o1search.checkpoint.save_checkpoint`.

:func:`train_prm` fits the model to step labels (hard 0/1 or soft fractions, e.g. from
:func:`o1search.reward.mc_labels.mc_step_labels`) with binary cross-entropy at the step ends.
"""

# The PRM's code lives one idea per file: the model (prm_model), its training (prm_train),
# and what it shares with the ORM (scalar_head: backbone + head, engine path, checkpoints;
# train_loop: the optimizer loop). This module gathers the names it used to define, so every
# import from o1search.reward.prm keeps working.

from __future__ import annotations

from o1search.reward.prm_model import ProcessRewardModel
from o1search.reward.prm_train import PRMExample, PRMTrainConfig, train_prm
from o1search.reward.scalar_head import (  # noqa: F401  (ScalarHeadModel: re-export)
    HEAD_FILE,
    REWARD_CONFIG_FILE,
    ScalarHeadModel,
)
from o1search.reward.train_loop import (  # noqa: F401  (re-exports beyond __all__)
    RewardTrainConfig,
    RewardTrainResult,
    run_training,
)

__all__ = [
    "HEAD_FILE",
    "REWARD_CONFIG_FILE",
    "PRMExample",
    "PRMTrainConfig",
    "ProcessRewardModel",
    "RewardTrainResult",
    "train_prm",
]
