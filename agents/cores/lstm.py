"""LSTM core (Hochreiter and Schmidhuber 1997), the recurrent baseline (docs/design.md#lstm).

One layer of ``nn.LSTM`` (no input projection), as in torchbeast's IMPALA agent and the
LSTM baseline of Irie et al., ICML 2022 (256 units), fed with the core input through a
LayerNorm (``lstm_input_norm='layernorm'``, the default) or directly (``'none'``, as
torchbeast). State: ``"h"`` and ``"c"``, each [B, hidden_size], zero at episode start.

Why the LayerNorm: the encoder's ReLU features have no bound. On Atari Pong
(``launch.reproduce pong-cpu``, 1.74M steps) they grew to a mean of 14 (max over 400)
and 88-98% of each gate's pre-activations saturated (the sigmoid's or tanh's derivative
below 1e-6 of its maximum; ``launch.inspect_policy`` counts them): no gradient reached
the LSTM or the encoder for the last ~10k updates and the policy was the same in every
state (docs/learning/README.md section 3).
The feed-forward core, whose linear heads do not saturate, learned Pong with the same
settings. The fast-weight cores normalise their inputs already.

Initialisation: PyTorch's, except the forget gate's bias, which starts at
``lstm_forget_bias`` (default 1, Gers et al. 2000; Jozefowicz et al., ICML 2015). With
PyTorch's zero-mean biases the forget gate starts near 0.5 and a memory decays by about
half per step: on the ``memory:16:4`` recall task (``launch.compare --suite memory-v1``)
the LSTM stayed at chance in 1M steps for 3 of 3 seeds at unroll 20 and 2 of 2 at unroll
80, and with the bias at 1 it solves the task (docs/learning/README.md section 6).

The unroll is cut at the time steps where any row resets; each segment runs as one
cuDNN/ATen LSTM call after zeroing the state of the rows that reset there, so a
whole unroll costs a few calls instead of one per step.

On the CPU, without autograd (the actors' one step at a time, evaluation), the call runs
on ATen's own LSTM rather than oneDNN's: oneDNN prepares its weight layout for each call
whose weights changed, which an actor's weights do at every parameter publish: 4.1x
the CPU time for one step of a batch of 8 at 256 units (docs/benchmarks.md; the
``act step ms`` column of ``python -m launch.bench_cores --cores lstm``).
Training keeps oneDNN. Both compute the same function (outputs agree to 1e-6).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from agents.core import MemoryCore, State, StateSpec, TensorSpec, register_core

from .diagnostics import LSTM_DIAGNOSTICS, lstm_diagnostics
from .layers import check_positive


#: The lstm options' values before they existed (what older runs built): listed in a
#: checkpoint's architecture only where they differ, and given to configs saved without them.
LSTM_LEGACY_OPTIONS = dict(lstm_input_norm="none")


def init_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Set the forget gate's total bias (``b_ih + b_hh``, gate order i, f, g, o) of every
    layer to ``value``: ``b_ih`` = value, ``b_hh`` = 0. Other weights keep PyTorch's init."""
    H = lstm.hidden_size
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            getattr(lstm, f"bias_ih_l{layer}")[H:2 * H].fill_(value)
            getattr(lstm, f"bias_hh_l{layer}")[H:2 * H].zero_()


@register_core("lstm")
class LSTMCore(MemoryCore):
    """Single-layer LSTM; ``output_size == hidden_size``."""

    def __init__(self, input_size: int, *, hidden_size: int = 256, lstm_forget_bias: float = 1.0,
                 lstm_input_norm: str = "layernorm"):
        super().__init__()
        check_positive("lstm", input_size=input_size, hidden_size=hidden_size)
        if lstm_input_norm not in ("none", "layernorm"):
            raise ValueError(f"lstm_input_norm must be none or layernorm, got {lstm_input_norm!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        # only 'layernorm' adds parameters: a 'none' core's state dict is the old one
        self.input_norm = nn.LayerNorm(input_size) if lstm_input_norm == "layernorm" else nn.Identity()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=1)
        init_forget_bias(self.lstm, float(lstm_forget_bias))

    def state_spec(self) -> StateSpec:
        dtype = self.lstm.weight_ih_l0.dtype
        return StateSpec(h=TensorSpec((self.hidden_size,), dtype), c=TensorSpec((self.hidden_size,), dtype))

    def forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        # x: [T, B, input_size]; reset: bool [T, B]
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"core input must be [T, B, {self.input_size}], got {list(x.shape)}")
        T = x.shape[0]
        x = self.input_norm(x)
        reset = reset.to(torch.bool)
        h, c = state["h"].unsqueeze(0), state["c"].unsqueeze(0)            # [1, B, hidden]
        cuts = [0] + (reset[1:].any(dim=1).nonzero().flatten() + 1).tolist() + [T]
        outs = []
        for start, end in zip(cuts[:-1], cuts[1:]):
            keep = ~reset[start].view(1, -1, 1)                             # [1, B, 1]
            h = torch.where(keep, h, torch.zeros_like(h))
            c = torch.where(keep, c, torch.zeros_like(c))
            y, (h, c) = self._lstm(x[start:end], (h, c))                   # y: [end-start, B, hidden]
            outs.append(y)
        y = torch.cat(outs, dim=0)
        if self.diagnostics_enabled:
            self._last_diagnostics = {f"layer0/{n}": v for n, v in
                                      lstm_diagnostics(self.lstm, x, y, state["h"], reset).items()}
        return y, {"h": h.squeeze(0), "c": c.squeeze(0)}

    def _lstm(self, x: torch.Tensor, hc: Tuple[torch.Tensor, torch.Tensor]):
        if x.is_cuda or torch.is_grad_enabled() or not torch._C._get_mkldnn_enabled():
            return self.lstm(x, hc)
        torch._C._set_mkldnn_enabled(False)      # ATen's LSTM for inference on the CPU (above)
        try:
            return self.lstm(x, hc)
        finally:
            torch._C._set_mkldnn_enabled(True)

    def diagnostic_names(self) -> list:
        return [f"layer0/{n}" for n in LSTM_DIAGNOSTICS]
