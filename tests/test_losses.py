"""IMPALA losses (learner/losses.py) against hand-computed values and closed-form gradients."""

import math

import numpy as np
import pytest
import torch

from learner import losses
from tests.test_vtrace import vtrace_slow

torch.set_num_threads(1)

LOG2 = math.log(2.0)


def _logits_quarter_threequarters():
    # One time step, two batch rows, pi = [0.25, 0.75] in both rows.
    return torch.log(torch.tensor([[[1.0, 3.0], [1.0, 3.0]]], dtype=torch.float64))   # [1, 2, 2]


def test_policy_gradient_loss_hand_computed():
    logits = _logits_quarter_threequarters().requires_grad_()
    actions = torch.tensor([[0, 1]])
    advantages = torch.tensor([[2.0, -1.0]], dtype=torch.float64, requires_grad=True)
    # -log(1/4) * 2 + -log(3/4) * (-1) = log 16 + log 3/4 = log 12.
    loss = losses.policy_gradient_loss(logits, actions, advantages)
    torch.testing.assert_close(loss, torch.tensor(math.log(12.0), dtype=torch.float64))
    torch.testing.assert_close(losses.policy_gradient_loss(logits, actions, advantages, reduction="mean"),
                               torch.tensor(math.log(12.0) / 2, dtype=torch.float64))
    loss.backward()
    # d/dz (-log pi_a * A) = A (pi - onehot(a)).
    torch.testing.assert_close(logits.grad, torch.tensor([[[-1.5, 1.5], [-0.25, 0.25]]], dtype=torch.float64))
    assert advantages.grad is None                                      # advantages are constants


def test_baseline_loss_hand_computed():
    advantages = torch.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    loss = losses.baseline_loss(advantages)
    torch.testing.assert_close(loss, torch.tensor(7.0))                 # 0.5 * (1 + 4 + 9)
    torch.testing.assert_close(losses.baseline_loss(advantages, reduction="mean"), torch.tensor(7.0 / 3))
    loss.backward()
    torch.testing.assert_close(advantages.grad, torch.tensor([[1.0, -2.0, 3.0]]))


def test_entropy_loss_hand_computed():
    logits = torch.cat([_logits_quarter_threequarters(), torch.zeros(1, 2, 2, dtype=torch.float64)])  # [2, 2, 2]
    # Two rows of pi = [1/4, 3/4] and two uniform rows over 2 actions (p log p sums to -log 2).
    row = 0.25 * math.log(0.25) + 0.75 * math.log(0.75)
    expected = 2 * row - 2 * LOG2
    torch.testing.assert_close(losses.entropy_loss(logits), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(losses.entropy_loss(logits, reduction="mean"),
                               torch.tensor(expected / 4, dtype=torch.float64))


def test_bad_reduction_and_shapes_raise():
    logits = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        losses.entropy_loss(logits, reduction="avg")
    with pytest.raises(ValueError, match="unknown reduction 'none'"):
        losses.baseline_loss(torch.zeros(2, 3), reduction="none")
    with pytest.raises(ValueError, match=r"advantages must be \[T, B\] like actions \[2, 3\]"):
        losses.policy_gradient_loss(logits, torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"logits must be \[T, B, A\]"):
        losses.entropy_loss(torch.zeros(2, 3))


def _tiny_unroll(done_last=False):
    """T = 2, B = 1, A = 2, on-policy (all logits zero, so rho = c = 1, pi = 1/2)."""
    learner_outputs = {"policy_logits": torch.zeros(3, 1, 2, dtype=torch.float64),
                       "baseline": torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)}
    batch = {"action": torch.tensor([[0], [1], [0]]),
             "policy_logits": torch.zeros(3, 1, 2, dtype=torch.float64),
             "reward": torch.tensor([[99.0], [2.5], [0.0]], dtype=torch.float64),    # entry 0 unused
             "done": torch.tensor([[True], [False], [done_last]])}
    return learner_outputs, batch


def test_impala_loss_golden_tiny_unroll():
    # gamma = 0.5, r = clip([2.5, 0]) = [1, 0], V = [1, 2], V(x_2) = 3.
    # v_1 = 2 + (0 + 0.5*3 - 2) = 1.5; v_0 = 1 + (1 + 0.5*2 - 1) + 0.5*(1.5 - 2) = 1.75.
    # A_0 = 1 + 0.5*1.5 - 1 = 0.75; A_1 = 0 + 0.5*3 - 2 = -0.5.
    out = losses.impala_loss(*_tiny_unroll(), discount=0.5, baseline_cost=0.5, entropy_cost=0.01)
    pg = LOG2 * (0.75 - 0.5)                                     # -log(1/2) * A summed
    base = 0.5 * ((1.75 - 1.0) ** 2 + (1.5 - 2.0) ** 2)          # 0.40625
    ent = -2 * LOG2
    for key, value in (("pg_loss", pg), ("baseline_loss", base), ("entropy_loss", ent),
                       ("total_loss", pg + 0.5 * base + 0.01 * ent)):
        torch.testing.assert_close(out[key], torch.tensor(value, dtype=torch.float64), msg=key)

    # Episode ends after step 1 (done[2]): gamma_1 = 0 -> v_1 = 0, v_0 = 2 + 0.5*(0 - 2) = 1,
    # A_0 = 1 + 0 - 1 = 0, A_1 = -2.
    out = losses.impala_loss(*_tiny_unroll(done_last=True), discount=0.5)
    torch.testing.assert_close(out["pg_loss"], torch.tensor(-2 * LOG2, dtype=torch.float64))
    torch.testing.assert_close(out["baseline_loss"], torch.tensor(0.5 * (0.0 + 4.0), dtype=torch.float64))

    # No reward clipping: r_0 = 2.5 -> v_0 = 1 + 2.5 + 0.5*(1.5 - 2) = 3.25, A_0 = 2.25.
    out = losses.impala_loss(*_tiny_unroll(), discount=0.5, reward_clip=None)
    torch.testing.assert_close(out["pg_loss"], torch.tensor(LOG2 * (2.25 - 0.5), dtype=torch.float64))
    torch.testing.assert_close(out["baseline_loss"],
                               torch.tensor(0.5 * (2.25 ** 2 + 0.25), dtype=torch.float64))


def _random_unroll(T, B, A, seed):
    g = torch.Generator().manual_seed(seed)
    learner_outputs = {"policy_logits": torch.randn(T + 1, B, A, generator=g, dtype=torch.float64),
                       "baseline": torch.randn(T + 1, B, generator=g, dtype=torch.float64)}
    batch = {"action": torch.randint(0, A, (T + 1, B), generator=g),
             "policy_logits": torch.randn(T + 1, B, A, generator=g, dtype=torch.float64),
             "reward": 2.0 * torch.randn(T + 1, B, generator=g, dtype=torch.float64),   # some beyond +-1
             "done": torch.rand(T + 1, B, generator=g) < 0.25}
    return learner_outputs, batch


def _reference_terms(learner_outputs, batch, discount, reward_clip, **vtrace_kwargs):
    """Slow numpy V-trace on the sliced batch, then each loss from its formula (float64)."""
    target = torch.log_softmax(learner_outputs["policy_logits"][:-1].detach(), -1).numpy()   # [T, B, A]
    behavior = torch.log_softmax(batch["policy_logits"][:-1].detach(), -1).numpy()                  # [T, B, A]
    a = batch["action"][:-1].numpy()                                                         # [T, B]
    T, B = a.shape
    idx_t, idx_b = np.meshgrid(np.arange(T), np.arange(B), indexing="ij")
    log_rhos = target[idx_t, idx_b, a] - behavior[idx_t, idx_b, a]
    rewards = np.clip(batch["reward"][1:].numpy(), -reward_clip, reward_clip)
    discounts = discount * (1.0 - batch["done"][1:].numpy().astype(np.float64))
    values = learner_outputs["baseline"][:-1].detach().numpy()
    boot = learner_outputs["baseline"][-1].detach().numpy()
    vs, pg_adv = vtrace_slow(log_rhos, discounts, rewards, values, boot, **vtrace_kwargs)
    pi = np.exp(target)
    return dict(vs=vs, pg_adv=pg_adv, values=values, pi=pi, a=a, target=target,
                pg_loss=np.sum(-target[idx_t, idx_b, a] * pg_adv),
                baseline_loss=0.5 * np.sum((vs - values) ** 2),
                entropy_loss=np.sum(pi * target))


@pytest.mark.parametrize("T, B, A", [(1, 2, 3), (7, 3, 5)])
def test_impala_loss_matches_reference_and_total_is_weighted_sum(T, B, A):
    learner_outputs, batch = _random_unroll(T, B, A, seed=T)
    kwargs = dict(clip_rho_threshold=2.0, clip_pg_rho_threshold=1.0)
    ref = _reference_terms(learner_outputs, batch, discount=0.9, reward_clip=1.0, **kwargs)
    out = losses.impala_loss(learner_outputs, batch, discount=0.9, baseline_cost=0.3, entropy_cost=0.05,
                             **kwargs)
    for key in ("pg_loss", "baseline_loss", "entropy_loss"):
        np.testing.assert_allclose(out[key].item(), ref[key], rtol=1e-10, err_msg=key)
    torch.testing.assert_close(out["total_loss"],
                               out["pg_loss"] + 0.3 * out["baseline_loss"] + 0.05 * out["entropy_loss"])

    mean = losses.impala_loss(learner_outputs, batch, discount=0.9, baseline_cost=0.3, entropy_cost=0.05,
                              reduction="mean", **kwargs)
    for key in out:
        torch.testing.assert_close(mean[key], out[key] / (T * B), msg=key)


def test_impala_loss_gradients_flow_into_logits_and_baseline_not_through_vs():
    T, B, A = 6, 3, 4
    baseline_cost, entropy_cost = 0.5, 0.01
    learner_outputs, batch = _random_unroll(T, B, A, seed=42)
    logits = learner_outputs["policy_logits"].requires_grad_()            # [T+1, B, A]
    baseline = learner_outputs["baseline"].requires_grad_()               # [T+1, B]
    batch["policy_logits"].requires_grad_()                               # must get no gradient either
    out = losses.impala_loss(learner_outputs, batch, discount=0.99, baseline_cost=baseline_cost,
                             entropy_cost=entropy_cost)
    out["total_loss"].backward()
    ref = _reference_terms(learner_outputs, batch, discount=0.99, reward_clip=1.0)

    # Baseline: vs is a constant, so d/dV_s = -baseline_cost (v_s - V_s), and the bootstrap V(x_T)
    # (which enters only through vs) gets exactly zero.
    expected_baseline_grad = np.zeros((T + 1, B))
    expected_baseline_grad[:-1] = -baseline_cost * (ref["vs"] - ref["values"])
    np.testing.assert_allclose(baseline.grad.numpy(), expected_baseline_grad, rtol=1e-10, atol=1e-12)
    assert torch.all(baseline.grad[-1] == 0)

    # Logits: pg term A_s (pi - onehot(a_s)); negative entropy term pi_j (log pi_j - sum_i pi_i log pi_i).
    pi, log_pi = ref["pi"], ref["target"]                                  # [T, B, A]
    onehot = np.eye(A)[ref["a"]]                                           # [T, B, A]
    neg_entropy = np.sum(pi * log_pi, -1, keepdims=True)                   # [T, B, 1]
    expected_logits_grad = np.zeros((T + 1, B, A))
    expected_logits_grad[:-1] = (ref["pg_adv"][..., None] * (pi - onehot)
                                 + entropy_cost * pi * (log_pi - neg_entropy))
    np.testing.assert_allclose(logits.grad.numpy(), expected_logits_grad, rtol=1e-10, atol=1e-12)
    assert torch.all(logits.grad[-1] == 0)
    assert batch["policy_logits"].grad is None


def test_impala_loss_accepts_float_done():
    learner_outputs, batch = _random_unroll(4, 2, 3, seed=9)
    as_bool = losses.impala_loss(learner_outputs, batch)
    batch["done"] = batch["done"].to(torch.uint8)
    as_uint8 = losses.impala_loss(learner_outputs, batch)
    for key in as_bool:
        torch.testing.assert_close(as_uint8[key], as_bool[key], msg=key)


def test_impala_loss_bad_inputs_raise():
    learner_outputs, batch = _random_unroll(4, 2, 3, seed=0)
    with pytest.raises(KeyError, match="batch has no 'reward' entry"):
        losses.impala_loss(learner_outputs, {k: v for k, v in batch.items() if k != "reward"})
    with pytest.raises(ValueError, match=r"learner_outputs\['baseline'\] must be \[5, 2\]"):
        losses.impala_loss({**learner_outputs, "baseline": torch.zeros(5, 2, 1)}, batch)
    with pytest.raises(ValueError, match=r"batch\['done'\] must be \[5, 2\]"):
        losses.impala_loss(learner_outputs, {**batch, "done": torch.zeros(4, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"must be \[T\+1, B, A\] with T >= 1"):
        losses.impala_loss({k: v[:1] for k, v in learner_outputs.items()}, {k: v[:1] for k, v in batch.items()})
    with pytest.raises(ValueError, match="reward_clip must be > 0 or None, got 0"):
        losses.impala_loss(learner_outputs, batch, reward_clip=0)
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        losses.impala_loss(learner_outputs, batch, reduction="avg")
