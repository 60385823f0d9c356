"""Trainers and the search + learn loop on a tiny model and a scripted task: updates change
weights, references stay frozen, KL is zero at the start, tree preference pairs are the
expected ones, and a resumed loop ends exactly where an uninterrupted one does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from o1search import SearchTree
from o1search.learn import (
    DPOConfig,
    DPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    LoopConfig,
    MetricsLogger,
    PPOConfig,
    PPOTrainer,
    ReSTConfig,
    SearchLearnLoop,
    SFTConfig,
    StepPair,
    collect_solutions,
    step_preference_pairs,
)
from o1search.learn.optim import frozen_copy
from o1search.learn.rollouts import engine_for
from o1search.learn.token_batches import pad_completions, token_logprobs
from o1search.policy import PolicyConfig, build_default_policy, encode_prompt


class ScriptedTask:
    """Prompts ``q<k>``; a completion is correct when it contains the digit ``k % 10``.

    An untrained character model hits that often enough for every learner to get signal,
    and the verdict is trivial to check by hand.
    """

    name = "scripted"

    def problems(self, n: int = 8) -> list[int]:
        return list(range(n))

    def prompt(self, p: int) -> str:
        return f"q{p}:"

    def verify(self, p: int, text: str) -> float:
        return 1.0 if str(p % 10) in text else 0.0

    def extract_answer(self, text: str) -> str | None:
        return text


@pytest.fixture(scope="module")
def tiny():
    cfg = PolicyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                       max_position_embeddings=48, seed=3)
    return build_default_policy(None, cfg)


def _fresh(tiny):
    model, tok = tiny
    return frozen_copy(model).requires_grad_(True).train(False), tok


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_grpo_step_changes_weights_keeps_reference_frozen_and_syncs_engine(tiny) -> None:
    model, tok = _fresh(tiny)
    task = ScriptedTask()
    before = _params(model)
    tr = GRPOTrainer(model, tok, task, GRPOConfig(num_generations=4, max_new_tokens=10,
                                                  kl_coef=0.1, num_iterations=2,
                                                  learning_rate=1e-2))
    ref_before = _params(tr.reference)
    m = tr.step(task.problems(4))
    assert 0 < m["reward_mean"] < 1  # the scripted task gives mixed rewards
    assert m["optimizer_steps"] == 2
    assert not _same(before, _params(model))
    assert _same(ref_before, _params(tr.reference))
    assert all(not p.requires_grad for p in tr.reference.parameters())
    # The engine searches with the new weights (its own copy, loaded after the update).
    assert _same(_params(model), _params(tr.engine.model))
    assert tr.engine.model is not model


def test_kl_is_zero_when_policy_equals_reference(tiny) -> None:
    model, tok = _fresh(tiny)
    ref = frozen_copy(model)
    batch = pad_completions([[1, 5, 6], [1, 7]], [[8, 9, 10], [11]], pad_id=0)
    with torch.no_grad():
        a, _ = token_logprobs(model, batch)
        b, _ = token_logprobs(ref, batch)
    from o1search.learn import k3_kl

    assert torch.equal(a, b)
    assert float((k3_kl(a, b) * batch.completion_mask).sum()) == 0.0
    # and the first PPO step, whose reference is the policy itself, reports KL 0
    tr = PPOTrainer(model, tok, ScriptedTask(), PPOConfig(num_samples=2, max_new_tokens=8,
                                                          kl_coef=0.1))
    assert tr.step([0, 1])["kl"] == 0.0


def test_token_logprobs_match_full_forward(tiny) -> None:
    model, _ = tiny
    batch = pad_completions([[1, 5, 6], [1, 7]], [[8, 9, 10], [11]], pad_id=0)
    with torch.no_grad():
        lp, _ = token_logprobs(model, batch)
        full = torch.log_softmax(model(torch.tensor([[1, 5, 6, 8, 9, 10]])).logits[0], -1)
    want = torch.stack([full[2, 8], full[3, 9], full[4, 10]])
    torch.testing.assert_close(lp[0], want)
    assert lp[1, 1:].abs().sum() == 0  # padding scores nothing


def test_ppo_step_updates_policy_and_value_head_reference_frozen(tiny) -> None:
    model, tok = _fresh(tiny)
    tr = PPOTrainer(model, tok, ScriptedTask(), PPOConfig(num_samples=4, max_new_tokens=8,
                                                          kl_coef=0.1, learning_rate=1e-2))
    before, vh, ref = _params(model), _params(tr.value_head), _params(tr.reference)
    for _ in range(2):
        m = tr.step([0, 1, 2])
    assert m["optimizer_steps"] == 2
    assert not _same(before, _params(model))
    assert not _same(vh, _params(tr.value_head))
    assert _same(ref, _params(tr.reference))
    assert all(not p.requires_grad for p in tr.reference.parameters())
    assert m["kl"] != 0.0  # the policy moved away from the reference


def test_ppo_dense_rewards_need_a_step_reward_function(tiny) -> None:
    model, tok = _fresh(tiny)
    with pytest.raises(ValueError, match="step_rewards"):
        PPOTrainer(model, tok, ScriptedTask(), PPOConfig(reward_mode="dense"))
    calls = []

    def step_rewards(prompts, completions, outcomes):
        calls.append(len(completions))
        # one reward per step, as step_end_positions counts them
        return [[0.1] * c.count(tok.convert_tokens_to_ids("\n")) for c in completions]

    tr = PPOTrainer(model, tok, ScriptedTask(), PPOConfig(num_samples=2, max_new_tokens=8,
                                                          reward_mode="dense", kl_coef=0.0),
                    step_rewards=step_rewards)
    try:
        tr.step([0, 1])
    except ValueError as exc:  # a trailing partial step makes counts differ: clear message
        assert "step rewards" in str(exc)
    assert calls == [4]


def _hand_tree() -> SearchTree:
    t = SearchTree([1, 2])
    a, b, c = (int(x) for x in t.add_children(0, [[10], [11, 12], [13]], [0.4, 0.3, 0.3]))
    t.backup([a], [1.0])
    t.backup([b], [0.0])
    t.backup([c], [0.5])
    d, e = (int(x) for x in t.add_children(a, [[20], [21]], [0.5, 0.5]))
    t.set_terminal([d, e], [1.0, 0.0])
    t.backup([d, e], [1.0, 0.0])
    return t


def test_preference_pairs_from_hand_built_tree() -> None:
    t = _hand_tree()
    # root's children values: a = (1 + 1 + 0) / 3, b = 0, c = 0.5; a's children: d = 1, e = 0
    pairs = step_preference_pairs(t, min_margin=0.2)
    assert [(p.prefix, p.chosen, p.rejected) for p in pairs] == [
        ((1, 2), (10,), (11, 12)),
        ((1, 2, 10), (20,), (21,)),
    ]
    assert pairs[0].chosen_value == pytest.approx(2 / 3)
    assert pairs[0].rejected_value == 0.0
    every = step_preference_pairs(t.to_dict(), min_margin=0.2, pairs="all")
    # a vs c differ by 2/3 - 1/2 < 0.2: no pair
    assert [(p.chosen, p.rejected) for p in every] == [
        ((10,), (11, 12)), ((13,), (11, 12)), ((20,), (21,))]
    every = step_preference_pairs(t, min_margin=0.1, pairs="all")
    assert [(p.chosen, p.rejected) for p in every][0] == ((10,), (13,))
    assert step_preference_pairs(t, min_margin=0.9) == [
        StepPair((1, 2, 10), (20,), (21,), 1.0, 0.0, 1)]
    with pytest.raises(ValueError):
        step_preference_pairs({"nodes": 3})


def test_dpo_training_changes_policy_not_reference(tiny) -> None:
    model, tok = _fresh(tiny)
    pairs = [StepPair((1, 5), (8, 9), (10,), 1.0, 0.0), StepPair((1, 6), (11,), (12, 13), 1.0, 0.0)]
    tr = DPOTrainer(model, tok, DPOConfig(batch_size=2, num_epochs=3, learning_rate=1e-2))
    before, ref = _params(model), _params(tr.reference)
    res = tr.train(pairs)
    assert res.losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: log 2
    assert res.losses[-1] < res.losses[0]
    assert not _same(before, _params(model))
    assert _same(ref, _params(tr.reference))
    with pytest.raises(ValueError, match="no preference pairs"):
        tr.train([])


def test_collect_solutions_keeps_only_verified_distinct(tiny) -> None:
    _, tok = tiny
    from o1search.search import SearchCompute, SearchResult

    t = SearchTree([1])
    ids = [tok.convert_tokens_to_ids(ch) for ch in "3x"]
    n = [int(x) for x in t.add_children(0, [[ids[0]], [ids[1]], [ids[0]]], [0.3, 0.3, 0.4])]
    t.set_terminal(n, [1.0, 1.0, 1.0])  # the search's scores are not trusted
    res = SearchResult(0, (ids[1],), (1, ids[1]), None, None, 1.0, True, n[1], t,
                       SearchCompute())
    dec = lambda x: tok.decode(list(x), skip_special_tokens=True)  # noqa: E731
    assert collect_solutions(ScriptedTask(), [3], [res], dec) == [["3"]]
    assert collect_solutions(ScriptedTask(), [4], [res], dec) == [[]]


def _loop_config(method: str, out: str | None, log: str | None) -> LoopConfig:
    rest = ReSTConfig(num_samples=4, max_new_tokens=8, only_failed=False,
                      sft=SFTConfig(max_steps=3, batch_size=8, learning_rate=1e-2,
                                    max_length=48, progress=False))
    grpo = GRPOConfig(num_generations=4, max_new_tokens=8, kl_coef=0.05, learning_rate=1e-2)
    return LoopConfig(method=method, rounds=2, problems_per_round=4, updates_per_round=2,
                      batch_problems=2, rest=rest, grpo=grpo, output_dir=out, log_path=log,
                      progress=False)


def _strip(history):
    return [{k: v for k, v in h.items() if "seconds" not in k} for h in history]


@pytest.mark.parametrize("method", ["rest", "grpo"])
def test_resume_continues_exactly(tiny, tmp_path, method) -> None:
    task = ScriptedTask()
    train, held = task.problems(8), task.problems(10)[8:]
    model, tok = _fresh(tiny)
    start = _params(model)
    full = SearchLearnLoop(model, tok, task, train, _loop_config(method, None, None),
                           eval_problems=held)
    hist_full = full.run()
    assert [h["round"] for h in hist_full] == [0, 1, 2]
    assert not _same(start, _params(full.model))  # training really changed the weights

    model2, _ = _fresh(tiny)
    ck = tmp_path / "ck"
    log = tmp_path / "m.jsonl"
    first = SearchLearnLoop(model2, tok, task, train,
                            _loop_config(method, str(ck), str(log)), eval_problems=held)
    first.run(num_rounds=1)
    assert first.round == 1
    resumed = SearchLearnLoop.resume(ck, task, train, _loop_config(method, str(ck), str(log)),
                                     eval_problems=held)
    assert resumed.round == 1
    hist = resumed.run()
    assert _same(_params(full.model), _params(resumed.model))
    assert _strip(hist) == _strip(hist_full)
    lines = log.read_text().splitlines()
    assert len(lines) == 3  # eval before + round 1, then round 2 appended after resume


def test_resume_rejects_other_method_and_plain_checkpoints(tiny, tmp_path) -> None:
    task = ScriptedTask()
    model, tok = _fresh(tiny)
    loop = SearchLearnLoop(model, tok, task, task.problems(4),
                           _loop_config("rest", str(tmp_path / "ck"), None))
    loop.run(num_rounds=1)
    with pytest.raises(ValueError, match="'rest' loop"):
        SearchLearnLoop.resume(tmp_path / "ck", task, task.problems(4),
                               _loop_config("grpo", None, None))
    from o1search.learn import save_checkpoint

    save_checkpoint(tmp_path / "plain", model, tok)
    with pytest.raises(ValueError, match="no loop state"):
        SearchLearnLoop.resume(tmp_path / "plain", task, task.problems(4))


def test_metrics_logger_jsonl(tmp_path) -> None:
    p = tmp_path / "a" / "m.jsonl"
    with MetricsLogger(p) as lg:
        lg.log({"round": 1, "acc": 0.5, "bad": float("nan")}, step=1)
    with MetricsLogger(p, append=True) as lg:
        lg.log({"round": 2})
    import json

    rows = [json.loads(x) for x in p.read_text().splitlines()]
    assert rows == [{"round": 1, "acc": 0.5, "bad": "nan"}, {"round": 2}]
    with pytest.raises(TypeError):
        MetricsLogger(None).log([1])


def test_trainers_reject_bad_input(tiny) -> None:
    model, tok = _fresh(tiny)
    with pytest.raises(TypeError):
        GRPOTrainer(model, tok, ScriptedTask(), PPOConfig())
    with pytest.raises(ValueError):
        GRPOTrainer(model, tok, None, GRPOConfig())
    tr = GRPOTrainer(model, tok, ScriptedTask(), GRPOConfig(num_generations=2, max_new_tokens=4),
                     engine=engine_for(model, tok))
    with pytest.raises(ValueError):
        tr.step([])
    with pytest.raises(ValueError):
        pad_completions([[1]], [[]])
    with pytest.raises(TypeError):
        pad_completions(["abc"], [[1]])
    with pytest.raises(ValueError):
        SearchLearnLoop(model, tok, ScriptedTask(), [])
    assert encode_prompt(tok, "q1:")  # the scripted prompts encode to tokens
    assert dataclasses.is_dataclass(LoopConfig())


# ------------------------------------------------------------------------ ReST data mixing
def test_mix_round_data_counts_by_hand():
    import random

    from o1search.learn import mix_round_data

    new = [(f"n{i}", "c") for i in range(50)]
    prev = [(f"p{i}", "c") for i in range(100)]
    anchor = [(f"a{i}", "c") for i in range(10)]
    # 50 new at shares 0.3 / 0.2: total 50 / 0.5 = 100 -> 30 replayed, 20 anchor wanted but
    # only 10 exist.
    mix, replayed, anchored = mix_round_data(new, prev, anchor, keep_previous=0.3,
                                             anchor_share=0.2, rng=random.Random(0))
    assert (replayed, anchored) == (30, 10)
    assert mix[:50] == new and len(mix) == 90
    assert set(mix[50:80]) <= set(prev) and len(set(mix[50:80])) == 30  # without replacement
    assert set(mix[80:]) == set(anchor)
    # No new examples: all of previous is rehearsed, plus its anchor share.
    mix, replayed, anchored = mix_round_data([], prev[:8], anchor, keep_previous=0.5,
                                             anchor_share=0.2, rng=random.Random(0))
    assert (replayed, anchored) == (8, 2) and len(mix) == 10
    with pytest.raises(ValueError, match="keep_previous"):
        mix_round_data(new, prev, anchor, keep_previous=0.6, anchor_share=0.4,
                       rng=random.Random(0))


def test_rest_config_new_fields_are_checked():
    with pytest.raises(ValueError):
        ReSTConfig(keep_previous=0.7, anchor_share=0.4)
    with pytest.raises(ValueError):
        ReSTConfig(max_epochs=0)
