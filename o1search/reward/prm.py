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

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from o1search.reward.evaluators import (
    StepValueEvaluator,
    as_tokens,
    check_batch,
    resolve_token_ids,
    step_end_positions,
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

HEAD_FILE = "reward_head.safetensors"
REWARD_CONFIG_FILE = "reward_config.json"
_FORMAT_VERSION = 1


def _f(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


class ScalarHeadModel(torch.nn.Module):
    """A ``transformers`` causal LM backbone plus a linear scalar head (shared by the PRM and
    the ORM; not used directly).

    Parameters
    ----------
    backbone : transformers.PreTrainedModel
        A causal LM (``LlamaForCausalLM`` etc.); its base model's final hidden states
        (after the last norm) feed the head.
    tokenizer : optional
        Saved with the model; also tokenizes text markers once.
    use_engine : bool, optional
        Score through an :class:`~o1search.engine.Engine` (prefix reuse). ``None`` (default):
        when its paged runner supports the backbone. ``True`` with an unsupported backbone is
        an error.
    engine_pages, engine_page_size : int
        KV pool of that engine.
    head : torch.nn.Linear, optional
        ``[H] -> [1]``; default zero weights and bias (every value 0.5 before training).

    Raises
    ------
    TypeError
        A backbone without ``config.hidden_size`` or ``base_model``.
    ValueError
        ``use_engine=True`` for a backbone the paged runner cannot run; a head of the wrong size.
    """

    kind = "scalar"

    def __init__(self, backbone: torch.nn.Module, tokenizer: Any = None, *,
                 use_engine: bool | None = None, engine_pages: int = 1024,
                 engine_page_size: int = 16, head: torch.nn.Linear | None = None) -> None:
        super().__init__()
        config = getattr(backbone, "config", None)
        hidden = getattr(config, "hidden_size", None)
        if hidden is None or not hasattr(backbone, "base_model"):
            raise TypeError(f"backbone must be a transformers model with config.hidden_size, "
                            f"got {type(backbone).__name__}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        param = next(backbone.parameters())
        if head is None:
            head = torch.nn.Linear(int(hidden), 1)
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
        if not isinstance(head, torch.nn.Linear) or head.in_features != hidden \
                or head.out_features != 1:
            raise ValueError(f"head must be torch.nn.Linear({hidden}, 1)")
        self.head = head.to(device=param.device, dtype=torch.float32)
        from o1search.engine.model_runner import paged_runner_unsupported_reason

        reason = paged_runner_unsupported_reason(backbone)
        if use_engine and reason is not None:
            raise ValueError(f"use_engine=True but the engine cannot run this backbone: {reason}")
        self.use_engine = reason is None if use_engine is None else bool(use_engine)
        self.engine_pages = int(engine_pages)
        self.engine_page_size = int(engine_page_size)
        self._engine: Any = None
        self.vocab_size = int(getattr(config, "vocab_size", 2**31 - 1))
        self.max_positions = int(getattr(config, "max_position_embeddings", None) or 2**31 - 1)
        self.backbone.eval()

    # ------------------------------------------------------------------ engine
    @property
    def engine(self) -> Any:
        """The PRM-side :class:`~o1search.engine.Engine` (created on first use), or None when
        scoring runs a plain forward."""
        if not self.use_engine:
            return None
        if self._engine is None:
            from o1search.engine import Engine

            self._engine = Engine(self.backbone, self.tokenizer, num_pages=self.engine_pages,
                                  page_size=self.engine_page_size)
        return self._engine

    def refresh(self) -> None:
        """Forget cached KV and values: call after changing the weights in place
        (:func:`train_prm` / :func:`~o1search.reward.orm.train_orm` do)."""
        if self._engine is not None:
            self._engine.flush_cache()

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.head.weight.device

    # ------------------------------------------------------------------ forward
    def _check_seq(self, seq: Sequence[int], what: str) -> None:
        if not seq:
            raise ValueError(f"{what} is empty")
        if max(seq) >= self.vocab_size:
            raise ValueError(f"{what} has token id {max(seq)} >= vocab_size {self.vocab_size}")
        if len(seq) > self.max_positions:
            raise ValueError(f"{what} has {len(seq)} tokens, more than the backbone's "
                             f"max_position_embeddings ({self.max_positions})")

    def head_logits(self, sequences: Sequence[Sequence[int]],
                    positions: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Head outputs (logits, before the sigmoid) by a plain forward, with gradients when
        enabled (the training path).

        Parameters
        ----------
        sequences : sequence of token-id sequences ``[B][T_b]``
        positions : sequence of sequences of int ``[B][P_b]``, each in ``[0, T_b)``

        Returns
        -------
        list of torch.Tensor
            ``B`` float32 tensors ``[P_b]``.

        Raises
        ------
        ValueError
            Empty or too long sequences, out-of-vocabulary ids, positions out of range.
        """
        seqs = [list(s) for s in sequences]
        if len(positions) != len(seqs):
            raise ValueError(f"{len(positions)} position lists for {len(seqs)} sequences")
        for i, (s, pos) in enumerate(zip(seqs, positions)):
            self._check_seq(s, f"sequences[{i}]")
            if any(not 0 <= p < len(s) for p in pos):
                raise ValueError(f"positions[{i}] has a position outside [0, {len(s)})")
        if not seqs:
            return []
        width = max(len(s) for s in seqs)
        dev = self.device
        ids = torch.zeros(len(seqs), width, dtype=torch.long, device=dev)
        mask = torch.zeros(len(seqs), width, dtype=torch.long, device=dev)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = 1
        # Right padding: under causal attention real tokens never see the padding.
        hidden = self.backbone.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows = torch.tensor([i for i, pos in enumerate(positions) for _ in pos],
                            dtype=torch.long, device=dev)
        cols = torch.tensor([p for pos in positions for p in pos], dtype=torch.long, device=dev)
        logits = self.head(hidden[rows, cols].float())[:, 0]
        return list(torch.split(logits, [len(p) for p in positions]))

    @torch.inference_mode()
    def _infer_logits(self, sequences: list[tuple[int, ...]], positions: list[list[int]],
                      batch_size: int = 32) -> list[np.ndarray]:
        """Head logits at ``positions`` without gradients, through the engine when it runs
        the backbone (prefix reuse) or plain batched forwards otherwise."""
        for i, s in enumerate(sequences):
            self._check_seq(s, f"sequences[{i}]")
        if not sequences:
            return []
        engine = self.engine
        if engine is not None:
            res = engine.score(sequences, positions=positions, hidden_states=True)
            out = []
            for r in res:
                h = r.hidden_states.to(device=self.device, dtype=torch.float32)
                out.append(self.head(h)[:, 0].cpu().double().numpy() if len(h)
                           else np.zeros(0))
            return out
        out = []
        for start in range(0, len(sequences), batch_size):
            chunk = self.head_logits(sequences[start:start + batch_size],
                                     positions[start:start + batch_size])
            out += [t.cpu().double().numpy() for t in chunk]
        return out

    # ------------------------------------------------------------------ save / load
    def _reward_config(self) -> dict[str, Any]:
        return {"format_version": _FORMAT_VERSION, "kind": self.kind}

    def save_pretrained(self, directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the backbone (``save_pretrained``), the head and the reward config into
        ``directory`` (not atomic; use :meth:`save`)."""
        from safetensors.torch import save_file

        target = Path(os.fspath(directory))
        target.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(target, safe_serialization=True)
        state = {k: v.detach().to("cpu", torch.float32).contiguous()
                 for k, v in self.head.state_dict().items()}
        save_file(state, str(target / HEAD_FILE), metadata={"format": "pt"})
        (target / REWARD_CONFIG_FILE).write_text(
            json.dumps(self._reward_config(), indent=2) + "\n", encoding="utf-8")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint atomically (a crash leaves the previous one intact).

        Parameters
        ----------
        path : str or PathLike
            The checkpoint directory (created or replaced).

        Returns
        -------
        pathlib.Path
        """
        from o1search.checkpoint import save_checkpoint  # the atomic writer

        return save_checkpoint(path, self, self.tokenizer)  # type: ignore[arg-type]

    @classmethod
    def _load_parts(cls, path: str | os.PathLike[str], device: str | torch.device,
                    dtype: torch.dtype) -> tuple[Any, Any, torch.nn.Linear, dict[str, Any]]:
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        from o1search.checkpoint import recover_checkpoint

        root = Path(os.fspath(path))
        recover_checkpoint(root)
        cfg_file = root / REWARD_CONFIG_FILE
        if not cfg_file.is_file() or not (root / HEAD_FILE).is_file():
            raise FileNotFoundError(f"{str(root)!r} is not a reward model checkpoint (needs "
                                    f"{REWARD_CONFIG_FILE} and {HEAD_FILE})")
        from o1search.policy.model import check_checkpoint_files, check_json_file

        check_json_file(cfg_file)
        check_checkpoint_files(root)  # the backbone's and the head's files, named if damaged
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"{str(cfg_file)!r} is damaged: not a JSON object")
        if meta.get("kind") != cls.kind:
            raise ValueError(f"{str(root)!r} holds a {meta.get('kind')!r} model, not a "
                             f"{cls.kind!r} one")
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported reward checkpoint format {meta.get('format_version')}")
        backbone = AutoModelForCausalLM.from_pretrained(root, local_files_only=True, dtype=dtype)
        backbone = backbone.to(device).eval()
        state = load_file(str(root / HEAD_FILE))
        weight = state.get("weight")
        if weight is None or "bias" not in state or weight.shape != (1,
                                                                     backbone.config.hidden_size):
            raise ValueError(f"{HEAD_FILE} does not hold a [1, hidden_size] head")
        head = torch.nn.Linear(weight.shape[1], 1)
        head.load_state_dict(state)
        tokenizer = _load_tokenizer(root)
        return backbone, tokenizer, head, meta


def _load_tokenizer(root: Path) -> Any:
    if not any((root / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    declared = None
    cfg = root / "tokenizer_config.json"
    if cfg.is_file():
        try:
            declared = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
        except (ValueError, AttributeError):
            declared = None
    # Some AutoTokenizer classes rebuild their pre-tokenizer from the model type; a generic
    # fast tokenizer (the default policy's character tokenizer) must come back as saved.
    if declared in ("TokenizersBackend", "PreTrainedTokenizerFast") and \
            (root / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(root, local_files_only=True)
    return AutoTokenizer.from_pretrained(root, local_files_only=True)


class ProcessRewardModel(ScalarHeadModel, StepValueEvaluator):
    """Transformer + scalar head scoring every step of a path; a search
    :class:`~o1search.protocols.Evaluator` (values in ``[0, 1]``).

    Parameters
    ----------
    backbone : transformers.PreTrainedModel
        A causal LM, e.g. a copy of the policy (``copy.deepcopy(policy)``) or
        ``build_default_policy(task)[0]``.
    tokenizer : optional
        Needed when ``step_delimiter`` is text; saved with the model.
    step_delimiter : str or sequence of int
        Ends a step (default ``"\\n"``, the built-in tasks' delimiter).
    aggregation : str
        Path value from step values: ``"last"``, ``"min"`` (default), ``"product"``, ``"mean"``.
    eos_token_ids : iterable of int, optional
        Not a step when alone after the last delimiter; default the backbone's / tokenizer's
        EOS ids.
    use_engine, engine_pages, engine_page_size, head
        See :class:`ScalarHeadModel`.
    cache_size : int
        Step values remembered by token prefix (LRU); 0 disables the memo.

    Raises
    ------
    ValueError
        An unknown aggregation, an empty delimiter, a text delimiter without a tokenizer.
    """

    kind = "prm"

    def __init__(self, backbone: torch.nn.Module, tokenizer: Any = None, *,
                 step_delimiter: str | Sequence[int] = "\n", aggregation: str = "min",
                 eos_token_ids: Iterable[int] | None = None, use_engine: bool | None = None,
                 engine_pages: int = 1024, engine_page_size: int = 16,
                 head: torch.nn.Linear | None = None, cache_size: int = 200_000) -> None:
        ScalarHeadModel.__init__(self, backbone, tokenizer, use_engine=use_engine,
                                 engine_pages=engine_pages, engine_page_size=engine_page_size,
                                 head=head)
        delim = resolve_token_ids(step_delimiter, tokenizer, "step_delimiter")
        if eos_token_ids is None:
            eos_token_ids = _eos_ids(backbone, tokenizer)
        StepValueEvaluator.__init__(self, delim, aggregation, eos_token_ids)
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = int(cache_size)
        self._values: OrderedDict[tuple[int, ...], float] = OrderedDict()
        self.scored_steps = 0  # step values computed by the model (not from the memo)

    def refresh(self) -> None:
        """Forget cached KV and step values (after changing the weights in place)."""
        super().refresh()
        self._values.clear()

    def score_steps(self, prompts: Sequence[Sequence[int]],
                    completions: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Step values of each path (see
        :meth:`~o1search.reward.evaluators.StepValueEvaluator.score_steps`).

        Only steps whose exact token prefix was not scored before are computed, all in one
        engine call (or plain forwards); a path with no step gets the value at its last
        prompt token.

        Raises
        ------
        ValueError
            Mismatched lengths, empty prompts, out-of-vocabulary ids, too long paths.
        TypeError
            Non-integer tokens.
        """
        ps, cs = check_batch(prompts, completions)
        seqs = [p + c for p, c in zip(ps, cs)]
        ends = [self.step_ends(p, c) for p, c in zip(ps, cs)]
        out = [np.zeros(len(e)) for e in ends]
        todo_seq, todo_pos, todo_where = [], [], []
        for b, (s, e) in enumerate(zip(seqs, ends)):
            missing = []
            for j, pos in enumerate(e):
                v = self._values.get(s[:pos + 1]) if self.cache_size else None
                if v is None:
                    missing.append(j)
                else:
                    self._values.move_to_end(s[:pos + 1])
                    out[b][j] = v
            if missing:
                todo_seq.append(s)
                todo_pos.append([e[j] for j in missing])
                todo_where.append((b, missing))
        if todo_seq:
            logits = self._infer_logits(todo_seq, todo_pos)
            for (b, missing), pos, lg in zip(todo_where, todo_pos, logits):
                vals = 1.0 / (1.0 + np.exp(-lg))
                self.scored_steps += len(vals)
                for j, p, v in zip(missing, pos, vals):
                    out[b][j] = float(v)
                    if self.cache_size:
                        self._values[seqs[b][:p + 1]] = float(v)
            while len(self._values) > self.cache_size:
                self._values.popitem(last=False)
        return out

    def step_logits(self, prompt: Sequence[int], completion: Sequence[int]) -> torch.Tensor:
        """Head logits at every step end of one path by a plain forward (with gradients when
        enabled): the oracle the engine path is tested against.

        Returns
        -------
        torch.Tensor
            ``[S]`` float32.
        """
        p, c = as_tokens(prompt, "prompt"), as_tokens(completion, "completion")
        return self.head_logits([p + c], [self.step_ends(p, c)])[0]

    def _reward_config(self) -> dict[str, Any]:
        cfg = super()._reward_config()
        cfg.update(step_delimiter=list(self.step_delimiter), aggregation=self.aggregation,
                   eos_token_ids=sorted(self.eos_token_ids))
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32, use_engine: bool | None = None,
             aggregation: str | None = None) -> ProcessRewardModel:
        """Load a checkpoint written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
        device, dtype : where and in which precision to put the backbone.
        use_engine : bool, optional
            As in the constructor.
        aggregation : str, optional
            Override the saved aggregation.

        Returns
        -------
        ProcessRewardModel

        Raises
        ------
        FileNotFoundError
            Not a reward checkpoint.
        ValueError
            A checkpoint of another kind or format.
        """
        backbone, tokenizer, head, meta = cls._load_parts(path, device, dtype)
        return cls(backbone, tokenizer, step_delimiter=meta["step_delimiter"],
                   aggregation=aggregation or meta["aggregation"],
                   eos_token_ids=meta.get("eos_token_ids", ()), use_engine=use_engine,
                   head=head)


def _eos_ids(backbone: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(getattr(backbone, "generation_config", None), "eos_token_id", None),
                getattr(getattr(backbone, "config", None), "eos_token_id", None),
                getattr(tokenizer, "eos_token_id", None)):
        if src is None:
            continue
        ids.update(int(t) for t in (src if isinstance(src, (list, tuple)) else [src]))
    return ids


# ---------------------------------------------------------------------------- training
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
class RewardTrainConfig:
    """What the PRM and ORM trainers share: optimizer, run length, clipping, output.

    The run lasts ``max_steps`` optimizer steps, or else ``num_epochs`` passes over the data.
    """

    learning_rate: float = _f(1e-3, "AdamW learning rate of the backbone")
    head_learning_rate: float | None = _f(None, "learning rate of the head (None: same)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    batch_size: int = _f(32, "examples per optimizer step")
    num_epochs: float | None = _f(None, "passes over the data when max_steps is None "
                                        "(default 3)")
    max_steps: int | None = _f(None, "optimizer steps (set this or num_epochs)")
    max_seconds: float | None = _f(None, "also stop after this much wall time")
    max_grad_norm: float | None = _f(1.0, "clip the global gradient norm; None: no clipping")
    train_backbone: bool = _f(True, "update the backbone too (False: only the head)")
    seed: int = _f(0, "data order seed")
    output_dir: str | None = _f(None, "save the model here at the end (atomically)")

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.head_learning_rate is not None and not self.head_learning_rate > 0:
            raise ValueError(f"head_learning_rate must be > 0 or None, got "
                             f"{self.head_learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_steps is not None and self.num_epochs is not None:
            raise ValueError("set max_steps or num_epochs, not both")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.num_epochs is not None and not self.num_epochs > 0:
            raise ValueError(f"num_epochs must be > 0, got {self.num_epochs}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}; "
                             "use None for no clipping")


@dataclasses.dataclass
class PRMTrainConfig(RewardTrainConfig):
    """Training of a :class:`ProcessRewardModel` (binary cross-entropy at step ends).

    The run lasts ``max_steps`` optimizer steps, or else ``num_epochs`` passes over the data.
    """

    batch_size: int = _f(32, "paths per optimizer step")
    hard_labels: bool = _f(False, "train on label > 0 as 1 (Math-Shepherd hard estimate) "
                                  "instead of the soft labels")


@dataclasses.dataclass
class RewardTrainResult:
    """What a reward-model training run did.

    Attributes
    ----------
    losses : list of float
        Loss of every optimizer step.
    steps : int
        Optimizer steps run.
    epochs : float
        Passes over the data.
    seconds : float
        Wall time.
    """

    losses: list[float]
    steps: int
    epochs: float
    seconds: float


def run_training(model: ScalarHeadModel, items: list[Any], loss_fn: Any, config: Any
                 ) -> RewardTrainResult:
    """Shared optimizer loop of :func:`train_prm` and :func:`~o1search.reward.orm.train_orm`:
    shuffled mini-batches, AdamW, gradient clipping, step / epoch / time limits; the model is
    left in eval mode with its caches flushed."""
    if not items:
        raise ValueError("no training examples")
    head_params = list(model.head.parameters())
    groups = [{"params": head_params,
               "lr": config.head_learning_rate or config.learning_rate}]
    if config.train_backbone:
        groups.append({"params": [p for p in model.backbone.parameters() if p.requires_grad],
                       "lr": config.learning_rate})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(items) / config.batch_size)
    total = (config.max_steps if config.max_steps is not None
             else max(1, math.ceil(per_epoch * (config.num_epochs or 3.0))))
    rng = random.Random(config.seed)
    order: list[int] = []
    losses: list[float] = []
    start = time.perf_counter()
    params = [p for g in groups for p in g["params"]]
    was_grad = [p.requires_grad for p in model.backbone.parameters()]
    if not config.train_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    model.backbone.train(config.train_backbone)
    used = 0
    try:
        for _ in range(total):
            if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                break
            batch = []
            while len(batch) < config.batch_size:
                if not order:
                    order = list(range(len(items)))
                    rng.shuffle(order)
                batch.append(items[order.pop()])
                used += 1
                if not order:
                    break  # an epoch ends with a short batch rather than mixing epochs
            loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        model.backbone.eval()
        for p, g in zip(model.backbone.parameters(), was_grad):
            p.requires_grad_(g)
        model.refresh()
    if config.output_dir is not None:
        model.save(config.output_dir)
    return RewardTrainResult(losses=losses, steps=len(losses), epochs=used / len(items),
                             seconds=time.perf_counter() - start)


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
                                  eos_token_ids=prm.eos_token_ids, offset=len(ex.prompt))
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
