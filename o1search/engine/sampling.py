"""Sampling parameters, stop rules and the batched, keyed sampler.

Randomness is *keyed*: the Gumbel noise added to the logits for draw ``step`` of sample
``index`` under ``seed`` comes from a generator seeded with a hash of ``(seed, index, step)``.
A sample's tokens therefore depend only on its own logits and those three numbers, never on what else shares the
batch or on the order in which the engine schedules work; rerunning with the same seed gives
the same tokens. Gumbel-max over the processed logits draws exactly from the softmax of those
logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from o1search._tokens import as_token_ids

__all__ = ["ExcludedSteps", "SamplingParams", "StopRule", "sample_tokens", "uniform_noise"]

_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are drawn.

    Attributes
    ----------
    temperature : float
        ``0`` is greedy (argmax); otherwise logits are divided by it (> 0).
    top_p : float
        Nucleus sampling: keep the smallest set of most likely tokens whose probability
        (after temperature) reaches ``top_p``; ``1.0`` keeps all. In ``(0, 1]``.
    top_k : int
        Keep the ``top_k`` most likely tokens (ties at the boundary kept); ``0`` keeps all.
    seed : int, optional
        Seed of the counter-based noise (``0 <= seed < 2**64``). ``None`` draws one from
        torch's global generator when the request is made.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0 or t == float(
                "inf"):
            raise ValueError(f"SamplingParams.temperature must be a finite number >= 0 "
                             f"(0 = greedy), got {t!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {p!r}")
        k = self.top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"SamplingParams.top_k must be an int >= 0 (0 = no limit), "
                             f"got {k!r}")
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, int)
                              or not 0 <= s < 2 ** 64):
            raise ValueError(f"SamplingParams.seed must be None or an int in [0, 2**64), "
                             f"got {s!r}")

    @property
    def greedy(self) -> bool:
        """Whether tokens are the argmax."""
        return self.temperature == 0


@dataclass(frozen=True)
class StopRule:
    """When a step ends. The step delimiter, when hit, is part of the returned step.

    Attributes
    ----------
    step_delimiter : str or sequence of int, optional
        Token ids that end a step when the generated tokens end with them, or a string: it
        ends a step when the generated tokens end with its ids (tokenized once, without
        special tokens) *or* when the last token completes it in the decoded text of the new
        tokens, so that tokenizers that merge it with neighbouring text (Qwen2 and Llama-3
        turn "\n\n" into one token, never the lone "\n") still end steps there. The step
        then ends with that whole token (token ids stay the currency: nothing is split or
        re-tokenized). ``None`` for no delimiter.
    stop_at_eos : bool
        End at an end-of-sequence token of the model (finish reason ``"eos"``).
    max_new_tokens : int
        At most this many tokens per step (finish reason ``"length"``), >= 1.
    """

    step_delimiter: str | tuple[int, ...] | None = None
    stop_at_eos: bool = True
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        d = self.step_delimiter
        if d is not None and not isinstance(d, str):
            ids = as_token_ids(d, "StopRule.step_delimiter")
            if not ids:
                raise ValueError("StopRule.step_delimiter must not be empty (use None)")
            object.__setattr__(self, "step_delimiter", ids)
        elif isinstance(d, str) and not d:
            raise ValueError("StopRule.step_delimiter must not be empty (use None)")
        m = self.max_new_tokens
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"StopRule.max_new_tokens must be an int >= 1, got {m!r}")


class ExcludedSteps:
    """Known continuations a request must not draw again: sampling without replacement.

    Built from steps already drawn from the *same* distribution (same prefix, model and
    sampling parameters) with the per-token log-probabilities they were drawn with
    (:attr:`Sample.logprobs`). They form a trie; ``M(u)``, the probability that a sample at
    trie prefix ``u`` ends as one of the known steps, is ``1`` where a known step ends and
    ``sum_t p(t | u) M(u + t)`` elsewhere. Drawing token ``t`` at ``u`` with probability
    ``p(t | u) (1 - M(u + t)) / (1 - M(u))`` gives exactly the distribution of a fresh sample
    conditioned on not being a known step (the scheme of incremental sampling without
    replacement). Off the trie nothing changes.

    Parameters
    ----------
    steps : sequence of (tokens, logprobs)
        Each known step's token ids and the log-probability of each token under the sampling
        distribution (equal lengths, <= 0). Where two steps share a prefix, the first one's
        log-probabilities are used for the shared edges.

    Raises
    ------
    ValueError
        Mismatched lengths, an empty step, a positive or non-finite log-probability.
    """

    def __init__(self, steps: Sequence[tuple[Sequence[int], Sequence[float]]]) -> None:
        edges: dict[tuple[int, ...], dict[int, float]] = {}
        ends: set[tuple[int, ...]] = set()
        for k, (tokens, logprobs) in enumerate(steps):
            toks = tuple(int(t) for t in tokens)
            lps = [float(x) for x in logprobs]
            if not toks or len(toks) != len(lps):
                raise ValueError(f"excluded step {k}: needs as many log-probabilities as tokens "
                                 f"(at least one), got {len(toks)} tokens, {len(lps)} values")
            if any(not math.isfinite(x) or x > 1e-3 for x in lps):  # float32 rounding
                raise ValueError(f"excluded step {k}: log-probabilities must be finite and <= 0")
            for i, (t, lp) in enumerate(zip(toks, lps)):
                edges.setdefault(toks[:i], {}).setdefault(t, min(lp, 0.0))
            ends.add(toks)
        self._edges = edges
        self._mass: dict[tuple[int, ...], float] = {}
        for node in sorted(set(edges) | ends, key=len, reverse=True):
            if node in ends:
                m = 1.0
            else:
                m = sum(math.exp(lp) * self._mass[node + (t,)]
                        for t, lp in edges[node].items())
            self._mass[node] = min(1.0, max(0.0, m))
        self.num_steps = len(ends)

    @property
    def remaining(self) -> float:
        """Probability mass of everything not yet drawn (``1 - M(root)``)."""
        return 1.0 - self._mass.get((), 0.0)

    def bias(self, generated: Sequence[int]) -> dict[int, float] | None:
        """Log-weights to add at a sample that has generated ``generated`` so far: ``{token:
        log(1 - M(generated + token))}`` (``-inf`` where only known steps follow), or None
        off the trie."""
        node = tuple(int(t) for t in generated)
        children = self._edges.get(node)
        if children is None:
            return None
        out = {}
        for t in children:
            left = 1.0 - self._mass[node + (t,)]
            out[t] = math.log(left) if left > 1e-12 else float("-inf")
        return out


def _fmix32_int(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def _stream_key(seed: int, index: int, step: int) -> int:
    """32-bit key of the noise stream of (seed, sample index, step)."""
    h = _fmix32_int((seed & _MASK32) ^ 0x9E3779B9)
    h = _fmix32_int(h ^ ((seed >> 32) & _MASK32) ^ 0x7F4A7C15)
    h = _fmix32_int(h ^ (index & _MASK32) ^ 0x85EBCA77)
    h = _fmix32_int(h ^ ((index >> 32) & _MASK32))
    return _fmix32_int(h ^ (step & _MASK32) ^ 0xC2B2AE3D)


_GENERATORS: dict[str, torch.Generator] = {}


def _generator(device: torch.device) -> torch.Generator:
    key = str(device)
    if key not in _GENERATORS:
        _GENERATORS[key] = torch.Generator(device=device)
    return _GENERATORS[key]


def uniform_noise(keys: Sequence[tuple[int, int, int]], vocab_size: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniforms in ``[0, 1)`` for each ``(seed, index, step)`` and token.

    Each row comes from a generator seeded with a hash of its own key (re-seeded per row), so
    a row depends only on its key: not on the other rows, nor on any shared RNG stream.

    Parameters
    ----------
    keys : sequence of (seed, index, step)
        One stream per row.
    vocab_size : int
        Columns.
    device : torch.device or str

    Returns
    -------
    torch.Tensor
        ``[len(keys), vocab_size]`` float32.
    """
    device = torch.device(device)
    gen = _generator(device)
    out = torch.empty((len(keys), vocab_size), dtype=torch.float32, device=device)
    for r, (seed, index, step) in enumerate(keys):
        h = _stream_key(seed, index, step)
        gen.manual_seed((h << 32) | _fmix32_int(h ^ 0x27D4EB2F))
        torch.rand(vocab_size, generator=gen, device=device, out=out[r])
    return out


def sample_tokens(logits: torch.Tensor, params: Sequence[SamplingParams],
                  keys: Sequence[tuple[int, int, int]],
                  bias: Sequence[dict[int, float] | None] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw one token per row.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]`` raw model logits.
    params : sequence of SamplingParams
        ``B`` entries (``seed`` is ignored here: it is part of ``keys``).
    keys : sequence of (seed, index, step)
        ``B`` noise-stream keys (see :func:`uniform_noise`).
    bias : sequence of dict or None, optional
        Per row, ``{token: log-weight}`` added to the sampling distribution before drawing
        (see :meth:`ExcludedSteps.bias`); ignored for greedy rows and for a row whose every
        token it would rule out. The returned log-probabilities stay those of the unbiased
        distribution, which is what :class:`ExcludedSteps` needs.

    Returns
    -------
    (tokens, logprobs, raw_logprobs)
        ``[B]`` int64 tokens; ``[B]`` float32 log-probability of each token under the
        distribution it was drawn from (logits / temperature, top-k and top-p applied, then
        renormalised; for greedy rows the raw log-probability); ``[B]`` float32
        log-probability under the raw model distribution (temperature 1, no truncation).
    """
    logits = logits.float()
    bsz, vocab = logits.shape
    raw_logp = torch.log_softmax(logits, dim=-1)
    greedy = torch.tensor([p.greedy for p in params], device=logits.device)
    temps = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params],
                         dtype=torch.float32, device=logits.device)
    scaled = logits / temps[:, None]
    top_k = [p.top_k if 0 < p.top_k < vocab else 0 for p in params]
    top_p = [float(p.top_p) for p in params]
    if any(top_k) or any(p < 1.0 for p in top_p):
        sorted_logits, _ = torch.sort(scaled, dim=-1, descending=True)
        keep_min = torch.full((bsz,), float("-inf"), device=logits.device)
        if any(top_k):
            kk = torch.tensor([k if k else vocab for k in top_k], device=logits.device)
            keep_min = torch.maximum(keep_min, sorted_logits.gather(1, (kk - 1)[:, None])[:, 0])
        if any(p < 1.0 for p in top_p):
            # Probabilities within the top-k set, then the nucleus over them: keep token i
            # (in sorted order) while the mass before it is < top_p; the top token always stays.
            masked_sorted = sorted_logits.masked_fill(sorted_logits < keep_min[:, None],
                                                      float("-inf"))
            probs = torch.softmax(masked_sorted, dim=-1)
            mass_before = torch.cumsum(probs, dim=-1) - probs
            pp = torch.tensor(top_p, device=logits.device)[:, None]
            n_keep = (mass_before < pp).sum(dim=-1).clamp(min=1)
            keep_min = torch.maximum(keep_min, sorted_logits.gather(1, (n_keep - 1)[:, None])[:, 0])
        scaled = scaled.masked_fill(scaled < keep_min[:, None], float("-inf"))
    logp = torch.log_softmax(scaled, dim=-1)
    if bool(greedy.all()):
        tokens = logits.argmax(dim=-1)
    else:
        u = uniform_noise(keys, vocab, logits.device)
        # u == 0 gives -inf noise: that token is never drawn, which is fine (prob ~ 2**-24).
        gumbel = -torch.log(-torch.log(u))
        drawn = logp
        if bias is not None and any(b for b in bias):
            drawn = logp.clone()
            for r, b in enumerate(bias):
                if not b:
                    continue
                idx = torch.tensor(list(b), dtype=torch.int64, device=logits.device)
                row = drawn[r].clone()
                row[idx] += torch.tensor(list(b.values()), dtype=row.dtype, device=row.device)
                if bool(torch.isfinite(row).any()):
                    drawn[r] = row
        tokens = torch.where(greedy, logits.argmax(dim=-1), (drawn + gumbel).argmax(dim=-1))
    rows = torch.arange(bsz, device=logits.device)
    chosen_raw = raw_logp[rows, tokens]
    chosen = torch.where(greedy, chosen_raw, logp[rows, tokens])
    return tokens, chosen.float(), chosen_raw.float()
