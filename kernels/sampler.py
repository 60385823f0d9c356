"""The expansion sampler: one pass over the vocabulary per row turns logits into k children.

For each row of ``logits [B, V]`` it applies temperature and the top-k / top-p filter, draws ``k``
*distinct* tokens (Gumbel-top-k: the ``k`` largest ``logit / T + Gumbel noise`` among the allowed
tokens are an exact sample without replacement) or takes the ``k`` best (beam), and reports their
log-probabilities, the row's log-sum-exp and entropy, and whether each token is a step boundary
or EOS.

Randomness is counter based: the Gumbel noise of ``(row, column)`` is a pure function of the
row's seed and the column (an integer hash, computed identically in Triton and in torch), so
results do not depend on the backend, the batch composition or the launch grid, and tests can
compare sampled tokens exactly.

The Triton kernel reads each logit once: programs own a vocabulary chunk of a row and emit that
chunk's softmax statistics and its best ``k`` candidates; a tiny combine step merges chunks. The
top-k / top-p cut-off (a per-row logit threshold) is found beforehand with ``torch.topk`` over
the row (a full sort only when top-p is asked without top-k) — exact, not the kernel's pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import FLOAT_DTYPES, check_tensor, jit, next_pow2, resolve_backend, tl

__all__ = [
    "ExpansionSample",
    "gumbel_noise",
    "sample_expansion",
    "sample_expansion_reference",
]

_MASK32 = 0xFFFFFFFF
_MAX_K = 256


@dataclass(frozen=True)
class ExpansionSample:
    """What :func:`sample_expansion` returns (all on the logits' device).

    Attributes
    ----------
    tokens:
        ``[B, k]`` int64, best first (by perturbed score when sampling, by logit for beam);
        ``-1`` where the filter allows fewer than ``k`` distinct tokens.
    logprobs:
        ``[B, k]`` float32 log-probability under the model (temperature 1, no filter);
        ``-inf`` for ``-1`` tokens. What search priors and RL need.
    sample_logprobs:
        ``[B, k]`` float32 log-probability under the distribution sampled from (temperature,
        then the filter, renormalised; rows with temperature 0 use temperature 1).
    lse:
        ``[B]`` float32 log-sum-exp of the raw logits.
    entropy:
        ``[B]`` float32 entropy (nats) of the model distribution (temperature 1, no filter).
    is_boundary:
        ``[B, k]`` bool: the token is in ``boundary_mask`` (a reasoning-step delimiter).
    is_eos:
        ``[B, k]`` bool: the token is one of ``eos_token_ids``.
    """

    tokens: torch.Tensor
    logprobs: torch.Tensor
    sample_logprobs: torch.Tensor
    lse: torch.Tensor
    entropy: torch.Tensor
    is_boundary: torch.Tensor
    is_eos: torch.Tensor


# --------------------------------------------------------------------------------------------
# Counter-based noise (identical in Triton and torch)
# --------------------------------------------------------------------------------------------
def _hash32_torch(x: torch.Tensor) -> torch.Tensor:
    # lowbias32 (Wellons): full avalanche over 32 bits. int64 math, masked to 32 bits after each
    # multiply, so the wrap-around matches the Triton kernel bit for bit.
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def _row_keys(seed: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """``[B]`` int64 keys in ``[0, 2**32)`` from an int seed (mixed with the row index) or per-row seeds."""
    if isinstance(seed, torch.Tensor):
        check_tensor(seed, "seed", 1, (torch.int32, torch.int64))
        if seed.shape[0] != batch:
            raise ValueError(f"a seed tensor must have shape [{batch}], got {tuple(seed.shape)}")
        s = seed.to(device=device, dtype=torch.int64)
    else:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or an int tensor [B], got {type(seed).__name__}")
        # Distinct rows of one call get distinct streams.
        s = torch.full((batch,), seed, dtype=torch.int64, device=device)
        s = s * 0x9E3779B1 + torch.arange(batch, device=device, dtype=torch.int64)
    lo = s & _MASK32
    hi = (s >> 32) & _MASK32
    return _hash32_torch(lo ^ _hash32_torch(hi ^ 0x5BD1E995))


def uniform_noise(row_keys: torch.Tensor, vocab: int) -> torch.Tensor:
    """Torch: the counter-based uniform noise ``[B, vocab]`` float32 in (0, 1) of these row keys.

    Entry ``(b, v)`` is a hash of ``(row_keys[b], v)`` alone, so a row's noise does not depend
    on the other rows of the batch; the Triton sampler computes the same values.
    """
    col = torch.arange(vocab, device=row_keys.device, dtype=torch.int64)[None, :]
    h = _hash32_torch((col + row_keys[:, None]) & _MASK32)
    h = _hash32_torch(h ^ row_keys[:, None])
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)  # in (0, 1), exactly


def gumbel_noise(row_keys: torch.Tensor, vocab: int) -> torch.Tensor:
    """Torch: the Gumbel(0, 1) noise ``[B, vocab]`` float32 the sampler adds for these row keys."""
    return -torch.log(-torch.log(uniform_noise(row_keys, vocab)))


@jit
def _hash32(x):
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


# --------------------------------------------------------------------------------------------
# Kernel: one vocabulary chunk of one row
# --------------------------------------------------------------------------------------------
@jit
def _sampler_chunk_kernel(
    LOGITS, THRESH, INV_T, NOISE, KEYS,
    CAND_VAL, CAND_IDX, STATS,
    vocab, n_chunks, stride_lb,
    K: tl.constexpr, BLOCK_V: tl.constexpr,
):
    b = tl.program_id(0)
    c = tl.program_id(1)
    cols = c * BLOCK_V + tl.arange(0, BLOCK_V)
    in_row = cols < vocab
    x = tl.load(LOGITS + b.to(tl.int64) * stride_lb + cols, mask=in_row, other=float("-inf"))
    x = x.to(tl.float32)
    thresh = tl.load(THRESH + b)
    inv_t = tl.load(INV_T + b)
    noise_scale = tl.load(NOISE + b)
    key = tl.load(KEYS + b)

    # Softmax statistics of the raw logits: max, sum of exp, sum of exp * logit (for entropy).
    m_raw = tl.max(x, axis=0)
    m_raw_safe = tl.where(m_raw == float("-inf"), 0.0, m_raw)
    e = tl.where(in_row, tl.exp(x - m_raw_safe), 0.0)
    s_raw = tl.sum(e, axis=0)
    t_raw = tl.sum(e * tl.where(e > 0.0, x, 0.0), axis=0)  # no 0 * -inf
    # ... and of the tempered, filtered logits (normaliser of sample_logprobs).
    keep = in_row & (x >= thresh)
    z = x * inv_t
    zf = tl.where(keep, z, float("-inf"))
    m_f = tl.max(zf, axis=0)
    m_f_safe = tl.where(m_f == float("-inf"), 0.0, m_f)
    s_f = tl.sum(tl.where(keep, tl.exp(zf - m_f_safe), 0.0), axis=0)
    stats = STATS + (b.to(tl.int64) * n_chunks + c) * 5
    tl.store(stats + 0, m_raw)
    tl.store(stats + 1, s_raw)
    tl.store(stats + 2, t_raw)
    tl.store(stats + 3, m_f)
    tl.store(stats + 4, s_f)

    # Gumbel-perturbed scores (noise_scale 0: beam / greedy).
    c64 = cols.to(tl.int64)
    h = _hash32((c64 + key) & 0xFFFFFFFF)
    h = _hash32(h ^ key)
    u = ((h >> 8).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
    g = -tl.log(-tl.log(u))
    score = tl.where(keep, z + g * noise_scale, float("-inf"))

    # This chunk's best K, best first; ties go to the lower column (tie_break_left).
    out = (b.to(tl.int64) * n_chunks + c) * K
    for j in range(K):
        best, arg = tl.max(score, axis=0, return_indices=True, return_indices_tie_break_left=True)
        tl.store(CAND_VAL + out + j, best)
        tl.store(CAND_IDX + out + j, tl.where(best == float("-inf"), -1, c * BLOCK_V + arg))
        score = tl.where(tl.arange(0, BLOCK_V) == arg, float("-inf"), score)


# --------------------------------------------------------------------------------------------
# Host-side pieces shared by both backends
# --------------------------------------------------------------------------------------------
def _per_row(value, batch: int, device, dtype, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.shape[0] != batch:
            raise ValueError(f"{name} must be a scalar or a [{batch}] tensor, got {tuple(value.shape)}")
        return value.to(device=device, dtype=dtype)
    return torch.full((batch,), value, dtype=dtype, device=device)


def _thresholds(x: torch.Tensor, inv_t: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per-row raw-logit cut-off ``[B]``: tokens with ``logit >= threshold`` survive top-k then top-p.

    Order as in HF ``generate``: temperature, top-k, then top-p over the renormalised top-k.
    Ties at the cut-off all survive.
    """
    B, V = x.shape
    k_eff = torch.where(top_k > 0, top_k.clamp(max=V), torch.full_like(top_k, V))
    active = (k_eff < V) | (top_p < 1.0)
    thresh = torch.full((B,), float("-inf"), device=x.device)
    if not bool(active.any()):
        return thresh
    kmax = int(k_eff[active].max())
    vals = torch.topk(x, kmax, dim=-1, sorted=True).values  # [B, kmax], descending
    pos = torch.arange(kmax, device=x.device)[None, :]
    in_k = pos < k_eff[:, None]
    z = torch.where(in_k, vals * inv_t[:, None], torch.tensor(float("-inf"), device=x.device))
    probs = torch.softmax(z, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass strictly above each candidate
    n_keep = ((before < top_p[:, None]) & in_k).sum(dim=-1).clamp(min=1)
    cut = vals.gather(1, (n_keep - 1)[:, None])[:, 0]
    return torch.where(active, cut, thresh)


def _prepare(logits, k, mode, temperature, top_k, top_p, seed, boundary_mask, eos_token_ids):
    check_tensor(logits, "logits", 2, FLOAT_DTYPES)
    B, V = logits.shape
    if V == 0:
        raise ValueError("logits has an empty vocabulary")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(V, _MAX_K):
        raise ValueError(f"k must be an int in [1, {min(V, _MAX_K)}], got {k!r}")
    if mode not in ("sample", "beam"):
        raise ValueError(f"mode must be 'sample' or 'beam', got {mode!r}")
    dev = logits.device
    temp = _per_row(temperature, B, dev, torch.float32, "temperature")
    tk = _per_row(top_k, B, dev, torch.int64, "top_k")
    tp = _per_row(top_p, B, dev, torch.float32, "top_p")
    if B:
        if bool((temp < 0).any()) or not bool(torch.isfinite(temp).all()):
            raise ValueError("temperature must be finite and >= 0 (0 means greedy)")
        if bool((tk < 0).any()):
            raise ValueError("top_k must be >= 0 (0 disables it)")
        if bool(((tp <= 0) | (tp > 1) | torch.isnan(tp)).any()):
            raise ValueError("top_p must be in (0, 1] (1 disables it)")
    if boundary_mask is not None:
        check_tensor(boundary_mask, "boundary_mask", 1)
        if boundary_mask.shape[0] != V:
            raise ValueError(f"boundary_mask must have shape [{V}], got {tuple(boundary_mask.shape)}")
        if boundary_mask.dtype.is_floating_point or boundary_mask.dtype.is_complex:
            raise TypeError(f"boundary_mask must be bool or integer, got {boundary_mask.dtype}")
    if eos_token_ids is not None:
        eos = torch.as_tensor(eos_token_ids, device=dev)
        if eos.dtype.is_floating_point or eos.dtype == torch.bool:
            raise TypeError(f"eos_token_ids must be integers, got {eos.dtype}")
        eos = eos.reshape(-1).to(torch.int64)
    else:
        eos = None
    greedy = temp == 0
    inv_t = torch.where(greedy, torch.ones_like(temp), 1.0 / torch.where(greedy, 1.0, temp))
    noise = torch.zeros_like(temp) if mode == "beam" else (~greedy).to(torch.float32)
    thresh = _thresholds(logits.float(), inv_t, tk, tp) if B else torch.empty(0, device=dev)
    keys = _row_keys(seed, B, dev)
    return inv_t, noise, thresh, keys, eos


def _finish(logits, tokens, lse, entropy, lse_f, inv_t, boundary_mask, eos) -> ExpansionSample:
    valid = tokens >= 0
    safe = tokens.clamp(min=0)
    chosen = logits.float().gather(1, safe)
    ninf = torch.tensor(float("-inf"), device=logits.device)
    logprobs = torch.where(valid, chosen - lse[:, None], ninf)
    sample_logprobs = torch.where(valid, chosen * inv_t[:, None] - lse_f[:, None], ninf)
    if boundary_mask is not None:
        is_boundary = (boundary_mask.to(logits.device)[safe] != 0) & valid
    else:
        is_boundary = torch.zeros_like(valid)
    if eos is not None and eos.numel():
        is_eos = torch.isin(safe, eos) & valid
    else:
        is_eos = torch.zeros_like(valid)
    return ExpansionSample(
        tokens=torch.where(valid, tokens, -1),
        logprobs=logprobs,
        sample_logprobs=sample_logprobs,
        lse=lse,
        entropy=entropy,
        is_boundary=is_boundary,
        is_eos=is_eos,
    )


def sample_expansion_reference(
    logits: torch.Tensor,
    k: int = 1,
    *,
    mode: str = "sample",
    temperature: float | torch.Tensor = 1.0,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    seed: int | torch.Tensor = 0,
    boundary_mask: torch.Tensor | None = None,
    eos_token_ids: Sequence[int] | torch.Tensor | None = None,
) -> ExpansionSample:
    """Torch reference of :func:`sample_expansion` (same signature, whole rows at once)."""
    inv_t, noise, thresh, keys, eos = _prepare(
        logits, k, mode, temperature, top_k, top_p, seed, boundary_mask, eos_token_ids
    )
    tokens, lse, entropy, lse_f = _reference_rows(logits, k, inv_t, noise, thresh, keys)
    return _finish(logits, tokens, lse, entropy, lse_f, inv_t, boundary_mask, eos)


def _reference_rows(logits, k, inv_t, noise, thresh, keys):
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)
    p = torch.softmax(x, dim=-1)
    entropy = lse - (p * torch.where(p > 0, x, 0.0)).sum(-1)  # no 0 * -inf
    keep = x >= thresh[:, None]
    z = x * inv_t[:, None]
    lse_f = torch.logsumexp(torch.where(keep, z, float("-inf")), dim=-1)
    score = torch.where(keep, z + gumbel_noise(keys, x.shape[1]) * noise[:, None], float("-inf"))
    vals, idx = torch.sort(score, dim=-1, descending=True, stable=True)
    tokens = torch.where(vals[:, :k] == float("-inf"), -1, idx[:, :k])
    return tokens, lse, entropy, lse_f


def _launch_sampler(logits, k, inv_t, noise, thresh, keys):
    B, V = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    block_v = min(next_pow2(V), 2048 if logits.device.type == "cuda" else 1024)
    n_chunks = -(-V // block_v)
    dev = logits.device
    cand_val = torch.empty((B, n_chunks * k), dtype=torch.float32, device=dev)
    cand_idx = torch.empty((B, n_chunks * k), dtype=torch.int32, device=dev)
    stats = torch.empty((B, n_chunks, 5), dtype=torch.float32, device=dev)
    _sampler_chunk_kernel[(B, n_chunks)](
        LOGITS=logits, THRESH=thresh.float().contiguous(), INV_T=inv_t.contiguous(),
        NOISE=noise.contiguous(), KEYS=keys.contiguous(),
        CAND_VAL=cand_val, CAND_IDX=cand_idx, STATS=stats,
        vocab=V, n_chunks=n_chunks, stride_lb=logits.stride(0),
        K=k, BLOCK_V=block_v,
    )
    # Combine chunks: log-sum-exp of partial sums, and the best k of the n_chunks * k candidates.
    m_raw, s_raw, t_raw, m_f, s_f = stats.unbind(-1)
    big = m_raw.max(dim=1).values
    w = torch.exp(m_raw - big[:, None])
    S = (s_raw * w).sum(1)
    lse = big + torch.log(S)
    entropy = lse - (t_raw * w).sum(1) / S
    big_f = m_f.max(dim=1).values
    big_f_safe = torch.where(torch.isinf(big_f), 0.0, big_f)
    lse_f = big_f_safe + torch.log((s_f * torch.exp(m_f - big_f_safe[:, None])).sum(1))
    # Stable sort keeps chunk order on ties, so equal scores resolve to the lower column, as in
    # the reference's stable sort over the whole row.
    vals, order = torch.sort(cand_val, dim=1, descending=True, stable=True)
    tokens = cand_idx.gather(1, order[:, :k]).to(torch.int64)
    tokens = torch.where(vals[:, :k] == float("-inf"), -1, tokens)
    return tokens, lse, entropy, lse_f


def sample_expansion(
    logits: torch.Tensor,
    k: int = 1,
    *,
    mode: str = "sample",
    temperature: float | torch.Tensor = 1.0,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    seed: int | torch.Tensor = 0,
    boundary_mask: torch.Tensor | None = None,
    eos_token_ids: Sequence[int] | torch.Tensor | None = None,
    backend: str = "auto",
) -> ExpansionSample:
    """Expand each row of logits into ``k`` distinct children (sampled or best), with statistics.

    Parameters
    ----------
    logits:
        ``[B, V]`` fp16/bf16/fp32 next-token logits.
    k:
        Children per row, ``1 <= k <= min(V, 256)``.
    mode:
        ``"sample"``: ``k`` distinct tokens drawn without replacement from the tempered,
        filtered distribution (Gumbel-top-k; ``k = 1`` is ordinary sampling). ``"beam"``: the
        ``k`` highest-logit allowed tokens.
    temperature:
        Scalar or ``[B]``, ``>= 0``; ``0`` makes the row greedy (no noise).
    top_k:
        Scalar or ``[B]`` int, ``0`` = off; keep the ``top_k`` largest logits.
    top_p:
        Scalar or ``[B]`` in ``(0, 1]``, ``1`` = off; nucleus over the (top-k filtered,
        tempered) distribution.
    seed:
        Int (rows get distinct streams) or ``[B]`` int seeds (a request keeps its stream
        wherever it sits in the batch; mix in the decode step to vary it per step).
    boundary_mask:
        ``[V]`` bool/int, nonzero for step-delimiter tokens; ``None``: none.
    eos_token_ids:
        EOS token ids (sequence or tensor); ``None``: none.
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns
    -------
    ExpansionSample
        ``tokens``, ``logprobs``, ``sample_logprobs`` ``[B, k]``; ``lse``, ``entropy`` ``[B]``;
        ``is_boundary``, ``is_eos`` ``[B, k]``.

    Raises
    ------
    ValueError
        Bad ``k``, ``mode``, temperature, top-k/top-p or mask shape.
    TypeError
        A float boundary mask or float EOS ids, or a non-integer seed.
    """
    inv_t, noise, thresh, keys, eos = _prepare(
        logits, k, mode, temperature, top_k, top_p, seed, boundary_mask, eos_token_ids
    )
    if resolve_backend(backend, logits) == "torch" or logits.shape[0] == 0:
        tokens, lse, entropy, lse_f = _reference_rows(logits, k, inv_t, noise, thresh, keys)
    else:
        tokens, lse, entropy, lse_f = _launch_sampler(logits, k, inv_t, noise, thresh, keys)
    return _finish(logits, tokens, lse, entropy, lse_f, inv_t, boundary_mask, eos)
