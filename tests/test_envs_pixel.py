"""The pixel sanity tasks (envs/pixel_env.py) and the encoder initialisation they exposed."""

import numpy as np
import pytest
import torch

from envs import EnvConfig, describe_env, make_vec_env


def test_see_timeline_rewards_and_shapes():
    env = make_vec_env(EnvConfig(env="pixel:see"), 3)
    assert env.obs_spec.shape == (3, 64, 64) and env.num_actions == 4
    obs = env.reset()
    assert obs.shape == (3, 3, 64, 64) and obs.dtype == np.uint8
    total = np.zeros(3)
    for t in range(4):
        target = env.targets
        # the target's square is drawn in its quadrant and nowhere else
        for i in range(3):
            lit = obs[i].max(axis=0)[8:, :] > 0          # below the answer bar
            ys, xs = np.nonzero(lit)
            ys = ys + 8
            assert ((ys >= 32) == (target[i] >= 2)).all() and ((xs >= 32) == (target[i] % 2 == 1)).all()
        wrong = (target + 1) % 4
        acts = np.where(np.arange(3) == 0, wrong, target)   # slot 0 always wrong
        obs, rew, done, fin = env.step(acts)
        total += rew
        assert done.tolist() == [t == 3] * 3
    assert total.tolist() == [0.0, 1.0, 1.0]
    assert sorted(e.episode_return for e in fin) == [0.0, 1.0, 1.0] and all(e.length == 4 for e in fin)


def test_recall_shows_the_target_only_first_and_the_stack_forgets_it():
    env = make_vec_env(EnvConfig(env="pixel:recall:84:4"), 2)
    assert env.obs_spec.shape == (4, 84, 84)
    obs = env.reset()
    target = env.targets
    assert (obs[:, :3] == 0).all() and (obs[:, 3] > 0).any(axis=(1, 2)).all()   # empty stack + first frame
    for t in range(1, 5):                                 # blank frames t = 1..4
        obs, rew, done, _ = env.step(np.zeros(2, np.int64))
        assert (rew == 0).all() and not done.any()
    # at the answer step (t = 4) the stack holds frames 1-4: the bar, but no target
    bar = 84 // 16
    assert (obs[:, :3] == 0).all() and (obs[:, 3, :bar] == 255).all() and (obs[:, 3, bar:] == 0).all()
    obs, rew, done, _ = env.step(target)
    assert done.all() and (rew == 1).all()


def test_memoryless_policy_scores_chance_on_recall():
    env = make_vec_env(EnvConfig(env="pixel:recall:64:3", seed=1), 64)
    env.reset()
    rets = []
    for _ in range(400):
        _, _, _, fin = env.step(np.zeros(64, np.int64))
        rets += [e.episode_return for e in fin]
    assert abs(np.mean(rets) - 0.25) < 0.05


@pytest.mark.parametrize("spec, msg", [
    ("pixel", "takes one task"), ("pixel:hear", "unknown pixel variant"),
    ("pixel:see:32", "SIZE=32"), ("pixel:recall:84:2", "DELAY=2 is outside"),
    ("pixel:see:64:3", "too many fields"), ("pixel:recall:x", "must be integers"),
])
def test_bad_specs(spec, msg):
    with pytest.raises(ValueError, match=msg):
        describe_env(EnvConfig(env=spec))


def _ball_frames(n=64, seed=0):
    """Atari-like [n, 4, 84, 84] stacks: a constant grey background and one small bright
    object (a 'ball') at a random place, as in Pong, where almost nothing changes."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 4, 84, 84), 87, np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(4, 78, size=2)
        x[i, :, y0:y0 + 2, x0:x0 + 1] = 236
    return torch.from_numpy(x)


def _signal_ratio(encoder, frames):
    with torch.no_grad():
        f = encoder(frames)
    return float(f.std(0).mean() / (frames.float() / 255).std(0).mean())


def test_nature_encoder_init_keeps_the_state_signal():
    """The root cause of the Pong runs that did not move (docs/learning/pong.md): with
    PyTorch's default init the Nature CNN's features hardly vary between observations
    that differ by a ball, so the policy starts blind. The standard (orthogonal) init
    keeps the variation at the input's order of magnitude."""
    from agents.encoders import make_encoder
    frames = _ball_frames()
    torch.manual_seed(0)
    standard = _signal_ratio(make_encoder((4, 84, 84), "uint8", "nature"), frames)
    torch.manual_seed(0)
    default = _signal_ratio(make_encoder((4, 84, 84), "uint8", "nature", init="torch"), frames)
    # measured: standard about 5, PyTorch's defaults about 0.15 (35x less)
    assert standard > 1.0, standard
    assert default < 0.3, default           # what the project shipped before (and torchbeast)


def test_encoder_init_options():
    from agents.encoders import make_encoder
    from agents.model import ModelConfig, validate_model_config
    torch.manual_seed(3)
    a = make_encoder((3, 64, 64), "uint8", "impala")
    torch.manual_seed(3)
    b = make_encoder((3, 64, 64), "uint8", "impala", init="torch")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = make_encoder((6,), "float32", "mlp", init="orthogonal")
    w = c.net[0].weight                                  # orthogonal rows, gain sqrt(2)
    assert torch.allclose(w.T @ w, 2 * torch.eye(6), atol=1e-5) and (c.net[0].bias == 0).all()
    with pytest.raises(ValueError, match="--encoder-init 'xavier' is unknown"):
        validate_model_config(ModelConfig(encoder_init="xavier"))
