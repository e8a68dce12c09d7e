"""envs.suites: published suites do not change; a task's own train args reach its runs."""

import pytest

from envs.suites import SUITES, SuiteTask, get_suite
from launch.compare import OWN_FLAGS, TRAIN_ARGS, Run, build_parser, check_inputs, task_train_args, train_command
from launch.config import build_parser as train_parser, config_from_args, validate_config

# memory-v1 as published (scores in docs/learning/ were made with exactly this)
MEMORY_V1 = [("recall-4", "memory:4:4", 500_000, 0.25, 1.0, ()),
             ("recall-16", "memory:16:4", 1_000_000, 0.25, 1.0, ()),
             ("repeat-prev", "popgym:RepeatPreviousEasy", 2_000_000, -0.5, 1.0, ()),
             ("repeat-first", "popgym:RepeatFirstEasy", 1_000_000, -0.5, 1.0, ()),
             ("cartpole-pos", "popgym:PositionOnlyCartPoleEasy", 2_000_000, 0.11, 1.0, ()),
             ("majority-9", "majority:9:2", 1_000_000, 0.5, 1.0, ())]
POPGYM = ("--entropy-cost", "0.0002")
MEMORY_V2 = [("recall-4", "memory:4:4", 500_000, 0.25, 1.0, ()),
             ("recall-16", "memory:16:4", 1_000_000, 0.25, 1.0, ()),
             ("repeat-prev", "popgym:RepeatPreviousEasy", 2_000_000, -0.5, 1.0, POPGYM),
             ("repeat-first", "popgym:RepeatFirstEasy", 2_000_000, -0.5, 1.0, POPGYM),
             ("cartpole-pos", "popgym:PositionOnlyCartPoleEasy", 2_000_000, 0.11, 1.0, POPGYM),
             ("majority-9", "majority:9:2", 1_000_000, 0.5, 1.0, ())]


def _rows(suite):
    return [(t.name, t.env, t.total_steps, t.random, t.perfect, t.train_args) for t in get_suite(suite)]


def test_published_suites_are_as_published():
    assert _rows("memory-v1") == MEMORY_V1
    assert _rows("memory-v2") == MEMORY_V2


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_task_flag_set_is_accepted_by_launch_train(suite):
    for task in get_suite(suite):
        assert not set(task.train_args) & set(OWN_FLAGS), task
        ns = train_parser().parse_args([*TRAIN_ARGS, *task.train_args, "--env", task.env, "--core", "lstm"])
        validate_config(config_from_args(ns))


def test_task_args_come_between_the_common_settings_and_the_users():
    task = SuiteTask("t", "memory:4:4", 1000, 0.25, 1.0, ("--entropy-cost", "0.0002", "--batch-size", "4"))
    user = ["--entropy-cost", "0.003"]
    flags = task_train_args(TRAIN_ARGS + user, task)
    assert flags == [*TRAIN_ARGS, "--entropy-cost", "0.0002", "--batch-size", "4", "--entropy-cost", "0.003"]
    parse = lambda f: config_from_args(train_parser().parse_args([*f, "--env", task.env]))
    cfg = parse(flags)
    assert cfg.learner.entropy_cost == pytest.approx(0.003)     # the user's flag wins
    assert cfg.actor.batch_size == 4                                   # the task's beats the common 8
    assert parse(task_train_args(TRAIN_ARGS, task)).learner.entropy_cost == pytest.approx(0.0002)
    cmd = train_command(Run("lstm", task, 2, 1000), __import__("pathlib").Path("r"),
                        {"train_args": TRAIN_ARGS + user, "core_import": ""})
    assert cmd[cmd.index("--total-steps") + 2:] == flags


def test_compare_checks_each_tasks_flags(monkeypatch):
    bad = SuiteTask("bad", "memory:4:4", 1000, 0.25, 1.0, ("--batch-size", "0"))
    monkeypatch.setitem(SUITES, "test-bad", (get_suite("memory-v2")[0], bad))
    from launch.compare import CompareInputError
    args = build_parser().parse_args(["--cores", "ff", "--suite", "test-bad"])
    with pytest.raises(CompareInputError, match="batch"):
        check_inputs(args, [])
    args = build_parser().parse_args(["--cores", "ff", "--suite", "memory-v2", "--tasks", "repeat-first"])
    cores, tasks, settings = check_inputs(args, [])
    assert settings["train_args"] == TRAIN_ARGS and tasks[0].train_args == POPGYM
