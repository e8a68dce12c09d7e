"""launch.sync_train's command line: bad input is one line and exit 2, before any training."""

import pytest

from launch.sync_train import main


@pytest.mark.parametrize("argv, message", [
    (["--core", "nope"], "'nope' is not a registered core"),
    (["--env", "nope:x"], "unknown env family 'nope'"),
    (["--set", "hidden_size"], "--set expects OPTION=VALUE, got 'hidden_size'"),
    (["--set", "bogus=1"], "bogus"),
    (["--steps", "0"], "--steps and --unroll must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and message in err[-1], err


def test_a_tiny_run_prints_its_returns(capsys):
    main(["--core", "ff", "--steps", "320", "--seeds", "0"])
    out = capsys.readouterr().out
    assert out.startswith("ff memory:3:2 steps=320") and "returns [" in out
