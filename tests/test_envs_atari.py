"""Atari through the project's interface against a slow, obviously correct reference: the
raw emulator (``ale_py.ALEInterface``) stepped frame by frame, 4 frames per action,
summing the env's own rewards, with the life-loss rule written out. With no-op starts
off and sticky actions at 0 the emulator is deterministic, so both must agree exactly.
"""

import numpy as np
import pytest

from envs import EnvConfig, EpisodeStats, make_vec_env


def raw_ale_reference(game, actions, life_loss_ends_episode, max_frames=108_000):
    """Per-step (reward, done) of the raw emulator for one slot; a game restarts at game over."""
    from ale_py import ALEInterface, LoggerMode, roms
    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path(game))
    action_set = ale.getMinimalActionSet()
    ale.reset_game()
    frames = 0
    rewards, dones = [], []
    for a in actions:
        lives, total = ale.lives(), 0
        for _ in range(4):  # action repeat 4
            total += ale.act(action_set[a])
            frames += 1
            if ale.game_over() or frames >= max_frames:
                break
        game_ended = ale.game_over() or frames >= max_frames
        rewards.append(total)
        dones.append(game_ended or (life_loss_ends_episode and ale.lives() < lives))
        if game_ended:
            ale.reset_game()
            frames = 0
    return np.array(rewards, dtype=np.float64), np.array(dones)


def episodes_of(rewards, dones):
    """(return, length) of every finished episode of a (reward, done) stream."""
    out, ret, length = [], 0.0, 0
    for r, d in zip(rewards, dones):
        ret += r
        length += 1
        if d:
            out.append((ret, length))
            ret, length = 0.0, 0
    return out


def run(cfg, actions):
    """Step a 1-slot env on ``actions``; returns obs shape, rewards, dones, finished episodes."""
    env = make_vec_env(cfg, 1)
    obs = env.reset()
    rewards, dones, finished = [], [], []
    for a in actions:
        obs, r, d, f = env.step(np.array([a]))
        rewards.append(float(r[0]))
        dones.append(bool(d[0]))
        finished += f
    env.close()
    return obs, np.array(rewards), np.array(dones), finished


def test_pong_obs_rewards_and_dones_equal_the_emulators():
    cfg = EnvConfig(env="atari:Pong", eval_mode=True, noop_max=0)
    actions = np.random.default_rng(0).integers(0, 6, 300)
    obs, rew, done, _ = run(cfg, actions)
    assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
    ref_rew, ref_done = raw_ale_reference("pong", actions, life_loss_ends_episode=False)
    assert np.array_equal(rew, ref_rew) and np.array_equal(done, ref_done)
    assert (rew != 0).any()


def test_whole_game_returns_are_the_unclipped_sum_of_the_emulators_rewards():
    # Space Invaders pays 5-30 points per invader, so a clipped sum would differ;
    # a random game lasts about 550 agent steps.
    cfg = EnvConfig(env="atari:SpaceInvaders", eval_mode=True, noop_max=0)
    actions = np.random.default_rng(1).integers(0, 6, 600)
    _, rew, done, finished = run(cfg, actions)
    ref_rew, ref_done = raw_ale_reference("space_invaders", actions, life_loss_ends_episode=False)
    assert np.array_equal(rew, ref_rew) and np.array_equal(done, ref_done)
    assert rew.max() > 1
    assert [(e.episode_return, e.length) for e in finished] == episodes_of(ref_rew, ref_done)
    assert len(finished) == 1
    game = ref_rew[: finished[0].length]
    assert finished[0].episode_return == game.sum() > np.clip(game, -1, 1).sum()


def test_life_loss_ends_training_episodes_but_not_evaluation_ones():
    actions = np.random.default_rng(2).integers(0, 4, 420)
    _, tr_rew, tr_done, tr_eps = run(EnvConfig(env="atari:Breakout", noop_max=0), actions)
    _, ev_rew, ev_done, ev_eps = run(EnvConfig(env="atari:Breakout", noop_max=0, eval_mode=True), actions)
    ref_tr = raw_ale_reference("breakout", actions, life_loss_ends_episode=True)
    ref_ev = raw_ale_reference("breakout", actions, life_loss_ends_episode=False)
    assert np.array_equal(tr_rew, ref_tr[0]) and np.array_equal(tr_done, ref_tr[1])
    assert np.array_equal(ev_rew, ref_ev[0]) and np.array_equal(ev_done, ref_ev[1])
    assert [(e.episode_return, e.length) for e in tr_eps] == episodes_of(*ref_tr)
    assert len(ev_eps) >= 2
    # Training mode cuts every game into its 5 lives and the game goes on after a lost
    # life, so the per-life episodes partition each finished evaluation episode exactly.
    assert len(tr_eps) >= 5 * len(ev_eps)
    for g, ev in enumerate(ev_eps):
        lives = tr_eps[5 * g: 5 * g + 5]
        assert sum(e.length for e in lives) == ev.length
        assert sum(e.episode_return for e in lives) == ev.episode_return


def test_episode_frame_cap_truncates():
    cfg = EnvConfig(env="atari:Pong", eval_mode=True, noop_max=0, max_episode_frames=400)
    actions = np.random.default_rng(3).integers(0, 6, 250)
    _, rew, done, finished = run(cfg, actions)
    ref_rew, ref_done = raw_ale_reference("pong", actions, False, max_frames=400)
    assert np.array_equal(rew, ref_rew) and np.array_equal(done, ref_done)
    assert [e.length for e in finished] == [100, 100]  # 400 frames = 100 agent steps


def test_seeds_differ_between_actors_and_repeat_for_the_same_actor():
    # Seeds drive the no-op starts: different counts of no-ops put the games out of step.
    # (One slot per env: loading a ROM costs the emulator about 0.3 s per slot.)
    cfg = EnvConfig(env="atari:Pong", noop_max=30)
    actions = np.random.default_rng(5).integers(0, 6, (40, 1))

    def last_obs(**kw):
        env = make_vec_env(cfg, 1, **kw)
        env.reset()
        for a in actions:
            obs = env.step(a)[0]
        env.close()
        return obs

    a = last_obs()
    assert np.array_equal(a, last_obs())
    assert not np.array_equal(a, last_obs(actor_index=1, num_actors=2))


def test_multi_task_atari_with_full_action_space():
    cfg = EnvConfig(env="atari:Pong,breakout", full_action_space=True, noop_max=0)
    env = make_vec_env(cfg, 3)
    assert env.num_actions == 18 and env.task_names == ["Pong", "Breakout"]
    assert env.task_ids.tolist() == [0, 1, 0]
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84)
    stats = EpisodeStats(env.task_names)
    rng = np.random.default_rng(4)
    finished = []
    for _ in range(200):
        obs, rew, done, f = env.step(rng.integers(0, 18, 3))
        assert [e.env_index for e in f] == np.flatnonzero(done).tolist()
        finished += f
    stats.add(finished)
    # Breakout loses lives within 200 steps; Pong points are not lives and its game is longer
    assert finished and all(e.task == "Breakout" and e.env_index == 1 for e in finished)
    assert stats.summary()["Breakout"].count == len(finished) and stats.summary()["Pong"].count == 0
    env.close()


def test_bad_action_refused():
    env = make_vec_env(EnvConfig(env="atari:Breakout"), 1)
    env.reset()
    with pytest.raises(ValueError, match=r"action 4 out of range \[0, 4\)"):
        env.step(np.array([4]))
    env.close()
