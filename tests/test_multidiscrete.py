"""MultiDiscrete action spaces: the factored categorical policy (agents/action_dist.py).

An action layout ``(n_1, ..., n_K)`` cuts the logits into K blocks, one categorical per
component; ``log pi = sum_k log pi_k`` (so V-trace's importance ratio is the product of
the components' ratios) and the entropy is the sum of the components' entropies. These
tests check the functions against hand computations, check that a one-component layout
is bit for bit the code that existed before layouts, and run the whole system (env
wrapper, rollout buffers, learner, checkpoint, evaluation) on a MultiDiscrete env.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import action_dist
from learner import vtrace
from learner.losses import entropy_loss, impala_loss, policy_gradient_loss

LAYOUT = (3, 2)


def _hand_log_softmax(xs):
    m = max(xs)
    z = math.log(sum(math.exp(x - m) for x in xs)) + m
    return [x - z for x in xs]


# -- the distribution against hand computations ----------------------------------------------

def test_log_prob_is_the_sum_of_component_log_softmaxes():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.25],
                           [0.0, 0.0, 0.0, 3.0, -2.0]], dtype=torch.float64)      # [2, 5]
    actions = torch.tensor([[1, 0], [2, 1]])                                      # [2, 2]
    got = action_dist.log_prob(logits, actions, LAYOUT)                           # [2]
    want = [_hand_log_softmax([1.0, 2.0, 0.5])[1] + _hand_log_softmax([-1.0, 0.25])[0],
            _hand_log_softmax([0.0, 0.0, 0.0])[2] + _hand_log_softmax([3.0, -2.0])[1]]
    # written out: log(e^2 / (e + e^2 + e^0.5)) + log(e^-1 / (e^-1 + e^0.25)), log(1/3) + log(e^-2 / (e^3 + e^-2))
    assert want[1] == pytest.approx(math.log(1 / 3) + (-2.0 - math.log(math.exp(3.0) + math.exp(-2.0))), abs=1e-12)
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    # the joint probability is the product of the components'
    p = torch.softmax(logits[0, :3], -1)[1] * torch.softmax(logits[0, 3:], -1)[0]
    assert float(got[0].exp()) == pytest.approx(float(p), abs=1e-12)


def test_entropy_is_the_sum_of_component_entropies():
    logits = torch.tensor([1.0, 2.0, 0.5, -1.0, 0.25], dtype=torch.float64)
    h = 0.0
    for block in ([1.0, 2.0, 0.5], [-1.0, 0.25]):
        lp = _hand_log_softmax(block)
        h -= sum(math.exp(l) * l for l in lp)
    assert float(action_dist.entropy(logits, LAYOUT)) == pytest.approx(h, abs=1e-12)
    # uniform logits: ln 3 + ln 2 = ln 6, the entropy of the uniform joint policy over 6 actions
    assert float(action_dist.entropy(torch.zeros(5, dtype=torch.float64), LAYOUT)) == pytest.approx(math.log(6))
    # the loss is the negative entropy summed over [T, B]
    lg = logits.expand(2, 3, 5)
    assert float(entropy_loss(lg, action_dims=LAYOUT)) == pytest.approx(-6 * h, abs=1e-10)


def test_vtrace_inputs_are_summed_component_log_ratios():
    """log rho = sum_k (log pi_k(a_k) - log mu_k(a_k)), by hand, and the targets built from it."""
    target = torch.tensor([[[0.5, -0.5, 1.0, 0.0, 2.0]], [[0.0, 1.0, 0.0, -1.0, 1.0]]],
                          dtype=torch.float64)                                    # [T=2, B=1, 5]
    behaviour = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0]], [[1.0, 0.0, -1.0, 0.5, 0.5]]],
                             dtype=torch.float64)
    actions = torch.tensor([[[2, 1]], [[1, 0]]])                                  # [2, 1, 2]
    hand = []
    for t, (a0, a1) in enumerate([(2, 1), (1, 0)]):
        tl, bl = target[t, 0].tolist(), behaviour[t, 0].tolist()
        hand.append(_hand_log_softmax(tl[:3])[a0] + _hand_log_softmax(tl[3:])[a1]
                    - _hand_log_softmax(bl[:3])[a0] - _hand_log_softmax(bl[3:])[a1])
    # t = 0: the behaviour is uniform, log mu = log(1/3) + log(1/2)
    assert hand[0] == pytest.approx(_hand_log_softmax([0.5, -0.5, 1.0])[2] + _hand_log_softmax([0.0, 2.0])[1]
                                    - math.log(1 / 6), abs=1e-12)
    discounts = torch.tensor([[0.9], [0.9]], dtype=torch.float64)
    rewards = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    values = torch.tensor([[0.2], [0.4]], dtype=torch.float64)
    boot = torch.tensor([0.3], dtype=torch.float64)
    out = vtrace.from_logits(behaviour, target, actions, discounts, rewards, values, boot,
                             clip_rho_threshold=None, clip_pg_rho_threshold=None, clip_c_threshold=None,
                             action_dims=LAYOUT)
    assert out.log_rhos[:, 0].tolist() == pytest.approx(hand, abs=1e-12)
    # the V-trace recursion by hand, unclipped: v_1 = V1 + rho1 (r1 + g V_T - V1), v_0 = ...
    rho = [math.exp(h) for h in hand]
    v1 = 0.4 + rho[1] * (0.5 + 0.9 * 0.3 - 0.4)
    v0 = 0.2 + rho[0] * (1.0 + 0.9 * 0.4 - 0.2) + 0.9 * rho[0] * (v1 - 0.4)
    assert out.vs[:, 0].tolist() == pytest.approx([v0, v1], abs=1e-12)
    assert out.pg_advantages[:, 0].tolist() == pytest.approx(
        [rho[0] * (1.0 + 0.9 * v1 - 0.2), rho[1] * (0.5 + 0.9 * 0.3 - 0.4)], abs=1e-12)
    # the policy-gradient loss uses the same summed log-probabilities
    adv = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    pg = policy_gradient_loss(target, actions, adv, action_dims=LAYOUT)
    assert float(pg) == pytest.approx(-(2.0 * float(out.target_action_log_probs[0, 0])
                                        - 1.0 * float(out.target_action_log_probs[1, 0])), abs=1e-12)


def test_impala_loss_with_a_layout_checks_the_action_shape():
    T1, B = 4, 3
    gen = torch.Generator().manual_seed(0)
    outputs = {"policy_logits": torch.randn(T1, B, 5, generator=gen), "baseline": torch.randn(T1, B, generator=gen)}
    batch = {"policy_logits": torch.randn(T1, B, 5, generator=gen), "reward": torch.randn(T1, B, generator=gen),
             "done": torch.zeros(T1, B, dtype=torch.bool),
             "action": torch.stack([torch.randint(0, 3, (T1, B), generator=gen),
                                    torch.randint(0, 2, (T1, B), generator=gen)], dim=-1)}
    losses = impala_loss(outputs, batch, action_dims=LAYOUT)
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match=r"batch\['action'\] must be \[4, 3, 2\]"):
        impala_loss(outputs, dict(batch, action=batch["action"][..., 0]), action_dims=LAYOUT)
    with pytest.raises(ValueError, match=r"action layout \(3, 3\) needs 6"):
        impala_loss(outputs, batch, action_dims=(3, 3))
    bad = batch["action"].clone()
    bad[0, 0, 1] = 2
    with pytest.raises(ValueError, match=r"actions component 1 must lie in \[0, 2\).*got values in \[0, 2\]"):
        impala_loss(outputs, dict(batch, action=bad), action_dims=LAYOUT)


def test_greedy_and_sample_per_component():
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0, -2.0]])
    assert action_dist.greedy(logits, LAYOUT).tolist() == [[1, 0]]
    assert action_dist.greedy(logits[0], LAYOUT).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(0)
    # component probabilities: [0.2, 0.5, 0.3] and [0.9, 0.1]
    lg = torch.log(torch.tensor([0.2, 0.5, 0.3, 0.9, 0.1], dtype=torch.float64)).expand(20000, 5)
    a = action_dist.sample(lg, LAYOUT, generator=gen)                               # [20000, 2]
    assert a.shape == (20000, 2) and a.dtype == torch.int64
    f0 = torch.bincount(a[:, 0], minlength=3).double() / 20000
    f1 = torch.bincount(a[:, 1], minlength=2).double() / 20000
    assert torch.allclose(f0, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), atol=0.015)
    assert torch.allclose(f1, torch.tensor([0.9, 0.1], dtype=torch.float64), atol=0.01)
    # independent components: the joint frequency of (1, 1) is 0.5 x 0.1
    assert float(((a[:, 0] == 1) & (a[:, 1] == 1)).double().mean()) == pytest.approx(0.05, abs=0.01)
    # [T, B, 5] -> [T, B, 2]; a non-finite component is sampled uniformly
    assert action_dist.sample(torch.zeros(3, 4, 5), LAYOUT).shape == (3, 4, 2)
    nan = torch.tensor([[float("nan"), 0.0, 0.0, 0.0, 0.0]])
    assert action_dist.sample(nan.expand(100, 5), LAYOUT)[:, 0].unique().numel() > 1


def test_layout_validation():
    assert action_dist.as_action_dims(4) == (4,)
    assert action_dist.as_action_dims(np.array([3, 2]).tolist()) == (3, 2)
    for bad in (0, (), (3, 0), (2.0,), True):
        with pytest.raises(ValueError, match="action layout"):
            action_dist.as_action_dims(bad)
    with pytest.raises(ValueError, match=r"logits have 4 entries.*layout \(3, 2\) needs 5"):
        action_dist.log_prob(torch.zeros(4), torch.tensor([0, 0]), LAYOUT)


# -- one component is the code that existed before layouts, bit for bit ----------------------

def _old_action_log_probs(policy_logits, actions):
    log_probs = F.log_softmax(policy_logits, dim=-1)
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def _old_neg_entropy(logits):
    log_pi = F.log_softmax(logits, dim=-1)
    return (log_pi.exp() * log_pi).sum(dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_component_equals_the_old_formulas_exactly(dtype):
    gen = torch.Generator().manual_seed(3)
    T, B, A = 7, 5, 6
    logits = (3 * torch.randn(T, B, A, generator=gen)).to(dtype).requires_grad_()
    actions = torch.randint(0, A, (T, B), generator=gen)
    old_lp = _old_action_log_probs(logits, actions)
    new_lp = vtrace.action_log_probs(logits, actions, (A,))
    assert torch.equal(old_lp, new_lp) and torch.equal(new_lp, vtrace.action_log_probs(logits, actions))
    (g_old,) = torch.autograd.grad(old_lp.sum(), logits)
    (g_new,) = torch.autograd.grad(new_lp.sum(), logits)
    assert torch.equal(g_old, g_new)
    old_ent = _old_neg_entropy(logits).sum()
    new_ent = entropy_loss(logits)
    assert torch.equal(old_ent, new_ent) and torch.equal(new_ent, entropy_loss(logits, action_dims=(A,)))
    assert torch.equal(-_old_neg_entropy(logits), action_dist.entropy(logits, (A,)))
    (g_old,) = torch.autograd.grad(old_ent, logits)
    (g_new,) = torch.autograd.grad(new_ent, logits)
    assert torch.equal(g_old, g_new)
    assert torch.equal(logits.argmax(-1), action_dist.greedy(logits, (A,)))


def test_one_component_sampling_draws_what_the_old_code_drew():
    """The agent's sampling (float32, global generator) and the evaluation's (float64,
    one generator per episode, one row at a time) consume the generators as before."""
    gen = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(3, 4, 6, generator=gen)                               # [T, B, A]
    torch.manual_seed(11)
    probs = F.softmax(logits.detach().reshape(12, -1).float(), dim=-1)
    old = torch.multinomial(probs, 1).view(3, 4)
    torch.manual_seed(11)
    new = action_dist.sample(logits.detach().float(), (6,))
    assert torch.equal(old, new)
    rows = logits.reshape(12, 6).double()
    old_gens = [torch.Generator().manual_seed(i) for i in range(12)]
    new_gens = [torch.Generator().manual_seed(i) for i in range(12)]
    for _ in range(5):
        p = torch.softmax(rows, dim=-1)
        old = [int(torch.multinomial(p[i], 1, generator=g)) for i, g in enumerate(old_gens)]
        new = [int(action_dist.sample(rows[i], (6,), generator=g)) for i, g in enumerate(new_gens)]
        assert old == new
