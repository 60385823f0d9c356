"""Process reward models in the Math-Shepherd convention: a causal LM that reads a step tag
after every step and, at each tag, puts its bet on a "good" token against a "bad" one.

The step value is ``softmax(logit[good], logit[bad])[good]`` at the tag's position (the LM
was trained to replace each tag with ``+`` or ``-``). Math-Shepherd's released PRM uses the tag
``"ки"`` and the tokens ``"+"`` / ``"-"``; all three are configurable. The tags are inserted
at the token level after each step's last token (token ids stay the currency: nothing is
re-tokenized), so the PRM sees ``prompt, step 1, tag, step 2, tag, ...``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from o1search.reward.evaluators import (
    StepValueEvaluator,
    check_batch,
    resolve_token_ids,
    text_delimiter,
)

__all__ = ["TagStepPRM"]


class TagStepPRM(StepValueEvaluator):
    """A Math-Shepherd-style PRM (see the module docstring); a search
    :class:`~o1search.protocols.Evaluator` with values in ``[0, 1]``.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The PRM's causal LM.
    tokenizer
        Its tokenizer (the tag and the two tokens are looked up in it).
    step_tag, good_token, bad_token : str or sequence of int
        The tag inserted after each step and the two tokens compared at it (each of the two
        tokens must be one token id).
    step_delimiter : str or sequence of int
        Ends a step of the policy's completion (default ``"\\n"``).
    aggregation : str
        ``"min"`` (default), ``"last"``, ``"product"`` or ``"mean"``.
    eos_token_ids : iterable of int, optional

    Raises
    ------
    ValueError
        A good/bad token that is not exactly one id, the same id for both, an empty tag.
    """

    kind = "tag-prm"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *,
                 step_tag: str | Sequence[int] = "ки", good_token: str | Sequence[int] = "+",
                 bad_token: str | Sequence[int] = "-", step_delimiter: str | Sequence[int] = "\n",
                 aggregation: str = "min", eos_token_ids: Iterable[int] | None = None) -> None:
        delim = resolve_token_ids(step_delimiter, tokenizer, "step_delimiter")
        if eos_token_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            eos_token_ids = () if eos is None else (int(eos),)
        text, decode = text_delimiter(step_delimiter, tokenizer)
        super().__init__(delim, aggregation, eos_token_ids, step_text=text, decode=decode)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tag = resolve_token_ids(step_tag, tokenizer, "step_tag")
        ids = []
        for what, tok in (("good_token", good_token), ("bad_token", bad_token)):
            t = resolve_token_ids(tok, tokenizer, what)
            if len(t) != 1:
                raise ValueError(f"{what} {tok!r} must be one token id, got {list(t)}")
            ids.append(t[0])
        if ids[0] == ids[1]:
            raise ValueError("good_token and bad_token are the same token")
        self.good_id, self.bad_id = ids
        vocab = int(model.config.vocab_size)
        for t in (*self.tag, *ids):
            if not 0 <= t < vocab:
                raise ValueError(f"token id {t} is outside the PRM's vocabulary ({vocab})")

    def tagged(self, prompt: Sequence[int], completion: Sequence[int]
               ) -> tuple[list[int], list[int]]:
        """``(tokens, tag positions)``: the path with the tag after each step (the whole
        completion counts as one step when it has no delimiter) and where each tag's last
        token lies."""
        p, c = list(prompt), list(completion)
        ends = [e - len(p) for e in self.step_ends(p, c) if e >= len(p)]
        if not ends and c:
            ends = [len(c) - 1]
        seq, where, start = list(p), [], 0
        for e in ends:
            seq += c[start:e + 1] + list(self.tag)
            where.append(len(seq) - 1)
            start = e + 1
        if not ends:  # no completion: the tag right after the prompt
            seq += list(self.tag)
            where.append(len(seq) - 1)
        return seq, where

    @torch.no_grad()
    def score_steps(self, prompts: Sequence[Sequence[int]],
                    completions: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per path, the good-vs-bad probability at every step tag (one forward per path)."""
        ps, cs = check_batch(prompts, completions)
        device = next(self.model.parameters()).device
        out = []
        for p, c in zip(ps, cs):
            seq, where = self.tagged(p, c)
            logits = self.model(torch.tensor([seq], device=device)).logits[0, where].float()
            pair = torch.stack([logits[:, self.good_id], logits[:, self.bad_id]], -1)
            out.append(torch.softmax(pair, -1)[:, 0].double().cpu().numpy())
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, device: str = "cpu",
                        dtype: torch.dtype = torch.float32, **kwargs: Any) -> TagStepPRM:
        """Load the LM and tokenizer of a local checkpoint folder (never downloads);
        ``kwargs`` go to the constructor (tag, tokens, delimiter, aggregation)."""
        from o1search.policy import load_policy

        model, tok = load_policy(path, device=device, dtype=dtype)
        return cls(model, tok, **kwargs)
