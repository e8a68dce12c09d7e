"""Learner optimiser options checked against hand-written updates."""

import copy

import torch
from torch import nn

from learner.learner import Learner, LearnerConfig, _prefill_rmsprop


def test_rmsprop_init_matches_a_hand_written_update_from_a_prefilled_accumulator():
    torch.manual_seed(0)
    m = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    ref = copy.deepcopy(m)
    opt = torch.optim.RMSprop(m.parameters(), lr=0.1, alpha=0.9, eps=0.01)
    _prefill_rmsprop(opt, 1.0)
    vs = [torch.ones_like(p) for p in ref.parameters()]
    for _ in range(3):
        opt.zero_grad()
        m(x).pow(2).sum().backward()
        opt.step()
        ref.zero_grad()
        ref(x).pow(2).sum().backward()
        with torch.no_grad():
            for p, v in zip(ref.parameters(), vs):        # TensorFlow 1 RMSProp, eps outside
                v.mul_(0.9).add_(0.1 * p.grad ** 2)
                p.sub_(0.1 * p.grad / (v.sqrt() + 0.01))
    for a, b in zip(m.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_rmsprop_init_zero_is_pytorch_and_state_round_trips():
    torch.manual_seed(1)
    agent = nn.Sequential(nn.Linear(3, 2))
    learner = Learner(LearnerConfig(rmsprop_init=1.0), agent, total_steps=100, steps_per_update=10)
    sq = learner.optimizer.state[agent[0].weight]["square_avg"]
    assert torch.equal(sq, torch.ones_like(sq))
    sd = copy.deepcopy(learner.optimizer.state_dict())
    other = Learner(LearnerConfig(), copy.deepcopy(agent), total_steps=100, steps_per_update=10)
    assert len(other.optimizer.state) == 0                # PyTorch's default: created at the first step
    other.optimizer.load_state_dict(sd)
    assert torch.equal(next(iter(other.optimizer.state.values()))["square_avg"], torch.ones(2, 3))
