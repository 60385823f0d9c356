"""The scalar-head model the PRM and the ORM are built on: a ``transformers`` causal LM
backbone whose final hidden state at chosen positions feeds a linear head.

:class:`ScalarHeadModel` holds what the two share: the plain batched forward (training, and
any backbone the engine cannot run), inference through a reward-side
:class:`o1search.engine.Engine` with prefix reuse, and checkpoints in ``transformers`` format
(the backbone's ``save_pretrained`` files, the tokenizer's, :data:`HEAD_FILE` and
:data:`REWARD_CONFIG_FILE`), written atomically through
:func:`o1search.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["HEAD_FILE", "REWARD_CONFIG_FILE", "ScalarHeadModel"]

HEAD_FILE = "reward_head.safetensors"
REWARD_CONFIG_FILE = "reward_config.json"
_FORMAT_VERSION = 1


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
        (:func:`~o1search.reward.prm_train.train_prm` /
        :func:`~o1search.reward.orm.train_orm` do)."""
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
