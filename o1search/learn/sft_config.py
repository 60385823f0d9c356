"""Configuration of supervised fine-tuning (:mod:`o1search.learn.sft`)."""

from __future__ import annotations

import dataclasses

__all__ = ["SFTConfig", "LR_SCHEDULES"]

LR_SCHEDULES = ("cosine", "linear", "constant")


def _f(default, help_text: str):  # noqa: ANN001, ANN202 - a dataclass field with help text
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class SFTConfig:
    """Supervised fine-tuning on (prompt, completion) pairs; loss on completion tokens + EOS.

    The run lasts ``max_steps`` optimizer steps, or else ``num_epochs`` passes over the data
    (default one); ``max_seconds`` can stop it earlier. The defaults suit the small default
    policy; large pretrained models want a learning rate near 1e-5.
    """

    learning_rate: float = _f(1e-3, "peak AdamW learning rate")
    weight_decay: float = _f(0.01, "AdamW decoupled weight decay (matrices only, not norms)")
    adam_betas: tuple[float, float] = _f((0.9, 0.95), "AdamW (beta1, beta2)")
    adam_eps: float = _f(1e-8, "AdamW epsilon")
    lr_schedule: str = _f("cosine", "after warmup: 'cosine', 'linear' (decay) or 'constant'")
    warmup_steps: int = _f(0, "optimizer steps of linear warmup from 0 to the peak rate")
    min_lr_ratio: float = _f(0.1, "final rate of a decaying schedule, as a fraction of peak")
    max_grad_norm: float | None = _f(1.0, "clip the global gradient norm; None: no clipping")
    batch_size: int = _f(32, "examples per micro-batch (when batch_tokens is None)")
    batch_tokens: int | None = _f(
        None, "instead of batch_size: micro-batches of up to this many padded tokens"
    )
    grad_accum_steps: int = _f(1, "micro-batches per optimizer step")
    max_steps: int | None = _f(None, "optimizer steps to run (set this or num_epochs)")
    num_epochs: float | None = _f(None, "passes over the data when max_steps is None (default 1)")
    max_seconds: float | None = _f(None, "also stop after this much wall time")
    max_length: int = _f(512, "longest prompt+completion+EOS in tokens; longer ones are cut")
    seed: int = _f(0, "seed of data order and dropout: equal seeds give equal weights")
    log_path: str | None = _f(None, "JSON Lines file of training metrics (overwritten)")
    log_every: int = _f(10, "optimizer steps between metric lines")
    progress: bool = _f(True, "show a tqdm progress bar")
    output_dir: str | None = _f(None, "write a checkpoint here at the end (atomically)")
    save_every: int | None = _f(None, "also checkpoint every this many steps (needs output_dir)")

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        b1, b2 = self.adam_betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"adam_betas must be in [0, 1), got {self.adam_betas}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"max_grad_norm must be > 0, got {self.max_grad_norm}; use None for no clipping"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.batch_tokens is not None and self.batch_tokens < self.max_length:
            raise ValueError(
                f"batch_tokens={self.batch_tokens} cannot hold one example of max_length="
                f"{self.max_length}; raise batch_tokens or lower max_length"
            )
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.max_steps is not None and self.num_epochs is not None:
            raise ValueError(
                "set max_steps or num_epochs, not both (the schedule needs one run length)"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.num_epochs is not None and not self.num_epochs > 0:
            raise ValueError(f"num_epochs must be > 0, got {self.num_epochs}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}; or None")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.save_every is not None:
            if self.save_every < 1:
                raise ValueError(f"save_every must be >= 1, got {self.save_every}")
            if self.output_dir is None:
                raise ValueError("save_every needs output_dir: set where checkpoints go")
