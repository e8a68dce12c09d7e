"""The fused Triton kernels (``agents/kernels/<op>/triton_kernel.py``) against the
PyTorch reference ops: outputs, final states and every gradient (docs/design.md#kernels).

How the kernels run on a CPU-only CI machine: Triton's interpreter (``TRITON_INTERPRET=1``)
executes the kernels on CPU tensors through numpy. ``@triton.jit`` decides at
*decoration* time (when the kernel module is imported) whether it builds an
interpreted function, and ``agents.kernels`` only lets ``backend="triton"`` run on CPU
tensors while the variable is set. Pytest imports every test module into one process,
and other modules import ``agents.kernels`` (and triton) first, so setting the
variable at the top of this module would be both too late and a process-wide change
of behaviour for the other modules. Instead, a module-scoped fixture starts one child
process per op (so both CPU cores work) with ``TRITON_INTERPRET=1`` in their
environment: ``python -m tests.test_triton_kernels --worker delta|srwm|... --out FILE``.
Each child runs every case below through the public API (``backend="triton"``) and
through the reference, and writes the relative errors as JSON; the parametrised tests
here assert on them, one pytest test per case. The same case functions run in-process
on CUDA tensors (compiled kernels, no interpreter) when a GPU is present.

Cases: T in {1, 7, 63}; resets none, all, at t = 0, consecutive, at the last step, on
and around the backward's chunk boundaries (SRWM and the gated delta rule checkpoint
every 16 steps, so T = 63 crosses three boundaries), different patterns in different batch rows; both
``detach_each_step`` modes; head sizes 16, 32, 64 and non-powers of two (padded lanes);
Dk != Dv; an SR-Delta-shaped SRWM (Dy = 3D + 1); several value blocks (partial sums);
non-contiguous inputs; the no-autograd single-step (T = 1) acting path; fp16 inputs;
float64 (1e-10 agreement) and ``torch.autograd.gradcheck`` of the kernels themselves;
the same for the gated delta rule (``alpha``), whose backward recomputes chunks, and for
linear attention (the delta-rule kernels without the ``v_old`` term). The inputs come
from :mod:`agents.kernels.inputs`, which the benchmark uses too.
Tolerance: relative error (max |kernel - reference| / max |reference|) <= 1e-4 in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from agents.kernels import SRWM_KEYS, delta_rule, srwm
from agents.kernels.delta_rnn.reference import delta_rnn_reference
from agents.kernels.delta_rule.reference import delta_rule_reference
from agents.kernels.inputs import (REC_DELTA_NAMES, delta_rnn_args, delta_rnn_inputs, delta_rule_inputs,
                                   linear_attention_inputs, rec_delta_args, rec_delta_inputs, reset_mask,
                                   srwm_args, srwm_inputs)
from agents.kernels.linear_attention.reference import linear_attention_reference
from agents.kernels.rec_delta.reference import rec_delta_reference
from agents.kernels.srwm.reference import srwm_reference

REPO_ROOT = Path(__file__).resolve().parents[1]
TOL = {"float32": 1e-4, "float64": 1e-10, "float16": 1e-2, "bfloat16": 5e-2}
ABS_FLOOR = 1e-6          # denominators below this count as this (exact zeros stay comparable)
WORKER_TIMEOUT_S = 800      # under pytest.ini's per-test timeout of 900 s

# ----------------------------------------------------------------------------- cases


def _case(op: str, T: int, resets: List[str], **kw) -> dict:
    """One comparison. ``resets`` names the reset pattern of each batch row (B = len)."""
    c = dict(op=op, T=T, resets=resets, H=2, D=8, Dv=None, Dy=None, detach=False, dtype="float32",
             noncontig=False, no_grad=False, block_v=None, chunk=None, gradcheck=False, seed=0, gated=False)
    c.update(kw)
    parts = [op, f"T{T}", "+".join(resets), f"H{c['H']}", f"D{c['D']}"]
    for key in ("Dv", "Dy", "block_v", "chunk"):
        if c[key] is not None:
            parts.append(f"{key}{c[key]}")
    for flag in ("gated", "detach", "noncontig", "no_grad", "gradcheck"):
        if c[flag]:
            parts.append(flag)
    if c["dtype"] != "float32":
        parts.append(c["dtype"])
    c["id"] = "-".join(parts)
    return c


def _cases(op: str) -> List[dict]:
    if op == "linear_attention":
        small = dict(H=2, D=8)
        return [
            _case(op, 1, ["none", "all"], **small),
            _case(op, 7, ["t0", "last"], **small),
            _case(op, 7, ["consecutive", "random"], **small),
            _case(op, 7, ["consecutive", "random"], detach=True, **small),
            _case(op, 63, ["random", "boundaries"], H=1, D=8),
            _case(op, 7, ["consecutive", "random"], H=2, D=5, Dv=6),             # padded lanes, Dk != Dv
            _case(op, 7, ["random", "last"], H=1, D=8, Dv=7, block_v=2),         # four value blocks
            _case(op, 7, ["random", "t0"], no_grad=True, **small),
            _case(op, 7, ["random", "consecutive"], noncontig=True, **small),
            _case(op, 7, ["random", "consecutive"], dtype="float16", **small),
            _case(op, 7, ["random", "consecutive"], dtype="float64", **small),
            _case(op, 3, ["t0", "consecutive"], H=1, D=2, Dv=3, dtype="float64", gradcheck=True),
        ]
    if op == "rec_delta":
        small = dict(H=2, D=4)
        return [
            _case(op, 1, ["none", "all"], **small),
            _case(op, 7, ["t0", "last"], **small),
            _case(op, 7, ["consecutive", "random"], detach=True, **small),
            _case(op, 7, ["boundaries", "consecutive"], H=1, D=4, chunk=3),      # resets on chunk edges
            _case(op, 63, ["random", "boundaries"], H=1, D=4),
            _case(op, 5, ["random", "t0"], H=1, D=32),
            _case(op, 7, ["consecutive", "random"], H=2, D=5),                   # padded lanes
            _case(op, 7, ["random", "t0"], no_grad=True, **small),
            _case(op, 7, ["random", "consecutive"], dtype="float16", **small),
            _case(op, 7, ["random", "consecutive"], dtype="float64", **small),
            _case(op, 3, ["t0", "consecutive"], H=1, D=2, chunk=2, dtype="float64", gradcheck=True),
        ]
    if op == "delta_rnn":
        small = dict(H=2, D=4)
        return [
            _case(op, 1, ["none", "all"], **small),
            _case(op, 1, ["none", "all"], detach=True, **small),
            _case(op, 7, ["t0", "last"], **small),
            _case(op, 7, ["consecutive", "random"], **small),
            _case(op, 7, ["consecutive", "random"], detach=True, **small),
            _case(op, 7, ["boundaries", "consecutive"], H=1, D=4, chunk=3),      # resets on chunk edges
            _case(op, 63, ["random", "boundaries"], H=1, D=4),
            _case(op, 7, ["random", "t0"], H=1, D=32),
            _case(op, 7, ["consecutive", "random"], H=2, D=5),                   # padded lanes
            _case(op, 7, ["random", "t0"], no_grad=True, **small),
            _case(op, 7, ["random", "consecutive"], noncontig=True, **small),
            _case(op, 7, ["random", "consecutive"], dtype="float16", **small),
            _case(op, 7, ["random", "consecutive"], dtype="float64", **small),
            _case(op, 3, ["t0", "consecutive"], H=1, D=2, chunk=2, dtype="float64", gradcheck=True),
        ]
    small = dict(H=2, D=8) if op == "delta" else dict(H=2, D=4)
    cases = [
        # T = 1: the acting step; with and without a reset, both modes
        _case(op, 1, ["none", "all"], **small),
        _case(op, 1, ["all", "all"], **small),
        _case(op, 1, ["none", "all"], detach=True, **small),
        # T = 7: every pattern, a different one in the second batch row
        _case(op, 7, ["none", "none"], **small),
        _case(op, 7, ["all", "none"], **small),
        _case(op, 7, ["t0", "last"], **small),
        _case(op, 7, ["consecutive", "t0"], **small),
        _case(op, 7, ["last", "random"], **small),
        _case(op, 7, ["consecutive", "random"], detach=True, **small),
        _case(op, 7, ["none", "t0"], detach=True, **small),
        # T = 63 (one batch row pair, one head: the interpreter is slow)
        _case(op, 63, ["none", "all"], H=1, D=small["D"]),
        _case(op, 63, ["t0", "last"], H=1, D=small["D"]),
        _case(op, 63, ["consecutive", "boundaries"], H=1, D=small["D"]),
        _case(op, 63, ["random", "boundaries"], H=1, D=small["D"], detach=True),
        # head sizes of the paper and beyond
        _case(op, 7, ["consecutive"], H=1, D=16),
        _case(op, 5, ["t0"], H=1, D=32),
        _case(op, 4, ["last"], H=1, D=64),
        # layouts, paths and dtypes
        _case(op, 7, ["random", "consecutive"], noncontig=True, **small),
        _case(op, 1, ["none", "all"], no_grad=True, **small),
        _case(op, 7, ["random", "t0"], no_grad=True, **small),
        _case(op, 7, ["random", "consecutive"], dtype="float16", **small),
        _case(op, 7, ["random", "consecutive"], dtype="float64", **small),
    ]
    if op == "delta":
        cases += [
            _case(op, 7, ["consecutive", "random"], H=2, D=5, Dv=6),             # padded lanes, Dk != Dv
            _case(op, 7, ["random", "last"], H=1, D=8, Dv=7, block_v=2),         # four value blocks
            _case(op, 3, ["t0", "consecutive"], H=1, D=2, Dv=3, dtype="float64", gradcheck=True),
            # the gated delta rule (per-step decay alpha; chunked recomputation in the backward)
            _case(op, 1, ["none", "all"], gated=True, **small),
            _case(op, 7, ["t0", "last"], gated=True, **small),
            _case(op, 7, ["consecutive", "random"], gated=True, detach=True, **small),
            _case(op, 7, ["boundaries", "consecutive"], H=1, D=4, chunk=3, gated=True),   # resets on chunk edges
            _case(op, 63, ["random", "boundaries"], H=1, D=4, gated=True),
            _case(op, 7, ["random", "last"], H=1, D=5, Dv=7, block_v=2, gated=True),      # padded, 4 value blocks
            _case(op, 7, ["random", "t0"], no_grad=True, gated=True, **small),
            _case(op, 7, ["random", "consecutive"], dtype="float16", gated=True, **small),
            _case(op, 3, ["t0", "consecutive"], H=1, D=2, Dv=3, chunk=2, dtype="float64", gradcheck=True,
                  gated=True),
        ]
    else:
        cases += [
            _case(op, 7, ["consecutive", "random"], H=2, D=5),                   # padded lanes
            _case(op, 7, ["random", "last"], H=1, D=4, Dy=13),                   # SR-Delta: Dy = 3D + 1
            _case(op, 7, ["boundaries", "consecutive"], H=1, D=4, chunk=3),      # resets on chunk edges
            _case(op, 7, ["boundaries", "none"], H=1, D=4, chunk=3, detach=True),
            _case(op, 3, ["t0", "consecutive"], H=1, D=2, Dy=1, chunk=2, dtype="float64", gradcheck=True),
        ]
    return cases


DELTA_CASES = _cases("delta")
SRWM_CASES = _cases("srwm")
DELTA_RNN_CASES = _cases("delta_rnn")
REC_DELTA_CASES = _cases("rec_delta")
LINEAR_ATTENTION_CASES = _cases("linear_attention")


# ----------------------------------------------------------------------------- one comparison


def _rel(a: torch.Tensor, b: torch.Tensor) -> List[float]:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    ref = b.abs().max().item() if b.numel() else 0.0
    err = (a - b).abs().max().item() if b.numel() else 0.0
    return [err / max(ref, ABS_FLOOR), ref]


def _noncontig(t: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous storage (first two dims swapped in memory)."""
    return t.transpose(0, 1).contiguous().transpose(0, 1)


def _prepare(tensors: Dict[str, torch.Tensor], case: dict, device: str) -> Dict[str, torch.Tensor]:
    dtype = getattr(torch, case["dtype"])
    out = {}
    for name, t in tensors.items():
        t = t.to(device=device, dtype=dtype)
        if case["noncontig"] and t.dim() >= 2:
            t = _noncontig(t)
            assert not t.is_contiguous()
        out[name] = t.requires_grad_(not case["no_grad"])
    return out


def _compare(case: dict, kernel_fn, reference_fn, inputs: Dict[str, torch.Tensor]) -> Dict[str, list]:
    """Run both, backprop a fixed random cotangent, return {quantity: [rel_err, max|ref|]}."""
    ref_dtype = torch.float64 if case["dtype"] == "float64" else torch.float32
    ref_inputs = {n: t.detach().to(ref_dtype).requires_grad_(t.requires_grad) for n, t in inputs.items()}
    if case["no_grad"]:
        with torch.no_grad():
            out_k, fin_k = kernel_fn(inputs)
            out_r, fin_r = reference_fn(ref_inputs)
        res = {"out": _rel(out_k, out_r)}
        res.update({f"final_{n}": _rel(fin_k[n], fin_r[n]) for n in fin_r})
        return res
    out_k, fin_k = kernel_fn(inputs)
    out_r, fin_r = reference_fn(ref_inputs)
    gen = torch.Generator().manual_seed(7)
    g_out = torch.randn(out_r.shape, generator=gen, dtype=ref_dtype)
    g_fin = {n: torch.randn(f.shape, generator=gen, dtype=ref_dtype) for n, f in fin_r.items()}

    def loss(out, fin):
        total = (out.to(ref_dtype) * g_out.to(out.device)).sum()
        for n, f in fin.items():
            if f.requires_grad:          # detach_each_step: the final state is cut off
                total = total + (f.to(ref_dtype) * g_fin[n].to(f.device)).sum()
        return total

    names = list(inputs)
    grads_k = torch.autograd.grad(loss(out_k, fin_k), [inputs[n] for n in names], allow_unused=True)
    grads_r = torch.autograd.grad(loss(out_r, fin_r), [ref_inputs[n] for n in names], allow_unused=True)
    res = {"out": _rel(out_k, out_r)}
    res.update({f"final_{n}": _rel(fin_k[n], fin_r[n]) for n in fin_r})
    for n, gk, gr in zip(names, grads_k, grads_r):
        gk = torch.zeros_like(inputs[n]) if gk is None else gk
        gr = torch.zeros_like(ref_inputs[n]) if gr is None else gr
        res[f"grad_{n}"] = _rel(gk, gr)
    res["final_requires_grad"] = [float(any(f.requires_grad for f in fin_k.values())), 0.0]
    return res


def run_delta_case(case: dict, device: str) -> Dict[str, list]:
    from agents.kernels.delta_rule.triton_kernel import delta_rule_triton
    T, B, H, Dk = case["T"], len(case["resets"]), case["H"], case["D"]
    gen = torch.Generator().manual_seed(case["seed"])
    raw = delta_rule_inputs(T, B, H, Dk, case["Dv"], gen=gen, gated=case["gated"])
    chunk = case["chunk"] or 16
    reset = reset_mask(case["resets"], T, chunk, case["seed"]).to(device)     # [T, B]
    inputs = _prepare(raw, case, device)
    detach = case["detach"]

    def kernel(a):
        if case["block_v"] is not None or case["chunk"] is not None:   # not exposed by the public API
            out, fin = delta_rule_triton(a["q"], a["k"], a["v"], a["beta"], a["state"], reset,
                                         detach_each_step=detach, block_v=case["block_v"],
                                         alpha=a.get("alpha"), chunk=chunk)
        else:
            out, fin = delta_rule(a["q"], a["k"], a["v"], a["beta"], a["state"], reset,
                                  detach_each_step=detach, backend="triton", alpha=a.get("alpha"))
        return out, {"S": fin}

    def reference(a):
        out, fin = delta_rule_reference(a["q"], a["k"], a["v"], a["beta"], a["state"], reset,
                                        detach_each_step=detach, alpha=a.get("alpha"))
        return out, {"S": fin}

    res = _compare(case, kernel, reference, inputs)
    if case["gradcheck"]:
        names = list(inputs)
        ok = torch.autograd.gradcheck(
            lambda q, k, v, beta, state, *alpha: delta_rule_triton(
                q, k, v, beta, state, reset, detach_each_step=detach, alpha=alpha[0] if alpha else None,
                chunk=chunk),
            [inputs[n] for n in names], eps=1e-6, atol=1e-8, fast_mode=True)
        res["gradcheck"] = [0.0 if ok else 1.0, 1.0]
    return res


def run_srwm_case(case: dict, device: str) -> Dict[str, list]:
    from agents.kernels.srwm.triton_kernel import srwm_triton
    T, B, H, D = case["T"], len(case["resets"]), case["H"], case["D"]
    gen = torch.Generator().manual_seed(case["seed"])
    raw = srwm_inputs(T, B, H, D, case["Dy"], gen=gen)
    chunk = case["chunk"] or 16
    reset = reset_mask(case["resets"], T, chunk, case["seed"]).to(device)             # [T, B]
    inputs = _prepare(raw, case, device)
    detach = case["detach"]

    split = srwm_args

    def kernel(a):
        x, W, dW = split(a)
        if case["chunk"] is not None:              # not exposed by the public API
            return srwm_triton(x, W, dW, reset, detach_each_step=detach, chunk=case["chunk"])
        return srwm(x, W, dW, reset, detach_each_step=detach, backend="triton")

    def reference(a):
        x, W, dW = split(a)
        return srwm_reference(x, W, dW, reset, detach_each_step=detach)

    res = _compare(case, kernel, reference, inputs)
    if case["gradcheck"]:
        names = list(inputs)

        def f(x, *w):
            y, fin = srwm_triton(x, dict(zip(SRWM_KEYS, w[:4])), dict(zip(SRWM_KEYS, w[4:])), reset,
                                 detach_each_step=detach, chunk=chunk)
            return (y,) + tuple(fin[n] for n in SRWM_KEYS)

        ok = torch.autograd.gradcheck(f, [inputs[n] for n in names], eps=1e-6, atol=1e-8, fast_mode=True)
        res["gradcheck"] = [0.0 if ok else 1.0, 1.0]
    return res


def run_delta_rnn_case(case: dict, device: str) -> Dict[str, list]:
    from agents.kernels import delta_rnn
    from agents.kernels.delta_rnn.triton_kernel import delta_rnn_triton
    T, B, H, D = case["T"], len(case["resets"]), case["H"], case["D"]
    gen = torch.Generator().manual_seed(case["seed"])
    raw = delta_rnn_inputs(T, B, H, D, gen=gen)
    chunk = case["chunk"] or 16
    reset = reset_mask(case["resets"], T, chunk, case["seed"]).to(device)
    inputs = _prepare(raw, case, device)
    detach = case["detach"]

    def kernel(a):
        if case["chunk"] is not None:              # not exposed by the public API
            return delta_rnn_triton(*delta_rnn_args(a), reset, detach_each_step=detach, chunk=chunk)
        return delta_rnn(*delta_rnn_args(a), reset, detach_each_step=detach, backend="triton")

    def reference(a):
        return delta_rnn_reference(*delta_rnn_args(a), reset, detach_each_step=detach)

    res = _compare(case, kernel, reference, inputs)
    if case["gradcheck"]:
        names = list(inputs)

        def f(z, k, v, beta, R, y):
            out, fin = delta_rnn_triton(z, k, v, beta, {"R": R, "y": y}, reset, detach_each_step=detach,
                                        chunk=chunk)
            return out, fin["R"], fin["y"]

        ok = torch.autograd.gradcheck(f, [inputs[n] for n in names], eps=1e-6, atol=1e-8, fast_mode=True)
        res["gradcheck"] = [0.0 if ok else 1.0, 1.0]
    return res


def run_rec_delta_case(case: dict, device: str) -> Dict[str, list]:
    from agents.kernels import rec_delta
    from agents.kernels.rec_delta.triton_kernel import rec_delta_triton
    T, B, H, D = case["T"], len(case["resets"]), case["H"], case["D"]
    gen = torch.Generator().manual_seed(case["seed"])
    raw = rec_delta_inputs(T, B, H, D, gen=gen)
    chunk = case["chunk"] or 16
    reset = reset_mask(case["resets"], T, chunk, case["seed"]).to(device)
    inputs = _prepare(raw, case, device)
    detach = case["detach"]

    split = rec_delta_args

    def kernel(a):
        if case["chunk"] is not None:              # not exposed by the public API
            return rec_delta_triton(*split(a), reset, detach_each_step=detach, chunk=chunk)
        return rec_delta(*split(a), reset, detach_each_step=detach, backend="triton")

    def reference(a):
        return rec_delta_reference(*split(a), reset, detach_each_step=detach)

    res = _compare(case, kernel, reference, inputs)
    if case["gradcheck"]:
        def f(*xs):
            out, fin = rec_delta_triton(*split(dict(zip(REC_DELTA_NAMES, xs))), reset, detach_each_step=detach,
                                        chunk=chunk)
            return out, fin["S"], fin["y"]

        ok = torch.autograd.gradcheck(f, [inputs[n] for n in REC_DELTA_NAMES], eps=1e-6, atol=1e-8,
                                      fast_mode=True)
        res["gradcheck"] = [0.0 if ok else 1.0, 1.0]
    return res


def run_linear_attention_case(case: dict, device: str) -> Dict[str, list]:
    from agents.kernels import linear_attention
    from agents.kernels.delta_rule.triton_kernel import delta_rule_triton
    T, B, H, Dk = case["T"], len(case["resets"]), case["H"], case["D"]
    gen = torch.Generator().manual_seed(case["seed"])
    raw = linear_attention_inputs(T, B, H, Dk, case["Dv"], gen=gen)
    reset = reset_mask(case["resets"], T, 16, case["seed"]).to(device)
    inputs = _prepare(raw, case, device)
    detach = case["detach"]

    def kernel(a):
        if case["block_v"] is not None:            # not exposed by the public API: the delta kernel, DELTA off
            ones = torch.ones(a["q"].shape[:3], dtype=a["q"].dtype, device=a["q"].device)
            out, fin = delta_rule_triton(a["q"], a["k"], a["v"], ones, a["state"], reset, detach_each_step=detach,
                                         block_v=case["block_v"], delta=False)
        else:
            out, fin = linear_attention(a["q"], a["k"], a["v"], a["state"], reset, detach_each_step=detach,
                                        backend="triton")
        return out, {"S": fin}

    def reference(a):
        out, fin = linear_attention_reference(a["q"], a["k"], a["v"], a["state"], reset, detach_each_step=detach)
        return out, {"S": fin}

    res = _compare(case, kernel, reference, inputs)
    if case["gradcheck"]:
        ok = torch.autograd.gradcheck(
            lambda q, k, v, state: linear_attention(q, k, v, state, reset, detach_each_step=detach,
                                                    backend="triton"),
            [inputs[n] for n in inputs], eps=1e-6, atol=1e-8, fast_mode=True)
        res["gradcheck"] = [0.0 if ok else 1.0, 1.0]
    return res


RUNNERS = {"delta": run_delta_case, "srwm": run_srwm_case, "delta_rnn": run_delta_rnn_case,
           "rec_delta": run_rec_delta_case, "linear_attention": run_linear_attention_case}
CASES = {"delta": DELTA_CASES, "srwm": SRWM_CASES, "delta_rnn": DELTA_RNN_CASES, "rec_delta": REC_DELTA_CASES,
         "linear_attention": LINEAR_ATTENTION_CASES}
FIRST_INPUT = {"delta": "grad_q", "srwm": "grad_x", "delta_rnn": "grad_z", "rec_delta": "grad_q",
               "linear_attention": "grad_q"}


def check_result(case: dict, res: Dict[str, list]) -> None:
    """Assert one case's errors are within tolerance and the comparison is not vacuous."""
    if "error" in res:
        pytest.fail(f"{case['id']} raised in the worker:\n{res['error']}")
    tol = TOL[case["dtype"]]
    bad = {k: v for k, v in res.items() if k not in ("final_requires_grad", "seconds") and v[0] > tol}
    assert not bad, f"{case['id']}: relative errors above {tol}: {bad}"
    assert res["out"][1] > 0, f"{case['id']}: reference output is all zero (vacuous comparison)"
    if not case["no_grad"]:
        first_input = FIRST_INPUT[case["op"]]
        assert res[first_input][1] > 0, f"{case['id']}: reference {first_input} is all zero"
        # detach_each_step cuts the final state off the graph, as the reference does
        assert res["final_requires_grad"][0] == (0.0 if case["detach"] else 1.0)
        if case["op"] == "srwm" and case["detach"]:
            for n in ("q", "k", "b"):            # the slow weights W^q, W^k, W^b get no gradient
                assert res[f"grad_W_{n}"][1] == 0.0, f"{case['id']}: reference W^{n} has a gradient"


# ----------------------------------------------------------------------------- interpreter run (CI)


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def interpreter_results():
    """Run every case in TRITON_INTERPRET=1 child processes (one per op), in parallel."""
    if not _triton_importable():
        pytest.skip("triton is not installed")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for op in RUNNERS:
            out = Path(tmp) / f"{op}.json"
            cmd = [sys.executable, "-m", "tests.test_triton_kernels", "--worker", op, "--out", str(out)]
            procs[op] = (subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True), out)
        for op, (proc, out) in procs.items():
            try:
                log, _ = proc.communicate(timeout=WORKER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                log, _ = proc.communicate()
                pytest.fail(f"interpreter worker {op!r} ran over {WORKER_TIMEOUT_S}s:\n{log[-4000:]}")
            if proc.returncode != 0 or not out.exists():
                pytest.fail(f"interpreter worker {op!r} exited with {proc.returncode}:\n{log[-4000:]}")
            results[op] = json.loads(out.read_text())
    return results


@pytest.mark.slow        # the first one waits for the interpreter workers (~1-2 min on 2 cores)
@pytest.mark.parametrize("case", DELTA_CASES, ids=[c["id"] for c in DELTA_CASES])
def test_delta_rule_kernel_matches_reference(case, interpreter_results):
    check_result(case, interpreter_results["delta"][case["id"]])


@pytest.mark.slow
@pytest.mark.parametrize("case", SRWM_CASES, ids=[c["id"] for c in SRWM_CASES])
def test_srwm_kernel_matches_reference(case, interpreter_results):
    check_result(case, interpreter_results["srwm"][case["id"]])


@pytest.mark.slow
@pytest.mark.parametrize("case", REC_DELTA_CASES, ids=[c["id"] for c in REC_DELTA_CASES])
def test_rec_delta_kernel_matches_reference(case, interpreter_results):
    check_result(case, interpreter_results["rec_delta"][case["id"]])


@pytest.mark.slow
@pytest.mark.parametrize("case", DELTA_RNN_CASES, ids=[c["id"] for c in DELTA_RNN_CASES])
def test_delta_rnn_kernel_matches_reference(case, interpreter_results):
    check_result(case, interpreter_results["delta_rnn"][case["id"]])


@pytest.mark.slow
@pytest.mark.parametrize("case", LINEAR_ATTENTION_CASES, ids=[c["id"] for c in LINEAR_ATTENTION_CASES])
def test_linear_attention_kernel_matches_reference(case, interpreter_results):
    check_result(case, interpreter_results["linear_attention"][case["id"]])


# ----------------------------------------------------------------------------- compiled run (GPU)

GPU_CASES = DELTA_CASES + SRWM_CASES + DELTA_RNN_CASES + REC_DELTA_CASES + LINEAR_ATTENTION_CASES + [
    _case("linear_attention", 80, ["random"] * 4, H=8, D=64),
    _case("rec_delta", 80, ["random"] * 4, H=4, D=32),
    _case("rec_delta", 50, ["random", "none", "all", "boundaries"], H=8, D=16, dtype="bfloat16"),
    _case("delta_rnn", 80, ["random"] * 4, H=4, D=32),
    _case("delta_rnn", 50, ["random", "none", "all", "boundaries"], H=8, D=16, dtype="bfloat16"),
    _case("delta", 80, ["random"] * 4, H=8, D=64),
    _case("delta", 50, ["random", "none", "all", "boundaries"], H=8, D=16, dtype="float16"),
    _case("delta", 80, ["random"] * 4, H=8, D=64, gated=True),
    _case("delta", 50, ["random", "none", "all", "boundaries"], H=4, D=32, gated=True),
    _case("delta", 50, ["random", "consecutive"], H=4, D=32, gated=True, dtype="bfloat16"),
    _case("srwm", 80, ["random"] * 4, H=8, D=32),
    _case("srwm", 50, ["random", "none", "all", "boundaries"], H=8, D=16, Dy=49),
    _case("srwm", 80, ["random", "boundaries"], H=2, D=64, detach=True),
    _case("srwm", 50, ["random", "consecutive"], H=8, D=16, dtype="bfloat16"),   # no bf16 in the interpreter
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", GPU_CASES, ids=[c["id"] for c in GPU_CASES])
def test_kernel_matches_reference_on_cuda(case):
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1: the compiled kernels are not in use")
    check_result(case, RUNNERS[case["op"]](case, "cuda"))


# ----------------------------------------------------------------------------- no kernel launch needed


def test_kernel_entry_points_reject_bad_input():
    from agents.kernels.delta_rule.triton_kernel import delta_rule_triton
    from agents.kernels.srwm.triton_kernel import srwm_triton
    q = torch.rand(4, 2, 1, 8)
    S0 = torch.zeros(2, 1, 8, 8)
    reset = torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"beta must be \[T, B, H\] = \[4, 2, 1\], got \[4, 2\]"):
        delta_rule_triton(q, q, q, torch.rand(4, 2), S0, reset)
    with pytest.raises(ValueError, match=r"state must be \[B, H, Dk, Dv\]"):
        delta_rule_triton(q, q, q, torch.rand(4, 2, 1), S0[:1], reset)
    with pytest.raises(ValueError, match="T >= 1"):
        delta_rule_triton(q[:0], q[:0], q[:0], torch.rand(0, 2, 1), S0, reset[:0])
    with pytest.raises(ValueError, match="q has dtype torch.int64"):
        delta_rule_triton(q.long(), q, q, torch.rand(4, 2, 1), S0, reset)
    W = {"y": torch.rand(1, 8, 8), "q": torch.rand(1, 8, 8), "k": torch.rand(1, 8, 8), "b": torch.rand(1, 4, 8)}
    dW = {n: torch.zeros(2, *w.shape) for n, w in W.items()}
    with pytest.raises(ValueError, match=r"W_slow\['b'\] must be \[1, 4, 8\], got \[1, 3, 8\]"):
        srwm_triton(q, dict(W, b=torch.rand(1, 3, 8)), dW, reset)
    with pytest.raises(ValueError, match=r"delta must have keys"):
        srwm_triton(q, W, {n: dW[n] for n in ("y", "q", "k")}, reset)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        srwm_triton(q, W, dW, reset, chunk=0)
    with pytest.raises(ValueError, match="block_v must be a power of two, got 3"):
        delta_rule_triton(q, q, q, torch.rand(4, 2, 1), S0, reset, block_v=3)
    with pytest.raises(ValueError, match=r"alpha must be \[T, B, H\] = \[4, 2, 1\], got \[4, 2\]"):
        delta_rule_triton(q, q, q, torch.rand(4, 2, 1), S0, reset, alpha=torch.rand(4, 2))
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        delta_rule_triton(q, q, q, torch.rand(4, 2, 1), S0, reset, alpha=torch.rand(4, 2, 1), chunk=0)
    with pytest.raises(ValueError, match="delta=False .linear attention. has no gated form"):
        delta_rule_triton(q, q, q, torch.rand(4, 2, 1), S0, reset, alpha=torch.rand(4, 2, 1), delta=False)


# ----------------------------------------------------------------------------- worker entry point


def _worker(op: str, out_path: str, only: Optional[str] = None) -> None:
    torch.set_num_threads(1)
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("the worker must run with TRITON_INTERPRET=1 in its environment")
    results = {}
    for case in CASES[op]:
        if only and only not in case["id"]:
            continue
        t0 = time.perf_counter()
        try:
            results[case["id"]] = RUNNERS[op](case, "cpu")
        except Exception:
            results[case["id"]] = {"error": traceback.format_exc()}
        results[case["id"]]["seconds"] = [time.perf_counter() - t0, 0.0]
        print(f"{case['id']}: {time.perf_counter() - t0:.1f}s", flush=True)
    Path(out_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the kernel-vs-reference cases of one op "
                                                 "(under TRITON_INTERPRET=1) and write JSON.")
    parser.add_argument("--worker", choices=sorted(RUNNERS), required=True)
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--only", default=None, help="run only cases whose id contains this")
    args = parser.parse_args()
    _worker(args.worker, args.out, args.only)
