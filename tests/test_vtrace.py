"""V-trace (learner/vtrace.py) against a slow numpy double loop over the paper's sum formula.

Espeholt et al. 2018, eq. (1) with per-step discounts (docs/design.md#v-trace):
``v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))``.
"""

import math

import numpy as np
import pytest
import torch

from learner import vtrace

torch.set_num_threads(1)


def _clip(x, threshold):
    return x if threshold is None else np.minimum(threshold, x)


def vtrace_slow(log_rhos, discounts, rewards, values, bootstrap_value, clip_rho_threshold=1.0,
                clip_pg_rho_threshold=1.0, lambda_=1.0, clip_c_threshold=1.0):
    """Non-recursive V-trace, written from the paper's notation. All numpy float64, [T, B]."""
    T, B = log_rhos.shape
    ratios = np.exp(log_rhos)                                 # pi / mu
    rhos = _clip(ratios, clip_rho_threshold)
    cs = lambda_ * _clip(ratios, clip_c_threshold)
    v = np.concatenate([values, bootstrap_value[None]], 0)   # [T+1, B]  V(x_0..x_T)
    vs = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            v_s = v[s, b]
            for t in range(s, T):
                weight = 1.0                                 # prod_{i=s}^{t-1} gamma_i c_i
                for i in range(s, t):
                    weight *= discounts[i, b] * cs[i, b]
                delta_t = rhos[t, b] * (rewards[t, b] + discounts[t, b] * v[t + 1, b] - v[t, b])
                v_s += weight * delta_t
            vs[s, b] = v_s
    vs_next = np.concatenate([vs[1:], bootstrap_value[None]], 0)
    pg_advantages = _clip(ratios, clip_pg_rho_threshold) * (rewards + discounts * vs_next - values)
    return vs, pg_advantages


def _random_inputs(T, B, seed, episode_end_prob=0.2):
    rng = np.random.default_rng(seed)
    discounts = 0.9 * (rng.random((T, B)) > episode_end_prob)     # zero at episode ends
    return dict(
        log_rhos=rng.normal(0.0, 0.8, (T, B)),                      # ratios both sides of 1
        discounts=discounts,
        rewards=rng.normal(0.0, 1.0, (T, B)),
        values=rng.normal(0.0, 1.0, (T, B)),
        bootstrap_value=rng.normal(0.0, 1.0, (B,)),
    )


def _torch(inputs):
    return {k: torch.from_numpy(v) for k, v in inputs.items()}


@pytest.mark.parametrize("T", [1, 5, 20])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("thresholds", [
    dict(),                                                                   # defaults: 1, 1, lambda 1
    dict(clip_rho_threshold=None, clip_pg_rho_threshold=None),
    dict(clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5),
    dict(clip_rho_threshold=3.7, clip_pg_rho_threshold=None, lambda_=0.6),
    dict(lambda_=0.0),
    dict(lambda_=0.95, clip_c_threshold=1.5),
    dict(clip_c_threshold=None, clip_rho_threshold=None),
])
def test_from_importance_weights_matches_slow_sum(T, B, thresholds):
    inputs = _random_inputs(T, B, seed=T * 100 + B)
    expected_vs, expected_pg = vtrace_slow(**inputs, **thresholds)
    out = vtrace.from_importance_weights(**_torch(inputs), **thresholds)
    assert out.vs.dtype == torch.float64
    np.testing.assert_allclose(out.vs.numpy(), expected_vs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.pg_advantages.numpy(), expected_pg, rtol=1e-12, atol=1e-12)


def test_float32_inputs_match_slow_sum():
    inputs = _random_inputs(20, 4, seed=7)
    expected_vs, expected_pg = vtrace_slow(**inputs, clip_rho_threshold=2.0)
    out = vtrace.from_importance_weights(**{k: v.float() for k, v in _torch(inputs).items()},
                                         clip_rho_threshold=2.0)
    assert out.vs.dtype == torch.float32
    np.testing.assert_allclose(out.vs.numpy(), expected_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.pg_advantages.numpy(), expected_pg, rtol=1e-5, atol=1e-5)


def test_golden_hand_worked():
    # T = 2, B = 1: V = [1, 2], V(x_2) = 3, r = [1, 0], gamma = [0.5, 0.5], pi/mu = [2, 0.5].
    # rho = c = [1, 0.5]. delta_1 = 0.5 (0 + 0.5*3 - 2) = -0.25 -> v_1 = 1.75.
    # delta_0 = 1 (1 + 0.5*2 - 1) = 1 -> v_0 = 1 + 1 + 0.5*1*(1.75 - 2) = 1.875.
    # A_0 = 1 (1 + 0.5*1.75 - 1) = 0.875; A_1 = 0.5 (0 + 0.5*3 - 2) = -0.25.
    args = dict(log_rhos=torch.tensor([[math.log(2.0)], [math.log(0.5)]], dtype=torch.float64),
                discounts=torch.tensor([[0.5], [0.5]], dtype=torch.float64),
                rewards=torch.tensor([[1.0], [0.0]], dtype=torch.float64),
                values=torch.tensor([[1.0], [2.0]], dtype=torch.float64),
                bootstrap_value=torch.tensor([3.0], dtype=torch.float64))
    out = vtrace.from_importance_weights(**args)
    torch.testing.assert_close(out.vs, torch.tensor([[1.875], [1.75]], dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[0.875], [-0.25]], dtype=torch.float64))

    # No rho clipping: rho_0 = 2 -> delta_0 = 2, v_0 = 1 + 2 + 0.5*1*(-0.25) = 2.875 (c_0 still 1);
    # A_0 = 2 * 0.875 = 1.75.
    out = vtrace.from_importance_weights(**args, clip_rho_threshold=None, clip_pg_rho_threshold=None)
    torch.testing.assert_close(out.vs, torch.tensor([[2.875], [1.75]], dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[1.75], [-0.25]], dtype=torch.float64))

    # lambda = 0.5: c = [0.5, 0.25] -> v_0 = 2 + 0.5*0.5*(-0.25) = 1.9375; v_1, A unchanged.
    out = vtrace.from_importance_weights(**args, lambda_=0.5)
    torch.testing.assert_close(out.vs, torch.tensor([[1.9375], [1.75]], dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[0.875], [-0.25]], dtype=torch.float64))

    # Episode ends after step 0 (gamma_0 = 0): v_0 = 1 + (1 - 1) = 1, nothing from step 1.
    args["discounts"] = torch.tensor([[0.0], [0.5]], dtype=torch.float64)
    out = vtrace.from_importance_weights(**args)
    torch.testing.assert_close(out.vs, torch.tensor([[1.0], [1.75]], dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[0.0], [-0.25]], dtype=torch.float64))


def test_on_policy_is_discounted_n_step_return():
    # pi == mu, lambda = 1: v_s is the n-step bootstrapped return sum gamma^k r + gamma^n V(x_T).
    T, B, gamma = 6, 2, 0.9
    rng = np.random.default_rng(3)
    rewards, values, boot = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=(B,))
    expected = np.zeros((T, B))
    for s in range(T):
        expected[s] = sum(gamma ** (t - s) * rewards[t] for t in range(s, T)) + gamma ** (T - s) * boot
    out = vtrace.from_importance_weights(torch.zeros(T, B, dtype=torch.float64),
                                         torch.full((T, B), gamma, dtype=torch.float64),
                                         torch.from_numpy(rewards), torch.from_numpy(values),
                                         torch.from_numpy(boot))
    np.testing.assert_allclose(out.vs.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_trace_stops_at_episode_boundary():
    # What happens after a zero discount must not reach v_s for s up to the episode end.
    inputs = _torch(_random_inputs(10, 3, seed=11, episode_end_prob=0.0))
    inputs["discounts"][4] = 0.0                                            # episode ends after step 4
    base = vtrace.from_importance_weights(**inputs)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["rewards"][5:] += 10.0
    changed["values"][5:] -= 7.0
    changed["bootstrap_value"] += 3.0
    changed["log_rhos"][5:] += 0.3
    out = vtrace.from_importance_weights(**changed)
    torch.testing.assert_close(out.vs[:5], base.vs[:5], rtol=0, atol=0)
    torch.testing.assert_close(out.pg_advantages[:5], base.pg_advantages[:5], rtol=0, atol=0)
    assert not torch.allclose(out.vs[5:], base.vs[5:])


def test_from_logits_consistent_with_importance_weights():
    T, B, A = 5, 4, 6
    g = torch.Generator().manual_seed(0)
    behavior_logits = torch.randn(T, B, A, generator=g, dtype=torch.float64)
    target_logits = torch.randn(T, B, A, generator=g, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, A, (T, B), generator=g)
    inputs = _torch(_random_inputs(T, B, seed=5))
    del inputs["log_rhos"]

    out = vtrace.from_logits(behavior_logits, target_logits, actions, **inputs,
                             clip_rho_threshold=1.5, clip_pg_rho_threshold=None, lambda_=0.9)

    # Log-probabilities by hand: log softmax picked at the action.
    pi = torch.softmax(target_logits.detach(), -1)
    mu = torch.softmax(behavior_logits, -1)
    target_lp = torch.log(pi.gather(-1, actions[..., None])[..., 0])
    behavior_lp = torch.log(mu.gather(-1, actions[..., None])[..., 0])
    torch.testing.assert_close(out.target_action_log_probs.detach(), target_lp)
    torch.testing.assert_close(out.behavior_action_log_probs, behavior_lp)
    torch.testing.assert_close(out.log_rhos.detach(), target_lp - behavior_lp)

    ref = vtrace.from_importance_weights(target_lp - behavior_lp, **inputs, clip_rho_threshold=1.5,
                                         clip_pg_rho_threshold=None, lambda_=0.9)
    torch.testing.assert_close(out.vs, ref.vs)
    torch.testing.assert_close(out.pg_advantages, ref.pg_advantages)

    # The targets are constants; the log-probs keep the graph to the target logits.
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad
    assert out.target_action_log_probs.requires_grad and out.log_rhos.requires_grad


def test_targets_carry_no_gradient():
    inputs = {k: v.requires_grad_() for k, v in _torch(_random_inputs(4, 2, seed=1)).items()}
    out = vtrace.from_importance_weights(**inputs)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad


def _good_args(T=4, B=3):
    return dict(log_rhos=torch.zeros(T, B), discounts=torch.ones(T, B), rewards=torch.zeros(T, B),
                values=torch.zeros(T, B), bootstrap_value=torch.zeros(B))


@pytest.mark.parametrize("key, bad, match", [
    ("log_rhos", torch.zeros(4, 3, 1), "log_rhos must be"),
    ("discounts", torch.zeros(3, 4), r"discounts must be \[T, B\] = \[4, 3\]"),
    ("rewards", torch.zeros(4), "rewards must be"),
    ("values", torch.zeros(5, 3), "values must be"),
    ("bootstrap_value", torch.zeros(1, 3), r"bootstrap_value must be \[B\] = \[3\]"),
])
def test_bad_shapes_raise(key, bad, match):
    args = _good_args()
    args[key] = bad
    with pytest.raises(ValueError, match=match):
        vtrace.from_importance_weights(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(clip_rho_threshold=0.0), "clip_rho_threshold must be > 0"),
    (dict(clip_pg_rho_threshold=-1.0), "clip_pg_rho_threshold must be > 0"),
    (dict(clip_c_threshold=0.0), "clip_c_threshold must be > 0"),
    (dict(lambda_=1.5), r"lambda_ must be in \[0, 1\]"),
])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vtrace.from_importance_weights(**_good_args(), **kwargs)


def test_integer_values_raise():
    args = _good_args()
    args["rewards"] = torch.zeros(4, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="rewards must be a floating-point tensor"):
        vtrace.from_importance_weights(**args)


def test_from_logits_bad_inputs_raise():
    T, B, A = 4, 3, 5
    args = _good_args(T, B)
    del args["log_rhos"]
    logits = torch.zeros(T, B, A)
    with pytest.raises(ValueError, match="must have the same shape"):
        vtrace.from_logits(logits, torch.zeros(T, B, A + 1), torch.zeros(T, B, dtype=torch.long), **args)
    with pytest.raises(ValueError, match=r"actions must be \[T, B\] = \[4, 3\]"):
        vtrace.from_logits(logits, logits, torch.zeros(T, dtype=torch.long), **args)
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 5\).*got values in \[5, 5\]"):
        vtrace.from_logits(logits, logits, torch.full((T, B), 5, dtype=torch.long), **args)
    with pytest.raises(TypeError, match="actions must be an integer tensor"):
        vtrace.from_logits(logits, logits, torch.zeros(T, B), **args)
    with pytest.raises(ValueError, match=r"policy logits must be \[T, B, A\]"):
        vtrace.from_logits(torch.zeros(T, B), torch.zeros(T, B), torch.zeros(T, B, dtype=torch.long), **args)
