"""Pieces shared by the fast-weight cores (docs/design.md#shared-layer-layout).

The Transformer-style cores of the IDSIA RL code (Schlag et al. 2021, "Linear
Transformers Are Secretly Fast Weight Programmers"; Irie et al. 2021, "Going Beyond
Linear Transformers with Recurrent Fast Weight Programmers"; Irie et al., ICML 2022,
"A Modern Self-Referential Weight Matrix That Learns to Modify Itself") share one
layout::

    h_0 = W_in x_t                                    # input projection, [T, B, d_model]
    for each layer l:
        y   = fast_weight_op(h)                       # per head, [T, B, H, d]
        h   = h + Dropout(W_out concat_heads(y))      # W_out has no bias
        h   = h + Dropout(W_2 Dropout(ReLU(W_1 LN(h))))   # feed-forward block
    output h                                           # no final LayerNorm

The residual stream is handed to the policy and value heads directly, with no final
LayerNorm, as in the IDSIA RL models (the per-layer pre-LNs keep it well scaled).

Each layer names its own state entries (``"S"``, ``"W_y"``, ...); :class:`FastWeightStack`
prefixes them with ``"layer{i}."`` to build the flat core state dict.
"""

from __future__ import annotations

import numbers
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from agents.core import MemoryCore, State, StateSpec

from .diagnostics import rms

PHI_EPS = 1e-5  # the 1e-5 in q = phi(q~) / (sum phi(q~) + 1e-5)


def check_positive(core: str, **sizes: int) -> None:
    """Raise ValueError naming the first size that is not a positive integer."""
    for name, value in sizes.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"core {core!r}: {name} must be a positive integer, got {value!r}")


def check_dropout(core: str, dropout: float) -> None:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"core {core!r}: dropout must be in [0, 1), got {dropout!r}")


def check_heads(core: str, hidden_size: int, num_heads: int, head_size: int) -> None:
    """The attention-style cores split hidden_size into num_heads heads of head_size."""
    if num_heads * head_size != hidden_size:
        raise ValueError(
            f"core {core!r}: num_heads x head_size must equal hidden_size, got "
            f"{num_heads} x {head_size} = {num_heads * head_size} != {hidden_size}")


def elu_plus_one_normalised(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) / (sum phi(x) + 1e-5)`` with ``phi = elu + 1``, over the last (head) dimension."""
    phi = F.elu(x) + 1.0
    return phi / (phi.sum(-1, keepdim=True) + PHI_EPS)


def split_heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[T, B, H * d] -> [T, B, H, d]."""
    return t.view(*t.shape[:-1], num_heads, t.shape[-1] // num_heads)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """[T, B, H, d] -> [T, B, H * d]."""
    return t.reshape(*t.shape[:-2], t.shape[-2] * t.shape[-1])


class FeedForward(nn.Module):
    """Pre-LN Transformer feed-forward block with residual: ``h + FFN(LN(h))``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: [T, B, d_model]
        z = self.drop(F.relu(self.fc1(self.norm(h))))     # [T, B, d_ff]
        return h + self.drop(self.fc2(z))                  # [T, B, d_model]


class FastWeightLayer(nn.Module):
    """One layer: a per-head fast-weight op, output projection, residual, feed-forward block.

    Subclasses implement :meth:`mix` (the op, ``[T, B, d_model] -> [T, B, H, d]``) and
    :meth:`local_state_spec` (its state entries without the layer prefix).
    ``kernel_backend`` is handed to the :mod:`agents.kernels` ops ("auto": Triton on
    CUDA tensors when available, the whole-unroll PyTorch form otherwise).
    """

    kernel_backend: str = "auto"

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int,
                 dropout: float, detach_each_step: bool = False):
        super().__init__()
        self.d_model, self.num_heads, self.head_size = d_model, num_heads, head_size
        self.detach_each_step = bool(detach_each_step)
        self.out_proj = nn.Linear(num_heads * head_size, d_model, bias=False)
        self.drop = nn.Dropout(dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)

    #: While the stack records diagnostics, a dict that mix() may add scalars to
    #: (see agents.cores.diagnostics); None otherwise.
    recording: Optional[Dict[str, float]] = None

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        raise NotImplementedError

    def diagnostic_names(self) -> List[str]:
        """Names of the scalars this layer records (mix() adds its own to ``mix_ratio``)."""
        return ["mix_ratio"]

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        raise NotImplementedError

    def forward(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        # h: [T, B, d_model]; reset: bool [T, B]
        y, new_state = self.mix(h, state, reset)                 # [T, B, H, d]
        mixed = self.drop(self.out_proj(merge_heads(y)))         # [T, B, d_model]
        if self.recording is not None:
            with torch.no_grad():
                self.recording["mix_ratio"] = float(rms(mixed) / rms(h))
        h = h + mixed
        return self.ff(h), new_state


class FastWeightStack(MemoryCore):
    """Input projection followed by ``num_layers`` :class:`FastWeightLayer` s.

    Subclasses set ``layer_class`` (or override :meth:`make_layer`); the constructor
    options are those of this ``__init__`` signature, which ``make_core(strict=False)``
    uses to filter the command-line options (a subclass taking fewer options
    declares its own ``__init__``). The flat state dict holds ``"layer{i}.<name>"``
    for every entry of every layer's local state.
    """

    layer_class = None     # a FastWeightLayer subclass taking (d_model, H, d, d_ff, dropout, detach)

    def __init__(self, input_size: int, *, hidden_size: int = 128, num_layers: int = 2,
                 num_heads: int = 8, head_size: int = 16, d_ff: int = 512, dropout: float = 0.0,
                 detach_each_step: bool = False):
        super().__init__()
        name = getattr(type(self), "core_name", type(self).__name__)
        check_positive(name, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                       num_heads=num_heads, head_size=head_size, d_ff=d_ff)
        check_dropout(name, dropout)
        check_heads(name, hidden_size, num_heads, head_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.detach_each_step = bool(detach_each_step)
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.layers = nn.ModuleList(
            self.make_layer(hidden_size, num_heads, head_size, d_ff, dropout, bool(detach_each_step))
            for _ in range(num_layers))

    def make_layer(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                   detach_each_step: bool) -> FastWeightLayer:
        if self.layer_class is None:
            raise NotImplementedError(f"{type(self).__name__} sets no layer_class")
        return self.layer_class(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)

    def state_spec(self) -> StateSpec:
        dtype = self.input_proj.weight.dtype
        spec = StateSpec()
        for i, layer in enumerate(self.layers):
            for name, ts in layer.local_state_spec(dtype).items():
                spec[f"layer{i}.{name}"] = ts
        return spec

    def _layer_state(self, i: int, state: State) -> State:
        prefix = f"layer{i}."
        names = self.layers[i].local_state_spec(self.input_proj.weight.dtype)
        try:
            return {n: state[prefix + n] for n in names}
        except KeyError as e:
            raise ValueError(f"core state is missing entry {e.args[0]!r}; "
                             f"expected keys {sorted(self.state_spec())}") from None

    def forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        # x: [T, B, input_size]; reset: bool [T, B]
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"core input must be [T, B, {self.input_size}], got {list(x.shape)}")
        reset = reset.to(torch.bool)
        h = self.input_proj(x)                                   # [T, B, d_model]
        new_state: State = {}
        recorded: Dict[str, float] = {}
        for i, layer in enumerate(self.layers):
            layer.recording = {} if self.diagnostics_enabled else None
            try:
                h, s = layer(h, self._layer_state(i, state), reset)
                if layer.recording is not None:
                    recorded.update({f"layer{i}/{n}": v for n, v in layer.recording.items()})
            finally:
                layer.recording = None
            new_state.update({f"layer{i}.{n}": t for n, t in s.items()})
        if self.diagnostics_enabled:
            self._last_diagnostics = recorded
        return h, new_state

    def diagnostic_names(self) -> list:
        return [f"layer{i}/{n}" for i, layer in enumerate(self.layers) for n in layer.diagnostic_names()]
