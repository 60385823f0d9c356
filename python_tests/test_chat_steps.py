"""Steps and prompts for chat models: string step delimiters matched on decoded text (BPE
tokenizers merge "\\n\\n" into one token, so the lone "\\n" id never appears), final answers
found the way chat models write them, and prompts rendered with the chat template by default.

Oracles: the tokenizer itself (decoding each returned step, independently of the engine's
windowed check) and hand-written chat renderings."""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from o1search.engine import Engine, ExpandRequest, SamplingParams, StopRule
from o1search.search import EngineGenerator, problems_from_task
from o1search.search.adapters import CHAT_FINAL_MARKERS

CORPUS = ["Step one: add 3 and 4.\n\nStep two: the sum is 7.\n\nThe answer is 7.\n",
          "First, 2 times 5 is 10.\n\nThen subtract 1.\n\nSo \\boxed{9}.\n"] * 50


@pytest.fixture(scope="module")
def merging_tokenizer():
    """A byte-level BPE trained here: it merges "\\n\\n" (and "\\n" with text)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>")
    return fast


def _tiny_llama(vocab_size: int) -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)).eval()


def test_the_tokenizer_really_merges_newlines(merging_tokenizer):
    tok = merging_tokenizer
    ids = tok.encode("Then subtract 1.\n\nSo", add_special_tokens=False)
    (lone,) = tok.encode("\n", add_special_tokens=False)
    assert lone not in ids  # the id-only delimiter test could never end this step
    assert any("\n" in tok.decode([t]) for t in ids)


def test_string_delimiter_ends_steps_on_merged_tokens(merging_tokenizer):
    tok = merging_tokenizer
    model = _tiny_llama(len(tok))
    engine = Engine(model, tok, num_pages=2048, page_size=8, max_batch_tokens=512)
    prefix = tok.encode("Step one: add 3 and 4.", add_special_tokens=False)
    (lone,) = tok.encode("\n", add_special_tokens=False)
    merged = {t for t in range(len(tok)) if "\n" in tok.decode([t]) and t != lone}
    (res,) = engine.expand([ExpandRequest(prefix, 256, SamplingParams(temperature=1.5, seed=3),
                                          StopRule(step_delimiter="\n", stop_at_eos=False,
                                                   max_new_tokens=24))])
    ended_on_merged = 0
    for s in res.samples:
        toks = list(s.tokens)
        # The oracle: the tokenizer's own decoding of each whole step.
        if s.finish_reason == "stop":
            assert "\n" in tok.decode(toks[-1:]) or "\n" in tok.decode(toks)
            assert "\n" not in tok.decode(toks[:-1])  # it ended at the first occurrence
            ended_on_merged += toks[-1] in merged
        else:
            assert s.finish_reason == "length" and len(toks) == 24
            assert "\n" not in tok.decode(toks)
    assert ended_on_merged > 0  # merged tokens were drawn and did end steps


def test_final_markers_and_final_prefix_on_text(merging_tokenizer):
    tok = merging_tokenizer

    class NoEngine:
        max_positions = 1000

    gen = EngineGenerator(NoEngine(), tok, step_delimiter="\n", final_prefix="The answer",
                          final_markers=CHAT_FINAL_MARKERS)
    enc = lambda t: tok.encode(t, add_special_tokens=False)  # noqa: E731
    assert gen._has_final(enc("So \\boxed{9}.\n"), at_step_start=True)
    assert gen._has_final(enc("then.\n\nThe answer is 7."), at_step_start=True)
    assert gen._has_final(enc("#### 7"), at_step_start=True)
    assert not gen._has_final(enc("Then subtract 1.\n\n"), at_step_start=True)
    with pytest.raises(ValueError, match="non-empty"):
        EngineGenerator(NoEngine(), tok, final_markers=("",))
    with pytest.raises(ValueError, match="tokenizer"):
        EngineGenerator(NoEngine(), None, step_delimiter=(5,), final_markers=("####",))


def test_problems_from_task_applies_the_chat_template(merging_tokenizer):
    tok = merging_tokenizer
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}")

    class Task:
        def prompt(self, p):
            return f"What is {p}?"

    class P:
        id = "p1"

        def __str__(self):
            return "3+4"

    (sp,) = problems_from_task(Task(), [P()], tok)
    assert tok.decode(list(sp.prompt)) == "<s>user: What is 3+4?\n<s>assistant: "
    (sp,) = problems_from_task(Task(), [P()], tok, system_prompt="Be brief.")
    assert tok.decode(list(sp.prompt)) == ("<s>system: Be brief.\n<s>user: What is 3+4?\n"
                                          "<s>assistant: ")
    (sp,) = problems_from_task(Task(), [P()], tok, encode=lambda t: tok.encode(t))
    assert tok.decode(list(sp.prompt)) == "What is 3+4?"  # an explicit encoder wins
    tok.chat_template = None


def _oracle_step_ends(tok, toks, text):
    """Step ends by decoding each whole step so far (no window): the first token at which the
    step's text contains ``text`` ends it."""
    ends, start = [], 0
    for i in range(len(toks)):
        if text in tok.decode(toks[start:i + 1]):
            ends.append(i)
            start = i + 1
    return ends


def test_step_scorers_split_text_delimiters_on_merged_tokens(merging_tokenizer):
    """PRMs and the internal-guidance evaluators find the same step ends as the engine stops
    at, on a tokenizer whose "\\n" steps end inside merged tokens."""
    from o1search.reward import ConfidenceEvaluator, ProcessRewardModel
    from o1search.reward.evaluators import step_end_positions

    tok = merging_tokenizer
    model = _tiny_llama(len(tok))
    engine = Engine(model, tok, num_pages=512, page_size=8, max_batch_tokens=512)
    prm = ProcessRewardModel(model, tok, step_delimiter="\n", use_engine=False)
    conf = ConfidenceEvaluator(engine, step_delimiter="\n")
    (lone,) = tok.encode("\n", add_special_tokens=False)
    prompt = tok.encode("Q:", add_special_tokens=False)
    differs = 0
    for text in ["Then subtract 1.\n\nSo", "Step two: the sum is 7.\n\nThen subtract 1.\n",
                 "a\n\nb\nc\n\n\nd", "no delimiter at all"]:
        comp = tok.encode(text, add_special_tokens=False)
        want = _oracle_step_ends(tok, comp, "\n")
        tail = [] if not comp or (want and want[-1] == len(comp) - 1) else [len(comp) - 1]
        expect = [len(prompt) + e for e in want + tail] or [len(prompt) - 1]
        assert prm.step_ends(prompt, comp) == expect, text
        assert conf.step_ends(prompt, comp) == expect, text
        # The id-only split misses merged "\n\n" tokens: the case this guards against.
        differs += step_end_positions(comp, (lone,), offset=len(prompt)) != expect
    assert differs >= 1
    # A loaded PRM keeps the text delimiter (saved as text, not as the lone id).
    assert prm._reward_config()["step_delimiter"] == "\n"
