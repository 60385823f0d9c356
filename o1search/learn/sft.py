"""Supervised fine-tuning (policy initialization): next-token loss on completions.

Each example is a (prompt, completion) pair. The prompt is encoded once with
:func:`o1search.policy.encode_prompt` (chat template and BOS as the policy expects), the
completion without special tokens, then EOS is appended; the loss is the mean negative
log-likelihood of the completion tokens and the EOS, never of the prompt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from o1search.checkpoint import load_checkpoint, save_checkpoint
from o1search.learn.sft_config import SFTConfig
from o1search.policy.model import encode_prompt

__all__ = ["EncodedExample", "SFTResult", "SFTTrainer", "encode_example", "train_sft",
           "completion_token_losses"]


@dataclasses.dataclass(frozen=True)
class EncodedExample:
    """One tokenized example: ``input_ids[:prompt_len]`` is the prompt, the rest the
    completion and EOS (the tokens with loss)."""

    input_ids: tuple[int, ...]
    prompt_len: int
    truncated: bool = False


def encode_example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, *, max_length: int = 512
) -> EncodedExample:
    """Tokenize a (prompt, completion) pair for SFT.

    Parameters:
        tokenizer: the policy's tokenizer (must have an EOS token).
        prompt, completion: texts.
        max_length: longest result; a longer completion is cut at the end (its EOS too).

    Returns:
        An :class:`EncodedExample` with at least one completion token.

    Raises:
        TypeError: a text is not a string.
        ValueError: the tokenizer has no EOS, or the prompt alone fills ``max_length``.
    """
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise TypeError(
            f"examples must be (prompt: str, completion: str) pairs, got "
            f"({type(prompt).__name__}, {type(completion).__name__})"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token first")
    p_ids = encode_prompt(tokenizer, prompt)
    c_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + [eos]
    if len(p_ids) >= max_length:
        raise ValueError(
            f"a prompt of {len(p_ids)} tokens leaves no room for its completion under "
            f"max_length={max_length}; raise max_length or shorten the prompt: {prompt[:60]!r}"
        )
    ids = p_ids + c_ids
    return EncodedExample(tuple(ids[:max_length]), len(p_ids), truncated=len(ids) > max_length)


def completion_token_losses(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
) -> torch.Tensor:
    """Per-token negative log-likelihoods of the masked tokens.

    Parameters:
        model: a causal LM.
        input_ids: ``[B, T]`` token ids (right-padded).
        attention_mask: ``[B, T]``, 1 on real tokens.
        loss_mask: ``[B, T]``, 1 on the tokens to score (a token is scored by the logits
            of the position before it, so ``loss_mask[:, 0]`` is ignored).

    Returns:
        ``[B, T-1]`` float32 losses, 0 where ``loss_mask[:, 1:]`` is 0.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    targets = input_ids[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    ).view_as(targets)
    return nll * loss_mask[:, 1:].to(nll.dtype)


@dataclasses.dataclass
class SFTResult:
    """What a training run did.

    Attributes:
        losses: mean completion-token loss of each optimizer step, in order.
        steps: optimizer steps taken.
        epochs: passes over the data (fractional).
        tokens: completion tokens (with EOS) trained on.
        seconds: wall time of the training loop.
        stop_reason: ``"max_steps"``, ``"epochs"`` or ``"max_seconds"``.
        truncated: examples cut to ``max_length``.
        checkpoint: the final checkpoint directory, when ``output_dir`` was set.
    """

    losses: list[float]
    steps: int
    epochs: float
    tokens: int
    seconds: float
    stop_reason: str
    truncated: int
    checkpoint: str | None = None


def _lr_factor(step: int, total: int, config: SFTConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    floor = config.min_lr_ratio
    if config.lr_schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class SFTTrainer:
    """Supervised fine-tuning of a causal LM on (prompt, completion) pairs.

    Parameters:
        model: a ``transformers`` causal LM (trained in place, on its own device).
        tokenizer: its tokenizer (with EOS; pad is not needed, padding is done here).
        config: an :class:`SFTConfig` (default ``SFTConfig()``).

    Raises:
        TypeError: ``config`` is not an SFTConfig.
        ValueError: the model has no trainable parameters.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: SFTConfig | None = None,
    ) -> None:
        config = SFTConfig() if config is None else config
        if not isinstance(config, SFTConfig):
            raise TypeError(f"config must be an SFTConfig, got {type(config).__name__}")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("the model has no trainable parameters")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    # -- data -------------------------------------------------------------------------
    def encode(self, examples: Sequence[tuple[str, str]]) -> list[EncodedExample]:
        """Tokenize all examples (see :func:`encode_example`).

        Raises:
            ValueError: no examples, or an example that is not a pair.
            TypeError: a prompt or completion that is not a string.
        """
        if isinstance(examples, (str, bytes)) or len(examples) == 0:
            raise ValueError("examples must be a non-empty sequence of (prompt, completion)")
        out = []
        for i, ex in enumerate(examples):
            if not isinstance(ex, (tuple, list)) or len(ex) != 2:
                raise ValueError(f"example {i} is not a (prompt, completion) pair: {ex!r:.80}")
            out.append(encode_example(self.tokenizer, ex[0], ex[1],
                                      max_length=self.config.max_length))
        return out

    def _epoch_batches(self, data: list[EncodedExample], epoch: int) -> list[list[int]]:
        """The micro-batches (lists of example indices) of one epoch; a function of
        (seed, epoch) only, so a run is reproducible."""
        rng = random.Random(f"sft:{self.config.seed}:{epoch}")
        order = list(range(len(data)))
        rng.shuffle(order)
        cfg = self.config
        if cfg.batch_tokens is None:
            return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        # Token budget: sort windows of the shuffled order by length so that batches hold
        # similar lengths (little padding), pack greedily, then shuffle the batches.
        batches: list[list[int]] = []
        window = 64 * max(1, cfg.batch_tokens // cfg.max_length)
        for w in range(0, len(order), window):
            chunk = sorted(order[w : w + window], key=lambda i: len(data[i].input_ids))
            cur: list[int] = []
            longest = 0
            for i in chunk:
                n = len(data[i].input_ids)
                if cur and (len(cur) + 1) * max(longest, n) > cfg.batch_tokens:
                    batches.append(cur)
                    cur, longest = [], 0
                cur.append(i)
                longest = max(longest, n)
            if cur:
                batches.append(cur)
        rng.shuffle(batches)
        return batches

    def _collate(
        self, data: list[EncodedExample], idx: list[int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(data[i].input_ids) for i in idx)
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        attn = torch.zeros((len(idx), width), dtype=torch.long)
        loss = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ex = data[i]
            n = len(ex.input_ids)
            ids[r, :n] = torch.tensor(ex.input_ids)
            attn[r, :n] = 1
            loss[r, ex.prompt_len : n] = 1
        return ids.to(device), attn.to(device), loss.to(device)

    # -- training ---------------------------------------------------------------------
    def train(
        self,
        examples: Sequence[tuple[str, str]],
        *,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> SFTResult:
        """Run SFT on ``examples`` and return what happened; the model ends in eval mode.

        Parameters:
            examples: ``[(prompt, completion), ...]``.
            resume_from: a checkpoint written by this trainer (``output_dir``/``save_every``):
                its weights, optimizer, schedule and step are restored and the run goes on
                with the same data order, so an interrupted run ends with the weights an
                uninterrupted one would have. Use the same examples and config.

        Returns:
            An :class:`SFTResult` (``losses`` and ``steps`` count the steps run by this call).

        Raises:
            ValueError, TypeError: bad examples (see :meth:`encode`).
            FileNotFoundError: ``resume_from`` is not a checkpoint.
            ValueError: ``resume_from`` holds no trainer state, or a step beyond the run.
        """
        cfg = self.config
        model = self.model
        data = self.encode(examples)
        device = next(model.parameters()).device
        per_epoch = math.ceil(len(self._epoch_batches(data, 0)) / cfg.grad_accum_steps)
        if cfg.max_steps is not None:
            total = cfg.max_steps
        else:
            total = max(1, math.ceil((cfg.num_epochs or 1.0) * per_epoch))

        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, cfg))
        start_step, rng_state = 0, None
        if resume_from is not None:
            start_step, rng_state = self._restore(resume_from, total, opt, sched)

        with contextlib.ExitStack() as stack:
            log = None
            if cfg.log_path is not None:
                Path(cfg.log_path).parent.mkdir(parents=True, exist_ok=True)
                mode = "a" if resume_from is not None else "w"
                log = stack.enter_context(open(cfg.log_path, mode, encoding="utf-8"))
            result = self._loop(data, total, per_epoch, opt, sched, device, log,
                                start_step, rng_state)
            if cfg.output_dir is not None:
                result.checkpoint = str(self._save(start_step + result.steps, opt, sched))
            if log is not None:
                end = {k: v for k, v in dataclasses.asdict(result).items() if k != "losses"}
                log.write(json.dumps({"event": "end", **end}) + "\n")
        return result

    def _loop(
        self,
        data: list[EncodedExample],
        total: int,
        per_epoch: int,
        opt: torch.optim.Optimizer,
        sched: Any,
        device: torch.device,
        log: Any,
        start_step: int = 0,
        rng_state: torch.Tensor | None = None,
    ) -> SFTResult:
        from tqdm.auto import tqdm

        cfg, model = self.config, self.model
        micro_per_epoch = max(1, per_epoch * cfg.grad_accum_steps)
        bar = tqdm(total=total, desc="sft", disable=not cfg.progress, dynamic_ncols=True)
        losses: list[float] = []
        tokens = 0
        stop_reason = "max_steps" if cfg.max_steps is not None else "epochs"
        window: list[float] = []
        start = time.perf_counter()
        micro = self._micro_batches(data)
        # Skip what an interrupted run already trained on: data order depends only on
        # (seed, epoch), so the resumed run sees exactly the batches it would have.
        consumed = start_step * cfg.grad_accum_steps
        for _ in range(consumed):
            next(micro)
        bar.update(start_step)
        model.train()
        try:
            # Dropout (if the model has any) draws from the global RNG: seed it for
            # reproducibility without disturbing the caller's RNG state.
            with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
                torch.manual_seed(cfg.seed)
                if rng_state is not None and device.type == "cpu":
                    torch.set_rng_state(rng_state)
                for step in range(start_step, total):
                    group = [next(micro) for _ in range(cfg.grad_accum_steps)]
                    consumed += len(group)
                    batches = [self._collate(data, idx, device) for idx in group]
                    n_tok = sum(int(b[2][:, 1:].sum()) for b in batches)
                    step_loss = 0.0
                    for ids, attn, lmask in batches:
                        # Normalize by the tokens of the whole accumulated step, so the
                        # gradient equals that of one big batch.
                        loss = completion_token_losses(model, ids, attn, lmask).sum() / n_tok
                        loss.backward()
                        step_loss += float(loss.detach())
                    grad_norm = None
                    if cfg.max_grad_norm is not None:
                        grad_norm = float(
                            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                        )
                    lr = opt.param_groups[0]["lr"]
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(step_loss)
                    window.append(step_loss)
                    tokens += n_tok
                    elapsed = time.perf_counter() - start
                    bar.update(1)
                    if (step + 1) % cfg.log_every == 0 or step + 1 == total:
                        bar.set_postfix(loss=f"{sum(window) / len(window):.4f}")
                        if log is not None:
                            log.write(json.dumps({
                                "step": step + 1,
                                "epoch": round(consumed / micro_per_epoch, 4),
                                "loss": sum(window) / len(window),
                                "lr": lr,
                                "grad_norm": grad_norm,
                                "tokens": tokens,
                                "elapsed_s": round(elapsed, 3),
                            }) + "\n")
                            log.flush()
                        window = []
                    if cfg.save_every is not None and (step + 1) % cfg.save_every == 0:
                        self._save(step + 1, opt, sched)
                    if cfg.max_seconds is not None and elapsed >= cfg.max_seconds:
                        stop_reason = "max_seconds"
                        break
        finally:
            bar.close()
            model.eval()
        return SFTResult(
            losses=losses,
            steps=len(losses),
            epochs=consumed / micro_per_epoch,
            tokens=tokens,
            seconds=time.perf_counter() - start,
            stop_reason=stop_reason,
            truncated=sum(ex.truncated for ex in data),
        )

    def _restore(
        self, path: str | os.PathLike[str], total: int, opt: torch.optim.Optimizer, sched: Any
    ) -> tuple[int, torch.Tensor | None]:
        ck = load_checkpoint(path)
        state = ck.extra_state
        if not {"step", "optimizer", "scheduler"} <= state.keys():
            raise ValueError(
                f"{os.fspath(path)!r} has no SFT trainer state (step/optimizer/scheduler); "
                "resume from a checkpoint written by SFTTrainer, or load its weights instead"
            )
        step = int(state["step"])
        if step > total:
            raise ValueError(f"the checkpoint is at step {step}, beyond this run's {total} steps")
        with torch.no_grad():
            self.model.load_state_dict(ck.model.state_dict())
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        return step, state.get("torch_rng")

    def _micro_batches(self, data: list[EncodedExample]) -> Iterator[list[int]]:
        epoch = 0
        while True:
            yield from self._epoch_batches(data, epoch)
            epoch += 1

    def _save(self, step: int, opt: torch.optim.Optimizer, sched: Any) -> Path:
        assert self.config.output_dir is not None
        return save_checkpoint(
            self.config.output_dir,
            self.model,
            self.tokenizer,
            extra_state={
                "step": step,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "config": _jsonable(dataclasses.asdict(self.config)),
                "torch_rng": torch.get_rng_state(),
            },
        )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[str, str]],
    config: SFTConfig | None = None,
    *,
    resume_from: str | os.PathLike[str] | None = None,
) -> SFTResult:
    """``SFTTrainer(model, tokenizer, config).train(examples, resume_from=resume_from)``."""
    return SFTTrainer(model, tokenizer, config).train(examples, resume_from=resume_from)
