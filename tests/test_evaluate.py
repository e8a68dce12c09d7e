"""``python -m launch.evaluate``: held-out ProcGen levels, reports, videos, bad input.

The checkpoints are "freshly saved": a tiny agent (LSTM core, MLP encoder so a step
costs well under a millisecond) written through ``Trainer.checkpoint`` - the very
payload layout training writes - without any training. Games with short random
episodes (leaper, dodgeball) keep every evaluation to a few seconds.
"""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.scores import SCORE_CONSTANTS, normalised_score, score_bounds
from launch.evaluate import main as evaluate_main
from learner.evaluation.plan import Split, episode_levels
from learner.evaluation.stats import return_stats
from learner.evaluation.video import find_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--core", "lstm", "--hidden-size", "16", "--feature-size", "16", "--encoder", "mlp",
         "--num-actors", "1", "--batch-size", "1", "--device", "cpu"]
GAMES = ("leaper", "dodgeball")


def save_fresh_checkpoint(run_dir: Path, argv) -> Path:
    """Build an agent for the config and save it exactly as training does (Trainer.checkpoint)."""
    from agents.model import build_agent
    from envs import describe_env
    from launch.config import parse_config
    from launch.trainer import Trainer

    cfg = parse_config(argv)
    torch.manual_seed(0)
    obs_spec, num_actions, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks))
    trainer = Trainer(cfg, run_dir, agent=agent, obs_spec=obs_spec, num_actions=num_actions, task_names=tasks)
    return trainer.checkpoint()


@pytest.fixture(scope="module")
def procgen_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("procgen_run")
    save_fresh_checkpoint(run, ["--env", "procgen:" + ",".join(GAMES), *SMALL])
    return run


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("memory_run")
    save_fresh_checkpoint(run, ["--env", "memory", *SMALL])
    return run


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def evaluate(argv, capsys):
    code = evaluate_main([str(a) for a in argv] + ["--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- pure pieces against hand-computed numbers --------------------------------------------

def test_normalised_scores_hand_computed():
    # (R - R_min) / (R_max - R_min) with the constants of docs/design.md#procgen-normalised-score, worked by hand
    assert normalised_score(20.5, "bigfish", "easy") == pytest.approx(0.5)          # (20.5-1)/39
    assert normalised_score(18.25, "starpilot", "hard") == pytest.approx(0.5)       # (18.25-1.5)/33.5
    assert normalised_score(-1.5, "fruitbot", "easy") == pytest.approx(0.0)
    assert normalised_score(32.4, "fruitbot", "easy") == pytest.approx(1.0)
    assert normalised_score(7.0, "maze", "hard") == pytest.approx(0.5)              # (7-4)/6
    assert normalised_score(6.5, "leaper", "easy") == pytest.approx(5 / 8.5)         # train-procgen: 1.5,10
    assert normalised_score(6.5, "leaper", "easy", "procgen-paper") == pytest.approx(0.5)   # paper: 3,10
    assert normalised_score(6.5, "jumper", "easy", "procgen-paper") == pytest.approx(0.5)
    assert normalised_score(0.0, "coinrun", "easy") == pytest.approx(-1.0)          # (0-5)/5
    assert normalised_score(3.0, "heist", "memory") is None                         # no constants
    assert normalised_score(3.0, "maze", "exploration") is None
    assert score_bounds("BigFish", "easy") == (1.0, 40.0)
    # every game of both modes is present, with R_min < R_max
    for modes in SCORE_CONSTANTS.values():
        for mode in ("easy", "hard"):
            assert len(modes[mode]) == 16 and all(lo < hi for lo, hi in modes[mode].values())
    with pytest.raises(ValueError, match="'nope'"):
        normalised_score(1.0, "bigfish", "easy", "nope")


def test_return_statistics_hand_computed():
    st = return_stats([1.0, 2.0, 3.0, 6.0])
    # mean 3; sample variance (4 + 1 + 0 + 9) / 3 = 14/3; s.e. = sqrt(14/3) / 2
    se = math.sqrt(14 / 3) / 2
    assert st["episodes"] == 4 and st["mean_return"] == pytest.approx(3.0)
    assert st["std_err"] == pytest.approx(se)
    assert st["ci95"] == pytest.approx([3 - 1.959963984540054 * se, 3 + 1.959963984540054 * se])
    one = return_stats([5.0])
    assert one["mean_return"] == 5.0 and one["std_err"] is None and one["ci95"] is None


def test_episodes_spread_evenly_over_levels():
    assert episode_levels(Split("test1", 1000, 200), 200) == list(range(1000, 1200))
    assert episode_levels(Split("test1", 1000, 200), 4) == [1000, 1050, 1100, 1150]
    assert episode_levels(Split("x", 7, 2), 4) == [7, 7, 8, 8]
    assert episode_levels(Split("x", 7, 2), 5) == [7, 7, 7, 8, 8]      # i * 2 // 5
    assert episode_levels(Split("all", 0, 0), 3) == [-1, -1, -1]


# -- end to end on ProcGen ----------------------------------------------------------------

def _parse_table(text, split):
    """{game: [printed cells]} of one split block and its mean normalised score."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"split {split}"))
    rows = {}
    for ln in lines[start + 3:]:
        if not ln.strip() or ln.startswith("mean normalised score"):
            break
        game, *cells = ln.replace("[", "").replace("]", "").replace(",", "").split()
        rows[game] = cells     # episodes, mean, se, ci_lo, ci_hi, norm, mean length, truncated (as printed)
    mean_line = next(ln for ln in lines[start:] if ln.startswith("mean normalised score"))
    return rows, mean_line.split(":")[1].split()[0]


def test_csv_json_and_table_agree(procgen_run, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, err = evaluate([procgen_run, "--start-level", 1000, "--num-levels", 2, "--episodes", 4,
                                  "--out", out, "--envs", 3], capsys)
    assert code == 0, err
    rows = read_rows(out / "episodes.csv")
    summary = json.loads((out / "summary.json").read_text())
    table = (out / "table.txt").read_text()
    assert table.strip() in stdout
    split = "levels1000-1001"
    assert summary["score_constants"] == "train-procgen easy" and "train-procgen easy" in table
    assert summary["splits"] == {split: {"start_level": 1000, "num_levels": 2}}
    assert len(rows) == 2 * 4
    parsed, mean_norm = _parse_table(table, split)
    norms = []
    for game in GAMES:
        mine = [r for r in rows if r["game"] == game]
        assert [r["episode"] for r in mine] == ["0", "1", "2", "3"]
        assert [int(r["level_seed"]) for r in mine] == [1000, 1000, 1001, 1001]   # 2 levels x 2 episodes
        assert all(r["split"] == split and r["truncated"] == "0" for r in mine)
        returns = np.array([float(r["return"]) for r in mine])
        lengths = np.array([int(r["length"]) for r in mine])
        st = summary["games"][game][split]
        # JSON from the CSV
        assert st["episodes"] == 4
        assert st["mean_return"] == pytest.approx(returns.mean())
        se = returns.std(ddof=1) / 2
        assert st["std_err"] == pytest.approx(se)
        assert st["ci95"] == pytest.approx([returns.mean() - 1.96 * se, returns.mean() + 1.96 * se], abs=1e-3)
        assert st["mean_length"] == pytest.approx(lengths.mean())
        lo, hi = SCORE_CONSTANTS["train-procgen"]["easy"][game]
        assert st["normalised_score"] == pytest.approx((returns.mean() - lo) / (hi - lo))
        norms.append(st["normalised_score"])
        # table from the JSON, as printed
        assert parsed[game] == ["4", f"{st['mean_return']:.2f}", f"{st['std_err']:.2f}", f"{st['ci95'][0]:.2f}",
                                f"{st['ci95'][1]:.2f}", f"{st['normalised_score']:.3f}",
                                f"{st['mean_length']:.1f}", "0"]
    assert summary["mean_normalised_score"][split]["value"] == pytest.approx(np.mean(norms))
    assert mean_norm == f"{summary['mean_normalised_score'][split]['value']:.3f}"
    assert summary["meta"]["total_steps"] == sum(int(r["length"]) for r in rows)


def test_same_seed_same_csv_whatever_the_layout(procgen_run, tmp_path, capsys):
    common = [procgen_run, "--env", "procgen:leaper", "--start-level", 1000, "--num-levels", 2,
              "--episodes", 4]
    assert evaluate(common + ["--out", tmp_path / "a", "--envs", 4], capsys)[0] == 0
    assert evaluate(common + ["--out", tmp_path / "b", "--envs", 1], capsys)[0] == 0
    assert evaluate(common + ["--out", tmp_path / "c", "--envs", 4, "--seed", 1], capsys)[0] == 0
    a, b, c = ((tmp_path / d / "episodes.csv").read_text() for d in "abc")
    assert a == b
    assert a != c          # another seed plays other episodes (sampled actions)


def test_test1_level_seeds_lie_in_the_split(procgen_run, tmp_path, capsys):
    code, _, err = evaluate([procgen_run, "--env", "procgen:dodgeball", "--split", "test1", "--episodes", 3,
                             "--greedy", "--out", tmp_path], capsys)
    assert code == 0, err
    rows = read_rows(tmp_path / "episodes.csv")
    seeds = [int(r["level_seed"]) for r in rows]
    assert all(1000 <= s < 1200 for s in seeds)
    assert seeds == [1000, 1066, 1133]                 # 1000 + i * 200 // 3
    assert json.loads((tmp_path / "summary.json").read_text())["meta"]["greedy"] is True


def test_several_splits_report_the_generalisation_gap(procgen_run, tmp_path, capsys):
    code, stdout, err = evaluate([procgen_run, "--split", "train,test2", "--episodes", 2, "--max-steps", 40,
                                  "--out", tmp_path], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = read_rows(tmp_path / "episodes.csv")
    assert {int(r["level_seed"]) for r in rows if r["split"] == "train"} == {0, 100}
    assert {int(r["level_seed"]) for r in rows if r["split"] == "test2"} == {1200, 1300}
    assert all(int(r["length"]) <= 40 for r in rows)
    for r in rows:      # a truncated episode ran into --max-steps
        assert (r["truncated"] == "1") == (int(r["length"]) == 40)
    for game in GAMES:
        g = summary["games"][game]
        assert summary["generalisation_gap"][game]["test2"]["return"] == pytest.approx(
            g["train"]["mean_return"] - g["test2"]["mean_return"])
        assert summary["generalisation_gap"][game]["test2"]["normalised_score"] == pytest.approx(
            g["train"]["normalised_score"] - g["test2"]["normalised_score"])
    assert "generalisation gap (train minus test)" in stdout


@pytest.mark.slow
def test_spawned_actors_give_the_same_csv(procgen_run, tmp_path, capsys):
    common = [procgen_run, "--env", "procgen:leaper", "--start-level", 1000, "--num-levels", 2,
              "--episodes", 3]
    assert evaluate(common + ["--out", tmp_path / "one"], capsys)[0] == 0
    code, _, err = evaluate(common + ["--out", tmp_path / "two", "--actors", 2, "--envs", 2], capsys)
    assert code == 0, err
    assert (tmp_path / "one" / "episodes.csv").read_text() == (tmp_path / "two" / "episodes.csv").read_text()


# -- videos ---------------------------------------------------------------------------------

def mp4_frames(path: Path, width: int, height: int) -> int:
    """Decode the whole file with ffmpeg; the number of RGB frames it holds."""
    raw = subprocess.run([find_ffmpeg(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    assert len(raw) % (width * height * 3) == 0
    return len(raw) // (width * height * 3)


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg for MP4")
def test_record_writes_a_playable_mp4_with_one_frame_per_step(procgen_run, tmp_path, capsys):
    code, _, err = evaluate([procgen_run, "--env", "procgen:leaper", "--split", "test1", "--episodes", 2,
                             "--record", 1, "--video-format", "mp4", "--out", tmp_path], capsys)
    assert code == 0, err
    rows = read_rows(tmp_path / "episodes.csv")
    videos = sorted((tmp_path / "videos").iterdir())
    assert [v.name for v in videos] == ["leaper-test1-ep0000-level1000.mp4"]
    assert json.loads((tmp_path / "summary.json").read_text())["videos"] == [str(videos[0])]
    # 64x64 observations upscaled 4x; one frame per agent step of the episode
    assert mp4_frames(videos[0], 256, 256) == int(rows[0]["length"])


def test_record_gif_plays_one_frame_per_step(procgen_run, tmp_path, capsys):
    from PIL import Image
    code, _, err = evaluate([procgen_run, "--env", "procgen:dodgeball", "--split", "test1", "--episodes", 1,
                             "--record", 1, "--video-format", "gif", "--fps", 20, "--video-scale", 2,
                             "--out", tmp_path], capsys)
    assert code == 0, err
    length = int(read_rows(tmp_path / "episodes.csv")[0]["length"])
    (gif,) = (tmp_path / "videos").iterdir()
    with Image.open(gif) as im:
        assert im.size == (128, 128)
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    # Pillow merges identical consecutive frames and sums their durations: count 50 ms frames
    assert sum(durations) == 50 * length
    assert 1 <= im.n_frames <= length


# -- Atari and env families without levels ----------------------------------------------------

def test_atari_evaluation_mode_whole_games(tmp_path, capsys):
    run = tmp_path / "atari"
    save_fresh_checkpoint(run, ["--env", "atari:Breakout", "--core", "ff", "--hidden-size", "16",
                                "--num-heads", "2", "--head-size", "8", "--feature-size", "16",
                                "--encoder", "mlp", "--num-actors", "1", "--batch-size", "1"])
    code, stdout, err = evaluate([run, "--episodes", 1, "--noop-max", 5, "--out", tmp_path / "eval"], capsys)
    assert code == 0, err
    (row,) = read_rows(tmp_path / "eval" / "episodes.csv")
    assert row["game"] == "Breakout" and row["split"] == "all" and row["level_seed"] == "-1"
    meta = json.loads((tmp_path / "eval" / "summary.json").read_text())["meta"]
    assert meta["noop_max"] == 5 and meta["max_episode_frames"] == 108_000
    assert "n/a" in stdout and "a lost life does not end the episode" in stdout
    # Breakout has 5 lives: a whole evaluation game outlasts the shortest possible single life
    assert int(row["length"]) > 50
    code, _, err = evaluate([run, "--split", "test1", "--episodes", 1], capsys)
    assert code == 2 and "atari has none" in err


def test_memory_task_reports_without_constants(memory_run, tmp_path, capsys):
    code, stdout, err = evaluate([memory_run, "--episodes", 20, "--out", tmp_path], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    (game,) = summary["games"]
    assert summary["games"][game]["all"]["normalised_score"] is None
    assert summary["mean_normalised_score"]["all"]["value"] is None
    assert "no published constants" in summary["score_constants"]


# -- bad input --------------------------------------------------------------------------------

def _modified_checkpoint(src_run: Path, dst_run: Path, change) -> Path:
    from learner.checkpoint import list_checkpoints, save_checkpoint
    payload = torch.load(list_checkpoints(src_run)[-1], weights_only=True)
    change(payload)
    return save_checkpoint(dst_run, payload, 1)


def _set_core(p):
    p["config"]["model"]["core"] = "nope"
    p["architecture"]["core"] = "nope"


def _set_env(p):
    p["config"]["env"]["env"] = "procgen:notagame"


def _drop_weight(p):
    p["learner"]["model"].pop(next(iter(p["learner"]["model"])))


def _bad_cases(procgen_run, memory_run, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    good = next((procgen_run / "checkpoints").glob("*.pt")).read_bytes()
    corrupt.write_bytes(good[: len(good) // 2])
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    return [
        ([tmp_path / "missing.pt"], "does not exist"),
        ([corrupt], "corrupt"),
        ([empty_run], "has no checkpoint"),
        ([_modified_checkpoint(procgen_run, tmp_path / "core", _set_core)], "'nope'"),
        ([_modified_checkpoint(procgen_run, tmp_path / "env", _set_env)], "notagame"),
        ([_modified_checkpoint(procgen_run, tmp_path / "w", _drop_weight)], "weights do not fit"),
        ([procgen_run, "--split", "test9"], "'test9'"),
        ([procgen_run, "--start-level", 2147483600, "--num-levels", 100], "2147483647"),
        ([procgen_run, "--start-level", -5, "--num-levels", 2], "--start-level"),
        ([procgen_run, "--start-level", 5], "--num-levels"),
        ([procgen_run, "--episodes", 0], "--episodes"),
        ([procgen_run, "--distribution-mode", "memory"], "memory"),
        ([procgen_run, "--env", "atari:Pong"], "atari"),
        ([procgen_run, "--env", "procgen:notagame"], "notagame"),
        ([memory_run, "--split", "test1"], "memory has none"),
        ([memory_run, "--record", 1], "--record needs image observations"),
        ([procgen_run, "--actors", 0], "--actors"),
    ]


def test_bad_input_one_line_exit_2(procgen_run, memory_run, tmp_path, capsys):
    for argv, needle in _bad_cases(procgen_run, memory_run, tmp_path):
        code, _, err = evaluate(argv + ["--out", tmp_path / "out"], capsys)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (argv, err)


def test_cli_exit_code_2_for_a_missing_checkpoint(tmp_path):
    p = subprocess.run([sys.executable, "-m", "launch.evaluate", str(tmp_path / "nothing")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"error: checkpoint {tmp_path / 'nothing'} does not exist"]


@pytest.mark.slow
def test_eval_procgen_splits_script_prints_one_table(procgen_run, tmp_path):
    env = dict(os.environ, EPISODES="1", ACTORS="1", ENVS="4")
    p = subprocess.run(["bash", str(ROOT / "launch" / "eval_procgen_splits.sh"), str(procgen_run),
                        "--max-steps", "20", "--no-progress", "--out", str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    for split, first in (("train", 0), ("test1", 1000), ("test2", 1200), ("test3", 1400)):
        assert f"split {split} (levels {first}-{first + 199})" in p.stdout
    assert "generalisation gap (train minus test)" in p.stdout
    rows = read_rows(tmp_path / "episodes.csv")
    assert sorted((r["game"], r["split"], r["level_seed"]) for r in rows) == sorted(
        (g, s, str(lvl)) for g in GAMES for s, lvl in (("train", 0), ("test1", 1000), ("test2", 1200),
                                                      ("test3", 1400)))


def test_atari_human_normalised_score_by_hand():
    from envs.scores import atari_bounds, human_normalised_score
    # Pong: random -20.7, human 14.6 -> a return of 0 is 20.7 / 35.3 of the way
    assert human_normalised_score(0.0, "Pong") == pytest.approx(20.7 / 35.3)
    assert human_normalised_score(14.6, "pong") == pytest.approx(1.0)
    # Breakout: random 1.7, human 30.5; ALE name spellings all resolve
    assert human_normalised_score(59.3, "Breakout") == pytest.approx((59.3 - 1.7) / 28.8)
    assert atari_bounds("SpaceInvaders") == atari_bounds("space_invaders") == (148.0, 1668.7)
    assert atari_bounds("Pooyan") is None and human_normalised_score(5.0, "Pooyan") is None


def test_summarise_reports_human_normalised_scores_for_atari():
    from types import SimpleNamespace
    from learner.evaluation.stats import summarise
    task = SimpleNamespace(name="Pong")
    split = SimpleNamespace(name="eval", has_levels=False, start_level=0, num_levels=0)
    job = SimpleNamespace(game="Pong", split="eval")
    results = [SimpleNamespace(job=job, episode_return=r, length=800, truncated=False) for r in (-21.0, -19.0)]
    s = summarise(results, [task], [split], "easy", "train-procgen", "atari")
    assert s["games"]["Pong"]["eval"]["normalised_score"] == pytest.approx((-20.0 + 20.7) / 35.3)
    assert "human-normalised" in s["score_constants"]


# -- output problems: one line, nothing computed lost -------------------------------------

def test_unwritable_out_and_videos_folder_are_one_line_exit_2(procgen_run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, _, err = evaluate([procgen_run, "--env", "procgen:leaper", "--episodes", 1, "--out", a_file], capsys)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "--out" in err and "a_file" in err, err
    out = tmp_path / "out"
    out.mkdir()
    (out / "videos").write_text("not a folder")
    code, _, err = evaluate([procgen_run, "--env", "procgen:leaper", "--episodes", 1, "--record", 1,
                             "--video-format", "gif", "--out", out], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--record" in err, err
    assert a_file.read_text() == "x"


def test_a_failed_video_keeps_every_finished_result(procgen_run, tmp_path, capsys, monkeypatch):
    import learner.evaluation.runner as runner
    written = []

    def failing_video(path, frames, fps=20):
        if written:
            raise OSError(28, "No space left on device")
        written.append(path)
        return Path(path)
    monkeypatch.setattr(runner, "write_video", failing_video)
    code, _, err = evaluate([procgen_run, "--env", "procgen:leaper", "--split", "test1", "--episodes", 4,
                             "--record", 4, "--video-format", "gif", "--envs", 1, "--out", tmp_path], capsys)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "2 finished episode results" in lines[0], err
    rows = read_rows(tmp_path / "episodes.csv")
    assert [int(r["episode"]) for r in rows] == [0, 1]       # the failed video's episode is kept too
    assert all(float(r["length"]) > 0 for r in rows)


def test_checkpoint_of_the_lstm_width_option_loads_and_evaluates(memory_run, tmp_path, capsys):
    """A run saved while the LSTM had its own width option (``lstm_hidden_size``; the
    ``hidden_size`` it saved was ignored by the lstm core) rebuilds the same LSTM, loads its
    weights bit for bit and evaluates; also once a resume has rewritten its config.json in
    today's terms while its newest checkpoint is still the old one."""
    import shutil
    from launch.config import config_from_dict, config_to_dict
    from learner.evaluation.loading import load_policy
    run = tmp_path / "old"
    shutil.copytree(memory_run, run)
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    payload = torch.load(ckpt, weights_only=True)
    for section in (payload["config"]["model"], payload["architecture"]):
        assert section["core"] == "lstm" and section["hidden_size"] == 16
        section.update(hidden_size=128, lstm_hidden_size=16)               # the old layout
    torch.save(payload, ckpt)
    (run / "config.json").write_text(json.dumps(payload["config"]))
    policy = load_policy(run)
    assert policy.agent.core.hidden_size == 16 and policy.model.hidden_size == 16
    state = policy.agent.state_dict()
    assert set(state) == set(payload["learner"]["model"])
    assert all(torch.equal(state[k], v) for k, v in payload["learner"]["model"].items())
    code, _, err = evaluate([run, "--episodes", 1, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    (run / "config.json").write_text(json.dumps(config_to_dict(config_from_dict(payload["config"]))))
    assert "lstm_hidden_size" not in (run / "config.json").read_text()
    code, _, err = evaluate([run, "--episodes", 1, "--out", tmp_path / "out2"], capsys)
    assert code == 0, err


def test_run_directory_whose_newest_checkpoint_is_of_another_core_is_refused(procgen_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(procgen_run, run)
    from launch.config import parse_config, save_config
    save_config(parse_config(["--env", "procgen:" + ",".join(GAMES), *SMALL[2:], "--core", "srwm"]),
                run / "config.json")
    code, _, err = evaluate([run, "--episodes", 1, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "core 'lstm'" in err and "'srwm'" in err
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]     # naming the file evaluates it
    code, _, err = evaluate([ckpt, "--env", "procgen:leaper", "--episodes", 1, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
