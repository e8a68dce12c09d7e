"""``python -m launch.plot``: learning curves from run logs written by learner.logger.RunLogger."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from launch.plot import group_columns, main, plot_runs, read_run_log, smooth
from learner.logger import RunLogger

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("bigfish", "maze")


def write_run(run_dir: Path, rows, columns=None):
    """A short run's logs through the real RunLogger (no TensorBoard, no progress bar)."""
    cols = columns or (["sps", "return/mean"] + [f"return/{t}" for t in TASKS])
    logger = RunLogger(run_dir, cols, total_steps=10**6, progress=False, tensorboard=False)
    for step, scalars in rows:
        logger.log(step, scalars)
    logger.close()
    return run_dir


def curve(n, offset=0.0):
    rows = []
    for i in range(n):
        s = {"sps": 100.0 + i, "return/bigfish": offset + i, "return/mean": offset + i / 2}
        if i % 2:                                   # maze only logged on odd rows: NaN gaps elsewhere
            s["return/maze"] = offset - i
        rows.append(((i + 1) * 1000, s))
    return rows


def png_size(path: Path):
    from PIL import Image
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.format, im.size


def test_read_run_log_matches_what_was_logged(tmp_path):
    run = write_run(tmp_path / "a", curve(5))
    log = read_run_log(run)
    assert log.name == "a"
    np.testing.assert_array_equal(log.step, [1000, 2000, 3000, 4000, 5000])
    np.testing.assert_allclose(log.columns["return/bigfish"], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(log.columns["sps"], [100, 101, 102, 103, 104])
    maze = log.columns["return/maze"]
    assert np.isnan(maze[[0, 2, 4]]).all() and np.allclose(maze[[1, 3]], [-1, -3])
    assert group_columns([log], "return") == ["return/bigfish", "return/maze", "return/mean"]
    assert group_columns([log], "sps") == ["sps"]


def test_resumed_run_continuation_file_is_appended(tmp_path):
    run = write_run(tmp_path / "r", curve(3))
    # a resumed run with a different column set starts logs.1.csv (learner.logger)
    write_run(run, [(4000, {"sps": 7.0, "return/bigfish": 9.0, "length/bigfish": 3.0})],
              columns=["sps", "return/bigfish", "length/bigfish"])
    assert (run / "logs.1.csv").exists()
    log = read_run_log(run)
    np.testing.assert_array_equal(log.step, [1000, 2000, 3000, 4000])
    np.testing.assert_allclose(log.columns["return/bigfish"], [0, 1, 2, 9])
    assert np.isnan(log.columns["length/bigfish"][:3]).all() and log.columns["length/bigfish"][3] == 3.0


def test_smooth_equals_naive_trailing_mean():
    y = np.array([1.0, np.nan, 3.0, 10.0, np.nan, -2.0, 4.0])
    window = 3
    want = np.full_like(y, np.nan)
    seen = []
    for i, v in enumerate(y):                       # the obvious loop over finite values
        if math.isfinite(v):
            seen.append(v)
            last = seen[-window:]
            want[i] = sum(last) / len(last)
    np.testing.assert_allclose(smooth(y, window), want, equal_nan=True)
    np.testing.assert_allclose(smooth(y, 1), y, equal_nan=True)
    # hand-computed: positions 0, 2, 3, 5, 6 -> 1, 2, 14/3, 11/3, 4
    np.testing.assert_allclose(smooth(y, 3)[[0, 2, 3, 5, 6]], [1, 2, 14 / 3, 11 / 3, 4])


def test_plot_writes_pngs_with_runs_overlaid(tmp_path):
    a = write_run(tmp_path / "srwm", curve(6))
    b = write_run(tmp_path / "lstm", curve(4, offset=3.0))
    files = plot_runs([a, b], tmp_path / "plots", smooth_window=2)
    assert [f.name for f in files] == ["return.png", "sps.png"]
    for f in files:
        fmt, (w, h) = png_size(f)
        assert fmt == "PNG" and w > 300 and h > 200


def test_cli_writes_png_for_one_run_and_reports_bad_input(tmp_path, capsys):
    run = write_run(tmp_path / "run", curve(4))
    p = subprocess.run([sys.executable, "-m", "launch.plot", str(run), "--smooth", "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert png_size(run / "plots" / "return.png")[0] == "PNG"
    assert (run / "plots" / "sps.png").exists()

    empty = tmp_path / "empty"
    write_run(empty, [])
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path)], "no logs.csv"),
        ([str(empty)], "no log rows"),
        ([str(run), "--metrics", "nope"], "'nope'"),
        ([str(run), "--smooth", "0"], "--smooth"),
    ]
    for argv, needle in cases:
        code = main(argv + ["--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert needle in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_out_that_cannot_be_written_is_one_line_exit_2(tmp_path, capsys):
    run = write_run(tmp_path / "r", curve(3))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main([str(run), "--out", str(a_file / "plots")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "a_file" in err[0], err
    assert a_file.read_text() == "x"
