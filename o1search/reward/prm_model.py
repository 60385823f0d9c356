"""The process reward model: :class:`ProcessRewardModel` scores every step of a path
(see :mod:`o1search.reward.prm` for how it reads the backbone, reuses prefixes and saves).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from o1search.reward.evaluators import (
    StepValueEvaluator,
    as_tokens,
    check_batch,
    resolve_token_ids,
    text_delimiter,
)
from o1search.reward.scalar_head import ScalarHeadModel

__all__ = ["ProcessRewardModel"]


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
        See :class:`~o1search.reward.scalar_head.ScalarHeadModel`.
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
        text, decode = text_delimiter(step_delimiter, tokenizer)
        StepValueEvaluator.__init__(self, delim, aggregation, eos_token_ids, step_text=text,
                                    decode=decode)
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
        # A text delimiter is saved as text (its ids are the tokenizer's business) so the
        # loaded PRM splits steps on decoded text as the engine does.
        delim: Any = self.step_text if self.step_text is not None else list(self.step_delimiter)
        cfg.update(step_delimiter=delim, aggregation=self.aggregation,
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


    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, format: str = "auto",
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        **kwargs: Any) -> Any:
        """A PRM from a local checkpoint folder, in either of two formats.

        Parameters
        ----------
        path : str or PathLike
        format : str
            ``"o1search"`` (a value-head checkpoint written by :meth:`save`),
            ``"math-shepherd"`` (a causal LM scoring a step tag, see
            :class:`~o1search.reward.tag_prm.TagStepPRM`) or ``"auto"`` (o1search's when the
            folder holds its reward config, else Math-Shepherd's).
        device, dtype
        **kwargs
            For ``"math-shepherd"``: ``step_tag``, ``good_token``, ``bad_token``,
            ``step_delimiter``, ``aggregation``; for ``"o1search"``: ``use_engine``,
            ``aggregation``.

        Returns
        -------
        ProcessRewardModel or TagStepPRM

        Raises
        ------
        FileNotFoundError, ValueError
            No checkpoint there, an unknown format.
        """
        from pathlib import Path

        from o1search.reward.scalar_head import REWARD_CONFIG_FILE
        from o1search.reward.tag_prm import TagStepPRM

        if format not in ("auto", "o1search", "math-shepherd"):
            raise ValueError(f"format must be 'auto', 'o1search' or 'math-shepherd', got "
                             f"{format!r}")
        root = Path(os.fspath(path)).expanduser()
        if format == "auto":
            format = "o1search" if (root / REWARD_CONFIG_FILE).is_file() else "math-shepherd"
        if format == "o1search":
            return cls.load(root, device=device, dtype=dtype, **kwargs)
        return TagStepPRM.from_pretrained(root, device=str(device), dtype=dtype, **kwargs)


def _eos_ids(backbone: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(getattr(backbone, "generation_config", None), "eos_token_id", None),
                getattr(getattr(backbone, "config", None), "eos_token_id", None),
                getattr(tokenizer, "eos_token_id", None)):
        if src is None:
            continue
        ids.update(int(t) for t in (src if isinstance(src, (list, tuple)) else [src]))
    return ids
