"""Task sources: Countdown's use-all rule.

Oracles: real GSM8K and MATH rows whose answers were checked by hand (below); reasoning-gym's
own ``score_answer`` (its gold answer scores 1.0); HumanEval's canonical solutions (they
pass) and bodies that are wrong by hand; Countdown traces computed by hand.
"""

from __future__ import annotations

import pytest

from o1search.tasks import CountdownTask, get_task
from o1search.tasks.base import Problem

# --------------------------------------------------------------------- Countdown use_all
def _cd(use_all):
    task = CountdownTask(n_train=1, n_test=1, use_all=use_all)
    return task, Problem("h", "nums 2 3 4 target 20", "20",
                         metadata={"nums": (2, 3, 4), "target": 20})


@pytest.mark.parametrize("trace, default, use_all", [
    ("2+3=5\n5*4=20\nanswer 20", 1.0, 1.0),   # all three numbers, once each
    ("4*5=20\nanswer 20", 0.0, 0.0),          # 5 is not given
    ("2*3=6\n4*5=20\nanswer 20", 0.0, 0.0),   # 5 is not available
    ("3+2=5\n4*5=20\n2*3=6\nanswer 6", 0.0, 0.0),
])
def test_countdown_use_all_hand_checked(trace, default, use_all):
    for flag, want in ((False, default), (True, use_all)):
        task, p = _cd(flag)
        assert task.verify(p, trace) == want


def test_countdown_use_all_rejects_unused_numbers():
    # nums 2 3 10, target 30: 3*10 reaches it but leaves 2 unused.
    task, _ = _cd(True)
    p = Problem("u", "nums 2 3 10 target 30", "30", metadata={"nums": (2, 3, 10), "target": 30})
    assert CountdownTask(n_train=1, n_test=1).verify(p, "3*10=30\nanswer 30") == 1.0
    r = task.evaluate(p, "3*10=30\nanswer 30")
    assert r.reward == 0.0 and "left over: 2" in r.reason
    assert task.verify(p, "10*2=20\n20+3=23\nanswer 23") == 0.0
    assert task.verify(p, "2*10=20\n20/2=10\nanswer 10") == 0.0
    # A left-over intermediate result counts too: 2+4=6 made, never used.
    q = Problem("v", "nums 2 4 3 10 target 30", "30",
                metadata={"nums": (2, 4, 3, 10), "target": 30})
    assert CountdownTask(n_train=1, n_test=1).verify(q, "2+4=6\n3*10=30\nanswer 30") == 1.0
    r = task.evaluate(q, "2+4=6\n3*10=30\nanswer 30")
    assert r.reward == 0.0 and "left over: 6" in r.reason


def test_countdown_use_all_gold_traces_verify_and_problems_are_unchanged():
    plain = CountdownTask(n_train=100, n_test=20, seed=5, num_count=4)
    strict = CountdownTask(n_train=100, n_test=20, seed=5, num_count=4, use_all=True,
                           correction_prob=0.3, check_prob=0.3)
    assert [p.question for p in strict.train] == [p.question for p in plain.train]
    for p in strict.train + strict.test:
        assert strict.verify(p, strict.format_completion(p.solution)) == 1.0
        assert strict.verify(p, strict.demonstration(p, 1)) == 1.0
    assert get_task("countdown", use_all=True, n_train=2, n_test=1).use_all
