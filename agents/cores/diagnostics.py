"""Fast-weight diagnostics: a few scalars per layer about what a forward pass did.

Recorded only when a core's diagnostics are enabled (``--core-diagnostics``,
:func:`agents.core.set_core_diagnostics`); computed without gradient from detached
copies, so they never change outputs or gradients. The replays below re-run the
recurrence one step at a time (no gradient) to see the per-step quantities that the
fused kernels keep to themselves; they cost about one extra forward of the op.

Definitions (means are over every time step, batch row and head of the unroll;
``H(p) = -sum p log p``; ``|.|_F`` is the Frobenius norm)::

    SRWM (per head, D entries; the four matrices stacked as M = [W^y; W^q; W^k; W^b])
    x_entropy, q_entropy, k_entropy = mean H(p) / log D   (1: uniform, 0: one-hot)
    qk_l1      = mean |q_t - k_t|_1                        (0: q = k, no self-modification)
    b_y, b_q, b_k, b_b = mean b_t[j]                       (the four self-modification rates)
    write_rel  = mean |M_t - M'_{t-1}|_F / |M'_{t-1}|_F    (one step's write relative to the
                                                            weights it modifies; ' = after reset)
    dW_rel     = mean over rows and heads of |DW_T|_F / |W_slow|_F  (the accumulated
                                                            difference at the end of the unroll)
    DeltaNet (and the delta memory of SR-Delta, prefixed ``delta_`` there)
    beta       = mean beta_t
    write_norm = mean |k_t (beta_t (v_t - S'^T k_t))^T|_F
    S_norm     = mean over rows and heads of |S_T|_F
    every fast-weight layer
    mix_ratio  = rms(W_out concat_heads(y)) / rms(h)      (what the layer adds to the residual)
    LSTM
    gate_i, gate_f, gate_o = mean sigmoid gate;  gate_g = mean |tanh g|
"""

from __future__ import annotations

import math
from typing import Dict

import torch

from agents.kernels import SRWM_KEYS

SRWM_DIAGNOSTICS = ("x_entropy", "q_entropy", "k_entropy", "qk_l1", "b_y", "b_q", "b_k", "b_b",
                    "write_rel", "dW_rel")
DELTA_DIAGNOSTICS = ("beta", "write_norm", "S_norm")
LSTM_DIAGNOSTICS = ("gate_i", "gate_f", "gate_g", "gate_o")


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Mean over all leading dimensions of ``H(p) / log D`` for distributions on the last one."""
    D = p.shape[-1]
    H = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    return H.mean() / math.log(D)


def rms(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).mean().sqrt()


@torch.no_grad()
def srwm_diagnostics(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
                     reset: torch.Tensor) -> Dict[str, float]:
    """The SRWM scalars of the module docstring for one layer's unroll (same arguments as
    :func:`agents.kernels.srwm`: x [T, B, H, D] already mapped, W_slow {y, q, k, b}
    [H, *, D], delta the same with a leading batch dimension, reset bool [T, B])."""
    T, B, H, D = x.shape
    dt = torch.float64
    x = x.detach().to(dt)
    Dy = W_slow["y"].shape[1]
    S = torch.cat([W_slow[n].detach().to(dt) for n in SRWM_KEYS], dim=1)             # [H, R, D]
    dW = torch.cat([delta[n].detach().to(dt) for n in SRWM_KEYS], dim=2).clone()     # [B, H, R, D]
    rows = torch.tensor([0] * Dy + [1] * D + [2] * D + [3] * 4, device=x.device)
    acc = {n: 0.0 for n in ("x_entropy", "q_entropy", "k_entropy", "qk_l1", "write_rel")}
    b_sum = torch.zeros(4, dtype=dt, device=x.device)
    for t in range(T):
        dW = dW * (~reset[t]).to(dt).view(B, 1, 1, 1)
        W = S.unsqueeze(0) + dW                                                       # [B, H, R, D]
        z = torch.einsum("bhrd,bhd->bhr", W, x[t])
        q = torch.softmax(z[..., Dy:Dy + D], -1)
        k = torch.softmax(z[..., Dy + D:Dy + 2 * D], -1)
        b = torch.sigmoid(z[..., Dy + 2 * D:])                                        # [B, H, 4]
        u = torch.einsum("bhrd,bhd->bhr", W, q - k)                                   # M (q - k)
        write = (b.index_select(-1, rows) * u).unsqueeze(-1) * k.unsqueeze(-2)         # [B, H, R, D]
        acc["x_entropy"] += float(normalised_entropy(x[t]))
        acc["q_entropy"] += float(normalised_entropy(q))
        acc["k_entropy"] += float(normalised_entropy(k))
        acc["qk_l1"] += float((q - k).abs().sum(-1).mean())
        acc["write_rel"] += float((write.flatten(2).norm(dim=-1) / W.flatten(2).norm(dim=-1)).mean())
        b_sum += b.mean(dim=(0, 1))
        dW = dW + write
    out = {n: v / T for n, v in acc.items()}
    out.update({f"b_{n}": float(b_sum[j] / T) for j, n in enumerate(SRWM_KEYS)})
    out["dW_rel"] = float((dW.flatten(2).norm(dim=-1) / S.flatten(1).norm(dim=-1)).mean())
    return {n: out[n] for n in SRWM_DIAGNOSTICS}


@torch.no_grad()
def delta_diagnostics(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                      state: torch.Tensor, reset: torch.Tensor) -> Dict[str, float]:
    """The DeltaNet scalars of the module docstring (arguments as :func:`agents.kernels.delta_rule`)."""
    T, B, H, Dk = q.shape
    dt = torch.float64
    k, v, beta = k.detach().to(dt), v.detach().to(dt), beta.detach().to(dt)
    S = state.detach().to(dt).clone()
    write = 0.0
    for t in range(T):
        S = S * (~reset[t]).to(dt).view(B, 1, 1, 1)
        v_old = torch.einsum("bhkv,bhk->bhv", S, k[t])
        e = beta[t].unsqueeze(-1) * (v[t] - v_old)                                  # [B, H, Dv]
        write += float((k[t].norm(dim=-1) * e.norm(dim=-1)).mean())                # |k e^T|_F
        S = S + k[t].unsqueeze(-1) * e.unsqueeze(-2)
    return {"beta": float(beta.mean()), "write_norm": write / T,
            "S_norm": float(S.flatten(2).norm(dim=-1).mean())}


@torch.no_grad()
def lstm_gate_preactivations(lstm: torch.nn.LSTM, x: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """The gates' pre-activations of layer 0 of ``lstm``, order i, f, g, o: x [..., I] the
    input, h_prev [..., N] the state before the step -> [..., 4N]."""
    return (x.detach() @ lstm.weight_ih_l0.t() + lstm.bias_ih_l0
            + h_prev.detach() @ lstm.weight_hh_l0.t() + lstm.bias_hh_l0)


@torch.no_grad()
def lstm_diagnostics(lstm: torch.nn.LSTM, x: torch.Tensor, y: torch.Tensor, h0: torch.Tensor,
                     reset: torch.Tensor) -> Dict[str, float]:
    """Gate means of a one-layer ``nn.LSTM`` over an unroll: x [T, B, I], outputs y [T, B, N],
    h0 [B, N] the state before step 0, reset bool [T, B]."""
    h_prev = torch.cat([h0.unsqueeze(0), y[:-1]], dim=0)                            # [T, B, N]
    h_prev = h_prev * (~reset).to(h_prev.dtype).unsqueeze(-1)
    g = lstm_gate_preactivations(lstm, x, h_prev)                                   # [T, B, 4N]
    i, f, gg, o = g.chunk(4, dim=-1)
    return {"gate_i": float(torch.sigmoid(i).mean()), "gate_f": float(torch.sigmoid(f).mean()),
            "gate_g": float(torch.tanh(gg).abs().mean()), "gate_o": float(torch.sigmoid(o).mean())}
