"""SharedParams: the seqlocked parameter copy between the learner and the actors."""

import pytest
import torch
from torch import nn

from actors.params import SharedParams


def model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_publish_then_load_copies_every_parameter_and_buffer_exactly():
    learner, actor = model(0), model(1)
    learner[1].running_mean.fill_(0.5)
    params = SharedParams(learner)
    assert params.version == 1
    assert params.load_into(actor) == 1
    for (n, a), (_, b) in zip(learner.state_dict().items(), actor.state_dict().items()):
        if a.is_floating_point():
            assert torch.equal(a, b), n
    with torch.no_grad():
        learner[0].weight.add_(1.0)
    assert params.publish(learner) == 2
    assert params.load_into(actor, last_version=2) == 2            # up to date: no copy
    assert not torch.equal(actor[0].weight, learner[0].weight)
    assert params.load_into(actor, last_version=1) == 2
    assert torch.equal(actor[0].weight, learner[0].weight)


def test_a_write_in_progress_is_never_read():
    learner, actor = model(0), model(1)
    params = SharedParams(learner)
    before = actor[0].weight.clone()
    params.seq += 1                                                  # a publish that never finishes
    with pytest.raises(TimeoutError):
        params.load_into(actor, timeout_s=0.05)
    params.seq += 1
    assert params.load_into(actor) == 2
    assert torch.equal(actor[0].weight, learner[0].weight) and not torch.equal(before, learner[0].weight)


def test_layout_mismatch_is_refused():
    params = SharedParams(model(0))
    with pytest.raises(ValueError, match="layout"):
        params.publish(nn.Linear(3, 4))
