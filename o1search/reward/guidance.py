"""Internal guidance: the policy judging its own paths, with no separate reward model.

* :class:`SelfEvaluator` — self-evaluation: after the path, append a question (e.g.
  ``"\\nIs this correct?"``) and read the policy's probability of a "yes" continuation
  (optionally normalized against a "no" continuation).
* :class:`ConfidenceEvaluator` — confidence of the policy in what it wrote: per step, the
  geometric-mean token probability (``exp`` of the mean log-probability), the least likely
  token's probability, or one minus the normalized predictive entropy.

Both run on the policy's own :class:`~o1search.engine.Engine` through ``Engine.score``, so
they share its prefix cache with generation (a path just expanded is scored without
re-encoding its prefix), and both are :class:`~o1search.reward.evaluators.StepValueEvaluator`
s: ``score_steps`` gives per-step values in ``[0, 1]`` and ``evaluate`` aggregates them, as
for the :class:`~o1search.reward.prm.ProcessRewardModel`.
"""

from __future__ import annotations

import math
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

__all__ = ["CONFIDENCE_MEASURES", "ConfidenceEvaluator", "SelfEvaluator"]

CONFIDENCE_MEASURES = ("mean_logprob", "min_logprob", "entropy")


def _engine_eos(engine: Any) -> frozenset[int]:
    return frozenset(int(t) for t in getattr(engine, "eos_token_ids", ()) or ())


class SelfEvaluator(StepValueEvaluator):
    """Self-evaluation: ``P(yes | path + question)`` under the policy.

    Parameters
    ----------
    engine : Engine
        The policy's engine.
    tokenizer : optional
        Tokenizes text markers once (default: ``engine.tokenizer``).
    question : str or sequence of int
        Appended after the path (after each step end when ``per_step``).
    yes : str or sequence of int
        The "correct" continuation; its probability is the product over its tokens.
    no : str or sequence of int, optional
        The "wrong" continuation: when given the value is ``p_yes / (p_yes + p_no)``
        (normalized between the two answers), else ``p_yes``.
    step_delimiter : str or sequence of int
    aggregation : str
        How per-step values combine in :meth:`evaluate` (default ``"last"``).
    per_step : bool
        Ask after every step (one question per step) instead of only after the whole path.

    Raises
    ------
    ValueError
        Empty markers, text markers without a tokenizer, an unknown aggregation.
    """

    def __init__(self, engine: Any, tokenizer: Any = None, *,
                 question: str | Sequence[int] = "\nIs this correct? ",
                 yes: str | Sequence[int] = "yes", no: str | Sequence[int] | None = "no",
                 step_delimiter: str | Sequence[int] = "\n", aggregation: str = "last",
                 per_step: bool = False) -> None:
        tok = tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None)
        text, decode = text_delimiter(step_delimiter, tok)
        super().__init__(resolve_token_ids(step_delimiter, tok, "step_delimiter"),
                         aggregation, _engine_eos(engine), step_text=text, decode=decode)
        self.engine = engine
        self.question = resolve_token_ids(question, tok, "question")
        self.yes = resolve_token_ids(yes, tok, "yes")
        self.no = None if no is None else resolve_token_ids(no, tok, "no")
        if self.no == self.yes:
            raise ValueError("yes and no continuations are the same tokens")
        self.per_step = bool(per_step)

    def score_steps(self, prompts: Sequence[Sequence[int]],
                    completions: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per path, the self-evaluation after each step (``per_step``) or after the whole
        path (one value). Trailing EOS tokens are dropped before the question.

        Returns
        -------
        list of numpy.ndarray
            ``B`` float64 arrays in ``[0, 1]``.
        """
        ps, cs = check_batch(prompts, completions)
        contexts: list[tuple[int, ...]] = []
        counts = []
        for p, c in zip(ps, cs):
            seq = p + c
            ends = self.step_ends(p, c) if self.per_step else [self._last_real(seq, len(p))]
            counts.append(len(ends))
            contexts += [seq[:e + 1] + self.question for e in ends]
        answers = [self.yes] + ([self.no] if self.no is not None else [])
        seqs, positions = [], []
        for ctx in contexts:
            for a in answers:
                seqs.append(ctx + a)
                positions.append(list(range(len(ctx), len(ctx) + len(a))))
        res = self.engine.score(seqs, positions=positions) if seqs else []
        logp = np.asarray([float(np.sum(r.logprobs, dtype=np.float64)) for r in res])
        logp = logp.reshape(len(contexts), len(answers))
        if self.no is None:
            vals = np.exp(logp[:, 0])
        else:
            # p_yes / (p_yes + p_no), computed in log space against underflow.
            vals = 1.0 / (1.0 + np.exp(logp[:, 1] - logp[:, 0]))
        out, i = [], 0
        for n in counts:
            out.append(np.clip(vals[i:i + n], 0.0, 1.0))
            i += n
        return out

    def _last_real(self, seq: tuple[int, ...], prompt_len: int) -> int:
        j = len(seq) - 1
        while j >= prompt_len and seq[j] in self.eos_token_ids:
            j -= 1
        return j


class ConfidenceEvaluator(StepValueEvaluator):
    """The policy's confidence in each step it wrote.

    Parameters
    ----------
    engine : Engine
        The policy's engine.
    tokenizer : optional
        Tokenizes a text delimiter once (default: ``engine.tokenizer``).
    measure : str
        ``"mean_logprob"``: ``exp(mean log p(token))`` over the step's tokens (geometric-mean
        probability); ``"min_logprob"``: probability of the step's least likely token;
        ``"entropy"``: ``1 - mean H / log V`` (mean predictive entropy over the step's
        tokens, normalized by that of the uniform distribution over the vocabulary ``V``).
    step_delimiter : str or sequence of int
    aggregation : str
        How step values combine in :meth:`evaluate` (default ``"mean"``).

    Raises
    ------
    ValueError
        An unknown measure or aggregation.
    """

    def __init__(self, engine: Any, tokenizer: Any = None, *, measure: str = "mean_logprob",
                 step_delimiter: str | Sequence[int] = "\n", aggregation: str = "mean",
                 eos_token_ids: Iterable[int] | None = None) -> None:
        if measure not in CONFIDENCE_MEASURES:
            raise ValueError(f"unknown measure {measure!r}; use one of {CONFIDENCE_MEASURES}")
        tok = tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None)
        eos = _engine_eos(engine) if eos_token_ids is None else eos_token_ids
        text, decode = text_delimiter(step_delimiter, tok)
        super().__init__(resolve_token_ids(step_delimiter, tok, "step_delimiter"),
                         aggregation, eos, step_text=text, decode=decode)
        self.engine = engine
        self.measure = measure

    def score_steps(self, prompts: Sequence[Sequence[int]],
                    completions: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per path, one confidence per step (the tokens after the previous step end up to
        this step's end); a path with no step gets 1.0 (nothing written, nothing doubted).

        Returns
        -------
        list of numpy.ndarray
            ``B`` float64 arrays in ``[0, 1]``.
        """
        ps, cs = check_batch(prompts, completions)
        seqs = [p + c for p, c in zip(ps, cs)]
        todo = [b for b, c in enumerate(cs) if c]
        out: list[np.ndarray] = [np.ones(1) for _ in seqs]
        if not todo:
            return out
        tok_scores = self._token_scores([seqs[b] for b in todo],
                                        [len(ps[b]) for b in todo])
        for b, ts in zip(todo, tok_scores):
            p = len(ps[b])
            ends = self.step_ends(ps[b], cs[b])
            vals, prev = [], p - 1
            for e in ends:
                chunk = ts[prev + 1 - p:e + 1 - p]  # scores of tokens prev+1 .. e
                prev = e
                vals.append(self._combine(chunk))
            out[b] = np.clip(np.asarray(vals, dtype=np.float64), 0.0, 1.0)
        return out

    def _combine(self, chunk: np.ndarray) -> float:
        if len(chunk) == 0:
            return 1.0
        if self.measure == "mean_logprob":
            return math.exp(float(np.mean(chunk)))
        if self.measure == "min_logprob":
            return math.exp(float(np.min(chunk)))
        return 1.0 - float(np.mean(chunk))

    def _token_scores(self, seqs: list[tuple[int, ...]], prompt_lens: list[int]
                      ) -> list[np.ndarray]:
        """Per completion token: its log-probability, or (``entropy``) the normalized
        entropy of the distribution it was drawn from."""
        if self.measure != "entropy":
            res = self.engine.score(seqs, positions=[list(range(p, len(s)))
                                                     for s, p in zip(seqs, prompt_lens)])
            return [np.asarray(r.logprobs, dtype=np.float64) for r in res]
        # Entropy needs the whole distribution: final hidden states through the LM head.
        res = self.engine.score(seqs, positions=[list(range(p - 1, len(s) - 1))
                                                 for s, p in zip(seqs, prompt_lens)],
                                hidden_states=True)
        lm_head = self.engine.model.get_output_embeddings()
        out = []
        with torch.inference_mode():
            for r in res:
                logits = lm_head(r.hidden_states).float()
                logp = torch.log_softmax(logits, dim=-1)
                h = -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])
                out.append(h.cpu().double().numpy())
        return out
