"""Tests of o1search.learn: SFT (loss masking, learning, determinism, schedule, logging)
and atomic checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest
import torch

from o1search.learn import (
    SFTConfig,
    SFTTrainer,
    encode_example,
    load_checkpoint,
    save_checkpoint,
    train_sft,
)
from o1search import checkpoint as ckpt_mod
from o1search.learn import sft as sft_mod
from o1search.learn.sft import _lr_factor, completion_token_losses
from o1search.policy import PolicyConfig, build_default_policy, generate_completions

TINY = PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                    max_position_embeddings=64)
EXAMPLES = [
    ("nums 1 2 target 3\n", "1+2=3\nanswer 3\n"),
    ("nums 4 5 target 20\n", "4*5=20\nanswer 20\n"),
    ("nums 9 3 target 3\n", "9/3=3\nanswer 3\n"),
    ("nums 7 8 target 15\n", "7+8=15\nanswer 15\n"),
]


def tiny_policy(seed=0):
    return build_default_policy(None, dataclasses.replace(TINY, seed=seed))


def quiet(**kw):
    return SFTConfig(progress=False, **kw)


# -- encoding and loss ----------------------------------------------------------------------
def test_encode_example_masks_the_prompt():
    _, tok = tiny_policy()
    ex = encode_example(tok, "ab\n", "1+2=3\n")
    assert ex.prompt_len == 4  # <bos> a b \n
    assert ex.input_ids[0] == tok.bos_token_id and ex.input_ids[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[ex.prompt_len : -1]) == "1+2=3\n"
    cut = encode_example(tok, "ab\n", "1+2=3\n", max_length=6)
    assert cut.truncated and len(cut.input_ids) == 6
    with pytest.raises(ValueError, match="max_length"):
        encode_example(tok, "a" * 10, "1", max_length=5)
    with pytest.raises(TypeError, match="str"):
        encode_example(tok, "a", 3)  # type: ignore[arg-type]


def test_first_step_loss_is_completion_only_nll():
    """The first logged loss (before any update) equals the mean NLL of completion+EOS tokens
    computed independently with the transformers model's own loss."""
    model, tok = tiny_policy()
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, completion in EXAMPLES:
            p = tok(prompt)["input_ids"]
            c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            labels = torch.tensor([[-100] * len(p) + c])
            out = model(torch.tensor([p + c]), labels=labels)
            total += float(out.loss) * len(c)  # HF averages over the labelled tokens
            count += len(c)
    result = train_sft(model, tok, EXAMPLES, quiet(max_steps=1, batch_size=8))
    assert result.losses[0] == pytest.approx(total / count, rel=1e-5)
    assert result.tokens == count


def test_completion_token_losses_padding_does_not_leak():
    model, tok = tiny_policy()
    a = encode_example(tok, *EXAMPLES[0])
    b = encode_example(tok, "nums 10 10 10 target 30\n", "10+10=20\n")
    trainer = SFTTrainer(model, tok, quiet(max_steps=1))
    ids, attn, mask = trainer._collate([a, b], [0, 1], torch.device("cpu"))
    with torch.no_grad():
        batched = completion_token_losses(model, ids, attn, mask)
        n = len(a.input_ids)
        alone = completion_token_losses(model, *[t[:1, :n] for t in (ids, attn, mask)])
    torch.testing.assert_close(batched[0, : len(a.input_ids) - 1], alone[0])
    assert torch.all(batched[0, len(a.input_ids) - 1 :] == 0)


# -- learning -------------------------------------------------------------------------------
def test_sft_memorizes_and_changes_weights():
    model, tok = tiny_policy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_sft(model, tok, EXAMPLES,
                       quiet(max_steps=120, batch_size=4, learning_rate=1e-2, warmup_steps=10))
    assert result.steps == 120 and result.stop_reason == "max_steps"
    assert result.losses[-1] < 0.05 < 1.0 < result.losses[0]
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)
    assert not model.training
    got = generate_completions(model, tok, [p for p, _ in EXAMPLES], max_new_tokens=20)
    assert [g[0] for g in got] == [c for _, c in EXAMPLES]


def test_sft_same_seed_same_weights_other_seed_differs():
    def run(seed):
        model, tok = tiny_policy()
        train_sft(model, tok, EXAMPLES * 3, quiet(max_steps=6, batch_size=3, seed=seed))
        return model.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_grad_accumulation_equals_big_batch():
    m1, tok = tiny_policy()
    m2, _ = tiny_policy()
    train_sft(m1, tok, EXAMPLES, quiet(max_steps=1, batch_size=4))
    train_sft(m2, tok, EXAMPLES, quiet(max_steps=1, batch_size=2, grad_accum_steps=2))
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-6, msg=k)


def test_token_budget_batches_cover_each_example_once():
    model, tok = tiny_policy()
    examples = [(f"nums {i} target {i}\n", "x" * (i % 7)) for i in range(50)]
    trainer = SFTTrainer(model, tok, quiet(max_steps=1, batch_tokens=80, max_length=40))
    data = trainer.encode(examples)
    batches = trainer._epoch_batches(data, 0)
    assert sorted(i for b in batches for i in b) == list(range(50))
    for b in batches:
        assert len(b) * max(len(data[i].input_ids) for i in b) <= 80
    assert trainer._epoch_batches(data, 0) == batches != trainer._epoch_batches(data, 1)


def test_lr_schedule_values():
    cfg = SFTConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert _lr_factor(0, 100, cfg) == pytest.approx(0.1)
    assert _lr_factor(9, 100, cfg) == pytest.approx(1.0)
    assert _lr_factor(10, 100, cfg) == pytest.approx(1.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))  # halfway through the decay
    assert _lr_factor(55, 100, cfg) == pytest.approx(mid)
    assert _lr_factor(100, 100, cfg) == pytest.approx(0.1)
    lin = SFTConfig(max_steps=100, lr_schedule="linear", min_lr_ratio=0.0)
    assert _lr_factor(50, 100, lin) == pytest.approx(0.5)
    assert _lr_factor(50, 100, SFTConfig(max_steps=100, lr_schedule="constant")) == 1.0


def test_jsonl_log_and_epochs(tmp_path):
    model, tok = tiny_policy()
    log = tmp_path / "logs" / "sft.jsonl"
    result = train_sft(model, tok, EXAMPLES,
                       quiet(num_epochs=3, batch_size=2, log_every=2, log_path=str(log),
                             warmup_steps=4))
    assert result.steps == 6 and result.stop_reason == "epochs"
    assert result.epochs == pytest.approx(3.0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["step"] for x in lines[:-1]] == [2, 4, 6]
    assert lines[0]["lr"] == pytest.approx(1e-3 * 2 / 4)  # the lr used by step 2 of 4 warmup
    assert lines[1]["loss"] == pytest.approx(sum(result.losses[2:4]) / 2)
    assert lines[-1]["event"] == "end" and lines[-1]["steps"] == 6


def test_max_seconds_stops_early():
    model, tok = tiny_policy()
    result = train_sft(model, tok, EXAMPLES,
                       quiet(max_steps=10**6, batch_size=2, max_seconds=0.3,
                             lr_schedule="constant"))
    assert result.stop_reason == "max_seconds"
    assert 1 <= result.steps < 10**6 and result.seconds >= 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_steps": 5, "num_epochs": 1}, "not both"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"batch_tokens": 10, "max_length": 64}, "raise batch_tokens"),
        ({"save_every": 5}, "output_dir"),
        ({"max_grad_norm": 0.0}, "None for no clipping"),
        ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SFTConfig(**kwargs)


def test_bad_examples():
    model, tok = tiny_policy()
    with pytest.raises(ValueError, match="non-empty"):
        train_sft(model, tok, [], quiet(max_steps=1))
    with pytest.raises(ValueError, match="pair"):
        train_sft(model, tok, [("a", "b", "c")], quiet(max_steps=1))
    with pytest.raises(TypeError, match="str"):
        train_sft(model, tok, [("a", None)], quiet(max_steps=1))
    with pytest.raises(TypeError, match="SFTConfig"):
        SFTTrainer(model, tok, {"max_steps": 1})  # type: ignore[arg-type]


# -- checkpoints ----------------------------------------------------------------------------
def _logits(model):
    with torch.no_grad():
        return model(torch.tensor([[1, 5, 6, 7]])).logits


def test_checkpoint_round_trip_with_extra_state(tmp_path):
    model, tok = tiny_policy()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[1, 5, 6]])).logits.sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck", model, tok, {"step": 7, "optimizer": opt.state_dict()},
                           extra_files={"report.json": '{"a": 1}'})
    ck = load_checkpoint(path)
    torch.testing.assert_close(_logits(ck.model), _logits(model))
    assert ck.extra_state["step"] == 7
    state = ck.extra_state["optimizer"]["state"][0]["exp_avg"]
    torch.testing.assert_close(state, opt.state_dict()["state"][0]["exp_avg"])
    assert json.loads((path / "report.json").read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # nothing left beside it
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert os.stat(path / "model.safetensors").st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(ValueError, match="plain file"):
        save_checkpoint(tmp_path / "ck", model, tok, extra_files={"../x": ""})


def test_crash_while_writing_keeps_old_checkpoint(tmp_path, monkeypatch):
    old, tok = tiny_policy(seed=0)
    new, _ = tiny_policy(seed=1)
    path = save_checkpoint(tmp_path / "ck", old, tok, {"step": 1})
    real = type(new).save_pretrained

    def write_half_then_die(self, directory, **kw):
        real(self, directory, **kw)
        weights = os.path.join(directory, "model.safetensors")
        with open(weights, "r+b") as f:  # a torn write: half the file, then the crash
            f.truncate(os.path.getsize(weights) // 2)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(type(new), "save_pretrained", write_half_then_die)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, new, tok, {"step": 2})
    monkeypatch.undo()
    ck = load_checkpoint(path)
    torch.testing.assert_close(_logits(ck.model), _logits(old))
    assert ck.extra_state["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_crash_between_renames_recovers_old_checkpoint(tmp_path, monkeypatch):
    old, tok = tiny_policy(seed=0)
    new, _ = tiny_policy(seed=1)
    path = save_checkpoint(tmp_path / "ck", old, tok, {"step": 1})
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old checkpoint is aside, the new one not yet in place
            raise KeyboardInterrupt("power cut (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, new, tok, {"step": 2})
    monkeypatch.undo()
    assert not path.exists()  # the crash window really was hit
    ck = load_checkpoint(path)  # puts the backup back
    torch.testing.assert_close(_logits(ck.model), _logits(old))
    assert ck.extra_state["step"] == 1
    # A stray temporary directory from a hard crash is cleaned by the next save.
    (tmp_path / ".ck.tmp-stray").mkdir()
    save_checkpoint(path, new, tok, {"step": 3})
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    torch.testing.assert_close(_logits(load_checkpoint(path).model), _logits(new))


def test_trainer_writes_checkpoints(tmp_path):
    model, tok = tiny_policy()
    out = tmp_path / "run"
    result = train_sft(model, tok, EXAMPLES,
                       quiet(max_steps=4, batch_size=2, output_dir=str(out), save_every=2))
    assert result.checkpoint == str(out)
    ck = load_checkpoint(out)
    assert ck.extra_state["step"] == 4 and "optimizer" in ck.extra_state
    torch.testing.assert_close(_logits(ck.model), _logits(model))


def test_resume_gives_the_uninterrupted_weights(tmp_path, monkeypatch):
    cfg = dict(max_steps=6, batch_size=3, warmup_steps=2, learning_rate=5e-3)
    straight, tok = tiny_policy()
    train_sft(straight, tok, EXAMPLES * 2, quiet(**cfg))

    # A run that checkpoints every 4 steps and crashes during step 5.
    real = sft_mod.completion_token_losses
    calls = []

    def crash_on_fifth_step(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed (simulated)")
        return real(*args)

    monkeypatch.setattr(sft_mod, "completion_token_losses", crash_on_fifth_step)
    out = tmp_path / "run"
    crashed, _ = tiny_policy()
    with pytest.raises(RuntimeError, match="simulated"):
        train_sft(crashed, tok, EXAMPLES * 2, quiet(output_dir=str(out), save_every=4, **cfg))
    monkeypatch.undo()
    assert load_checkpoint(out).extra_state["step"] == 4

    resumed, _ = tiny_policy(seed=5)  # another init: the checkpoint's weights must win
    rest = train_sft(resumed, tok, EXAMPLES * 2, quiet(output_dir=str(out), **cfg),
                     resume_from=out)
    assert rest.steps == 2 and load_checkpoint(out).extra_state["step"] == 6
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k

    model, tok = tiny_policy()
    save_checkpoint(tmp_path / "plain", model, tok)
    with pytest.raises(ValueError, match="trainer state"):
        train_sft(model, tok, EXAMPLES, quiet(max_steps=1), resume_from=tmp_path / "plain")


def test_load_checkpoint_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_checkpoint(tmp_path / "nothing-here")
