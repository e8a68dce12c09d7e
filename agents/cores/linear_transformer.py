"""Linear Transformer core: purely additive fast weights (docs/design.md#linear-transformer).

Katharopoulos et al., "Transformers are RNNs", ICML 2020, in the fast-weight form of
Schlag et al., ICML 2021 (the RL baseline of Irie et al., NeurIPS 2021). The DeltaNet
layer with the update ``S = S + k v^T`` (same phi = elu + 1 and sum normalisation of
q and k, no beta)::

    [q~, k~, v] = W_slow LN(h_t);   S = S + k v^T;   y = S^T q

State ``"layer{i}.S"``: [B, H, d_k, d_v], zero at episode start.
"""

from __future__ import annotations

from typing import Tuple

import torch

from agents.core import State, register_core
from agents.kernels import linear_attention

from .deltanet import DeltaNetLayer
from .layers import FastWeightStack


class LinearTransformerLayer(DeltaNetLayer):
    """DeltaNet layer without beta and without the ``- S^T k`` term of the update."""

    def slow_size_per_head(self) -> int:
        return 3 * self.head_size              # q~, k~, v

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        q, k, v, _ = self.project(h)                                       # [T, B, H, d] each
        y, S = linear_attention(q, k, v, state["S"], reset,                # y: [T, B, H, d]
                                detach_each_step=self.detach_each_step, backend=self.kernel_backend)
        return y, {"S": S}


@register_core("linear_transformer")
class LinearTransformerCore(FastWeightStack):
    """Stack of Linear Transformer layers."""

    layer_class = LinearTransformerLayer
