"""Losses and advantages of PPO, GRPO, RLOO and DPO against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from o1search.learn import (
    DPOConfig,
    GRPOConfig,
    LoopConfig,
    PPOConfig,
    ReSTConfig,
    SFTConfig,
    clipped_policy_loss,
    compute_gae,
    dpo_loss,
    group_advantages,
    k3_kl,
    rloo_advantages,
    token_rewards,
    value_loss,
)


# -- advantages ---------------------------------------------------------------------------
def test_group_advantages_by_hand() -> None:
    r = [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]
    adv = group_advantages(r, scale=True, eps=0.0)
    # group 1: mean 0.5, unbiased std sqrt(1/3); group 2: mean 0.75, std 0.5
    s1 = math.sqrt(((0.5**2) * 4) / 3)
    want = torch.tensor([[0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1],
                         [0.25 / 0.5, 0.25 / 0.5, 0.25 / 0.5, -0.75 / 0.5]], dtype=torch.float64)
    torch.testing.assert_close(adv, want)
    torch.testing.assert_close(group_advantages(r, scale=False),
                               torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]],
                                            dtype=torch.float64))


def test_group_advantages_equal_rewards_are_zero() -> None:
    adv = group_advantages([[1.0, 1.0, 1.0]])
    assert torch.all(adv == 0)


def test_rloo_by_hand() -> None:
    adv = rloo_advantages([[1.0, 0.0, 0.0], [2.0, 4.0, 0.0]])
    # r_i - mean of the others
    want = torch.tensor([[1 - 0.0, 0 - 0.5, 0 - 0.5], [2 - 2.0, 4 - 1.0, 0 - 3.0]],
                        dtype=torch.float64)
    torch.testing.assert_close(adv, want)


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[1.0]], [[float("nan"), 1.0]]])
def test_advantages_reject_bad_input(bad) -> None:
    with pytest.raises(ValueError):
        group_advantages(bad)
    with pytest.raises(ValueError):
        rloo_advantages(bad)


def test_gae_by_hand() -> None:
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 2.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.6, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=gamma, lam=lam)
    # row 0: deltas
    d2 = 1.0 + 0 - 0.3
    d1 = 0.0 + gamma * 0.3 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.1
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    # row 1: length 2; the padded value (9.0) must not leak in
    e1 = 2.0 - 0.6
    e0 = 0.5 + gamma * 0.6 - 0.4
    b1 = e1
    b0 = e0 + gamma * lam * b1
    want = torch.tensor([[a0, a1, a2], [b0, b1, 0.0]])
    torch.testing.assert_close(adv, want)
    torch.testing.assert_close(ret, (want + values) * mask)


def test_gae_lambda_one_gamma_one_is_return_minus_value() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.3, 0.5, 0.7]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.7, 0.5, 0.3]]))
    torch.testing.assert_close(ret, torch.ones(1, 3))


def test_token_rewards_places_outcome_steps_and_kl() -> None:
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3, 5.0], [1.0, -1.0, 7.0, 7.0]])
    r = token_rewards(mask, outcomes=[1.0, 0.0], kl=kl, kl_coef=0.5)
    want = torch.tensor([[-0.05, -0.1, 1.0 - 0.15, 0.0], [-0.5, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(r, want)
    d = token_rewards(mask, step_positions=[[0, 2], [1]], step_rewards=[[0.2, 0.8], [-1.0]])
    torch.testing.assert_close(d, torch.tensor([[0.2, 0.0, 0.8, 0.0], [0.0, -1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError):
        token_rewards(mask, step_positions=[[0], [1]], step_rewards=[[0.2, 0.8], [1.0]])
    with pytest.raises(ValueError):
        token_rewards(mask, step_positions=[[3], [1]], step_rewards=[[0.2], [1.0]])


# -- clipped objective ---------------------------------------------------------------------
def _hand_clipped(lp, old, adv, lo, hi):
    ratio = math.exp(lp - old)
    return -min(ratio * adv, min(max(ratio, 1 - lo), 1 + hi) * adv)


def test_clipped_policy_loss_by_hand() -> None:
    lp = torch.tensor([[-0.5, -1.0, 0.0], [-0.2, -0.1, -3.0]])
    old = torch.tensor([[-1.0, -1.0, 0.0], [-0.1, -0.9, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([2.0, -1.0])
    per = [[_hand_clipped(lp[i, t].item(), old[i, t].item(), adv[i].item(), 0.2, 0.28)
            for t in range(3)] for i in range(2)]
    grpo = ((per[0][0] + per[0][1]) / 2 + sum(per[1]) / 3) / 2
    dapo = (per[0][0] + per[0][1] + sum(per[1])) / 5
    dr = (per[0][0] + per[0][1] + sum(per[1])) / (2 * 10)
    for loss_type, want, kw in (("grpo", grpo, {}), ("dapo", dapo, {}),
                                ("dr_grpo", dr, {"max_len": 10})):
        loss, st = clipped_policy_loss(lp, old, adv, mask, epsilon=0.2, epsilon_high=0.28,
                                       loss_type=loss_type, **kw)
        assert loss.item() == pytest.approx(want, rel=1e-5), loss_type
    # clip fraction: token (0,0): ratio e^0.5 > 1.28 with A > 0 -> clipped;
    # (1,1): ratio e^0.8 > 1.28 with A < 0 -> not clipped (min picks the unclipped)
    assert st["clip_frac"] == pytest.approx(1 / 5)


def test_clipped_loss_gradient_is_zero_when_clipped() -> None:
    lp = torch.tensor([[0.5]], requires_grad=True)
    loss, _ = clipped_policy_loss(lp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1))
    loss.backward()
    assert lp.grad.item() == 0.0  # ratio e^0.5 beyond 1.2 with A > 0: no push further


def test_k3_kl_zero_iff_equal_and_positive() -> None:
    a = torch.tensor([-1.0, -2.0, -0.1])
    assert torch.all(k3_kl(a, a) == 0)
    b = torch.tensor([-1.5, -1.0, -0.1])
    d = b - a
    torch.testing.assert_close(k3_kl(a, b), torch.exp(d) - d - 1)
    assert torch.all(k3_kl(a, b) >= 0)


def test_kl_term_in_loss_and_errors() -> None:
    lp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    m = torch.ones(1, 2)
    base, _ = clipped_policy_loss(lp, lp, torch.tensor([0.0]), m)
    with_kl, st = clipped_policy_loss(lp, lp, torch.tensor([0.0]), m, ref_logprobs=ref,
                                      kl_coef=0.5)
    kl = (math.exp(-0.5) + 0.5 - 1) / 2
    assert st["kl"] == pytest.approx(kl, rel=1e-5)
    assert (with_kl - base).item() == pytest.approx(0.5 * kl, rel=1e-5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        clipped_policy_loss(lp, lp, torch.tensor([0.0]), m, kl_coef=0.1)
    with pytest.raises(ValueError, match="max_len"):
        clipped_policy_loss(lp, lp, torch.tensor([0.0]), m, loss_type="dr_grpo")
    with pytest.raises(ValueError):
        clipped_policy_loss(lp, lp, torch.tensor([0.0, 1.0]), m)


def test_value_loss_by_hand() -> None:
    v = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.0]])
    ret = torch.tensor([[0.0, 1.0]])
    m = torch.ones(1, 2)
    # token 0: unclipped (1-0)^2 = 1, clipped 0.5+0.2=0.7 -> 0.49; max = 1
    # token 1: unclipped 1, clipped (0-1)^2 = 1
    assert value_loss(v, old, ret, m, clip=0.2).item() == pytest.approx(0.5 * (1 + 1) / 2)
    assert value_loss(v, old, ret, m, clip=None).item() == pytest.approx(0.5)


# -- DPO -----------------------------------------------------------------------------------
def test_dpo_loss_by_hand() -> None:
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-2.5, -1.5])
    beta = 0.5
    h = [(-1.0 + 1.5) - (-3.0 + 2.5), (-2.0 + 2.0) - (-1.0 + 1.5)]  # [1.0, -0.5]

    def ls(x: float) -> float:
        return -math.log(1 + math.exp(-x))  # log sigmoid

    losses, cr, rj = dpo_loss(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(losses, torch.tensor([-ls(beta * h[0]), -ls(beta * h[1])]))
    torch.testing.assert_close(cr, torch.tensor([0.25, 0.0]))
    torch.testing.assert_close(rj, torch.tensor([-0.25, 0.25]))
    eps = 0.1
    smooth, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    torch.testing.assert_close(smooth, torch.tensor(
        [-(1 - eps) * ls(beta * x) - eps * ls(-beta * x) for x in h]))
    ipo, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="ipo")
    torch.testing.assert_close(ipo, torch.tensor([(x - 1 / (2 * beta)) ** 2 for x in h]))


def test_dpo_loss_policy_equals_reference_is_log2() -> None:
    x = torch.tensor([-1.0, -4.0])
    losses, _, _ = dpo_loss(x, x + 1, x, x + 1, beta=0.3)
    torch.testing.assert_close(losses, torch.full((2,), math.log(2)))
    with pytest.raises(ValueError):
        dpo_loss(x, x, x, x[:1])
    with pytest.raises(ValueError):
        dpo_loss(x, x, x, x, beta=0.0)


# -- configs reject bad combinations with a hint ---------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: GRPOConfig(num_generations=1), "PPO"),
    (lambda: GRPOConfig(loss_type="dr_grpo", scale_rewards=True), "scale_rewards"),
    (lambda: GRPOConfig(advantage="rloo", scale_rewards=True), "RLOO"),
    (lambda: GRPOConfig(epsilon=0.2, epsilon_high=0.1), "clip-higher"),
    (lambda: GRPOConfig(loss_type="ppo"), "loss_type"),
    (lambda: PPOConfig(reward_mode="prm"), "reward_mode"),
    (lambda: PPOConfig(lam=1.5), "lam"),
    (lambda: DPOConfig(loss_type="ipo", label_smoothing=0.1), "IPO"),
    (lambda: DPOConfig(beta=0), "beta"),
    (lambda: ReSTConfig(sft=SFTConfig(num_epochs=1.0)), "max_steps"),
    (lambda: ReSTConfig(algorithm="dfs"), "algorithm"),
    (lambda: LoopConfig(method="dpo"), "mcts"),
    (lambda: LoopConfig(method="rloo"), "advantage"),
])
def test_configs_reject_bad_combinations(make, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_grpo_config_resolves_scaling() -> None:
    assert GRPOConfig().scale is True
    assert GRPOConfig(loss_type="dr_grpo").scale is False
    assert GRPOConfig(advantage="rloo").scale is False
    assert GRPOConfig(epsilon_high=0.28).clip_high == 0.28
