"""Training of the process reward model: :func:`train_prm` fits a
:class:`~o1search.reward.prm_model.ProcessRewardModel` to step labels (:class:`PRMExample`,
hard 0/1 or soft fractions, e.g. from :func:`o1search.reward.mc_labels.mc_step_labels`) with
binary cross-entropy at the step ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from o1search.reward.evaluators import as_tokens, step_end_positions
from o1search.reward.prm_model import ProcessRewardModel
from o1search.reward.train_loop import (
    RewardTrainConfig,
    RewardTrainResult,
    _f,
    run_training,
)

__all__ = ["PRMExample", "PRMTrainConfig", "train_prm"]


@dataclasses.dataclass(frozen=True)
class PRMExample:
    """One labelled path for :func:`train_prm`.

    Attributes
    ----------
    prompt : tuple of int
        Prompt tokens (non-empty).
    completion : tuple of int
        The steps after the prompt.
    labels : tuple of float
        One label in ``[0, 1]`` per step of ``completion`` (as split by the PRM's delimiter):
        1/0 hard labels or soft success rates.
    """

    prompt: tuple[int, ...]
    completion: tuple[int, ...]
    labels: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", as_tokens(self.prompt, "PRMExample.prompt"))
        object.__setattr__(self, "completion",
                           as_tokens(self.completion, "PRMExample.completion"))
        if not self.prompt:
            raise ValueError("PRMExample.prompt is empty")
        labels = tuple(float(x) for x in self.labels)
        if not labels:
            raise ValueError("PRMExample.labels is empty: a training path needs >= 1 step")
        if any(not 0.0 <= x <= 1.0 for x in labels):  # also rejects NaN
            raise ValueError(f"PRMExample.labels must be in [0, 1], got {labels}")
        object.__setattr__(self, "labels", labels)


@dataclasses.dataclass
class PRMTrainConfig(RewardTrainConfig):
    """Training of a :class:`ProcessRewardModel` (binary cross-entropy at step ends).

    The run lasts ``max_steps`` optimizer steps, or else ``num_epochs`` passes over the data.
    """

    batch_size: int = _f(32, "paths per optimizer step")
    hard_labels: bool = _f(False, "train on label > 0 as 1 (Math-Shepherd hard estimate) "
                                  "instead of the soft labels")


def train_prm(prm: ProcessRewardModel, examples: Sequence[PRMExample],
              config: PRMTrainConfig | None = None) -> RewardTrainResult:
    """Fit ``prm`` to step labels: binary cross-entropy of each step's head logit against its
    label (soft labels allowed), averaged over all labelled steps of a batch.

    Parameters
    ----------
    prm : ProcessRewardModel
        Trained in place; its caches are flushed afterwards.
    examples : sequence of PRMExample
        Each with exactly one label per step of its completion.
    config : PRMTrainConfig, optional

    Returns
    -------
    RewardTrainResult

    Raises
    ------
    TypeError
        ``prm`` or an example of the wrong type.
    ValueError
        No examples; an example whose label count differs from its step count; paths too
        long for the backbone.
    """
    if not isinstance(prm, ProcessRewardModel):
        raise TypeError(f"prm must be a ProcessRewardModel, got {type(prm).__name__}")
    config = PRMTrainConfig() if config is None else config
    if not isinstance(config, PRMTrainConfig):
        raise TypeError(f"config must be a PRMTrainConfig, got {type(config).__name__}")
    items = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, PRMExample):
            raise TypeError(f"examples[{i}] is a {type(ex).__name__}, not a PRMExample")
        ends = step_end_positions(ex.completion, prm.step_delimiter,
                                  eos_token_ids=prm.eos_token_ids, offset=len(ex.prompt),
                                  text=prm.step_text, decode=prm._decode)
        if len(ends) != len(ex.labels):
            raise ValueError(f"examples[{i}] has {len(ex.labels)} labels but its completion "
                             f"has {len(ends)} steps")
        seq = ex.prompt + ex.completion
        prm._check_seq(seq, f"examples[{i}]")
        labels = [1.0 if (config.hard_labels and x > 0) else x for x in ex.labels]
        items.append((seq, ends, labels))

    def loss_fn(batch: list[tuple]) -> torch.Tensor:
        logits = torch.cat(prm.head_logits([b[0] for b in batch], [b[1] for b in batch]))
        target = torch.tensor([x for b in batch for x in b[2]], dtype=torch.float32,
                              device=logits.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)

    return run_training(prm, items, loss_fn, config)
