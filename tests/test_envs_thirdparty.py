"""Third-party gymnasium envs: ``gym:MODULE:ID``, ``--env-import``, ``--core-import``,
multi-task ``gym:`` sets, flattened Discrete/MultiDiscrete/Tuple/Dict observations,
the ``popgym:`` family and the majority task.

The user module is written by the test into a temporary folder on ``PYTHONPATH``; its
env has a hand-checkable observation at every step.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from envs import EnvConfig, EpisodeStats, describe_env, make_vec_env

ROOT = Path(__file__).resolve().parents[1]

TOY_MODULE = textwrap.dedent('''
    import gymnasium as gym
    import numpy as np
    from gymnasium import spaces


    class ToyEnv(gym.Env):
        """obs (t % 3, [t % 2, 1 + t % 3], {"a": 1, "b": [t / 10, -1]}); reward = action; 5 steps."""

        def __init__(self, length=5):
            self.observation_space = spaces.Tuple((
                spaces.Discrete(3),
                spaces.MultiDiscrete([2, 4]),
                spaces.Dict({"b": spaces.Box(-1, 1, (2,)), "a": spaces.Discrete(2)})))
            self.action_space = spaces.Discrete(2)
            self.length = length
            self.t = 0

        def _obs(self):
            return (self.t % 3, np.array([self.t % 2, 1 + self.t % 3]),
                    {"a": 1, "b": np.array([self.t / 10, -1.0], np.float32)})

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self._obs(), {}

        def step(self, action):
            self.t += 1
            return self._obs(), float(action), self.t >= self.length, False, {}


    class OtherEnv(ToyEnv):
        def __init__(self):
            super().__init__(length=3)


    gym.register("FwrlToy-v0", entry_point=ToyEnv)
    gym.register("FwrlToyShort-v0", entry_point=OtherEnv)
    gym.register("FwrlToyBox-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
''')

TOY_CORE = textwrap.dedent('''
    import torch
    from torch import nn
    from agents.core import MemoryCore, StateSpec, TensorSpec, register_core


    @register_core("toy_gru")
    class ToyGRU(MemoryCore):
        def __init__(self, input_size, *, hidden_size=16):
            super().__init__()
            self.cell = nn.GRUCell(input_size, hidden_size)
            self.hidden_size = self.output_size = hidden_size

        def state_spec(self):
            return StateSpec(h=TensorSpec((self.hidden_size,), self.cell.weight_ih.dtype))

        def forward(self, x, state, reset):
            h, outs = state["h"], []
            for t in range(x.shape[0]):
                h = self.cell(x[t], torch.where(reset[t].unsqueeze(-1), torch.zeros_like(h), h))
                outs.append(h)
            return torch.stack(outs), {"h": h}
''')


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("usermods")
    (d / "fwrl_toy_envs.py").write_text(TOY_MODULE)
    (d / "fwrl_toy_cores.py").write_text(TOY_CORE)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def toy_obs(t: int) -> np.ndarray:
    """Hand flattening: one_hot3(t%3) | one_hot2(t%2) one_hot4(1+t%3) | Dict keys sorted: a, b."""
    return np.concatenate([np.eye(3)[t % 3], np.eye(2)[t % 2], np.eye(4)[1 + t % 3],
                           np.eye(2)[1], [t / 10, -1.0]]).astype(np.float32)


def test_module_env_id_flattens_tuple_multidiscrete_dict(toy_path):
    cfg = EnvConfig(env="gym:fwrl_toy_envs:FwrlToy-v0")
    obs_spec, num_actions, tasks = describe_env(cfg)
    assert obs_spec.shape == (13,) and obs_spec.dtype == "float32" and num_actions == 2
    assert tasks == ["fwrl_toy_envs:FwrlToy-v0"]
    env = make_vec_env(cfg, 2)
    obs = env.reset()
    assert np.array_equal(obs, np.stack([toy_obs(0)] * 2))
    stats = EpisodeStats(env.task_names)
    for t in range(1, 11):
        obs, rew, done, finished = env.step(np.array([1, 0]))
        stats.add(finished)
        expect_t = t % 5     # an episode lasts 5 steps; the obs after the 5th is the new episode's first
        assert np.allclose(obs, np.stack([toy_obs(expect_t)] * 2)), t
        assert done.tolist() == [expect_t == 0] * 2
    s = stats.summary()["fwrl_toy_envs:FwrlToy-v0"]
    assert s.count == 4 and s.total_mean_return == 2.5 and s.total_mean_length == 5.0
    env.close()


def test_env_import_registers_before_the_id_is_read(toy_path):
    import gymnasium as gym
    for k in ("FwrlToy-v0", "FwrlToyShort-v0", "FwrlToyBox-v0"):   # as in a fresh process
        gym.registry.pop(k, None)
    sys.modules.pop("fwrl_toy_envs", None)
    with pytest.raises(ValueError, match="unknown gymnasium env id 'FwrlToy-v0'"):
        describe_env(EnvConfig(env="gym:FwrlToy-v0"))
    assert describe_env(EnvConfig(env="gym:FwrlToy-v0", env_import="fwrl_toy_envs"))[0].shape == (13,)
    with pytest.raises(ValueError, match=r"^--env-import: cannot import module 'fwrl_nope': ModuleNotFoundError"):
        describe_env(EnvConfig(env="memory", env_import="fwrl_nope"))


def test_multitask_gym_set_round_robin_with_per_task_stats(toy_path):
    cfg = EnvConfig(env="gym:fwrl_toy_envs:FwrlToy-v0,fwrl_toy_envs:FwrlToyShort-v0")
    _, _, tasks = describe_env(cfg)
    assert tasks == ["fwrl_toy_envs:FwrlToy-v0", "fwrl_toy_envs:FwrlToyShort-v0"]
    env = make_vec_env(cfg, 3, actor_index=1, num_actors=2)      # global slots 3, 4, 5
    assert env.task_ids.tolist() == [1, 0, 1]
    env.reset()
    stats = EpisodeStats(env.task_names)
    for _ in range(15):
        stats.add(env.step(np.ones(3, dtype=np.int64))[3])
    s = stats.summary()
    assert (s[tasks[0]].count, s[tasks[0]].total_mean_length) == (3, 5.0)     # 1 slot, 15 / 5
    assert (s[tasks[1]].count, s[tasks[1]].total_mean_length) == (10, 3.0)    # 2 slots, 2 x 15 / 3
    env.close()


def test_multitask_gym_set_with_different_spaces_names_both(toy_path):
    with pytest.raises(ValueError, match="tasks 'fwrl_toy_envs:FwrlToy-v0' and 'CartPole-v1' have "
                                         "different observation spaces"):
        describe_env(EnvConfig(env="gym:fwrl_toy_envs:FwrlToy-v0,CartPole-v1"))


def test_unsupported_spaces_are_named():
    with pytest.raises(ValueError, match=r"'Pendulum-v1' has action space Box.*supported: Discrete"):
        describe_env(EnvConfig(env="gym:Pendulum-v1"))
    with pytest.raises(ValueError, match=r"observation space Text.*supported: Box, Discrete"):
        from envs.gym_env import obs_layout
        from gymnasium.spaces import Text, Tuple
        obs_layout(Tuple((Text(4),)), "x")


def test_core_import_registers_a_user_core(toy_path):
    from agents.core import list_cores
    from agents.model import ModelConfig, build_agent, validate_model_config
    from envs import ObsSpec
    with pytest.raises(ValueError, match="not a registered core"):
        validate_model_config(ModelConfig(core="toy_gru"))
    agent = build_agent(ModelConfig(core="toy_gru", core_import="fwrl_toy_cores", hidden_size=16),
                        ObsSpec((4,), "float32"), 2)
    assert "toy_gru" in list_cores() and agent.core.output_size == 16
    assert "core_import" not in agent.architecture()
    with pytest.raises(ValueError, match=r"^--core-import: cannot import module 'fwrl_nope'"):
        validate_model_config(ModelConfig(core="ff", core_import="fwrl_nope"))


def _train(args, toy_path, tmp_path, timeout=400):
    env = dict(os.environ, PYTHONPATH=f"{toy_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(600)
def test_train_two_local_actors_then_evaluate(toy_path, tmp_path):
    """Module env + user core: imported by the trainer, both spawned actors and evaluation."""
    p = _train(["--name", "toy", "--env", "gym:fwrl_toy_envs:FwrlToy-v0", "--core", "toy_gru",
                "--core-import", "fwrl_toy_cores", "--hidden-size", "16", "--feature-size", "16",
                "--num-actors", "2", "--envs-per-actor", "2", "--batch-size", "4", "--unroll-length", "10",
                "--total-steps", "400", "--learner-threads", "1", "--no-progress", "--log-interval-s", "0.5",
                "--eval-episodes", "4"], toy_path, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    run = tmp_path / "toy"
    import json
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] >= 400
    episodes = (run / "episodes.csv").read_text().splitlines()
    assert episodes[0] == "step,task,return,length" and len(episodes) > 10
    assert all(l.split(",")[1] == "fwrl_toy_envs:FwrlToy-v0" and l.endswith(",5") for l in episodes[1:])
    (ev_dir,) = (run / "eval").iterdir()
    ev_rows = (ev_dir / "episodes.csv").read_text().splitlines()[1:]
    assert len(ev_rows) == 4 and all("fwrl_toy_envs:FwrlToy-v0" in r for r in ev_rows)


@pytest.mark.parametrize("env,needle", [("gym:fwrl_nope:X-v0", "cannot import module 'fwrl_nope'"),
                                        ("gym:fwrl_toy_envs:Nope-v0", "unknown gymnasium env id 'Nope-v0'")])
def test_missing_module_or_bad_id_one_line_exit_2(toy_path, tmp_path, env, needle):
    p = _train(["--name", "bad", "--env", env], toy_path, tmp_path, timeout=120)
    err = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert p.returncode == 2 and len(err) == 1 and needle in err[0], p.stderr[-2000:]
    assert not (tmp_path / "bad").exists()


def test_popgym_builds_steps_and_reports_episodes():
    cfg = EnvConfig(env="popgym:RepeatFirstEasy,RepeatPreviousEasy")
    obs_spec, num_actions, tasks = describe_env(cfg)
    assert (obs_spec.shape, num_actions, tasks) == ((4,), 4, ["RepeatFirstEasy", "RepeatPreviousEasy"])
    env = make_vec_env(cfg, 2)
    obs = env.reset()
    assert obs.shape == (2, 4) and (obs.sum(axis=1) == 1).all()
    stats = EpisodeStats(env.task_names)
    rng = np.random.default_rng(0)
    for _ in range(51):
        stats.add(env.step(rng.integers(0, 4, 2))[3])
    s = stats.summary()
    assert s["RepeatFirstEasy"].count == 1 and s["RepeatFirstEasy"].total_mean_length == 51
    assert s["RepeatPreviousEasy"].count == 1 and -1.0 <= s["RepeatPreviousEasy"].total_mean_return <= 1.0
    env.close()


def test_popgym_best_policy_scores_one():
    from envs.popgym_env import ORACLES, measure
    for name in ("RepeatPreviousEasy", "RepeatFirstEasy"):
        ret, length = measure(name, 3, oracle=ORACLES[name])
        assert ret == pytest.approx(1.0, abs=1e-9) and length == 51.0
    ret, length = measure("RepeatPreviousEasy", 300)        # random: 1 in 4 right, exactly -0.5 expected
    assert abs(ret + 0.5) < 0.02 and length == 51.0


def test_popgym_wrong_name_lists_known_names():
    with pytest.raises(ValueError) as e:
        describe_env(EnvConfig(env="popgym:RepeatPrevious"))
    msg = str(e.value)
    assert "unknown popgym env 'RepeatPrevious'" in msg and "RepeatPreviousEasy" in msg
    assert "PositionOnlyCartPoleEasy" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="'PositionOnlyPendulumEasy' has action space Box"):
        describe_env(EnvConfig(env="popgym:PositionOnlyPendulumEasy"))


def test_popgym_multidiscrete_actions_get_a_layout():
    desc = describe_env(EnvConfig(env="popgym:BattleshipEasy"))
    assert desc.action_dims == (8, 8) and desc.num_actions == 16
    env = make_vec_env(EnvConfig(env="popgym:BattleshipEasy"), 2)
    assert env.action_dims == (8, 8)
    env.reset()
    obs, reward, done, _ = env.step(np.array([[0, 1], [7, 7]]))
    assert obs.shape == (2, 2) and reward.shape == (2,)
    env.close()


def test_majority_task_scripted_and_memoryless_policies():
    env = make_vec_env(EnvConfig(env="majority:5:3"), 64)
    obs = env.reset()
    assert obs.shape == (64, 4) and env.num_actions == 3
    seen = np.zeros((64, 3))
    rets, memoryless = [], 0
    for t in range(6 * 20):
        k = t % 6
        if k < 5:
            assert (obs[:, 3] == 0).all() and (obs[:, :3].sum(axis=1) == 1).all()
            seen += obs[:, :3]
            action = np.zeros(64, dtype=np.int64)
        else:
            assert (obs == np.eye(4)[3]).all()         # the answer step shows only the flag
            counts = np.sort(seen, axis=1)
            assert (counts[:, -1] > counts[:, -2]).all()  # never a tie
            action = seen.argmax(axis=1)
            assert np.array_equal(action, env.answers)
            memoryless += int((env.answers == 0).sum())
            seen[:] = 0
        obs, rew, done, finished = env.step(action)
        assert done.tolist() == [k == 5] * 64
        rets += [e.episode_return for e in finished]
    assert len(rets) == 64 * 20 and all(r == 1.0 for r in rets)
    assert abs(memoryless / (64 * 20) - 1 / 3) < 0.05      # a constant answer: chance
