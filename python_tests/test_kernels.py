"""Kernels (o1search.kernels): Triton (interpreted on CPU) vs torch references vs dense oracles."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module defines its kernels

try:
    import o1search.kernels as K
except ImportError:  # the native core is not built: the kernels do not need it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import kernels as K  # type: ignore[no-redef]

needs_triton = pytest.mark.skipif(not K.HAS_TRITON, reason="triton is not importable")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float16: dict(atol=3e-3, rtol=3e-3),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
}


# ------------------------------------------------------------------------------------------
# Independent oracle: walk the block table token by token, softmax in float64.
# ------------------------------------------------------------------------------------------
def oracle_attention(q, k_cache, v_cache, pages, positions, q_positions=None, scale=None):
    """``q [M, Hq, D]`` rows attend to tokens ``positions`` of one sequence (page list ``pages``).

    With ``q_positions``, row ``i`` sees only tokens at position ``<= q_positions[i]``.
    Returns ``(o [M, Hq, D] float64, lse [M, Hq] float64)``.
    """
    page_size, hkv, d = k_cache.shape[1], k_cache.shape[2], k_cache.shape[3]
    m, hq, _ = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    keys = torch.stack([k_cache[int(pages[t // page_size]), t % page_size] for t in positions]) \
        if positions else torch.zeros(0, hkv, d)
    vals = torch.stack([v_cache[int(pages[t // page_size]), t % page_size] for t in positions]) \
        if positions else torch.zeros(0, hkv, d)
    keys, vals = keys.double(), vals.double()
    o = torch.zeros(m, hq, d, dtype=torch.float64)
    lse = torch.full((m, hq), -math.inf, dtype=torch.float64)
    for i in range(m):
        for h in range(hq):
            kv = h // (hq // hkv)
            vis = [j for j, t in enumerate(positions) if q_positions is None or t <= q_positions[i]]
            if not vis:
                continue
            s = (keys[vis, kv] @ q[i, h].double()) * scale
            lse[i, h] = torch.logsumexp(s, 0)
            o[i, h] = torch.softmax(s, 0) @ vals[vis, kv]
    return o, lse


def make_cache(num_pages=24, page_size=4, hkv=2, d=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(num_pages, page_size, hkv, d, generator=g).to(dtype)
    v = torch.randn(num_pages, page_size, hkv, d, generator=g).to(dtype)
    return k, v


def random_tables(batch, max_pages, num_pages, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_pages, generator=g)[: batch * max_pages].view(batch, max_pages).int()


# ------------------------------------------------------------------------------------------
# Decode
# ------------------------------------------------------------------------------------------
def test_decode_reference_matches_oracle():
    kc, vc = make_cache()
    bt = random_tables(3, 4, 24)
    bt[2, 2:] = -7  # padding past the used pages is never read
    lens = torch.tensor([5, 16, 6], dtype=torch.int32)
    q = torch.randn(3, 4, 16)
    o, lse = K.paged_decode_attention(q, kc, vc, bt, lens, 0.3, backend="torch")
    for b in range(3):
        ro, rl = oracle_attention(q[b : b + 1], kc, vc, bt[b], list(range(int(lens[b]))), scale=0.3)
        torch.testing.assert_close(o[b].double(), ro[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse[b].double(), rl[0], atol=1e-5, rtol=1e-5)


def test_decode_empty_sequence_gives_zero_and_neg_inf():
    kc, vc = make_cache()
    o, lse = K.paged_decode_attention(
        torch.randn(1, 4, 16), kc, vc, torch.zeros(1, 1, dtype=torch.int32),
        torch.zeros(1, dtype=torch.int32), backend="torch")
    assert torch.all(o == 0) and torch.all(lse == -math.inf)


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_triton_matches_reference(dtype):
    kc, vc = make_cache(dtype=dtype, page_size=4, hkv=2)
    bt = random_tables(4, 6, 24)
    lens = torch.tensor([5, 23, 0, 1], dtype=torch.int32)  # 0: no keys at all
    q = torch.randn(4, 4, 16).to(dtype)
    ro, rl = K.paged_decode_attention(q, kc, vc, bt, lens, backend="torch")
    for splits in (1, 3):
        o, lse = K.paged_decode_attention(q, kc, vc, bt, lens, num_splits=splits, backend="triton")
        assert o.dtype == dtype and lse.dtype == torch.float32
        torch.testing.assert_close(o.float(), ro.float(), **TOL[dtype])
        torch.testing.assert_close(lse, rl, **TOL[dtype])


@needs_triton
def test_decode_triton_mha_page_size_one_head_dim_not_pow2():
    # group 1 (rows padded for tl.dot), page_size 1, head_dim 24 (masked lanes)
    kc, vc = make_cache(num_pages=40, page_size=1, hkv=3, d=24)
    bt = random_tables(2, 20, 40)
    lens = torch.tensor([20, 7], dtype=torch.int32)
    q = torch.randn(2, 3, 24)
    o, lse = K.paged_decode_attention(q, kc, vc, bt, lens, backend="triton")
    for b in range(2):
        ro, rl = oracle_attention(q[b : b + 1], kc, vc, bt[b], list(range(int(lens[b]))))
        torch.testing.assert_close(o[b].double(), ro[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse[b].double(), rl[0], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Extend
# ------------------------------------------------------------------------------------------
def _extend_case(dtype=torch.float32):
    kc, vc = make_cache(num_pages=24, dtype=dtype)
    bt = random_tables(3, 6, 24, seed=1)
    prefix = torch.tensor([5, 0, 8], dtype=torch.int32)
    ext = torch.tensor([6, 18, 0], dtype=torch.int32)
    q = torch.randn(int(ext.sum()), 4, 16).to(dtype)
    return q, kc, vc, bt, prefix, ext


def test_extend_reference_matches_oracle():
    q, kc, vc, bt, prefix, ext = _extend_case()
    o, lse = K.paged_extend_attention(q, kc, vc, bt, prefix, ext, return_lse=True, backend="torch")
    start = 0
    for b in range(3):
        p, e = int(prefix[b]), int(ext[b])
        if e == 0:
            continue
        ro, rl = oracle_attention(q[start : start + e], kc, vc, bt[b], list(range(p + e)),
                                  q_positions=[p + i for i in range(e)])
        torch.testing.assert_close(o[start : start + e].double(), ro, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse[start : start + e].double(), rl, atol=1e-5, rtol=1e-5)
        start += e


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
def test_extend_triton_matches_reference(dtype):
    q, kc, vc, bt, prefix, ext = _extend_case(dtype)
    ro, rl = K.paged_extend_attention(q, kc, vc, bt, prefix, ext, return_lse=True, backend="torch")
    o, lse = K.paged_extend_attention(q, kc, vc, bt, prefix, ext, return_lse=True, backend="triton")
    torch.testing.assert_close(o.float(), ro.float(), **TOL[dtype])
    torch.testing.assert_close(lse, rl, **TOL[dtype])


def test_extend_last_token_equals_decode():
    # The last new token of an extend sees exactly what a decode step at that length sees.
    q, kc, vc, bt, prefix, ext = _extend_case()
    o = K.paged_extend_attention(q, kc, vc, bt, prefix, ext, backend="torch")
    last = torch.cumsum(ext.long(), 0) - 1
    keep = ext > 0
    od, _ = K.paged_decode_attention(q[last[keep]], kc, vc, bt[keep], (prefix + ext)[keep],
                                     backend="torch")
    torch.testing.assert_close(o[last[keep]], od, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------------------
# merge_states and cascade decode
# ------------------------------------------------------------------------------------------
def test_merge_states_of_two_halves_is_full_attention():
    kc, vc = make_cache()
    bt = random_tables(1, 4, 24)
    q = torch.randn(1, 4, 16)
    full, lfull = oracle_attention(q, kc, vc, bt[0], list(range(13)))
    a, la = oracle_attention(q, kc, vc, bt[0], list(range(6)))
    b, lb = oracle_attention(q, kc, vc, bt[0], list(range(6, 13)))
    o, lse = K.merge_states(a.float(), la.float(), b.float(), lb.float(), backend="torch")
    torch.testing.assert_close(o.double(), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), lfull, atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_merge_states_triton_matches_reference_with_empty_sides(dtype):
    o_a, o_b = torch.randn(5, 3, 8).to(dtype), torch.randn(5, 3, 8).to(dtype)
    l_a, l_b = torch.randn(5, 3), torch.randn(5, 3)
    l_a[0] = -math.inf  # A empty: result is B
    l_b[1] = -math.inf  # B empty: result is A
    l_a[2, 0] = l_b[2, 0] = -math.inf  # both empty: 0 and -inf, no nan
    ro, rl = K.merge_states(o_a, l_a, o_b, l_b, backend="torch")
    o, lse = K.merge_states(o_a, l_a, o_b, l_b, backend="triton")
    torch.testing.assert_close(o.float(), ro.float(), **TOL[dtype])
    torch.testing.assert_close(lse, rl)
    torch.testing.assert_close(ro[0], o_b[0])
    torch.testing.assert_close(ro[1], o_a[1])
    assert torch.all(o[2, 0] == 0) and lse[2, 0] == -math.inf and not torch.isnan(o).any()


def _tree_case(dtype, backend):
    """Two groups of leaves under shared prompts, partial last prompt pages copied on write."""
    page_size, hkv, d = 4, 2, 16
    kc, vc = make_cache(num_pages=48, page_size=page_size, hkv=hkv, d=d, dtype=dtype, seed=3)
    free = iter(range(10, 48))
    rows, lens, plens, indptr = [], [], [10, 8, 5], [0]
    prompt_pages = [[0, 1, 2], [3, 4], [5, 6]]
    leaves_per_group = [5, 2, 0]
    suffixes = [[0, 3, 6, 1, 2], [4, 9], []]
    for g in range(3):
        for leaf in range(leaves_per_group[g]):
            pages = list(prompt_pages[g][: plens[g] // page_size])
            n_pages = -(-(plens[g] + suffixes[g][leaf]) // page_size)
            if plens[g] % page_size:  # the partial prompt page: copy on write into an own page
                dst = next(free)
                K.copy_pages([kc], [vc], torch.tensor([prompt_pages[g][-1]]), torch.tensor([dst]),
                             backend=backend)
                pages.append(dst)
            while len(pages) < n_pages:
                pages.append(next(free))
            rows.append(pages + [0] * (6 - len(pages)))
            lens.append(plens[g] + suffixes[g][leaf])
        indptr.append(indptr[-1] + leaves_per_group[g])
    bt = torch.tensor(rows, dtype=torch.int32)
    q = torch.randn(len(rows), 4, d).to(dtype)
    return (q, kc, vc, bt, torch.tensor(lens, dtype=torch.int32),
            torch.tensor(indptr, dtype=torch.int32), torch.tensor(plens, dtype=torch.int32))


def test_cascade_reference_matches_oracle():
    q, kc, vc, bt, lens, indptr, plens = _tree_case(torch.float32, "torch")
    o, lse = K.cascade_decode(q, kc, vc, bt, lens, indptr, plens, backend="torch")
    for b in range(q.shape[0]):
        ro, rl = oracle_attention(q[b : b + 1], kc, vc, bt[b], list(range(int(lens[b]))))
        torch.testing.assert_close(o[b].double(), ro[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse[b].double(), rl[0], atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
def test_cascade_triton_matches_plain_decode(dtype):
    q, kc, vc, bt, lens, indptr, plens = _tree_case(dtype, "triton")
    ro, rl = K.paged_decode_attention(q, kc, vc, bt, lens, backend="torch")
    for block_l in (None, 2):  # one tile per group, and several tiles per group
        o, lse = K.cascade_decode(q, kc, vc, bt, lens, indptr, plens, block_l=block_l,
                                  backend="triton")
        torch.testing.assert_close(o.float(), ro.float(), **TOL[dtype])
        torch.testing.assert_close(lse, rl, **TOL[dtype])


def test_cascade_rejects_leaves_not_sharing_prefix_pages():
    q, kc, vc, bt, lens, indptr, plens = _tree_case(torch.float32, "torch")
    bt[1, 0] = 40
    with pytest.raises(ValueError, match="share their full prefix pages"):
        K.cascade_decode(q, kc, vc, bt, lens, indptr, plens, backend="torch")
    with pytest.raises(ValueError, match="leaf_indptr"):
        K.cascade_decode(q, kc, vc, bt, lens, torch.tensor([0, 3, 3, 9]), plens, backend="torch")
    with pytest.raises(ValueError, match="longer than the leaf"):
        K.cascade_decode(q, kc, vc, bt, lens, indptr, torch.tensor([10, 30, 5]), backend="torch")


# ------------------------------------------------------------------------------------------
# KV store and page copies
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_store_kv_writes_slots_and_skips_padding(backend, dtype):
    kc = torch.zeros(4, 3, 2, 5, dtype=dtype)
    vc = torch.zeros_like(kc)
    k = torch.randn(4, 2, 5)  # float32 into a float16 cache: cast on store
    v = torch.randn(4, 2, 5)
    slots = torch.tensor([7, 0, -1, 11])
    K.store_kv(kc, vc, k, v.to(dtype), slots, backend=backend)
    torch.testing.assert_close(kc[2, 1], k[0].to(dtype))  # slot 7 = page 2, offset 1
    torch.testing.assert_close(vc[0, 0], v[1].to(dtype))
    torch.testing.assert_close(kc[3, 2], k[3].to(dtype))
    assert int((kc != 0).any(-1).any(-1).sum()) == 3  # exactly three slots written


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_copy_pages_all_layers(backend):
    layers = [make_cache(num_pages=6, seed=s) for s in range(2)]
    ks = [k.clone() for k, _ in layers]
    vs = [v.clone() for _, v in layers]
    K.copy_pages(ks, vs, torch.tensor([1, 4]), torch.tensor([5, 0]), backend=backend)
    for (k0, v0), k, v in zip(layers, ks, vs):
        torch.testing.assert_close(k[5], k0[1])
        torch.testing.assert_close(v[0], v0[4])
        torch.testing.assert_close(k[1:5], k0[1:5])  # untouched pages unchanged
    with pytest.raises(ValueError, match="both a source and a destination"):
        K.copy_pages(ks, vs, torch.tensor([1]), torch.tensor([1]), backend=backend)
    with pytest.raises(ValueError, match="dst_pages must be in"):
        K.copy_pages(ks, vs, torch.tensor([1]), torch.tensor([6]), backend=backend)


# ------------------------------------------------------------------------------------------
# Host-side checks
# ------------------------------------------------------------------------------------------
def test_bad_inputs_raise_value_error_before_launch():
    kc, vc = make_cache()
    q = torch.randn(2, 4, 16)
    bt = random_tables(2, 3, 24)
    lens = torch.tensor([5, 9], dtype=torch.int32)
    bad = bt.clone()
    bad[1, 2] = 24
    with pytest.raises(ValueError, match=r"block_table\[1, 2\] = 24"):
        K.paged_decode_attention(q, kc, vc, bad, lens, backend="triton" if K.HAS_TRITON else "torch")
    bad[1, 2] = -1
    with pytest.raises(ValueError, match="is not a page"):
        K.paged_decode_attention(q, kc, vc, bad, lens)
    with pytest.raises(ValueError, match="only 3 columns"):
        K.paged_decode_attention(q, kc, vc, bt, torch.tensor([5, 13], dtype=torch.int32))
    with pytest.raises(ValueError, match="multiple of KV heads"):
        K.paged_decode_attention(torch.randn(2, 3, 16), kc, vc, bt, lens)
    with pytest.raises(ValueError, match="dtype"):
        K.paged_decode_attention(q.half(), kc, vc, bt, lens)
    with pytest.raises(ValueError, match="dtype"):
        K.paged_decode_attention(q, kc, vc, bt.float(), lens)
    with pytest.raises(ValueError, match="sums to"):
        K.paged_extend_attention(torch.randn(7, 4, 16), kc, vc, bt, lens, lens)
    with pytest.raises(ValueError, match="backend must be"):
        K.paged_decode_attention(q, kc, vc, bt, lens, backend="cuda")
    with pytest.raises(ValueError, match="twice"):
        K.store_kv(kc, vc, torch.randn(2, 2, 16), torch.randn(2, 2, 16), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="beyond the cache"):
        K.store_kv(kc, vc, torch.randn(1, 2, 16), torch.randn(1, 2, 16), torch.tensor([96]))


# ------------------------------------------------------------------------------------------
# Expansion sampler
# ------------------------------------------------------------------------------------------
SAMPLER_CASES = [
    dict(),
    dict(top_k=5),
    dict(top_p=0.4, temperature=0.7),
    dict(mode="beam"),
    dict(temperature=torch.tensor([0.0, 1.0, 2.0, 0.5]), top_k=torch.tensor([0, 3, 10, 2]),
         top_p=torch.tensor([1.0, 0.9, 0.5, 1.0])),
]


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(SAMPLER_CASES)))
def test_sampler_triton_matches_reference_exactly(dtype, case):
    g = torch.Generator().manual_seed(case)
    logits = (torch.randn(4, 1500, generator=g) * 3).to(dtype)  # two vocabulary chunks
    boundary = torch.zeros(1500, dtype=torch.bool)
    boundary[::7] = True
    kw = dict(k=4, seed=123, boundary_mask=boundary, eos_token_ids=[0, 5], **SAMPLER_CASES[case])
    a = K.sample_expansion(logits, backend="triton", **kw)
    r = K.sample_expansion(logits, backend="torch", **kw)
    assert torch.equal(a.tokens, r.tokens)
    torch.testing.assert_close(a.logprobs, r.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.sample_logprobs, r.sample_logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.lse, r.lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.entropy, r.entropy, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.is_boundary, r.is_boundary) and torch.equal(a.is_eos, r.is_eos)


def test_sampler_statistics_against_hand_computed_values():
    logits = torch.tensor([[0.0, math.log(2.0), math.log(3.0), -math.inf]])
    s = K.sample_expansion(logits, 3, mode="beam", boundary_mask=torch.tensor([0, 1, 0, 0]),
                           eos_token_ids=torch.tensor([2]))
    assert s.tokens.tolist() == [[2, 1, 0]]
    p = torch.tensor([3 / 6, 2 / 6, 1 / 6])
    torch.testing.assert_close(s.logprobs[0], p.log())
    torch.testing.assert_close(s.lse, torch.tensor([math.log(6.0)]))
    torch.testing.assert_close(s.entropy, -(p * p.log()).sum()[None])
    assert s.is_boundary.tolist() == [[False, True, False]]
    assert s.is_eos.tolist() == [[True, False, False]]
    # only 3 tokens have mass: a 4th distinct child does not exist
    s4 = K.sample_expansion(logits, 4, seed=1)
    assert s4.tokens[0, 3] == -1 and s4.logprobs[0, 3] == -math.inf
    assert sorted(s4.tokens[0, :3].tolist()) == [0, 1, 2]


def test_sampler_filters_and_greedy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g)
    top5 = torch.topk(logits, 5).indices
    s = K.sample_expansion(logits, 2, top_k=5, seed=3)
    assert all(set(s.tokens[b].tolist()) <= set(top5[b].tolist()) for b in range(64))
    # sample_logprobs are renormalised over the 5 kept tokens
    kept = torch.log_softmax(logits.gather(1, top5), -1)
    expect = torch.stack([kept[b][(top5[b] == s.tokens[b, 0]).nonzero()[0, 0]] for b in range(64)])
    torch.testing.assert_close(s.sample_logprobs[:, 0], expect)
    greedy = K.sample_expansion(logits, 1, temperature=0.0, seed=9)
    assert torch.equal(greedy.tokens[:, 0], logits.argmax(-1))
    # top_p this small keeps only the argmax
    tiny = K.sample_expansion(logits, 2, top_p=1e-6, seed=4)
    assert torch.equal(tiny.tokens[:, 0], logits.argmax(-1)) and torch.all(tiny.tokens[:, 1] == -1)


def test_sampler_frequencies_follow_softmax():
    # Per-row seeds: 4000 independent draws of one distribution; Gumbel-max must be softmax.
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5]).repeat(4000, 1)
    s = K.sample_expansion(logits, 1, seed=torch.arange(4000), temperature=1.0)
    freq = torch.bincount(s.tokens[:, 0], minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.softmax(logits[0], 0), atol=0.03, rtol=0)


def test_sampler_noise_is_counter_based():
    logits = torch.randn(3, 40)
    seeds = torch.tensor([11, 22, 33])
    a = K.sample_expansion(logits, 3, seed=seeds)
    # the same request keeps its draw wherever it sits in the batch
    b = K.sample_expansion(logits[[2, 0]], 3, seed=seeds[[2, 0]])
    assert torch.equal(a.tokens[[2, 0]], b.tokens)
    c = K.sample_expansion(logits, 3, seed=seeds + 1)
    assert not torch.equal(a.tokens, c.tokens)
    u = K.gumbel_noise(torch.tensor([5, 6]), 1000)
    assert u.shape == (2, 1000) and abs(float(u.mean()) - 0.5772) < 0.12  # Euler–Mascheroni


def test_sampler_rejects_bad_arguments():
    logits = torch.randn(2, 10)
    for kw, err in [(dict(k=0), ValueError), (dict(k=11), ValueError), (dict(top_p=0.0), ValueError),
                    (dict(temperature=-1.0), ValueError), (dict(mode="nucleus"), ValueError),
                    (dict(boundary_mask=torch.zeros(10)), TypeError),
                    (dict(boundary_mask=torch.zeros(9, dtype=torch.bool)), ValueError),
                    (dict(seed=1.5), TypeError)]:
        with pytest.raises(err):
            K.sample_expansion(logits, **{"k": 1, **kw})


# ------------------------------------------------------------------------------------------
# Engine backend
# ------------------------------------------------------------------------------------------
@needs_triton
def test_engine_backend_matches_torch_backend():
    try:
        from o1search.engine.attention import TorchAttentionBackend
        from o1search.engine.triton_backend import TritonAttentionBackend
    except ImportError as exc:
        pytest.skip(f"o1search.engine not importable here: {exc}")
    ref, tri = TorchAttentionBackend(), TritonAttentionBackend(backend="triton")
    q, kc, vc, bt, prefix, ext = _extend_case()
    torch.testing.assert_close(tri.extend(q, kc, vc, bt, prefix, ext, 0.25),
                               ref.extend(q, kc, vc, bt, prefix, ext, 0.25), atol=1e-5, rtol=1e-5)
    qd = torch.randn(3, 4, 16)
    lens = prefix + ext + 1
    torch.testing.assert_close(tri.decode(qd, kc, vc, bt, lens, 0.25),
                               ref.decode(qd, kc, vc, bt, lens, 0.25), atol=1e-5, rtol=1e-5)
    bad = bt.clone()
    bad[0, 0] = 99  # a new table object is validated again
    with pytest.raises(ValueError):
        tri.decode(qd, kc, vc, bad, lens, 0.25)


# ------------------------------------------------------------------------------------------
# GPU
# ------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_kernels_match_references(dtype):
    dev = "cuda"
    kc = torch.randn(512, 16, 4, 128, device=dev, dtype=dtype)
    vc = torch.randn_like(kc)
    bt = torch.randperm(512, device=dev)[:8 * 64].view(8, 64).int()
    lens = torch.randint(1, 1024, (8,), device=dev, dtype=torch.int32)
    q = torch.randn(8, 32, 128, device=dev, dtype=dtype)
    o, lse = K.paged_decode_attention(q, kc, vc, bt, lens)
    ro, rl = K.paged_decode_attention(q, kc, vc, bt, lens, backend="torch")
    torch.testing.assert_close(o.float(), ro.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse, rl, atol=2e-2, rtol=2e-2)
    logits = torch.randn(8, 32000, device=dev)
    a = K.sample_expansion(logits, 4, top_p=0.9, seed=1)
    r = K.sample_expansion(logits, 4, top_p=0.9, seed=1, backend="torch")
    assert torch.equal(a.tokens, r.tokens)
