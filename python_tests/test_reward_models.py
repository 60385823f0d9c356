"""PRM / ORM / shaping / internal guidance, checked against the transformers model itself and
hand-computed values."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch

from o1search.policy import PolicyConfig, build_default_policy
from o1search.reward import (
    ConfidenceEvaluator,
    ORMTrainConfig,
    OutcomeRewardModel,
    PreferencePair,
    PRMExample,
    PRMTrainConfig,
    ProcessRewardModel,
    SelfEvaluator,
    aggregate_step_values,
    bradley_terry_loss,
    dense_step_rewards,
    potential_based_shaping,
    step_end_positions,
    train_orm,
    train_prm,
)
from o1search.protocols import EvalRequest, Evaluator
from o1search.tasks import CountdownTask

TINY = PolicyConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                    max_position_embeddings=128, seed=3)


@pytest.fixture(scope="module")
def world():
    task = CountdownTask(n_train=40, n_test=4, seed=1, check_prob=0.3, correction_prob=0.2)
    model, tok = build_default_policy(task, TINY)
    return task, model, tok


def _random_head(hidden: int, seed: int = 0) -> torch.nn.Linear:
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1, hidden, generator=g))
        head.bias.fill_(0.1)
    return head


def _paths(task, tok, n=4):
    out = []
    for i, p in enumerate(task.problems("train")[:n]):
        prompt = tok(task.prompt(p))["input_ids"]
        comp = tok.encode(task.demonstration(p, i), add_special_tokens=False)
        out.append((tuple(prompt), tuple(comp) + (tok.eos_token_id,)))
    return out


def _oracle_values(model, head, prompt, completion, delim, eos):
    """Step values straight from the transformers model: last hidden state at step ends."""
    ids = torch.tensor([list(prompt) + list(completion)])
    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state[0]
        ends = step_end_positions(completion, delim, eos_token_ids=eos, offset=len(prompt))
        logit = h[ends] @ head.weight[0] + head.bias[0]
    return torch.sigmoid(logit).double().numpy()


# ------------------------------------------------------------------ step splitting, aggregation
def test_step_end_positions_by_hand():
    nl, eos = 9, 2
    assert step_end_positions([5, 6, nl, 7, nl], [nl]) == [2, 4]
    assert step_end_positions([5, 6, nl, 7], [nl]) == [2, 3]  # unfinished tail is a step
    assert step_end_positions([5, nl, eos], [nl], eos_token_ids=[eos]) == [1]  # EOS alone: no
    assert step_end_positions([5, nl, 7, eos], [nl], eos_token_ids=[eos]) == [1, 2]
    assert step_end_positions([5, 8, 9, 6, 8, 9], [8, 9], offset=10) == [12, 15]
    assert step_end_positions([], [nl]) == []
    with pytest.raises(ValueError):
        step_end_positions([1], [])


def test_aggregations_by_hand():
    v = [0.9, 0.5, 0.8]
    assert aggregate_step_values(v, "last") == 0.8
    assert aggregate_step_values(v, "min") == 0.5
    assert aggregate_step_values(v, "product") == pytest.approx(0.36)
    assert aggregate_step_values(v, "mean") == pytest.approx(2.2 / 3)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_step_values(v, "max")
    with pytest.raises(ValueError, match="empty"):
        aggregate_step_values([], "min")


# ------------------------------------------------------------------ PRM scoring
@pytest.mark.parametrize("use_engine", [True, False])
def test_prm_scores_equal_plain_forward(world, use_engine):
    task, model, tok = world
    head = _random_head(model.config.hidden_size)
    prm = ProcessRewardModel(model, tok, head=copy.deepcopy(head), use_engine=use_engine)
    assert prm.use_engine is use_engine
    paths = _paths(task, tok)
    got = prm.score_steps([p for p, _ in paths], [c for _, c in paths])
    for (p, c), g in zip(paths, got):
        want = _oracle_values(model, head, p, c, prm.step_delimiter, prm.eos_token_ids)
        assert len(g) == len(want) >= 3
        np.testing.assert_allclose(g, want, rtol=0, atol=2e-5)


def test_prm_incremental_equals_full_and_reuses_prefix(world):
    task, model, tok = world
    head = _random_head(model.config.hidden_size, seed=1)
    prm = ProcessRewardModel(model, tok, head=copy.deepcopy(head), use_engine=True,
                             engine_page_size=4)
    ref = ProcessRewardModel(model, tok, head=copy.deepcopy(head), use_engine=False,
                             cache_size=0)
    prompt, comp = _paths(task, tok, 1)[0]
    ends = step_end_positions(comp, prm.step_delimiter, eos_token_ids=prm.eos_token_ids)
    scored_before = 0
    for j, e in enumerate(ends):
        part = comp[:e + 1]
        inc = prm.score_steps([prompt], [part])[0]
        full = ref.score_steps([prompt], [part])[0]
        np.testing.assert_allclose(inc, full, atol=2e-5)
        # Only the new step is computed, and the earlier prefix's KV comes from the cache.
        assert prm.scored_steps - scored_before == 1
        scored_before = prm.scored_steps
        if j > 0:
            assert prm.engine.last_stats.reused_tokens > len(prompt) - 4
            assert prm.engine.last_stats.prefilled_tokens < len(prompt) + e + 1
    # The search Evaluator protocol: aggregated values in [0, 1].
    assert isinstance(prm, Evaluator)
    for how in ("last", "min", "product", "mean"):
        prm.aggregation = how
        val = prm.evaluate([EvalRequest(None, prompt, comp, True)])[0]
        assert val == pytest.approx(aggregate_step_values(
            ref.score_steps([prompt], [comp])[0], how), abs=1e-5)
        assert 0.0 <= val <= 1.0


def test_prm_empty_completion_scores_start_state(world):
    _, model, tok = world
    head = _random_head(model.config.hidden_size)
    prm = ProcessRewardModel(model, tok, head=copy.deepcopy(head))
    prompt = tuple(tok("nums 1 2 3 target 6\n")["input_ids"])
    v = prm.score_steps([prompt], [()])[0]
    with torch.no_grad():
        h = model.model(input_ids=torch.tensor([prompt])).last_hidden_state[0, -1]
        want = torch.sigmoid(h @ head.weight[0] + head.bias[0]).item()
    assert v.shape == (1,) and v[0] == pytest.approx(want, abs=2e-5)


def test_prm_bad_input(world):
    _, model, tok = world
    prm = ProcessRewardModel(model, tok)
    with pytest.raises(ValueError, match="vocab_size"):
        prm.score_steps([(1, 2)], [(10_000,)])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        prm.score_steps([(1,) * 100], [(5,) * 100])
    with pytest.raises(ValueError, match="empty"):
        prm.score_steps([()], [(5,)])
    with pytest.raises(TypeError):
        prm.score_steps([(1, 2)], [(0.5,)])
    with pytest.raises(ValueError, match="completions"):
        prm.score_steps([(1, 2)], [])
    with pytest.raises(ValueError, match="aggregation"):
        ProcessRewardModel(model, tok, aggregation="max")
    with pytest.raises(ValueError, match="tokenizer"):
        ProcessRewardModel(model, None, step_delimiter="\n")
    with pytest.raises(TypeError):
        prm.evaluate(["not a request"])


# ------------------------------------------------------------------ save / load
def test_prm_and_orm_round_trip(world, tmp_path):
    task, model, tok = world
    paths = _paths(task, tok, 3)
    prompts, comps = [p for p, _ in paths], [c for _, c in paths]
    prm = ProcessRewardModel(copy.deepcopy(model), tok, aggregation="mean",
                             head=_random_head(model.config.hidden_size, 2))
    prm.save(tmp_path / "prm")
    prm.save(tmp_path / "prm")  # replacing an existing checkpoint works too
    back = ProcessRewardModel.load(tmp_path / "prm")
    assert back.aggregation == "mean" and back.step_delimiter == prm.step_delimiter
    for a, b in zip(prm.score_steps(prompts, comps), back.score_steps(prompts, comps)):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "prm" / "reward_head.safetensors").is_file()
    assert (tmp_path / "prm" / "config.json").is_file()

    orm = OutcomeRewardModel(copy.deepcopy(model), tok,
                             head=_random_head(model.config.hidden_size, 3))
    orm.save(tmp_path / "orm")
    back_orm = OutcomeRewardModel.load(tmp_path / "orm")
    np.testing.assert_array_equal(orm.rewards(prompts, comps), back_orm.rewards(prompts, comps))
    with pytest.raises(ValueError, match="'orm'"):
        ProcessRewardModel.load(tmp_path / "orm")
    with pytest.raises(FileNotFoundError):
        ProcessRewardModel.load(tmp_path / "nothing")


# ------------------------------------------------------------------ training
def _toy_prm_examples(task, tok, n=24):
    """A learnable toy labelling: a ``check ... ok`` line is a good step (1), a plain
    equation a neutral one (0); labels differ within one path, so they must be read at the
    right positions."""
    rng = random.Random(0)
    out = []
    for p in task.problems("train")[:n]:
        prompt = tok(task.prompt(p))["input_ids"]
        steps, labels = [], []
        for s in p.solution[:-1]:
            steps.append(s)
            labels.append(0.0)
            if rng.random() < 0.5:
                steps.append(f"check {s} ok")
                labels.append(1.0)
        comp = tok.encode(task.format_completion(steps), add_special_tokens=False)
        out.append(PRMExample(prompt, comp, labels))
    return out


def _bce(prm, examples):
    with torch.no_grad():
        losses = []
        for ex in examples:
            lg = prm.step_logits(ex.prompt, ex.completion)
            losses.append(torch.nn.functional.binary_cross_entropy_with_logits(
                lg, torch.tensor(ex.labels, dtype=torch.float32)).item())
    return float(np.mean(losses))


def test_train_prm_reduces_loss(world, tmp_path):
    task, model, tok = world
    examples = _toy_prm_examples(task, tok)
    prm = ProcessRewardModel(copy.deepcopy(model), tok)
    before = _bce(prm, examples)
    assert before == pytest.approx(math.log(2), abs=1e-6)  # zero head: every value 0.5
    before_scores = prm.score_steps([examples[0].prompt], [examples[0].completion])[0]
    res = train_prm(prm, examples, PRMTrainConfig(learning_rate=3e-3, max_steps=40,
                                                  batch_size=8,
                                                  output_dir=str(tmp_path / "out")))
    assert res.steps == 40 and len(res.losses) == 40
    after = _bce(prm, examples)
    assert after < 0.5 * before
    # The engine cache was flushed: scores follow the new weights.
    new_scores = prm.score_steps([examples[0].prompt], [examples[0].completion])[0]
    np.testing.assert_allclose(new_scores, torch.sigmoid(prm.step_logits(
        examples[0].prompt, examples[0].completion)).detach().numpy(), atol=2e-5)
    assert not np.allclose(new_scores, before_scores)
    assert ProcessRewardModel.load(tmp_path / "out").score_steps(
        [examples[0].prompt], [examples[0].completion])[0] == pytest.approx(new_scores)


def test_train_prm_validation(world):
    task, model, tok = world
    prm = ProcessRewardModel(model, tok)
    ex = _toy_prm_examples(task, tok, 1)[0]
    bad = PRMExample(ex.prompt, ex.completion, ex.labels + (1.0,))
    with pytest.raises(ValueError, match="labels but its completion has"):
        train_prm(prm, [bad], PRMTrainConfig(max_steps=1))
    with pytest.raises(ValueError, match="no training examples"):
        train_prm(prm, [], PRMTrainConfig(max_steps=1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PRMExample((1,), (5,), (1.5,))
    with pytest.raises(ValueError, match="not both"):
        PRMTrainConfig(max_steps=3, num_epochs=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        PRMTrainConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        ORMTrainConfig(max_grad_norm=0.0)


def test_bradley_terry_loss_by_hand():
    chosen = torch.tensor([1.0, 0.0])
    rejected = torch.tensor([0.0, 2.0])
    want = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(2.0)))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(want, rel=1e-6)
    # A margin shifts the gap: loss(c, r, m) = loss(c - m, r).
    assert bradley_terry_loss(chosen, rejected, 0.5).item() == pytest.approx(
        bradley_terry_loss(chosen - 0.5, rejected).item(), rel=1e-6)
    with pytest.raises(ValueError):
        bradley_terry_loss(chosen, torch.tensor([1.0]))


def test_train_orm_learns_preference(world):
    task, model, tok = world
    pairs = []
    for p in task.problems("train")[:16]:
        prompt = tok(task.prompt(p))["input_ids"]
        good = tok.encode(task.format_completion(p.solution), add_special_tokens=False)
        wrong = f"answer {int(p.answer) + 1}"
        bad = tok.encode(task.format_completion((*p.solution[:-1], wrong)),
                         add_special_tokens=False)
        pairs.append(PreferencePair(prompt, good, bad))
    orm = OutcomeRewardModel(copy.deepcopy(model), tok)

    def acc():
        r_c = orm.rewards([q.prompt for q in pairs], [q.chosen for q in pairs])
        r_r = orm.rewards([q.prompt for q in pairs], [q.rejected for q in pairs])
        return float(np.mean(r_c > r_r)), float(np.mean(np.log1p(np.exp(-(r_c - r_r)))))

    _, loss0 = acc()
    assert loss0 == pytest.approx(math.log(2), abs=1e-6)
    res = train_orm(orm, pairs, ORMTrainConfig(learning_rate=3e-3, max_steps=30, batch_size=8))
    accuracy, loss1 = acc()
    assert res.steps == 30 and loss1 < 0.7 * loss0 and accuracy >= 0.8
    vals = orm.evaluate([EvalRequest(None, q.prompt, q.chosen, True) for q in pairs[:2]])
    assert all(0.0 <= v <= 1.0 for v in vals)


# ------------------------------------------------------------------ shaping
def test_shaping_telescopes():
    rng = np.random.default_rng(0)
    r = np.zeros(5)
    r[-1] = 1.0
    phi = rng.uniform(size=6)
    shaped = potential_based_shaping(r, phi, gamma=1.0)
    assert shaped.sum() == pytest.approx(1.0 - phi[0])  # Phi(terminal) taken as 0
    # By hand, gamma < 1: r_t + g*Phi(t+1) - Phi(t), last next-potential zeroed.
    g = 0.9
    want = [r[t] + g * (phi[t + 1] if t < 4 else 0.0) - phi[t] for t in range(5)]
    np.testing.assert_allclose(potential_based_shaping(r, phi, gamma=g), want)
    # Non-terminal: the last potential is kept.
    assert potential_based_shaping(r, phi, terminal=False).sum() == pytest.approx(
        1.0 + phi[-1] - phi[0])
    # Batched torch tensors, gradients flow.
    rt = torch.tensor(np.stack([r, r]), requires_grad=True)
    out = potential_based_shaping(rt, torch.tensor(np.stack([phi, phi])))
    out.sum().backward()
    assert out.shape == (2, 5) and rt.grad is not None
    with pytest.raises(ValueError, match="T \\+ 1"):
        potential_based_shaping(r, phi[:-1])
    with pytest.raises(ValueError, match="gamma"):
        potential_based_shaping(r, phi, gamma=1.5)
    with pytest.raises(ValueError, match="finite"):
        potential_based_shaping(r, np.full(6, np.nan))


def test_dense_step_rewards_from_prm(world):
    task, model, tok = world
    prm = ProcessRewardModel(model, tok, head=_random_head(model.config.hidden_size, 4))
    paths = _paths(task, tok, 3)
    prompts, comps = [p for p, _ in paths], [c for _, c in paths]
    dense = dense_step_rewards(prm, prompts, comps, [1.0, 0.0, 1.0])
    start = prm.score_steps(prompts, [()] * 3)
    steps = prm.score_steps(prompts, comps)
    for d, s, v, o in zip(dense, start, steps, [1.0, 0.0, 1.0]):
        assert len(d) == len(v)
        assert d.sum() == pytest.approx(o - s[0])
        assert d[0] == pytest.approx(v[0] - s[0])  # no reward before the end


# ------------------------------------------------------------------ internal guidance
def _engine(model, tok):
    from o1search.engine import Engine

    return Engine(model, tok, num_pages=256, page_size=4)


def test_confidence_matches_transformers_logits(world):
    task, model, tok = world
    engine = _engine(model, tok)
    paths = _paths(task, tok, 2)
    for measure in ("mean_logprob", "min_logprob", "entropy"):
        ev = ConfidenceEvaluator(engine, measure=measure)
        got = ev.score_steps([p for p, _ in paths], [c for _, c in paths])
        for (p, c), g in zip(paths, got):
            seq = list(p) + list(c)
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
            ends = step_end_positions(c, ev.step_delimiter, eos_token_ids=ev.eos_token_ids,
                                      offset=len(p))
            want, prev = [], len(p) - 1
            for e in ends:
                rows = range(prev, e)  # row i predicts token i + 1
                if measure == "entropy":
                    h = [-(logp[i].exp() * logp[i]).sum().item() / math.log(logp.shape[-1])
                         for i in rows]
                    want.append(1 - np.mean(h))
                else:
                    lp = [logp[i, seq[i + 1]].item() for i in rows]
                    want.append(math.exp(np.mean(lp) if measure == "mean_logprob"
                                         else min(lp)))
                prev = e
            np.testing.assert_allclose(g, want, atol=1e-4)
        assert 0.0 <= ev.evaluate([EvalRequest(None, paths[0][0], paths[0][1], True)])[0] <= 1


def test_self_evaluation_matches_transformers_logits(world):
    task, model, tok = world
    engine = _engine(model, tok)
    ev = SelfEvaluator(engine, question="\ncheck ", yes="ok", no="not")
    prompt, comp = _paths(task, tok, 1)[0]
    got = ev.score_steps([prompt], [comp])[0]
    ctx = list(prompt) + list(comp[:-1]) + list(ev.question)  # trailing EOS dropped

    def logp(cont):
        seq = ctx + list(cont)
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
        return sum(lp[len(ctx) + i - 1, t].item() for i, t in enumerate(cont))

    py, pn = math.exp(logp(ev.yes)), math.exp(logp(ev.no))
    assert got.shape == (1,) and got[0] == pytest.approx(py / (py + pn), abs=1e-4)
    per_step = SelfEvaluator(engine, question="\ncheck ", yes="ok", no=None, per_step=True,
                             aggregation="min")
    vals = per_step.score_steps([prompt], [comp])[0]
    assert len(vals) == len(per_step.step_ends(prompt, comp)) and np.all(vals <= 1)
    with pytest.raises(ValueError, match="same tokens"):
        SelfEvaluator(engine, yes="ok", no="ok")
