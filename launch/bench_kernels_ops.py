"""The ops timed by ``python -m launch.bench_kernels``: input makers (the builders of
:mod:`agents.kernels.inputs`, shared with the kernel tests) and the implementations
(``loop``, ``reference``, ``torch``, ``triton`` through the public ops' ``backend=``,
and flash-linear-attention's delta rule when installed)."""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch

from agents.kernels import SRWM_KEYS, delta_rnn, delta_rule, linear_attention, rec_delta, srwm
from agents.kernels.inputs import (delta_rnn_args, delta_rnn_inputs, delta_rule_args, delta_rule_inputs,
                                   linear_attention_inputs, random_resets, rec_delta_args, rec_delta_inputs,
                                   srwm_args, srwm_inputs)


# ----------------------------------------------------------------------------- inputs
# The builders of agents.kernels.inputs (the kernel tests' own), with smaller states.


def _inputs(tensors, T, B, density, device, gen):
    reset = random_resets(T, B, density, gen).to(device)                        # bool [T, B]
    return {n: t.to(device).requires_grad_(True) for n, t in tensors.items()}, reset


def make_delta_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    return _inputs(delta_rule_inputs(T, B, H, D, gen=gen, state_scale=0.1), T, B, density, device, gen)


def make_gated_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    tensors = delta_rule_inputs(T, B, H, D, gen=gen, state_scale=0.1, gated=True, alpha_shift=3.0,
                                alpha_scale=1.0)                                 # alpha near 1
    return _inputs(tensors, T, B, density, device, gen)


def make_linear_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    return _inputs(linear_attention_inputs(T, B, H, D, gen=gen, state_scale=0.1), T, B, density, device, gen)


def make_srwm_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    return _inputs(srwm_inputs(T, B, H, D, gen=gen, x_scale=1.0, delta_scale=0.01), T, B, density, device, gen)


def make_rec_delta_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    tensors = rec_delta_inputs(T, B, H, D, gen=gen, state_scale=0.1, y_scale=0.1)
    return _inputs(tensors, T, B, density, device, gen)


def make_delta_rnn_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    tensors = delta_rnn_inputs(T, B, H, D, gen=gen, state_scale=0.1, y_scale=0.1)
    return _inputs(tensors, T, B, density, device, gen)


# ----------------------------------------------------------------------------- implementations
# Each op is run through its public function with backend= "reference", "torch" or
# "triton"; a step maps (inputs, state, reset, backend) to (out [T, B, H, Dv], state).


def _delta_step(a, st, reset, backend):
    out, S = delta_rule(*delta_rule_args(a)[:4], st["state"], reset, alpha=a.get("alpha"), backend=backend)
    return out, {"state": S}


def _linear_step(a, st, reset, backend):
    out, S = linear_attention(a["q"], a["k"], a["v"], st["state"], reset, backend=backend)
    return out, {"state": S}


def _srwm_step(a, st, reset, backend):
    x, W, _ = srwm_args(a)
    y, dW = srwm(x, W, {n: st[f"delta_{n}"] for n in SRWM_KEYS}, reset, backend=backend)
    return y, {f"delta_{n}": dW[n] for n in SRWM_KEYS}


def _rec_delta_step(a, st, reset, backend):
    q, k, v, beta, R, _ = rec_delta_args(a)
    return rec_delta(q, k, v, beta, R, st, reset, backend=backend)


def _delta_rnn_step(a, st, reset, backend):
    z, k, v, beta, _ = delta_rnn_args(a)
    return delta_rnn(z, k, v, beta, st, reset, backend=backend)


#: op -> (step, names of the state inputs)
STEPS = {
    "delta": (_delta_step, ["state"]),
    "gated": (_delta_step, ["state"]),
    "linear": (_linear_step, ["state"]),
    "srwm": (_srwm_step, [f"delta_{n}" for n in SRWM_KEYS]),
    "rec_delta": (_rec_delta_step, ["S", "y"]),
    "delta_rnn": (_delta_rnn_step, ["R", "y"]),
}


def _loop(step, state_names):
    """The per-step loop of the original learner for a whole-unroll op ``step(a_t, state, reset_t)``."""
    def run(a, reset):
        state = {n: a[n] for n in state_names}
        outs = []
        for t in range(reset.shape[0]):
            a_t = {n: (x[t:t + 1] if n not in state_names and x.dim() >= 3 and x.shape[:2] == reset.shape else x)
                   for n, x in a.items()}
            o, state = step(a_t, state, reset[t:t + 1])
            outs.append(o)
            state = {n: x.detach() for n, x in state.items()}
        return torch.cat(outs), state
    return run


def impl(op: str, name: str) -> Optional[Callable]:
    """run(inputs, reset) -> (out, state) for implementation ``name`` of ``op``, or None."""
    if name in ("fla", "fla-chunk"):
        return fla_impl(chunk=name == "fla-chunk") if op == "delta" else None   # fla: the delta rule only
    step, state_names = STEPS[op]
    if name == "loop":
        return _loop(lambda a, st, r: step(a, st, r, "reference"), state_names)
    if name in ("reference", "torch", "triton"):
        return lambda a, reset: step(a, {n: a[n] for n in state_names}, reset, name)
    raise ValueError(f"unknown implementation {name!r}")


def fla_impl(chunk: bool) -> Optional[Callable]:
    """flash-linear-attention's delta rule with resets as varlen (cu_seqlens) boundaries."""
    try:
        if chunk:
            from fla.ops.delta_rule import chunk_delta_rule as fla_fn
        else:
            from fla.ops.delta_rule import fused_recurrent_delta_rule as fla_fn
    except Exception:
        return None
    params = inspect.signature(fla_fn).parameters

    def prepare(a, reset):
        """Flatten [T, B] into episodes: one varlen batch of B*T tokens (row-major by b)."""
        q, k, v, beta, S0 = (t.detach() for t in delta_rule_args(a))
        T, B, H, D = q.shape
        starts = reset.clone()
        starts[0] = True                                             # every row starts a sequence
        flat_starts = starts.t().reshape(-1).nonzero().flatten()     # token index b*T + t
        cu = torch.cat([flat_starts, flat_starts.new_tensor([B * T])]).long()     # [N + 1]
        N = flat_starts.numel()
        row_of = flat_starts // T
        first = (flat_starts % T) == 0
        h0 = torch.zeros(N, H, D, D, device=q.device, dtype=torch.float32)
        use_s0 = first & ~reset[0][row_of]
        h0[use_s0] = S0[row_of[use_s0]].float()
        last_seg = torch.searchsorted(flat_starts, torch.arange(B, device=q.device) * T + T - 1, right=True) - 1

        def bt(t):                                                   # [T, B, ...] -> [1, B*T, ...]
            return t.transpose(0, 1).reshape(1, B * T, *t.shape[2:]).contiguous().requires_grad_(True)

        return dict(q=bt(q), k=bt(k), v=bt(v), beta=bt(beta), h0=h0.requires_grad_(True), cu=cu,
                    T=T, B=B, last_seg=last_seg)

    def run(p):
        kw = dict(q=p["q"], k=p["k"], v=p["v"], beta=p["beta"], scale=1.0, initial_state=p["h0"],
                  output_final_state=True, cu_seqlens=p["cu"])
        if "head_first" in params:
            kw["head_first"] = False
        o, ht = fla_fn(**kw)
        T, B = p["T"], p["B"]
        out = o.reshape(B, T, *o.shape[2:]).transpose(0, 1)           # [T, B, H, D]
        return out, {"S": ht[p["last_seg"]]}

    run.prepare = prepare
    return run


#: op -> input maker
OPS = {
    "delta": make_delta_inputs,
    "srwm": make_srwm_inputs,
    "gated": make_gated_inputs,
    "linear": make_linear_inputs,
    "rec_delta": make_rec_delta_inputs,
    "delta_rnn": make_delta_rnn_inputs,
}
