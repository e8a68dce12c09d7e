"""launch.compare_report: one table from several compare directories."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from launch import compare_report

ROOT = Path(__file__).resolve().parents[1]
RECALL = ROOT / "docs" / "learning" / "memory-v1-recall"      # a real launch.compare output
MAJORITY = ROOT / "docs" / "learning" / "memory-v1-majority"


def _split_by_core(src: Path, tmp: Path, groups):
    """Copies of ``src`` whose results.csv each hold only the rows of one group of cores."""
    with open(src / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
        cols = list(rows[0])
    summary = json.loads((src / "summary.json").read_text())
    dirs = []
    for i, cores in enumerate(groups):
        d = tmp / f"part{i}"
        d.mkdir()
        with open(d / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(r for r in rows if r["core"] in cores)
        (d / "summary.json").write_text(json.dumps(dict(summary, cores=list(cores))))
        dirs.append(d)
    return dirs


def test_one_directory_gives_the_table_launch_compare_wrote(capsys):
    assert compare_report.main([str(RECALL)]) == 0
    assert capsys.readouterr().out == (RECALL / "table.txt").read_text()


def test_a_grid_split_over_directories_gives_the_same_table_and_summary(tmp_path, capsys):
    parts = _split_by_core(RECALL, tmp_path, [("ff", "lstm"), ("deltanet", "srwm", "sr_delta")])
    out = tmp_path / "merged"
    assert compare_report.main([str(p) for p in parts] + ["--out", str(out)]) == 0
    assert (out / "table.txt").read_text() == (RECALL / "table.txt").read_text()
    want = json.loads((RECALL / "summary.json").read_text())
    got = json.loads((out / "summary.json").read_text())
    for core in want["cores"]:
        assert got["iqm"][core]["iqm"] == pytest.approx(want["iqm"][core]["iqm"])
        assert got["iqm"][core]["ci95"] == pytest.approx(want["iqm"][core]["ci95"])
        for task, s in want["scores"][core].items():
            assert got["scores"][core][task]["mean"] == pytest.approx(s["mean"])
            assert got["scores"][core][task]["ci95"] == pytest.approx(s["ci95"])
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and {Path(r["run_dir"]).parts[-3] for r in rows} == {"part0", "part1"}
    assert got["sources"] == [str(p) for p in parts]


def test_two_tasks_from_two_directories_and_a_core_selection(capsys):
    assert compare_report.main([str(RECALL), str(MAJORITY), "--cores", "lstm", "ff"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["core", "recall-4", "recall-16", "majority-9", "IQM"]
    assert [l.split()[0] for l in lines[3:]] == ["lstm", "ff"]
    lstm = lines[3].split()
    assert lstm[1] == "1.00" and lstm[7] == "1.00"          # recall-4 and majority-9 means


def _bad(argv, capsys, match):
    assert compare_report.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and match in err, err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    _bad([RECALL, RECALL, "--out", out], capsys, "is in both")
    _bad([tmp_path / "nowhere", "--out", out], capsys, "not a directory")
    (tmp_path / "empty").mkdir()
    _bad([tmp_path / "empty", "--out", out], capsys, "no summary.json")
    other = tmp_path / "other"
    shutil.copytree(MAJORITY, other)
    s = json.loads((other / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps(dict(s, train_args=s["train_args"] + ["--seed", "3"])))
    _bad([RECALL, other, "--out", out], capsys, "other settings")
    (other / "summary.json").write_text(json.dumps(dict(s, suite="memory-v0")))
    _bad([RECALL, other, "--out", out], capsys, "suite 'memory-v0'")
    (other / "summary.json").write_text("{not json")
    _bad([other, "--out", out], capsys, "cannot read")
    _bad([RECALL, "--cores", "gru", "--out", out], capsys, "core 'gru'")
    assert not out.exists()
    cmp_dir = tmp_path / "cmp"
    cmp_dir.mkdir()
    (cmp_dir / "compare.json").write_text("{}")
    _bad([RECALL, "--out", cmp_dir], capsys, "is a launch.compare directory")
    assert sorted(p.name for p in cmp_dir.iterdir()) == ["compare.json"]


REPEAT_FIRST_V1 = ROOT / "docs" / "learning" / "memory-v1-repeat-first"


def test_suite_admits_a_directory_of_another_suite_for_tasks_defined_alike(tmp_path, capsys):
    # memory-v2 keeps memory-v1's recall and majority tasks as they were: their v1 runs count
    out = tmp_path / "v2"
    assert compare_report.main([str(RECALL), str(MAJORITY), "--suite", "memory-v2", "--out", str(out)]) == 0
    v2 = capsys.readouterr().out
    assert compare_report.main([str(RECALL), str(MAJORITY)]) == 0
    v1 = capsys.readouterr().out
    assert v2.splitlines()[0].startswith("memory-v2, ") and v1.splitlines()[0].startswith("memory-v1, ")
    assert v2.splitlines()[1:-1] == v1.splitlines()[1:]
    got = json.loads((out / "summary.json").read_text())
    assert got["suite"] == "memory-v2" and got["tasks"]["recall-4"]["train_args"] == []
    # memory-v2 changed repeat-first (budget, its own entropy cost): the v1 runs do not count
    _bad([RECALL, REPEAT_FIRST_V1, "--suite", "memory-v2"], capsys, "task 'repeat-first' of suite 'memory-v1' is not defined as in 'memory-v2'")
    v2_dir = tmp_path / "v2-majority"                  # without --suite, the suites must agree
    shutil.copytree(MAJORITY, v2_dir)
    s = json.loads((v2_dir / "summary.json").read_text())
    (v2_dir / "summary.json").write_text(json.dumps(dict(s, suite="memory-v2")))
    _bad([RECALL, v2_dir], capsys, "--suite puts the tasks both define alike in one table")
    assert compare_report.main([str(RECALL), str(v2_dir), "--suite", "memory-v2"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == v1.splitlines()[1:]
    _bad([RECALL, "--suite", "memory-v9"], capsys, "unknown suite 'memory-v9'")


def test_a_task_trained_with_other_own_args_is_refused(tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(RECALL, other)
    s = json.loads((other / "summary.json").read_text())
    s["tasks"]["recall-4"]["train_args"] = ["--entropy-cost", "0.0002"]
    (other / "summary.json").write_text(json.dumps(s))
    parts = _split_by_core(RECALL, tmp_path, [("ff",)])
    _bad([parts[0], other, "--cores", "lstm"], capsys, "task 'recall-4' has other settings")
