"""Times each kernel against its torch reference (and flash-attn where installed) on a GPU.

Question answered: how much faster are the Triton kernels than the torch references they
replace, and how much KV traffic does cascade decode save over plain paged decode on a search
tree's shape (many leaves under one long prompt)?

    python benchmarks/bench_kernels.py --device cuda [--leaves 64 --prefix 2048 ...]

Prints one JSON object. Without a GPU it prints a JSON note saying so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
try:
    import o1search.kernels as K
except ImportError:  # native core not built: the kernels do not need it
    import kernels as K  # type: ignore[no-redef]


def _time_ms(fn, iters: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after warm-up (compilation), CUDA-synced."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    samples.sort()
    return samples[len(samples) // 2]


def _entry(triton_ms: float, baseline_ms: float, baseline: str, **extra) -> dict:
    return {"triton_ms": round(triton_ms, 4), f"{baseline}_ms": round(baseline_ms, 4),
            "speedup": round(baseline_ms / triton_ms, 2), **extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    ap.add_argument("--leaves", type=int, default=64, help="leaves under the shared prompt")
    ap.add_argument("--prefix", type=int, default=2048, help="shared prompt tokens")
    ap.add_argument("--suffix", type=int, default=64, help="own tokens per leaf")
    ap.add_argument("--q-heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=152064)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    if not (args.device.startswith("cuda") and torch.cuda.is_available() and K.HAS_TRITON):
        print(json.dumps({"benchmark": "kernels", "skipped": True,
                          "reason": "needs a CUDA GPU and triton (run with --device cuda on a GPU)"}))
        return 0
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    B, P, S, ps = args.leaves, args.prefix, args.suffix, args.page_size
    Hq, Hkv, D = args.q_heads, args.kv_heads, args.head_dim
    elem = torch.finfo(dtype).bits // 8
    torch.manual_seed(0)

    # A search tree: one prompt (shared full pages), B leaves each with S own tokens.
    prefix_pages = -(-P // ps)
    own_pages = -(-(P + S) // ps) - P // ps
    num_pages = prefix_pages + B * own_pages + 8
    kc = torch.randn(num_pages, ps, Hkv, D, device=dev, dtype=dtype)
    vc = torch.randn_like(kc)
    shared = torch.arange(P // ps, device=dev)
    rows = [torch.cat([shared, prefix_pages + b * own_pages + torch.arange(own_pages, device=dev)])
            for b in range(B)]
    bt = torch.stack(rows).int()
    if P % ps:  # leaves' copy of the partial prompt page holds the prompt's tokens
        K.copy_pages([kc], [vc], torch.full((B,), P // ps, device=dev), bt[:, P // ps])
    lens = torch.full((B,), P + S, device=dev, dtype=torch.int32)
    q = torch.randn(B, Hq, D, device=dev, dtype=dtype)
    scale = D ** -0.5
    out: dict = {"benchmark": "kernels", "device": torch.cuda.get_device_name(dev),
                 "dtype": args.dtype, "config": vars(args)}

    # Paged decode: Triton vs torch reference (vs flash-attn when installed).
    t = _time_ms(lambda: K.paged_decode_attention(q, kc, vc, bt, lens, scale, check=False), args.iters)
    r = _time_ms(lambda: K.paged_decode_attention(q, kc, vc, bt, lens, scale, backend="torch"),
                 args.iters)
    kv_plain = int(lens.sum()) * Hkv * D * 2 * elem
    out["paged_decode"] = _entry(t, r, "torch", kv_bytes_read=kv_plain,
                                 kv_gbps=round(kv_plain / t / 1e6, 1))
    if K.flash_attn_available():
        fps = 256
        fpages = -(-(P + S) // fps)
        fk = torch.randn(B * fpages, fps, Hkv, D, device=dev, dtype=dtype)
        fv = torch.randn_like(fk)
        fbt = torch.arange(B * fpages, device=dev, dtype=torch.int32).view(B, fpages)
        f = _time_ms(lambda: K.flash_decode_attention(q, fk, fv, fbt, lens, scale, check=False),
                     args.iters)
        t256 = _time_ms(lambda: K.paged_decode_attention(q, fk, fv, fbt, lens, scale, check=False),
                        args.iters)
        out["paged_decode_page256"] = _entry(t256, f, "flash_attn")
    else:
        out["paged_decode_page256"] = {"flash_attn": "not installed"}

    # Cascade decode vs plain paged decode (both Triton) on the tree.
    indptr = torch.tensor([0, B], device=dev, dtype=torch.int32)
    plen = torch.tensor([P], device=dev, dtype=torch.int32)
    c = _time_ms(lambda: K.cascade_decode(q, kc, vc, bt, lens, indptr, plen, scale, check=False),
                 args.iters)
    rows_per_tile = 64
    block_l = max(1, min(B, rows_per_tile // (Hq // Hkv)))
    tiles = -(-B // block_l)
    kv_cascade = (P * tiles + B * S) * Hkv * D * 2 * elem
    out["cascade_decode"] = {
        "cascade_ms": round(c, 4), "plain_decode_ms": round(t, 4), "speedup": round(t / c, 2),
        "kv_bytes_read": kv_cascade, "plain_kv_bytes_read": kv_plain,
        "kv_read_ratio": round(kv_plain / kv_cascade, 2),
    }

    # Extend: each leaf appends 64 tokens after its prompt (a prefill of new steps).
    E = 64
    ext = torch.full((B,), E, device=dev, dtype=torch.int32)
    pre = torch.full((B,), P + S - E, device=dev, dtype=torch.int32)
    qe = torch.randn(B * E, Hq, D, device=dev, dtype=dtype)
    t = _time_ms(lambda: K.paged_extend_attention(qe, kc, vc, bt, pre, ext, scale, check=False),
                 args.iters)
    r = _time_ms(lambda: K.paged_extend_attention(qe, kc, vc, bt, pre, ext, scale, backend="torch"),
                 max(3, args.iters // 4))
    out["paged_extend"] = _entry(t, r, "torch", tokens=B * E)

    # Sampler: B rows of a full vocabulary, 4 distinct children each, top-p 0.95.
    logits = torch.randn(B, args.vocab, device=dev, dtype=torch.float32) * 3
    bmask = torch.zeros(args.vocab, device=dev, dtype=torch.bool)
    bmask[:100] = True
    kw = dict(k=4, top_p=0.95, temperature=0.8, seed=1, boundary_mask=bmask, eos_token_ids=[2])
    t = _time_ms(lambda: K.sample_expansion(logits, **kw), args.iters)
    r = _time_ms(lambda: K.sample_expansion(logits, backend="torch", **kw), args.iters)
    out["sampler_top_p"] = _entry(t, r, "torch")
    kw = dict(k=4, temperature=0.8, seed=1)
    t = _time_ms(lambda: K.sample_expansion(logits, **kw), args.iters)
    r = _time_ms(lambda: K.sample_expansion(logits, backend="torch", **kw), args.iters)
    out["sampler_no_filter"] = _entry(t, r, "torch")

    # KV store (one decode step of B tokens) and copy-on-write page copies.
    kn = torch.randn(B, Hkv, D, device=dev, dtype=dtype)
    slots = (bt[:, -1].long() * ps)
    t = _time_ms(lambda: K.store_kv(kc, vc, kn, kn, slots, check=False), args.iters)
    r = _time_ms(lambda: K.store_kv(kc, vc, kn, kn, slots, backend="torch", check=False), args.iters)
    out["store_kv"] = _entry(t, r, "torch")
    src = bt[:, -1].long()
    dst = torch.arange(num_pages - 8, num_pages, device=dev)
    t = _time_ms(lambda: K.copy_pages([kc] * 4, [vc] * 4, src[:8], dst, backend="triton"), args.iters)
    r = _time_ms(lambda: K.copy_pages([kc] * 4, [vc] * 4, src[:8], dst, backend="torch"), args.iters)
    out["copy_pages_4_layers"] = _entry(t, r, "torch")
    out["wall_s"] = round(time.perf_counter() - _T0, 2)
    print(json.dumps(out, indent=2))
    return 0


_T0 = time.perf_counter()

if __name__ == "__main__":
    sys.exit(main())
