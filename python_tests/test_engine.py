"""Engine tests: paged runner vs transformers logits, expansion vs model.generate, sampling,
generic fallback, bad input and page accounting (CPU, fp32, tiny random models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import o1search
from o1search.engine import (
    Engine,
    ExpandRequest,
    KVPool,
    ModelRunner,
    SamplingParams,
    StopRule,
    TorchAttentionBackend,
    get_attention_backend,
    register_attention_backend,
)
from o1search.engine.sampling import ExcludedSteps, sample_tokens, uniform_noise

transformers = pytest.importorskip("transformers")

VOCAB = 96


def _llama(**kw):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    cfg.update(kw)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))


def _qwen2(**kw):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128,
               tie_word_embeddings=True)
    cfg.update(kw)
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**cfg))


def _mistral(**kw):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
               sliding_window=9)  # short window: the tests' sequences cross it
    cfg.update(kw)
    return transformers.MistralForCausalLM(transformers.MistralConfig(**cfg))


MODELS = {
    "llama": lambda: _llama(),
    "qwen2": lambda: _qwen2(),
    "mistral": lambda: _mistral(),
    "llama3_rope": lambda: _llama(rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "linear_rope": lambda: _llama(rope_parameters={"rope_type": "linear", "rope_theta": 500.0,
                                                   "factor": 4.0}),
    "yarn_rope": lambda: _qwen2(rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
        "original_max_position_embeddings": 32}),
}


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    m = MODELS[name]().eval()
    # Larger-than-default weights make the tiny models' logits peaked, so greedy ties and
    # near-ties (which would make "same tokens" tests fragile) do not happen.
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.mul_(4.0)
    return m


_CACHE: dict = {}


def model_of(name: str):
    if name not in _CACHE:
        _CACHE[name] = _model(name)
    return _CACHE[name]


def hf_logits(model, tokens) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([list(tokens)])).logits[0].float()


def hf_greedy(model, prompt, n_new: int) -> list[int]:
    out = model.generate(torch.tensor([list(prompt)]), max_new_tokens=n_new, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def check_pages(engine: Engine, *, idle: bool = True) -> None:
    """Cache invariants hold and, between calls, no page is held or locked."""
    engine.cache.check()
    s = engine.cache.stats()
    assert s.free + s.evictable + s.locked == s.capacity
    if idle:
        assert s.free + s.evictable == s.capacity, s


def rand_tokens(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n,), generator=g).tolist()


# ------------------------------------------------------------------------- model runner
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("name", list(MODELS))
def test_runner_logits_match_transformers(name, page_size):
    model = model_of(name)
    runner = ModelRunner.for_model(model, num_pages=64, page_size=page_size)
    a, b = rand_tokens(27, 1), rand_tokens(21, 2)
    ref_a, ref_b = hf_logits(model, a), hf_logits(model, b)
    per = -(-40 // page_size)
    pages_a = list(range(per))[::-1]  # non-contiguous, reversed page order
    pages_b = list(range(per, 2 * per))
    # Prefill: a whole, b in part; then b's rest as an extend over its cached prefix
    # (prefix reuse, unaligned chunk boundary), then decode steps of both together.
    batch = runner.make_batch([(a[:25], 0, pages_a), (b[:11], 0, pages_b)])
    logits, _ = runner.forward(batch, rows=torch.arange(36))
    torch.testing.assert_close(logits[:25], ref_a[:25], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[25:], ref_b[:11], atol=1e-4, rtol=1e-4)
    batch = runner.make_batch([(b[11:20], 11, pages_b)])
    logits, _ = runner.forward(batch, rows=torch.arange(9))
    torch.testing.assert_close(logits, ref_b[11:20], atol=1e-4, rtol=1e-4)
    for step in range(2):
        batch = runner.make_batch([(a[25 + step:26 + step], 25 + step, pages_a),
                                   (b[20:21], 20, pages_b)][: 2 - step])
        assert batch.is_decode
        logits, _ = runner.forward(batch)
        torch.testing.assert_close(logits[0], ref_a[25 + step], atol=1e-4, rtol=1e-4)
        if step == 0:
            torch.testing.assert_close(logits[1], ref_b[20], atol=1e-4, rtol=1e-4)


def test_runner_hidden_states_and_weights_are_shared():
    model = model_of("qwen2")
    runner = ModelRunner.for_model(model, num_pages=8, page_size=16)
    toks = rand_tokens(10, 3)
    _, hidden = runner.forward(runner.make_batch([(toks, 0, [0])]), rows=torch.arange(10),
                               compute_logits=False)
    with torch.no_grad():
        ref = model(torch.tensor([toks]), output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(hidden, ref, atol=1e-4, rtol=1e-4)
    # The runner calls the model's modules: no copy of any weight.
    assert runner.layers[0].self_attn.q_proj.weight is model.model.layers[0].self_attn.q_proj.weight


def test_runner_rejects_bad_batches():
    model = model_of("llama")
    runner = ModelRunner.for_model(model, num_pages=8, page_size=4)
    with pytest.raises(ValueError, match="pages"):
        runner.make_batch([([1, 2, 3, 4, 5], 0, [0])])
    with pytest.raises(ValueError, match="vocab"):
        runner.make_batch([([1, VOCAB], 0, [0])])
    with pytest.raises(ValueError, match="max_position"):
        runner.make_batch([([1], 128, list(range(8)) * 5)])
    with pytest.raises(ValueError, match="no new tokens"):
        runner.make_batch([([], 0, [0])])
    with pytest.raises(ValueError, match="geometry"):
        ModelRunner(model, KVPool(2, 4, 4, 3, 16))
    with pytest.raises(ValueError, match="model_type"):
        ModelRunner.for_model(_gpt2(), num_pages=4, page_size=4)


# ------------------------------------------------------------------------- attention
def _naive_attention(q, k, v, q_pos, scale, window=None):
    """[E,Hq,D] queries at q_pos over [L,Hkv,D] keys at positions 0..L-1, plain loops."""
    hq, hkv = q.shape[1], k.shape[1]
    out = torch.zeros_like(q)
    for i, p in enumerate(q_pos):
        for h in range(hq):
            kh = h // (hq // hkv)
            keys = [j for j in range(k.shape[0]) if j <= p and (window is None or j > p - window)]
            s = torch.stack([(q[i, h] * k[j, kh]).sum() * scale for j in keys])
            w = torch.softmax(s, 0)
            out[i, h] = sum(w[n] * v[j, kh] for n, j in enumerate(keys))
    return out


@pytest.mark.parametrize("window", [None, 3])
def test_torch_backend_against_naive(window):
    torch.manual_seed(0)
    be = get_attention_backend("torch")
    ps, hq, hkv, d = 4, 4, 2, 8
    kc = torch.zeros(12, ps, hkv, d)
    vc = torch.zeros(12, ps, hkv, d)
    lens = [(5, 3), (0, 6)]  # (prefix, extend)
    tables = torch.tensor([[7, 2, 9, 0], [4, 11, 0, 0]], dtype=torch.int32)
    keys = [torch.randn(p + e, hkv, d) for p, e in lens]
    vals = [torch.randn(p + e, hkv, d) for p, e in lens]
    for b, (p, e) in enumerate(lens):
        slots = torch.tensor([int(tables[b, t // ps]) * ps + t % ps for t in range(p + e)])
        be.store_kv(kc, vc, keys[b], vals[b], slots)
    q = torch.randn(sum(e for _, e in lens), hq, d)
    out = be.extend(q, kc, vc, tables, torch.tensor([5, 0], dtype=torch.int32),
                    torch.tensor([3, 6], dtype=torch.int32), 0.3, sliding_window=window)
    ref0 = _naive_attention(q[:3], keys[0], vals[0], [5, 6, 7], 0.3, window)
    ref1 = _naive_attention(q[3:], keys[1], vals[1], list(range(6)), 0.3, window)
    torch.testing.assert_close(out, torch.cat([ref0, ref1]), atol=1e-5, rtol=1e-5)
    qd = torch.randn(2, hq, d)
    out = be.decode(qd, kc, vc, tables, torch.tensor([8, 6], dtype=torch.int32), 0.3,
                    sliding_window=window)
    ref = torch.cat([_naive_attention(qd[:1], keys[0], vals[0], [7], 0.3, window),
                     _naive_attention(qd[1:], keys[1], vals[1], [5], 0.3, window)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    be.copy_pages([kc], [vc], torch.tensor([7, 4]), torch.tensor([1, 3]))
    assert torch.equal(kc[1], kc[7]) and torch.equal(vc[3], vc[4])


def test_cascade_decode_matches_reference():
    torch.manual_seed(1)
    ps, hq, hkv, d = 4, 4, 2, 8
    kc, vc = torch.randn(40, ps, hkv, d), torch.randn(40, ps, hkv, d)
    # Segments: rows 0-2 share 3 pages (row 1 also a 4th page of its own), rows 3-4 share 2,
    # row 5 alone, row 6 starts like segment 0 but is not adjacent to it.
    bt = torch.tensor([[1, 2, 3, 10, 0], [1, 2, 3, 11, 12], [1, 2, 3, 13, 0], [5, 6, 14, 0, 0],
                       [5, 6, 15, 0, 0], [7, 16, 17, 0, 0], [1, 2, 18, 0, 0]],
                      dtype=torch.int32)
    lens = torch.tensor([14, 19, 13, 10, 9, 11, 8], dtype=torch.int32)
    q = torch.randn(7, hq, d)
    ref = TorchAttentionBackend().decode(q, kc, vc, bt, lens, 0.3)
    cascade = get_attention_backend("torch_cascade")
    assert cascade._make_plan(bt, lens, ps) is not None  # the two-level path really runs
    torch.testing.assert_close(cascade.decode(q, kc, vc, bt, lens, 0.3), ref, atol=1e-5,
                               rtol=1e-5)
    # A row that ends inside a shared page limits what its segment shares.
    lens2 = torch.tensor([14, 19, 5, 10, 9, 11, 8], dtype=torch.int32)
    torch.testing.assert_close(cascade.decode(q, kc, vc, bt, lens2, 0.3),
                               TorchAttentionBackend().decode(q, kc, vc, bt, lens2, 0.3),
                               atol=1e-5, rtol=1e-5)


def test_backend_registry():
    assert isinstance(get_attention_backend("auto", "cpu"), TorchAttentionBackend)
    assert get_attention_backend("torch").name == "torch"
    with pytest.raises(ValueError, match="unknown attention backend"):
        get_attention_backend("nope")

    def broken():
        raise ImportError("no such kernel")

    register_attention_backend("broken_for_test", broken)
    with pytest.raises(RuntimeError, match="cannot be loaded"):
        get_attention_backend("broken_for_test")
    with pytest.raises(ValueError):
        register_attention_backend("auto", broken)


# ------------------------------------------------------------------------- sampling
def test_sampling_params_validation():
    for bad in (dict(temperature=-1), dict(temperature=float("nan")), dict(top_p=0),
                dict(top_p=1.5), dict(top_k=-1), dict(top_k=2.5), dict(seed=-3),
                dict(seed=2 ** 64)):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    for bad in (dict(max_new_tokens=0), dict(step_delimiter=""), dict(step_delimiter=())):
        with pytest.raises(ValueError):
            StopRule(**bad)
    with pytest.raises(TypeError):
        StopRule(step_delimiter=[1.5])
    assert StopRule(step_delimiter=np.array([3, 4])).step_delimiter == (3, 4)


def test_noise_is_counter_based_and_uniform():
    a = uniform_noise([(7, 0, 0), (7, 1, 0), (7, 0, 1)], 50)
    b = uniform_noise([(7, 0, 1)], 50)
    assert torch.equal(a[2], b[0])  # row depends only on its key
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    u = uniform_noise([(1, i, 0) for i in range(200)], 500).flatten()
    assert 0 <= float(u.min()) and float(u.max()) < 1
    hist = torch.histc(u.float(), bins=10, min=0, max=1) / u.numel()
    assert torch.all((hist - 0.1).abs() < 0.01), hist


def test_gumbel_sampling_matches_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 6000
    keys = [(11, i, 0) for i in range(n)]
    params = [SamplingParams(temperature=0.7)] * n
    toks, logp, raw = sample_tokens(logits.expand(n, -1), params, keys)
    freq = torch.bincount(toks, minlength=5).double() / n
    p = torch.softmax(logits / 0.7, 0).double()
    assert torch.all((freq - p).abs() < 4 * torch.sqrt(p * (1 - p) / n) + 1e-3), (freq, p)
    torch.testing.assert_close(logp, torch.log(p.float())[toks])
    torch.testing.assert_close(raw, torch.log_softmax(logits, 0)[toks])


def test_excluded_steps_trie_mass_by_hand():
    # Known steps (1, 2) and (1, 3), p(1) = .5, p(2|1) = p(3|1) = .25: M(1) = .5, M() = .25.
    ex = ExcludedSteps([((1, 2), (math.log(.5), math.log(.25))),
                        ((1, 3), (math.log(.5), math.log(.25)))])
    assert ex.remaining == pytest.approx(0.75) and ex.num_steps == 2
    assert ex.bias(()) == {1: pytest.approx(math.log(0.5))}
    assert ex.bias((1,)) == {2: -math.inf, 3: -math.inf}
    assert ex.bias((0,)) is None and ex.bias((1, 4)) is None
    with pytest.raises(ValueError, match="as many"):
        ExcludedSteps([((1, 2), (-0.1,))])
    with pytest.raises(ValueError, match="<= 0"):
        ExcludedSteps([((1,), (0.5,))])


def test_sampling_without_replacement_matches_the_conditional_distribution():
    # A 2-token "model" with fixed next-token distributions; known sequences K are excluded.
    # Oracle: P(s | s not in K) = p(s) / (1 - p(K)) over every 2-token sequence.
    p1 = torch.tensor([0.5, 0.3, 0.2])
    p2 = {0: torch.tensor([0.6, 0.3, 0.1]), 1: torch.tensor([0.2, 0.2, 0.6]),
          2: torch.tensor([1 / 3, 1 / 3, 1 / 3])}
    known = [(0, 0), (1, 2), (0, 1)]
    ex = ExcludedSteps([(k, (math.log(p1[k[0]]), math.log(p2[k[0]][k[1]]))) for k in known])
    pk = sum(float(p1[a] * p2[a][b]) for a, b in known)
    assert ex.remaining == pytest.approx(1 - pk)
    n = 6000
    params = [SamplingParams(temperature=1.0)] * n
    first, lp1, _ = sample_tokens(torch.log(p1).expand(n, -1), params,
                                  [(5, i, 0) for i in range(n)], [ex.bias(())] * n)
    logits2 = torch.stack([torch.log(p2[int(a)]) for a in first])
    second, lp2, _ = sample_tokens(logits2, params, [(5, i, 1) for i in range(n)],
                                   [ex.bias((int(a),)) for a in first])
    # The reported log-probabilities are the unbiased ones (what the trie is built from).
    torch.testing.assert_close(lp1, torch.log(p1)[first])
    counts: dict = {}
    for a, b in zip(first.tolist(), second.tolist()):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    assert not set(counts) & set(known)
    for a in range(3):
        for b in range(3):
            if (a, b) in known:
                continue
            q = float(p1[a] * p2[a][b]) / (1 - pk)
            f = counts.get((a, b), 0) / n
            assert abs(f - q) < 4 * math.sqrt(q * (1 - q) / n) + 1e-3, ((a, b), f, q)
    # A row whose every token is ruled out falls back to the plain distribution.
    tok, _, _ = sample_tokens(torch.log(p1)[None], params[:1], [(1, 0, 0)],
                              [{0: -math.inf, 1: -math.inf, 2: -math.inf}])
    assert int(tok) in (0, 1, 2)


def test_top_k_top_p_truncation():
    torch.manual_seed(0)
    logits = torch.randn(3, 40)
    n = 300
    rows = logits.repeat_interleave(n, 0)
    keys = [(5, i, 0) for i in range(3 * n)]
    top_k = [SamplingParams(top_k=4)] * (3 * n)
    toks, logp, _ = sample_tokens(rows, top_k, keys)
    allowed = logits.topk(4, dim=1).indices.repeat_interleave(n, 0)
    assert bool((allowed == toks[:, None]).any(1).all())
    # Renormalised over the top 4.
    expect = torch.log_softmax(logits.topk(4, dim=1).values, 1)
    for r in range(3):
        got = logp[r * n:(r + 1) * n]
        assert set(np.round(got.numpy(), 4)) <= set(np.round(expect[r].numpy(), 4))
    top_p = [SamplingParams(top_p=0.5)] * (3 * n)
    toks, _, _ = sample_tokens(rows, top_p, keys)
    probs = torch.softmax(logits, 1)
    for r in range(3):
        sp, idx = probs[r].sort(descending=True)
        keep = int(((torch.cumsum(sp, 0) - sp) < 0.5).sum())
        nucleus = set(idx[:keep].tolist())
        got = set(toks[r * n:(r + 1) * n].tolist())
        assert got <= nucleus and len(got) == len(nucleus)  # all of it is reachable
    greedy, glogp, graw = sample_tokens(logits, [SamplingParams(temperature=0)] * 3,
                                        [(0, 0, 0)] * 3)
    assert torch.equal(greedy, logits.argmax(1))
    torch.testing.assert_close(glogp, graw)


# ------------------------------------------------------------------------- expansion
def make_engine(name="llama", **kw):
    kw.setdefault("num_pages", 256)
    kw.setdefault("page_size", 1)
    kw.setdefault("eos_token_ids", [])
    return Engine(model_of(name), None, **kw)


@pytest.mark.parametrize("name,page_size,backend", [
    ("llama", 1, "torch"), ("llama", 16, "torch_cascade"), ("qwen2", 4, "torch_cascade"),
    ("mistral", 16, "torch")])
def test_greedy_multistep_matches_generate(name, page_size, backend):
    model = model_of(name)
    eng = make_engine(name, page_size=page_size, attention_backend=backend)
    prompt = rand_tokens(13, 4)
    ref = hf_greedy(model, prompt, 5 * 6)
    path = list(prompt)
    greedy = SamplingParams(temperature=0)
    for step in range(5):
        res = eng.expand([ExpandRequest(path, 2, greedy, StopRule(max_new_tokens=6)),
                          ExpandRequest(rand_tokens(5 + step, 50 + step), 1, greedy,
                                        StopRule(max_new_tokens=3))])
        check_pages(eng)
        s0, s1 = res[0].samples
        assert s0.tokens == s1.tokens and s0.finish_reason == "length"
        assert len(s0.tokens) == 6
        if step > 0:
            # The chosen child was cached by the previous call: only the unaligned tail of
            # the path (at least one token) is prefilled.
            assert res[0].cached_tokens >= ((len(path) - 1) // page_size) * page_size - page_size
            assert res[0].prefilled_tokens <= 2 * page_size + 1
        path += s0.tokens
        # Raw logprobs are the model's own.
    assert path[len(prompt):] == ref
    lp = torch.log_softmax(hf_logits(model, path), -1)
    want = [float(lp[len(path) - 6 + i - 1, t]) for i, t in enumerate(path[-6:])]
    np.testing.assert_allclose(s0.raw_logprobs, want, atol=1e-4)
    np.testing.assert_allclose(s0.logprobs, want, atol=1e-4)


def test_counters_and_prefix_sharing():
    eng = make_engine("llama", page_size=4)
    prompt = rand_tokens(22, 5)
    r = eng.expand([ExpandRequest(prompt, 4, SamplingParams(seed=3), StopRule(max_new_tokens=5))])
    st = eng.last_stats
    assert (st.prefilled_tokens, st.reused_tokens) == (22, 0)
    assert st.generated_tokens == 20 and st.decoded_tokens == 16  # last token never forwarded
    assert r[0].prefilled_tokens == 22
    check_pages(eng)
    # Same prompt again: everything but the unaligned tail comes from the cache.
    eng.expand([ExpandRequest(prompt, 2, SamplingParams(seed=4), StopRule(max_new_tokens=3))])
    assert eng.last_stats.reused_tokens == 20 and eng.last_stats.prefilled_tokens == 2
    # A child's expansion reuses the pages its sample inserted.
    child = prompt + r[0].samples[1].tokens
    r2 = eng.expand([ExpandRequest(child, 1, SamplingParams(seed=5),
                                   StopRule(max_new_tokens=2))])
    assert r2[0].cached_tokens == 24 and eng.last_stats.prefilled_tokens == 3
    assert eng.stats.requests == 3 and eng.stats.forwarded_tokens == (
        eng.stats.prefilled_tokens + eng.stats.decoded_tokens)
    check_pages(eng)


def test_seeded_sampling_independent_of_batch():
    prompt_a, prompt_b = rand_tokens(17, 6), rand_tokens(9, 7)
    req = ExpandRequest(prompt_a, 3, SamplingParams(temperature=1.0, top_k=20, seed=42),
                        StopRule(max_new_tokens=8))
    alone = make_engine("qwen2", page_size=4).expand([req])[0]
    others = [ExpandRequest(prompt_b, 5, SamplingParams(temperature=0.8, seed=1),
                            StopRule(max_new_tokens=11)),
              ExpandRequest(prompt_a[:9], 2, SamplingParams(temperature=0), StopRule(max_new_tokens=4))]
    # Small token budget: requests wait, join and leave the batch at different times.
    eng = make_engine("qwen2", page_size=4, max_batch_tokens=7)
    mixed = eng.expand(others + [req])[2]
    check_pages(eng)
    assert [s.tokens for s in alone.samples] == [s.tokens for s in mixed.samples]
    for a, b in zip(alone.samples, mixed.samples):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
    assert len({tuple(s.tokens) for s in alone.samples}) > 1  # samples differ from each other
    different = make_engine("qwen2", page_size=4).expand(
        [ExpandRequest(prompt_a, 3, SamplingParams(temperature=1.0, top_k=20, seed=43),
                       StopRule(max_new_tokens=8))])[0]
    assert [s.tokens for s in different.samples] != [s.tokens for s in alone.samples]


def test_expand_without_replacement_never_redraws_known_steps():
    eng = make_engine("llama", page_size=4)
    prompt = rand_tokens(21, 6)
    sp = SamplingParams(temperature=0.5, seed=3)
    stop = StopRule(max_new_tokens=3)
    first = eng.expand([ExpandRequest(prompt, 4, sp, stop)])[0]
    known = {tuple(s.tokens): s.logprobs for s in first.samples}
    # The same seed redraws the same samples; excluding them gives only new ones, with the
    # same log-probabilities the plain distribution gives them.
    again = eng.expand([ExpandRequest(prompt, 4, sp, stop)])[0]
    assert [tuple(s.tokens) for s in again.samples] == [tuple(s.tokens) for s in first.samples]
    ex = ExcludedSteps(list(known.items()))
    fresh = eng.expand([ExpandRequest(prompt, 4, sp, stop, ex)])[0]
    assert all(tuple(s.tokens) not in known for s in fresh.samples)
    model = model_of("llama")
    for s in fresh.samples:
        logits = hf_logits(model, prompt + s.tokens)
        expect = [float(torch.log_softmax(logits[len(prompt) + i - 1] / 0.5, 0)[t])
                  for i, t in enumerate(s.tokens)]
        np.testing.assert_allclose(s.logprobs, expect, atol=1e-4)
    check_pages(eng)
    with pytest.raises(TypeError, match="exclude"):
        ExpandRequest(prompt, 1, sp, stop, exclude=[((1,), (-0.1,))])


def test_top_k_respected_in_expand():
    model = model_of("llama")
    eng = make_engine("llama", page_size=16)
    prompt = rand_tokens(10, 8)
    res = eng.expand([ExpandRequest(prompt, 6, SamplingParams(temperature=2.0, top_k=3, seed=9),
                                    StopRule(max_new_tokens=5))])[0]
    for s in res.samples:
        logits = hf_logits(model, prompt + s.tokens)
        for i, t in enumerate(s.tokens):
            assert t in logits[len(prompt) + i - 1].topk(3).indices.tolist()
            expect = torch.log_softmax(logits[len(prompt) + i - 1].topk(3).values / 2.0, 0)
            assert min(abs(s.logprobs[i] - float(e)) for e in expect) < 1e-4


def test_stop_rules():
    model = model_of("llama")
    prompt = rand_tokens(8, 10)
    ref = hf_greedy(model, prompt, 12)
    delim = ref[4]
    cut = ref.index(delim) + 1
    eng = make_engine("llama", page_size=4)
    greedy = SamplingParams(temperature=0)
    s = eng.expand([ExpandRequest(prompt, 1, greedy,
                                  StopRule(step_delimiter=[delim], max_new_tokens=12))])[0].samples[0]
    assert s.tokens == ref[:cut] and s.finish_reason == "stop"
    two = ref[3:5]  # a two-token delimiter

    class Tok:
        eos_token_id = None

        def encode(self, text, add_special_tokens=False):
            assert text == "<step>" and not add_special_tokens
            return two

    eng2 = Engine(model, Tok(), num_pages=64, page_size=4, eos_token_ids=[])
    s = eng2.expand([ExpandRequest(prompt, 1, greedy,
                                   StopRule(step_delimiter="<step>", max_new_tokens=12))])[0]
    first = next(i for i in range(1, 12) if ref[i - 1:i + 1] == two)
    assert s.samples[0].tokens == ref[:first + 1] and s.samples[0].finish_reason == "stop"
    eng3 = make_engine("llama", page_size=4, eos_token_ids=[ref[2]])
    s = eng3.expand([ExpandRequest(prompt, 1, greedy, StopRule(max_new_tokens=12))])[0].samples[0]
    assert s.tokens == ref[:ref.index(ref[2]) + 1] and s.finish_reason == "eos"
    s = eng3.expand([ExpandRequest(prompt, 1, greedy, StopRule(stop_at_eos=False,
                                                               max_new_tokens=5))])[0].samples[0]
    assert s.tokens == ref[:5] and s.finish_reason == "length"
    steps = eng.generate_steps([prompt, np.array(prompt)], 2, greedy,
                               StopRule(stop_at_eos=False, max_new_tokens=3))
    assert [[s.tokens for s in st] for st in steps] == [[ref[:3]] * 2] * 2
    with pytest.raises(ValueError, match="tokenizer"):
        eng3.expand([ExpandRequest(prompt, 1, greedy, StopRule(step_delimiter="x"))])
    for e in (eng, eng2, eng3):
        check_pages(e)


def test_bad_input_and_no_leaks():
    eng = make_engine("llama", num_pages=40, page_size=4)
    ok = ExpandRequest(rand_tokens(6, 11), 2, SamplingParams(seed=0), StopRule(max_new_tokens=3))
    with pytest.raises(ValueError, match="empty"):
        ExpandRequest([], 1)
    with pytest.raises(ValueError, match="n must be"):
        ExpandRequest([1, 2], 0)
    with pytest.raises(TypeError, match="text"):
        ExpandRequest("hello", 1)
    with pytest.raises(TypeError):
        ExpandRequest([1.5, 2], 1)
    with pytest.raises(ValueError, match="vocab_size"):
        eng.expand([ok, ExpandRequest([1, VOCAB + 3], 1)])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        eng.expand([ExpandRequest(list(range(3, 90)) * 2, 1)])
    with pytest.raises(TypeError, match="ExpandRequest"):
        eng.expand([ok, (1, 2, 3)])
    check_pages(eng)
    eng.expand([ok])  # fill the cache a little
    # 3 samples x 60 new tokens need ~45 pages of a 40-page pool: refused, nothing leaks.
    with pytest.raises(o1search.OutOfPagesError, match="pages"):
        eng.expand([ok, ExpandRequest(rand_tokens(30, 12), 3, SamplingParams(seed=1),
                                      StopRule(max_new_tokens=60))])
    check_pages(eng)
    # A failure in the middle of decoding (bad logits from a broken sampler) also releases all.
    import o1search.engine.sequences as engine_mod  # the paged decode samples here

    real = engine_mod.sample_tokens
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*a, **k)

    engine_mod.sample_tokens = flaky
    try:
        with pytest.raises(RuntimeError, match="boom"):
            eng.expand([ok, ExpandRequest(rand_tokens(9, 13), 3, SamplingParams(seed=2),
                                          StopRule(max_new_tokens=6))])
    finally:
        engine_mod.sample_tokens = real
    check_pages(eng)
    # Still works after the errors, and long requests wait for pages (continuous batching).
    reqs = [ExpandRequest(rand_tokens(9, 20 + i), 2, SamplingParams(seed=i),
                          StopRule(max_new_tokens=12)) for i in range(4)]
    res = eng.expand(reqs)
    assert all(len(s.tokens) == 12 for r in res for s in r.samples)
    check_pages(eng)
    with pytest.raises(ValueError):
        Engine(model_of("llama"), None, num_pages=0, page_size=4)
    with pytest.raises(ValueError, match="unknown attention backend"):
        Engine(model_of("llama"), None, num_pages=4, attention_backend="cudnn9000")


def test_score_logprobs_hidden_and_reuse():
    model = model_of("qwen2")
    eng = make_engine("qwen2", page_size=4)
    seq = rand_tokens(26, 14)
    lp = torch.log_softmax(hf_logits(model, seq), -1)
    want = np.array([float(lp[i - 1, seq[i]]) for i in range(1, 26)])
    r = eng.score([seq, seq[:7]])
    np.testing.assert_allclose(r[0].logprobs, want, atol=1e-4)
    np.testing.assert_allclose(r[1].logprobs, want[:6], atol=1e-4)
    assert list(r[0].positions) == list(range(1, 26)) and r[0].cached_tokens == 0
    check_pages(eng)
    # Positions late in the sequence: the prefix now comes from the cache.
    r = eng.score([seq], positions=[[24, 25]])
    assert r[0].cached_tokens == 20 and eng.last_stats.prefilled_tokens == 6
    np.testing.assert_allclose(r[0].logprobs, want[23:25], atol=1e-4)
    with torch.no_grad():
        ref_h = model(torch.tensor([seq]), output_hidden_states=True).hidden_states[-1][0]
    h = eng.score([seq], positions=[[3, 25]], hidden_states=True)[0]
    torch.testing.assert_close(h.hidden_states, ref_h[[3, 25]], atol=1e-4, rtol=1e-4)
    check_pages(eng)
    with pytest.raises(ValueError, match="outside"):
        eng.score([seq], positions=[[0]])
    with pytest.raises(ValueError, match="empty"):
        eng.score([[]])
    check_pages(eng)


def test_load_weights_flushes_cache():
    model = _model("llama", seed=1)
    other = _model("llama", seed=2)
    eng = Engine(model, None, num_pages=64, page_size=1, eos_token_ids=[])
    prompt = rand_tokens(12, 15)
    greedy = SamplingParams(temperature=0)
    eng.expand([ExpandRequest(prompt, 1, greedy, StopRule(max_new_tokens=4))])
    eng.load_weights(other.state_dict())
    res = eng.expand([ExpandRequest(prompt, 1, greedy, StopRule(max_new_tokens=8))])
    assert eng.last_stats.reused_tokens == 0
    assert res[0].samples[0].tokens == hf_greedy(other, prompt, 8)
    with pytest.raises(ValueError, match="load_weights"):
        eng.load_weights({"model.embed_tokens.weight": torch.zeros(3, 3)})
    check_pages(eng)


# ------------------------------------------------------------------------- generic path
def _gpt2():
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=128)).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.mul_(4.0)
    return m


def test_generic_fallback_gpt2():
    model = _gpt2()
    eng = Engine(model, None, num_pages=64, page_size=4, eos_token_ids=[])
    assert not eng.is_paged and "gpt2" in eng.fallback_reason
    prompt = rand_tokens(11, 16)
    ref = hf_greedy(model, prompt, 15)
    path = list(prompt)
    greedy = SamplingParams(temperature=0)
    for step in range(3):
        res = eng.expand([ExpandRequest(path, 2, greedy, StopRule(max_new_tokens=5))])
        assert res[0].samples[0].tokens == res[0].samples[1].tokens
        if step:
            assert eng.last_stats.reused_tokens == len(path) - 1
            assert eng.last_stats.prefilled_tokens == 1
        path += res[0].samples[0].tokens
    assert path[len(prompt):] == ref
    seeded = ExpandRequest(prompt, 3, SamplingParams(seed=7, top_p=0.9),
                           StopRule(max_new_tokens=6))
    a = eng.expand([seeded])[0]
    b = Engine(model, None, num_pages=64, page_size=4, eos_token_ids=[]).expand([seeded])[0]
    assert [s.tokens for s in a.samples] == [s.tokens for s in b.samples]
    lp = torch.log_softmax(hf_logits(model, path), -1)
    r = eng.score([path], positions=[[5, len(path) - 1]])[0]
    np.testing.assert_allclose(r.logprobs, [float(lp[4, path[5]]), float(lp[-2, path[-1]])],
                               atol=1e-4)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        eng.expand([ExpandRequest(list(range(3, 90)) * 2, 1)])


def test_unsupported_rope_uses_generic_path():
    model = _llama(rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0,
                                    "factor": 2.0}).eval()
    eng = Engine(model, None, num_pages=16, page_size=4, eos_token_ids=[])
    assert not eng.is_paged and "dynamic" in eng.fallback_reason
    prompt = rand_tokens(6, 17)
    res = eng.expand([ExpandRequest(prompt, 1, SamplingParams(temperature=0),
                                    StopRule(max_new_tokens=4))])
    assert res[0].samples[0].tokens == hf_greedy(model, prompt, 4)
    assert math.isfinite(res[0].samples[0].logprob)


# ------------------------------------------------------------------------- triton backend
def test_triton_backend_gives_the_same_tokens_as_torch():
    """The Engine with the Triton kernels (run by the interpreter on CPU) samples the same
    tokens as with the torch reference backend, page size > 1 so copy-on-write is exercised."""
    pytest.importorskip("triton")
    from o1search.engine.triton_backend import TritonAttentionBackend

    # Force the Triton kernels on CPU tensors (the registered factory would pick the torch
    # references there).
    register_attention_backend("triton_forced_for_test", lambda: TritonAttentionBackend(backend="triton"))
    prompt = rand_tokens(11, 7)
    req = [ExpandRequest(prompt, 3, SamplingParams(temperature=1.0, seed=5), StopRule(max_new_tokens=4))]
    out = {}
    for backend in ("torch", "triton_forced_for_test"):
        eng = make_engine("qwen2", page_size=4, attention_backend=backend)
        first = eng.expand(req)[0]
        # A second call extends a chosen child through the cache (prefix reuse + extend).
        child = prompt + first.samples[0].tokens
        second = eng.expand([ExpandRequest(child, 2, SamplingParams(temperature=0), StopRule(max_new_tokens=3))])[0]
        check_pages(eng)
        out[backend] = ([s.tokens for s in first.samples], [s.tokens for s in second.samples],
                        [s.raw_logprobs for s in first.samples])
    assert out["torch"][0] == out["triton_forced_for_test"][0]
    assert out["torch"][1] == out["triton_forced_for_test"][1]
    for a, b in zip(out["torch"][2], out["triton_forced_for_test"][2]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_the_generic_path_is_announced_once_per_model_and_reason():
    import warnings as w

    from o1search.engine import engine as engine_mod

    engine_mod._WARNED.clear()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    with pytest.warns(RuntimeWarning, match="GPT2LMHeadModel runs on the generic"):
        eng = Engine(model, None, num_pages=8, page_size=4)
    assert eng.fallback_reason and eng.fallback_reason in str(engine_mod._WARNED)
    with w.catch_warnings():
        w.simplefilter("error")
        Engine(model, None, num_pages=8, page_size=4)  # the second one is silent
