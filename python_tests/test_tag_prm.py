"""Math-Shepherd-format PRMs (:class:`o1search.reward.TagStepPRM`): a causal LM that scores a
step tag after each step by a good token against a bad one.

Oracle: the same LM's ``transformers`` forward on the tagged text built independently, as a
string (``"question step1 ки\\nstep2 ки"`` in Math-Shepherd's layout), tokenized once."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from o1search.protocols import EvalRequest
from o1search.reward import ProcessRewardModel, TagStepPRM


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=" ", behavior="isolated"),
        pre_tokenizers.Split(pattern="\n", behavior="isolated")])
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "</s>", "ки"],
                                  initial_alphabet=list("+-\n 0123456789="))
    tok.train_from_iterator(["2 + 3 = 5\n5 - 1 = 4\n", "1 + 1 = 2\n"] * 20, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>",
                                                unk_token="<unk>")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)).eval()
    path = tmp_path_factory.mktemp("shepherd")
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model, fast, path


def _oracle(model, tok, text: str, tag="ки", good="+", bad="-") -> list[float]:
    ids = tok.encode(text, add_special_tokens=False)
    tag_id, g, b = (tok.convert_tokens_to_ids(x) for x in (tag, good, bad))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    out = []
    for i, t in enumerate(ids):
        if t == tag_id:
            lg, lb = float(logits[i, g]), float(logits[i, b])
            out.append(1.0 / (1.0 + math.exp(lb - lg)))
    return out


def test_step_values_match_the_tagged_text_forward(tiny_prm):
    model, tok, _ = tiny_prm
    prm = TagStepPRM(model, tok, step_delimiter="\n")
    prompt = tok.encode("1 + 1 = 2\n", add_special_tokens=False)
    completion = tok.encode("2 + 3 = 5\n5 - 1 = 4\n", add_special_tokens=False)
    (vals,) = prm.score_steps([prompt], [completion])
    want = _oracle(model, tok, "1 + 1 = 2\n2 + 3 = 5\nки5 - 1 = 4\nки")
    assert len(vals) == 2 and len(want) == 2
    assert vals == pytest.approx(want, abs=1e-6)
    assert all(0.0 < v < 1.0 for v in vals)
    # A trailing unfinished step is scored too; aggregation "min" is the path value.
    c2 = tok.encode("2 + 3 = 5\n5 - 1", add_special_tokens=False)
    (v2,) = prm.score_steps([prompt], [c2])
    assert list(v2) == pytest.approx(_oracle(model, tok, "1 + 1 = 2\n2 + 3 = 5\nки5 - 1ки"),
                                     abs=1e-6)
    (val,) = prm.evaluate([EvalRequest(None, tuple(prompt), tuple(c2), False)])
    assert val == pytest.approx(min(v2))


def test_from_pretrained_reads_either_format(tiny_prm, tmp_path):
    model, tok, path = tiny_prm
    prm = ProcessRewardModel.from_pretrained(path)  # no reward config: Math-Shepherd's
    assert isinstance(prm, TagStepPRM) and prm.good_id == tok.convert_tokens_to_ids("+")
    swapped = ProcessRewardModel.from_pretrained(path, format="math-shepherd",
                                                 good_token="-", bad_token="+")
    p = tok.encode("1 + 1 = 2\n", add_special_tokens=False)
    c = tok.encode("2 + 3 = 5\n", add_special_tokens=False)
    (a,), (b,) = prm.score_steps([p], [c]), swapped.score_steps([p], [c])
    assert a[0] + b[0] == pytest.approx(1.0)  # the two bets are complementary
    own = ProcessRewardModel(model, tok, step_delimiter="\n")
    own.save(tmp_path / "own")
    assert type(ProcessRewardModel.from_pretrained(tmp_path / "own")) is ProcessRewardModel
    with pytest.raises(ValueError, match="one token"):
        TagStepPRM(model, tok, good_token="2 + 3")
    with pytest.raises(ValueError, match="same token"):
        TagStepPRM(model, tok, good_token="+", bad_token="+")
    with pytest.raises(ValueError, match="format"):
        ProcessRewardModel.from_pretrained(path, format="gguf")
