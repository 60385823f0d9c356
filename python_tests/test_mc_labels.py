"""Monte-Carlo step labels on the scripted toy policy, whose success rates are known exactly:
after ``i`` correct steps of ``H`` the policy succeeds with probability ``p ** (H - i)``."""

from __future__ import annotations

import numpy as np
import pytest

from o1search.reward import PRMExample, SampledTrace, mc_step_labels, sample_traces
from o1search.protocols import SearchProblem
from o1search.testing.toy import DELIM, EOS, ToyPolicy, ToyVerifier

P, H = 0.5, 3


def _trace(policy, problem, correct_prefix: int, finished=True) -> SampledTrace:
    """A completion whose first ``correct_prefix`` steps are the target's, the rest wrong."""
    target = problem.problem.target
    toks = []
    for d in range(H):
        a = target[d] if d < correct_prefix else (target[d] + 1) % policy.num_actions
        toks += policy.step_tokens(a)
    return SampledTrace(problem, tuple(toks) + ((EOS,) if finished else ()), finished)


def test_soft_and_hard_labels_converge_to_known_probabilities():
    policy = ToyPolicy(num_actions=3, horizon=H, p_target=P)
    problems = policy.problems(range(150), seed=1)
    traces = [_trace(policy, p, correct_prefix=2) for p in problems]
    k = 4
    labels = mc_step_labels(policy, ToyVerifier(policy), traces, k, step_delimiter=(DELIM,),
                            eos_token_ids=(EOS,), seed=7)
    # Every non-terminal step prefix of every trace in one generate call.
    assert policy.calls == [150 * 2]
    soft = np.array([lab.soft for lab in labels])
    hard = np.array([lab.hard for lab in labels])
    assert soft.shape == (150, 3)
    # After step 1 (correct): P**2; after step 2 (correct): P; step 3 is wrong and terminal.
    q = np.array([P ** 2, P])
    se = np.sqrt(q * (1 - q) / (150 * k))
    assert np.all(np.abs(soft[:, :2].mean(0) - q) < 4 * se)
    # Hard label: any of k rollouts succeeds, probability 1 - (1 - q)**k.
    qh = 1 - (1 - q) ** k
    seh = np.sqrt(qh * (1 - qh) / 150)
    assert np.all(np.abs(hard[:, :2].mean(0) - qh) < 4 * seh)
    assert np.all(soft[:, 2] == 0) and all(lab.terminal == (False, False, True)
                                           for lab in labels)
    assert all(lab.rollouts == (k, k, 1) for lab in labels)


def test_wrong_step_gets_zero_and_correct_trace_one():
    policy = ToyPolicy(num_actions=3, horizon=H, p_target=P)
    problems = policy.problems(range(20))
    good = [_trace(policy, p, 3) for p in problems[:10]]
    bad = [_trace(policy, p, 0) for p in problems[10:]]
    labels = mc_step_labels(policy, ToyVerifier(policy), good + bad, 64, step_delimiter=(DELIM,),
                            eos_token_ids=(EOS,))
    for lab in labels[:10]:
        assert lab.soft[-1] == 1.0 and lab.hard == (1.0, 1.0, 1.0)
        assert abs(lab.soft[0] - P ** 2) < 0.2 and abs(lab.soft[1] - P) < 0.2
    for lab in labels[10:]:
        assert lab.soft == (0.0, 0.0, 0.0)  # a wrong first step can never be recovered
    ex = labels[0].to_example(soft=False)
    assert isinstance(ex, PRMExample) and ex.labels == (1.0, 1.0, 1.0)


def test_unfinished_trace_rolls_out_every_step_and_large_k_converges():
    policy = ToyPolicy(num_actions=3, horizon=H, p_target=P)
    prob = policy.problems([5])[0]
    tr = _trace(policy, prob, 3, finished=False)
    lab = mc_step_labels(policy, ToyVerifier(policy), [tr], 2000, step_delimiter=(DELIM,),
                         eos_token_ids=(EOS,))[0]
    assert lab.terminal == (False, False, False)
    # From the full correct path the policy can only write EOS: success for sure.
    np.testing.assert_allclose(lab.soft, [P ** 2, P, 1.0], atol=0.04)


def test_identical_prefixes_share_rollouts_and_labels_are_reproducible():
    policy = ToyPolicy(num_actions=3, horizon=H, p_target=P)
    prob = policy.problems([2])[0]
    traces = [_trace(policy, prob, 2), _trace(policy, prob, 1)]
    labs = mc_step_labels(policy, ToyVerifier(policy), traces, 8, step_delimiter=(DELIM,),
                          eos_token_ids=(EOS,), seed=3)
    # Trace 2 shares its first step with trace 1: 3 distinct non-terminal states, not 4.
    assert policy.calls == [3]
    assert labs[0].successes[0] == labs[1].successes[0]
    again = mc_step_labels(ToyPolicy(num_actions=3, horizon=H, p_target=P),
                           ToyVerifier(policy), traces, 8, step_delimiter=(DELIM,),
                           eos_token_ids=(EOS,), seed=3, max_requests_per_call=1)
    assert [a.successes for a in again] == [b.successes for b in labs]


def test_sample_traces_and_bad_input():
    policy = ToyPolicy(num_actions=3, horizon=H, p_target=P)
    probs = policy.problems(range(4))
    traces = sample_traces(policy, probs, 5, verifier=ToyVerifier(policy), seed=1)
    assert len(traces) == 4 and all(len(t) == 5 for t in traces)
    assert all(t.finished and t.completion[-1] == EOS and t.reward in (0.0, 1.0)
               for ts in traces for t in ts)
    with pytest.raises(ValueError, match="k must be"):
        mc_step_labels(policy, ToyVerifier(policy), traces[0], 0, step_delimiter=(DELIM,))
    with pytest.raises(TypeError, match="SampledTrace"):
        mc_step_labels(policy, ToyVerifier(policy), ["x"], 2, step_delimiter=(DELIM,))
    with pytest.raises(TypeError, match="verifier"):
        mc_step_labels(policy, object(), traces[0], 2, step_delimiter=(DELIM,))
    with pytest.raises(ValueError, match="tokenizer"):
        mc_step_labels(policy, ToyVerifier(policy), traces[0], 2)  # text delimiter, no tok
    with pytest.raises(TypeError, match="SearchProblem"):
        SampledTrace("p", (1,))


def test_runs_through_the_engine_with_a_task_verifier():
    """The real path: EngineGenerator over a (tiny, untrained) policy and a Countdown task
    verifier; all rollouts of a batch are one Engine.expand call."""
    from o1search.engine import Engine, SamplingParams
    from o1search.policy import PolicyConfig, build_default_policy
    from o1search.search.adapters import EngineGenerator, make_decoder
    from o1search.tasks import CountdownTask

    task = CountdownTask(n_train=4, n_test=1)
    model, tok = build_default_policy(task, PolicyConfig(hidden_size=32, num_layers=1,
                                                         num_heads=2, intermediate_size=32))
    engine = Engine(model, tok, num_pages=512, page_size=8)
    gen = EngineGenerator(engine, tok, step_delimiter="\n")
    decoder = make_decoder(tok)
    problems = [SearchProblem(tuple(tok(task.prompt(p))["input_ids"]), p, i)
                for i, p in enumerate(task.problems("train"))]
    # Gold traces (as token ids) so the labelled paths have known, correct steps.
    traces = [SampledTrace(sp, tuple(tok.encode(task.format_completion(sp.problem.solution),
                                                add_special_tokens=False)), True)
              for sp in problems]
    calls = engine.stats.requests
    labels = mc_step_labels(gen, task, traces, 3, step_delimiter="\n", tokenizer=tok,
                            eos_token_ids=engine.eos_token_ids, decoder=decoder,
                            sampling=SamplingParams(temperature=1.0), max_new_tokens=12)
    assert gen.stats.calls == 1
    n_states = sum(len(lab.step_ends) - 1 for lab in labels)
    assert engine.stats.requests - calls == n_states
    for lab in labels:
        assert lab.terminal[-1] and lab.soft[-1] == 1.0  # a gold trace verifies
        assert all(0.0 <= s <= 1.0 for s in lab.soft)
