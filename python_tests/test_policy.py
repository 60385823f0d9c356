"""Tests of o1search.policy: the character tokenizer, the default policy, load_policy and
plain generation/evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from o1search.policy import (
    PolicyConfig,
    build_char_tokenizer,
    build_default_policy,
    default_policy_path,
    encode_prompt,
    evaluate_policy,
    format_prompt,
    generate_completions,
    load_policy,
)
from o1search.tasks import get_task

ALPHABET = "".join(sorted(set("0123456789+-*/= \nnumstargetanswercheckokwaitnot")))


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer(ALPHABET)


@pytest.fixture(scope="module")
def shipped():
    """The shipped default policy, the task it was trained on and its training report."""
    report = json.loads((default_policy_path() / "training_report.json").read_text())
    task = get_task(report["task"]["name"], **report["task"]["knobs"])
    model, tokenizer = load_policy()
    return model, tokenizer, task, report


# -- tokenizer ------------------------------------------------------------------------------
def test_char_tokenizer_ids_and_special_tokens(tok):
    # 4 specials then the sorted alphabet: ids are predictable by hand.
    assert len(tok) == 4 + len(ALPHABET)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    ids = tok("7*8=56\n")["input_ids"]
    assert ids == [1] + [4 + ALPHABET.index(c) for c in "7*8=56\n"]
    assert tok("ab", add_special_tokens=False)["input_ids"] == [4 + ALPHABET.index("a"), 3]


@pytest.mark.parametrize(
    "text",
    ["nums 3 7 8 target 60\n", "  two  cats ", "\n\n", "wait 3*4=12 not 13\nanswer 12\n", ""],
)
def test_char_tokenizer_round_trip_exact(tok, text):
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) + 1  # one token per character, plus <bos>
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids[1:]) == text  # no spaces inserted between characters


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_char_tokenizer_round_trip_property(text):
    t = build_char_tokenizer(ALPHABET)
    assert t.decode(t(text, add_special_tokens=False)["input_ids"]) == text


def test_char_tokenizer_unknown_chars_map_to_unk(tok):
    ids = tok("a#c", add_special_tokens=False)["input_ids"]
    assert ids[1] == tok.unk_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "ac"


def test_char_tokenizer_save_load(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "check 7*8=56 ok\nanswer 56\n"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.decode(again(text)["input_ids"], skip_special_tokens=True) == text
    assert (again.pad_token, again.bos_token, again.eos_token) == ("<pad>", "<bos>", "<eos>")


@pytest.mark.parametrize(
    ("alphabet", "exc", "match"),
    [("", ValueError, "empty"), (["ab"], ValueError, "single"), ([1], TypeError, "str")],
)
def test_char_tokenizer_bad_alphabet(alphabet, exc, match):
    with pytest.raises(exc, match=match):
        build_char_tokenizer(alphabet)


# -- default policy -------------------------------------------------------------------------
def test_build_default_policy_size_and_seed():
    task = get_task("countdown")
    model, tokenizer = build_default_policy(task)
    vocab, h, inter, layers = len(tokenizer), 64, 256, 2
    # Tied embedding + per layer (q,k,v,o + gate,up,down + 2 norms) + final norm.
    expected = vocab * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 130_000 < expected < 137_000
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tokenizer.decode(tokenizer(task.alphabet())["input_ids"][1:]) == task.alphabet()
    state = torch.get_rng_state()
    again, _ = build_default_policy(task)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed
    other, _ = build_default_policy(task, PolicyConfig(seed=1))
    w = model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(w, again.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(w, other.model.layers[0].self_attn.q_proj.weight)


def test_policy_config_size_knob_and_validation():
    model, _ = build_default_policy(None, PolicyConfig(hidden_size=32, num_layers=1,
                                                      num_heads=2, num_kv_heads=1))
    assert model.config.hidden_size == 32 and model.config.num_key_value_heads == 1
    with pytest.raises(ValueError, match="multiple of num_heads"):
        PolicyConfig(hidden_size=64, num_heads=5)
    with pytest.raises(ValueError, match="odd"):
        PolicyConfig(hidden_size=12, num_heads=4)
    with pytest.raises(ValueError, match="must divide"):
        PolicyConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(TypeError, match="PolicyConfig"):
        build_default_policy(None, {"hidden_size": 64})  # type: ignore[arg-type]


def test_shipped_policy_solves_countdown(shipped):
    model, tokenizer, task, report = shipped
    problems = task.problems("test")[:20]
    floor = 0.25
    trained = evaluate_policy(model, tokenizer, task, problems, max_new_tokens=80)
    assert trained.accuracy >= floor, trained.completions[:3]
    # The floor is out of reach of the same architecture untrained (the oracle check that
    # this test can fail).
    fresh, fresh_tok = build_default_policy(task)
    untrained = evaluate_policy(fresh, fresh_tok, task, problems, max_new_tokens=80)
    assert untrained.accuracy < floor
    assert report["greedy_accuracy"] > floor


def test_shipped_policy_files_small_and_offline():
    root = default_policy_path()
    total = sum(f.stat().st_size for f in root.iterdir() if f.is_file())
    assert total < 2 * 1024 * 1024
    assert (root / "tokenizer.json").is_file() and (root / "model.safetensors").is_file()


def test_load_policy_dtype_and_device(shipped):
    model, _ = load_policy(dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert not model.training
    with pytest.raises(TypeError, match="dtype"):
        load_policy(dtype=torch.int32)


# -- generation -----------------------------------------------------------------------------
def _greedy_reference(model, tokenizer, prompt, max_new_tokens):
    """Greedy decoding by full forward passes, no cache and no padding: the oracle."""
    ids = encode_prompt(tokenizer, prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
    return tokenizer.decode(out, skip_special_tokens=True)


def test_batched_greedy_matches_unbatched_reference(shipped):
    model, tokenizer, task, _ = shipped
    # Prompts of different lengths, so left padding is exercised.
    problems = sorted(task.problems("test")[:40], key=lambda p: len(p.question))
    prompts = [task.prompt(p) for p in (problems[0], problems[-1], problems[20])]
    assert len({len(p) for p in prompts}) > 1
    got = generate_completions(model, tokenizer, prompts, max_new_tokens=30)
    for prompt, row in zip(prompts, got):
        assert row == [_greedy_reference(model, tokenizer, prompt, 30)]


def test_sampling_is_seeded(shipped):
    model, tokenizer, task, _ = shipped
    prompts = [task.prompt(p) for p in task.problems("test")[:3]]
    a = generate_completions(model, tokenizer, prompts, num_samples=4, max_new_tokens=30, seed=3)
    b = generate_completions(model, tokenizer, prompts, num_samples=4, max_new_tokens=30, seed=3)
    assert a == b and len(a) == 3 and all(len(r) == 4 for r in a)
    with pytest.raises(ValueError, match="do_sample"):
        generate_completions(model, tokenizer, prompts, num_samples=2, do_sample=False)


# -- load_policy: other checkpoints and errors ---------------------------------------------
def _tiny_qwen2(tmp_path, *, chat_template=None):
    alphabet = ALPHABET + "<|>_"
    tokenizer = build_char_tokenizer(alphabet)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return model, tokenizer


def test_load_policy_qwen2_checkpoint(tmp_path):
    ref, ref_tok = _tiny_qwen2(tmp_path)
    model, tokenizer = load_policy(tmp_path)
    assert model.config.model_type == "qwen2"
    text = "nums 1 2 target 3\n"  # spaces: a byte-level re-interpretation would lose them
    assert tokenizer(text)["input_ids"] == ref_tok(text)["input_ids"]
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    ids = torch.tensor([ref_tok("nums 1 2 target 3\n")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits)
    assert format_prompt(tokenizer, "nums 1 2\n") == "nums 1 2\n"  # no chat template
    out = generate_completions(model, tokenizer, ["nums 1 2\n"], max_new_tokens=5)
    assert len(out) == 1 and isinstance(out[0][0], str)


def test_format_prompt_uses_chat_template(tmp_path):
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    _tiny_qwen2(tmp_path, chat_template=template)
    _, tokenizer = load_policy(tmp_path)
    assert format_prompt(tokenizer, "nums 1 2") == "<|user|>nums 1 2<|assistant|>"
    # A templated prompt is encoded without an extra <bos>: templates write their own.
    ids = encode_prompt(tokenizer, "nums 1 2")
    assert ids[0] != tokenizer.bos_token_id
    assert tokenizer.decode(ids) == "<|user|>nums 1 2<|assistant|>"
    with pytest.raises(TypeError):
        format_prompt(tokenizer, 3)  # type: ignore[arg-type]


def test_load_policy_bad_paths(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_policy(missing)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_policy("Qwen/Qwen2.5-0.5B-Instruct")  # a hub name is not fetched
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="file.txt"):
        load_policy(tmp_path / "file.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_policy(empty)
    (empty / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_policy(empty)
    model, tokenizer = build_default_policy(None, PolicyConfig(hidden_size=16, num_layers=1))
    model.save_pretrained(tmp_path / "notok")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_policy(tmp_path / "notok")
