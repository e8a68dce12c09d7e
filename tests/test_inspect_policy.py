"""launch.inspect_policy's LSTM gate saturation: the fraction of pre-activations where the
derivative of a gate's sigmoid (tanh for g) is below 1e-6 of its maximum, against autograd."""

import pytest
import torch

from agents.model import ModelConfig, build_agent
from envs.base import ObsSpec
from launch.inspect_policy import SATURATED, lstm_saturation

VECTOR = ObsSpec((8,), "float32")


def inputs(B: int, scale: float):
    g = torch.Generator().manual_seed(0)
    return {"obs": scale * torch.randn(1, B, 8, generator=g), "reward": torch.zeros(1, B),
            "done": torch.zeros(1, B, dtype=torch.bool), "task": torch.zeros(1, B, dtype=torch.long)}


def autograd_zero_fraction(agent, inp) -> dict:
    """The same count written with autograd: d gate / d pre-activation <= 1e-6 x its maximum."""
    core = agent.core
    with torch.no_grad():
        x = core.input_norm(agent.core_input(inp)[0])
        pre = x @ core.lstm.weight_ih_l0.t() + core.lstm.bias_ih_l0 + core.lstm.bias_hh_l0
    out = {}
    for name, g in zip("ifgo", pre.chunk(4, dim=-1)):
        g = g.clone().requires_grad_(True)
        (torch.tanh(g) if name == "g" else torch.sigmoid(g)).sum().backward()
        top = 1.0 if name == "g" else 0.25
        out[name] = round(float((g.grad <= SATURATED * top).float().mean()), 4)
    return out


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_lstm_saturation_counts_the_gates_that_pass_no_gradient(norm):
    torch.manual_seed(0)
    agent = build_agent(ModelConfig(core="lstm", hidden_size=16, lstm_input_norm=norm, encoder="mlp"), VECTOR, 4)
    small = inputs(64, 1.0)
    at_init = lstm_saturation(agent, small)
    assert at_init == autograd_zero_fraction(agent, small) and max(at_init.values()) < 0.01, at_init
    # observations 10^3 times larger: the features grow with them (ReLU MLP); without a
    # norm most gates saturate, with it (scale-free) next to none do
    big = inputs(64, 1e3)
    got = lstm_saturation(agent, big)
    assert got == autograd_zero_fraction(agent, big)
    if norm == "none":
        assert min(got.values()) > 0.3, got
    else:
        assert max(got.values()) < 0.01, got
    # gate weights 1000 times larger saturate either way
    with torch.no_grad():
        agent.core.lstm.weight_ih_l0.mul_(1000.0)
    got = lstm_saturation(agent, small)
    assert got == autograd_zero_fraction(agent, small) and min(got.values()) > 0.3, got
