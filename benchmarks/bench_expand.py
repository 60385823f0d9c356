"""Step-level tree search workload: o1search Engine vs per-node model.generate vs per-node
DynamicCache copies. Prints one JSON object.

Workload (default): 8 problems with a ~200-token prompt, step-level beam search with beam
width 4 and 4 samples per beam, 6 steps of exactly 24 tokens (max_new_tokens=24, no EOS),
on a randomly initialised Llama (4 layers, hidden 256) in fp32.

Methods, all driving the same tree shape (every step keeps the first sample of each of the
first 4 parents' ... i.e. 4 beams picked by a fixed rule, so each method does the same logical
work):

* ``engine``: one ``Engine.expand`` call per search step carrying every beam of every problem
  (prefix reuse through the RadixCache, continuous batching).
* ``generate``: ``model.generate(full path, num_return_sequences=4)`` per node, i.e. how a search
  loop without a prefix cache drives a model.
* ``dynamic_cache``: per node, the parent's ``DynamicCache`` (computed once, when the node was
  generated) is deep-copied for each child, which then decodes alone (batch 1).

Forwarded tokens are the tokens the model computed (prefill + decode inputs).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch


def build_model(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=256, intermediate_size=688,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=2048)
    return LlamaForCausalLM(cfg).to(args.device).eval()


def prompts(args):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, args.vocab, (args.prompt_len,), generator=g).tolist()
            for _ in range(args.problems)]


def select(children: list[list[int]], beam: int) -> list[list[int]]:
    """Fixed selection rule (same work for every method): children 0, n, 2n, ... first."""
    step = max(len(children) // beam, 1)
    return [children[i * step] for i in range(beam)]


def run_engine(model, args):
    from o1search.engine import Engine, ExpandRequest, SamplingParams, StopRule

    eng = Engine(model, None, num_pages=args.num_pages, page_size=args.page_size,
                 max_batch_tokens=args.max_batch_tokens, eos_token_ids=[])
    stop = StopRule(stop_at_eos=False, max_new_tokens=args.step_tokens)
    beams = [[p] for p in prompts(args)]
    t0 = time.perf_counter()
    for step in range(args.steps):
        reqs, owners = [], []
        for prob, paths in enumerate(beams):
            n = args.samples * args.beam if step == 0 else args.samples
            for path in paths:
                reqs.append(ExpandRequest(path, n, SamplingParams(seed=step * 1000 + prob),
                                          stop))
                owners.append(prob)
        results = eng.expand(reqs)
        children: list[list[list[int]]] = [[] for _ in beams]
        for req, res, prob in zip(reqs, results, owners, strict=True):
            for s in res.samples:
                children[prob].append(list(req.prefix) + s.tokens)
        beams = [select(c, args.beam) for c in children]
    wall = time.perf_counter() - t0
    st = eng.stats
    return {"wall_s": wall, "forwarded_tokens": st.forwarded_tokens,
            "prefilled_tokens": st.prefilled_tokens, "reused_tokens": st.reused_tokens,
            "decoded_tokens": st.decoded_tokens, "generated_tokens": st.generated_tokens,
            "forward_calls": st.forward_calls}


def run_generate(model, args):
    beams = [[p] for p in prompts(args)]
    forwarded = 0
    generated = 0
    calls = 0
    t0 = time.perf_counter()
    for step in range(args.steps):
        new_beams = []
        for paths in beams:
            n = args.samples * args.beam if step == 0 else args.samples
            children = []
            for path in paths:
                ids = torch.tensor([path], device=args.device)
                out = model.generate(ids, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                     num_return_sequences=n, max_new_tokens=args.step_tokens,
                                     min_new_tokens=args.step_tokens, eos_token_id=None,
                                     pad_token_id=0)
                calls += 1
                forwarded += n * (len(path) + args.step_tokens - 1)
                generated += n * args.step_tokens
                children.extend(out[i].tolist() for i in range(n))
            new_beams.append(select(children, args.beam))
        beams = new_beams
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "forwarded_tokens": forwarded, "generated_tokens": generated,
            "generate_calls": calls}


@torch.inference_mode()
def run_dynamic_cache(model, args):
    from transformers import DynamicCache

    forwarded = 0
    g = torch.Generator(device="cpu").manual_seed(2)
    # A node = (path, cache holding KV of path[:-1]).
    beams = []
    t0 = time.perf_counter()
    for p in prompts(args):
        cache = DynamicCache(config=model.config)
        model(torch.tensor([p[:-1]], device=args.device), past_key_values=cache, use_cache=True)
        forwarded += len(p) - 1
        beams.append([(p, cache)])
    for step in range(args.steps):
        new_beams = []
        for nodes in beams:
            n = args.samples * args.beam if step == 0 else args.samples
            children = []
            for path, cache in nodes:
                for _ in range(n):
                    c = copy.deepcopy(cache)
                    toks = list(path)
                    for _ in range(args.step_tokens):
                        out = model(torch.tensor([[toks[-1]]], device=args.device),
                                    past_key_values=c, use_cache=True)
                        forwarded += 1
                        probs = torch.softmax(out.logits[0, -1].float().cpu(), -1)
                        toks.append(int(torch.multinomial(probs, 1, generator=g)))
                    children.append((toks, c))
            new_beams.append(select(children, args.beam))
        beams = new_beams
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "forwarded_tokens": forwarded,
            "generated_tokens": args.problems * args.steps * args.beam * args.samples
            * args.step_tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="small run (smoke test)")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=200)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--step-tokens", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--num-pages", type=int, default=2048)
    ap.add_argument("--max-batch-tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", nargs="*", default=[], choices=["generate", "dynamic_cache"])
    args = ap.parse_args()
    if args.quick:
        args.problems, args.steps, args.prompt_len = 2, 2, 64
    torch.set_num_threads(args.threads)
    model = build_model(args)
    out = {"workload": {k: getattr(args, k) for k in ("problems", "prompt_len", "beam",
                                                        "samples", "steps", "step_tokens",
                                                        "vocab", "page_size", "device",
                                                        "threads")},
           "model": "llama 4 layers, hidden 256, 4 heads, fp32, random init"}
    # Warm-up (allocator, lazy imports) so the first measured method is not penalised.
    warm = argparse.Namespace(**{**vars(args), "problems": 1, "steps": 1, "prompt_len": 16,
                                 "num_pages": 64})
    run_engine(model, warm)
    run_generate(model, warm)
    out["engine"] = run_engine(model, args)
    base = None
    if "generate" not in args.skip:
        out["generate"] = base = run_generate(model, args)
    if "dynamic_cache" not in args.skip:
        out["dynamic_cache"] = run_dynamic_cache(model, args)
    e = out["engine"]
    ratios = {}
    for name in ("generate", "dynamic_cache"):
        if name in out:
            ratios[f"{name}_over_engine_forwarded_tokens"] = (
                out[name]["forwarded_tokens"] / e["forwarded_tokens"])
            ratios[f"{name}_over_engine_wall"] = out[name]["wall_s"] / e["wall_s"]
    out["ratios"] = ratios
    if base is not None:
        out["targets"] = {
            "forwarded_tokens_5x": ratios["generate_over_engine_forwarded_tokens"] >= 5,
            "wall_3x": ratios["generate_over_engine_wall"] >= 3,
        }
    print(json.dumps(out, indent=2), flush=True)


if __name__ == "__main__":
    main()
