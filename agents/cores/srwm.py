"""SRWM core: the modern self-referential weight matrix (docs/design.md#srwm).

Irie, Schlag, Csordas and Schmidhuber, "A Modern Self-Referential Weight Matrix That
Learns to Modify Itself", ICML 2022. Per head (head size d), from the layer input h_t::

    x_t = softmax(h_t)                                  (per head; srwm: softmax(LN(h_t)))
    y_t = W^y x_t;  q_t = softmax(W^q x_t);  k_t = softmax(W^k x_t);  b_t = sigmoid(W^b x_t)
    M_j = M_j + b_t[j] (M_j q_t - M_j k_t) k_t^T        for M_j in (W^y, W^q, W^k, W^b)

with the output read from the weights BEFORE the update. The slow weights W^y, W^q,
W^k (d x d) and W^b (4 x d) are parameters initialised N(0, 1/d) in the IDSIA RL
layer (``srwm_paper``). ``srwm`` (and sr_delta, srwm_no_carry) default to a LayerNorm
before the input softmax and W^q, W^k ~ N(0, 16/d): with the IDSIA RL layer x, q and k
are near uniform at initialisation, q ~ k, and the self-modification is switched off
(docs/srwm.md); the ``srwm_*`` options select each change. They act before the
recurrence and on the initialisation only, so the kernels are the same. The carried state
is the DIFFERENCE from the slow weights (``W_{t-1} = W_slow + DW_{t-1}``, ``DW = 0`` at
episode start), so a learner update of the slow weights shows at once in episodes
that are already running. State entries per layer: ``"layer{i}.W_y"`` [B, H, d_y, d],
``"layer{i}.W_q"``, ``"layer{i}.W_k"`` [B, H, d, d], ``"layer{i}.W_b"`` [B, H, 4, d].
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import SRWM_KEYS, srwm

from .diagnostics import SRWM_DIAGNOSTICS, srwm_diagnostics
from .layers import FastWeightLayer, FastWeightStack, split_heads


SRWM_INPUT_NORMS = ("none", "layernorm")


class SRWMLayer(FastWeightLayer):
    """One SRWM layer; ``y_size`` is the number of output rows of W^y per head (d by default).

    Options that act before the recurrence or on the initialisation only (the kernels
    are unchanged); the defaults are the IDSIA RL layer:

    * ``input_norm``: ``"none"`` (``x = softmax(h)``) or ``"layernorm"``
      (``x = softmax(s LN(h))``, one LayerNorm over d_model, as DeltaNet's pre-LN);
    * ``input_scale`` s: the inverse temperature of the input softmax,
      ``x = softmax(s h)`` per head; ``learn_input_scale`` makes it a learned
      per-head parameter (stored as its log) starting at ``input_scale``;
    * ``beta_init``: mean of the N(., 1/d) initialisation of W^b (the SRWM paper's
      supervised layer's ``beta_init``; 0 in the RL layer);
    * ``qk_init_scale``: W^q and W^k are initialised N(0, (qk_init_scale)^2 / d).
    """

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False, y_size: Optional[int] = None, *,
                 input_norm: str = "none", input_scale: float = 1.0, learn_input_scale: bool = False,
                 beta_init: float = 0.0, qk_init_scale: float = 1.0):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)
        if input_norm not in SRWM_INPUT_NORMS:
            raise ValueError(f"srwm input_norm must be one of {', '.join(SRWM_INPUT_NORMS)}, got {input_norm!r}")
        for name, v in (("input_scale", input_scale), ("qk_init_scale", qk_init_scale)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"srwm {name} must be a positive number, got {v!r}")
        if not (isinstance(beta_init, (int, float)) and math.isfinite(beta_init)):
            raise ValueError(f"srwm beta_init must be a finite number, got {beta_init!r}")
        H, d = num_heads, head_size
        self.y_size = d if y_size is None else int(y_size)
        self.input_norm = input_norm
        self.beta_init, self.qk_init_scale = float(beta_init), float(qk_init_scale)
        self.norm = nn.LayerNorm(d_model) if input_norm == "layernorm" else None
        if learn_input_scale:
            self.input_log_scale = nn.Parameter(torch.full((H, 1), math.log(input_scale)))
        else:
            self.register_buffer("input_log_scale", None)
            self.input_scale = float(input_scale)
        self.W_y = nn.Parameter(torch.empty(H, self.y_size, d))    # [H, d_y, d]
        self.W_q = nn.Parameter(torch.empty(H, d, d))              # [H, d, d]
        self.W_k = nn.Parameter(torch.empty(H, d, d))              # [H, d, d]
        self.W_b = nn.Parameter(torch.empty(H, 4, d))              # [H, 4, d]
        self.reset_slow_weights()

    def reset_slow_weights(self) -> None:
        std = 1.0 / math.sqrt(self.head_size)                       # N(0, 1/d)
        nn.init.normal_(self.W_y, mean=0.0, std=std)
        nn.init.normal_(self.W_q, mean=0.0, std=std * self.qk_init_scale)
        nn.init.normal_(self.W_k, mean=0.0, std=std * self.qk_init_scale)
        nn.init.normal_(self.W_b, mean=self.beta_init, std=std)

    def slow_weights(self) -> Dict[str, torch.Tensor]:
        return {"y": self.W_y, "q": self.W_q, "k": self.W_k, "b": self.W_b}

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        H, d = self.num_heads, self.head_size
        return StateSpec({"W_y": TensorSpec((H, self.y_size, d), dtype),
                          "W_q": TensorSpec((H, d, d), dtype),
                          "W_k": TensorSpec((H, d, d), dtype),
                          "W_b": TensorSpec((H, 4, d), dtype)})

    def diagnostic_names(self):
        return list(SRWM_DIAGNOSTICS) + super().diagnostic_names()

    def input_map(self, h: torch.Tensor) -> torch.Tensor:
        """h [T, B, d_model] -> x [T, B, H, d]: ``softmax(s LN(h))`` per head (LN and s optional)."""
        if self.norm is not None:
            h = self.norm(h)
        z = split_heads(h, self.num_heads)                                     # [T, B, H, d]
        if self.input_log_scale is not None:
            z = z * self.input_log_scale.exp()                                  # [H, 1] per head
        elif self.input_scale != 1.0:
            z = z * self.input_scale
        return torch.softmax(z, dim=-1).contiguous()

    def srwm_read(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """h [T, B, d_model] -> (y [T, B, H, d_y], new SRWM differences)."""
        x = self.input_map(h)                                                  # [T, B, H, d]
        delta = {n: state["W_" + n] for n in SRWM_KEYS}                        # [B, H, *, d]
        y, new = srwm(x, self.slow_weights(), delta, reset,
                      detach_each_step=self.detach_each_step, backend=self.kernel_backend)
        if self.recording is not None:
            self.recording.update(srwm_diagnostics(x, self.slow_weights(), delta, reset))
        return y, {"W_" + n: new[n] for n in SRWM_KEYS}

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        return self.srwm_read(h, state, reset)


#: The ``srwm_*`` core options of SRWMCore (and sr_delta, srwm_no_carry) as in the IDSIA
#: RL layer, which ``srwm_paper`` always uses.
SRWM_PAPER_OPTIONS = dict(srwm_input_norm="none", srwm_input_scale=1.0, srwm_learn_input_scale=False,
                          srwm_beta_init=0.0, srwm_qk_init_scale=1.0)
#: Their defaults (docs/srwm.md): a LayerNorm before the input softmax and W^q, W^k
#: initialised 4x larger, so that x, q and k depend on the input at initialisation and
#: the self-modification is switched on; measured on the memory task.
SRWM_OPTION_DEFAULTS = dict(SRWM_PAPER_OPTIONS, srwm_input_norm="layernorm", srwm_qk_init_scale=4.0)


@register_core("srwm")
class SRWMCore(FastWeightStack):
    """Stack of SRWM layers, with the ``srwm_*`` options of :class:`SRWMLayer`."""

    layer_class = SRWMLayer

    def __init__(self, input_size: int, *, hidden_size: int = 128, num_layers: int = 2,
                 num_heads: int = 8, head_size: int = 16, d_ff: int = 512, dropout: float = 0.0,
                 detach_each_step: bool = False,
                 srwm_input_norm: str = SRWM_OPTION_DEFAULTS["srwm_input_norm"],
                 srwm_input_scale: float = SRWM_OPTION_DEFAULTS["srwm_input_scale"],
                 srwm_learn_input_scale: bool = SRWM_OPTION_DEFAULTS["srwm_learn_input_scale"],
                 srwm_beta_init: float = SRWM_OPTION_DEFAULTS["srwm_beta_init"],
                 srwm_qk_init_scale: float = SRWM_OPTION_DEFAULTS["srwm_qk_init_scale"]):
        self._layer_options = dict(input_norm=srwm_input_norm, input_scale=srwm_input_scale,
                                   learn_input_scale=bool(srwm_learn_input_scale),
                                   beta_init=srwm_beta_init, qk_init_scale=srwm_qk_init_scale)
        super().__init__(input_size, hidden_size=hidden_size, num_layers=num_layers,
                         num_heads=num_heads, head_size=head_size, d_ff=d_ff, dropout=dropout,
                         detach_each_step=detach_each_step)

    def make_layer(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                   detach_each_step: bool) -> FastWeightLayer:
        return self.layer_class(d_model, num_heads, head_size, d_ff, dropout, detach_each_step,
                                **self._layer_options)


@register_core("srwm_paper")
class SRWMPaperCore(FastWeightStack):
    """The exact SRWM of the IDSIA RL code: ``x = softmax(h)``, every slow weight N(0, 1/d)
    (``--core srwm`` with ``--srwm-input-norm none --srwm-qk-init-scale 1`` builds the same)."""

    layer_class = SRWMLayer
